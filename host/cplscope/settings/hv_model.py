"""The detector's HV model of one instrument, kept on the host per board serial.

The board drives one of three kinds of detector from its HV enable and HV control outputs
(docs/build.md, "HV models"): an HV ``supply`` with a monitor (the default, what a board
assumes at boot), an analog PMT ``module`` (0.5 … 1.1 V control, no monitor, 0.2 s to
settle), or a photon ``counting_head`` (power only: no HV control, no monitor). The board
forgets the model at every boot, so it is stored here, under
:func:`cplscope.calibration.config_dir` as ``hv-model-<serial>.json``, and sent (HV_CONFIG)
whenever the instrument is made ready (:func:`apply_hv_model`, called by
``Instrument.prepare``); ``cplscope hv-model`` shows and stores it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .calibration import CalibrationError
from .store import SettingsFile

__all__ = ["HV_KINDS", "HvModel", "apply_hv_model", "hv_model_path", "load_hv_model",
           "save_hv_model"]

#: The kinds of detector the board's HV_CONFIG knows.
HV_KINDS = ("supply", "module", "counting_head")
_NUMBERS = {"volts_per_control_v": "V/V", "min_volts": "V", "max_volts": "V"}


@dataclass(frozen=True)
class HvModel:
    """One detector's HV model. Fields left None take the board's default for the kind
    (docs/protocol.md, HV_CONFIG)."""

    kind: str = "supply"
    volts_per_control_v: float | None = None  #: HV per volt of control input, V/V
    min_volts: float | None = None  #: lowest HV a module works at, V
    max_volts: float | None = None  #: highest HV, V
    monitor: bool | None = None  #: an HV monitor is wired to ADC1
    settle_ms: int | None = None  #: time from HV on until the detector is settled, ms

    def __post_init__(self) -> None:
        if self.kind not in HV_KINDS:
            raise CalibrationError(f"HV model kind {self.kind!r} is not one of "
                                   f"{', '.join(HV_KINDS)}")
        for name, unit in _NUMBERS.items():
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0):
                raise CalibrationError(f"{name} must be a number ≥ 0 {unit}, got {v!r}")
        if self.monitor is not None and not isinstance(self.monitor, bool):
            raise CalibrationError(f"monitor must be true or false, got {self.monitor!r}")
        if self.settle_ms is not None and (isinstance(self.settle_ms, bool) or not isinstance(
                self.settle_ms, int) or not 0 <= self.settle_ms <= 10_000):
            raise CalibrationError(f"settle_ms must be an integer 0 … 10000 ms, got "
                                   f"{self.settle_ms!r}")
        if self.kind == "counting_head":
            given = [n for n in ("volts_per_control_v", "min_volts", "max_volts", "monitor")
                     if getattr(self, n) is not None]
            if given:
                raise CalibrationError(f"a counting head has no HV control or monitor: "
                                       f"{', '.join(given)} do not apply")

    @property
    def is_default(self) -> bool:
        return self == HvModel()

    def args(self) -> dict[str, Any]:
        """HV_CONFIG's arguments: the kind and the fields given."""
        return {k: v for k, v in asdict(self).items() if v is not None}


_FILE: SettingsFile[HvModel] = SettingsFile("hv-model", HvModel)
#: ``config_dir()/hv-model-<serial>.json``
hv_model_path = _FILE.path
#: ``load_hv_model(serial, path=None)``: the stored HV model of instrument ``serial``, or the
#: default (an HV supply)
load_hv_model = _FILE.load
#: ``save_hv_model(serial, model, path=None)``: store ``model`` for ``serial`` (atomically);
#: returns the path
save_hv_model = _FILE.save


def apply_hv_model(inst: Any) -> HvModel:
    """Send instrument ``inst``'s stored HV model to its board (nothing for the default,
    which the board has from boot). Returns the model in force."""
    model = load_hv_model(str(inst.info()["serial"]))
    if not model.is_default:
        inst.configure_hv_model(**model.args())
    return model
