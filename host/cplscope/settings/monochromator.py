"""The monochromator's settings of one instrument, kept on the host.

The board forgets its monochromator configuration at every boot (10 steps/nm from a home
switch at 200 nm, 50 steps of backlash, 200–900 nm). An instrument whose grating drive is
different stores its own settings here, per serial under
:func:`cplscope.settings.calibration.config_dir`, and :meth:`cplscope.Instrument.prepare`
sends them to the board before it homes (``cplscope mono`` sets them from the command line;
``docs/build.md`` explains how to measure them).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .calibration import CalibrationError
from .store import read_settings, settings_path, write_settings

__all__ = ["MONO_KEYS", "load_mono_config", "mono_config_path", "save_mono_config"]

#: The settings the board's MONO_CONFIG takes, with their units.
MONO_KEYS = {"steps_per_nm": "steps/nm", "home_nm": "nm", "backlash_steps": "steps",
             "min_nm": "nm", "max_nm": "nm"}


def mono_config_path(serial: str) -> Path:
    """``config_dir()/monochromator-<serial>.json``."""
    return settings_path("monochromator", serial)


def _check(config: dict[str, Any], where: str) -> dict[str, float]:
    unknown = sorted(set(config) - set(MONO_KEYS))
    if unknown:
        raise CalibrationError(f"{where}: unknown monochromator setting(s) {unknown}; "
                               f"allowed: {', '.join(MONO_KEYS)}")
    out: dict[str, float] = {}
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value) or value < 0:
            raise CalibrationError(f"{where}: {key} must be a number ≥ 0 "
                                   f"({MONO_KEYS[key]}), got {value!r}")
        out[key] = int(value) if key == "backlash_steps" else float(value)
    if "steps_per_nm" in out and not out["steps_per_nm"] > 0:
        raise CalibrationError(f"{where}: steps_per_nm must be > 0")
    lo, hi = out.get("min_nm"), out.get("max_nm")
    if lo is not None and hi is not None and not lo < hi:
        raise CalibrationError(f"{where}: min_nm ({lo:g}) must be below max_nm ({hi:g})")
    return out


def load_mono_config(serial: str, path: str | os.PathLike[str] | None = None
                     ) -> dict[str, float]:
    """The stored monochromator settings of instrument ``serial`` ({} when none)."""
    p = Path(path) if path is not None else mono_config_path(serial)
    data = read_settings(p, "monochromator settings")
    return {} if data is None else _check(data, str(p))


def save_mono_config(serial: str, config: dict[str, Any],
                     path: str | os.PathLike[str] | None = None) -> Path:
    """Merge ``config`` into the stored settings of ``serial`` and save them atomically."""
    p = Path(path) if path is not None else mono_config_path(serial)
    merged = {**load_mono_config(serial, p), **_check(dict(config), "monochromator settings")}
    _check(merged, str(p))
    return write_settings(p, serial, merged)
