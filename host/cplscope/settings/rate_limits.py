"""The two count-rate limits of a photon-counting head, kept per instrument.

A counting head has a **linear range** and a **damage threshold**, and they are different
things:

- Above the linear range the dead-time correction c/(1 − c·τ/t) is still applied, but the
  counter loses an ever larger share of the pulses and the correction's own error (τ is a
  datasheet value) starts to matter. Points measured above it are kept and flagged
  ``nonlinear``; nothing is switched off.
- Above the damage threshold the photocathode and the last dynodes age quickly. The board's
  overload guard cuts the HV and closes the shutter within 1 ms (the firmware's
  ``max_count_rate_cps``), and the scan stops.

The defaults suit a typical TTL photon-counting module with a pulse-pair resolution of
about 20 ns: linear (dead-time loss below about 4 %, corrected) up to 2·10⁶ counts/s, and a
guard at 10⁷ counts/s, well below where such modules saturate. Check your module's datasheet
and set both with :func:`save_limits` or ``cplscope limits`` (they are stored per instrument
serial under :func:`cplscope.settings.calibration.config_dir`).

A third limit guards against what a count rate cannot show: a photon input stuck high, or a
retriggerable pulse stretcher paralyzed by pile-up, counts few edges. The rp2 board trips when
the input is high for more than ``high_fraction`` of a 0.5-ms window (docs/hardware.md, "PMT
overload guard"); unset, the board's default (0.5) holds. Raise it only for a stretcher whose
pulses are so long that the duty cycle at the damage rate comes near it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .calibration import CalibrationError
from .store import SettingsFile

__all__ = ["DEFAULT_DAMAGE_RATE_CPS", "DEFAULT_LINEAR_RATE_CPS", "HIGH_FRACTION_RANGE",
           "RateLimits", "limits_path",
           "load_limits", "save_limits"]

#: Count rate (counts/s) up to which a typical counting head is linear after the dead-time
#: correction; points above it are flagged ``nonlinear``.
DEFAULT_LINEAR_RATE_CPS = 2.0e6
#: Count rate (counts/s) at which the board's guard cuts the HV.
DEFAULT_DAMAGE_RATE_CPS = 1.0e7
#: What the board takes as ``max_high_fraction`` (SET_LIMITS), inclusive.
HIGH_FRACTION_RANGE = (0.01, 0.99)


@dataclass(frozen=True)
class RateLimits:
    """The linear-range and damage count-rate limits of one instrument, counts/s."""

    linear_cps: float = DEFAULT_LINEAR_RATE_CPS
    damage_cps: float = DEFAULT_DAMAGE_RATE_CPS
    #: the photon input's high time per guard window that trips the board (0.01 … 0.99);
    #: None: the board's default
    high_fraction: float | None = None

    def __post_init__(self) -> None:
        for name in ("linear_cps", "damage_cps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v > 0):
                raise CalibrationError(f"{name} must be a positive number of counts/s, got "
                                       f"{v!r}")
        if self.damage_cps < self.linear_cps:
            raise CalibrationError(
                f"the damage limit ({self.damage_cps:g} counts/s) is below the linear-range "
                f"limit ({self.linear_cps:g} counts/s): the guard would trip before a point "
                "could ever be flagged nonlinear; raise the damage limit or lower the linear one")
        if self.damage_cps > 1e9:
            raise CalibrationError(f"damage_cps {self.damage_cps:g} is above the board's "
                                   "1e9 counts/s maximum")
        h = self.high_fraction
        low, high = HIGH_FRACTION_RANGE
        if h is not None and (isinstance(h, bool) or not isinstance(h, (int, float))
                              or not low <= h <= high):
            raise CalibrationError(f"high_fraction must be {low:g} … {high:g} (the photon "
                                   f"input's high time per guard window that trips), got {h!r}")


_FILE: SettingsFile[RateLimits] = SettingsFile("limits", RateLimits)
#: ``config_dir()/limits-<serial>.json``
limits_path = _FILE.path
#: ``load_limits(serial, path=None)``: the stored limits of instrument ``serial``, or the
#: defaults when none are stored
load_limits = _FILE.load
#: ``save_limits(serial, limits, path=None)``: store ``limits`` for ``serial`` (atomically);
#: returns the path
save_limits = _FILE.save
