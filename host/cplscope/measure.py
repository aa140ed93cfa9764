"""Measurements on an :class:`~cplscope.instrument.Instrument`: dark, one point (fixed or
adaptive dwell) and the calibration routines. Scans are in :mod:`cplscope.scan`.

Every function takes the instrument first; the same functions are methods of
``Instrument`` (``inst.measure(...)`` is ``measure(inst, ...)``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import Calibration
from .demod import Estimate, estimate
from .demod.calibrate import RetardationFit, fit_handedness, fit_retardation
from .frames import FrameSet
from .protocol import Counts
from .results import FlagRules, PointResult, frame_health_flags, point_from_estimate

__all__ = ["Dark", "PointMeasurement", "calibrate_handedness", "calibrate_retardation",
           "measure", "measure_dark"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dark:
    """Dark counts measured with the shutter closed.

    PMT dark pulses are not synchronous with the PEM, so by default the dark level is taken
    as the same in every phase bin (the total rate spread evenly): that uses all the dark
    counts for one number instead of B noisy ones. ``phase_resolved=True`` keeps the
    per-bin rates, for setups with PEM-synchronous background (electrical pickup).

    Attributes:
        rate_cps: (B,) dark count rate per phase bin, counts/s (as measured).
        sigma_rate_cps: (B,) its standard uncertainty (Poisson).
        dwell_s: counting time of the dark measurement, s.
        frames: the frames measured.
        phase_resolved: use the per-bin rates instead of their mean.
    """

    rate_cps: np.ndarray
    sigma_rate_cps: np.ndarray
    dwell_s: float
    frames: FrameSet
    phase_resolved: bool = False

    def per_frame(self, frame_time_s: float) -> np.ndarray:
        """Expected dark counts per bin in a frame of ``frame_time_s`` s."""
        if self.phase_resolved:
            return self.rate_cps * frame_time_s
        return np.full(self.rate_cps.shape, self.rate_cps.mean() * frame_time_s)

    def sigma_per_frame(self, frame_time_s: float) -> float | np.ndarray:
        """Standard uncertainty of :meth:`per_frame`: one number common to all bins, or
        independent per-bin values when ``phase_resolved``."""
        if self.phase_resolved:
            return self.sigma_rate_cps * frame_time_s
        n = self.rate_cps.size
        return float(np.sqrt((self.sigma_rate_cps ** 2).sum()) / n * frame_time_s)

    @property
    def total_rate_cps(self) -> float:
        return float(self.rate_cps.sum())


@dataclass(frozen=True)
class AnalogDark:
    """Dark level of the analog path (shutter closed): ADC offset plus PMT dark current.

    Attributes:
        level: mean ADC reading (ADC counts), the same in every bin.
        sigma: its standard uncertainty (ADC counts).
        dwell_s: sampling time, s.
    """

    level: float
    sigma: float
    dwell_s: float

    def per_frame(self, frame_time_s: float) -> float:
        return self.level

    def sigma_per_frame(self, frame_time_s: float) -> float:
        return self.sigma


@dataclass(frozen=True)
class PointMeasurement:
    """One measured point: the frames, the estimate and the flagged, corrected result."""

    wavelength_nm: float
    frames: Any
    estimate: Estimate | None
    result: PointResult
    dwell_limit: bool
    dark: np.ndarray


def measure_dark(inst, dwell_s: float = 10.0, *, n_bins: int = 16,
                 frame_periods: int = 5000) -> Dark | AnalogDark:
    """Close the shutter, count (or sample) for ``dwell_s`` s, restore the shutter. Returns
    the per-bin dark rate, or in analog mode the dark level."""
    was_open = bool(inst.status().get("shutter_open"))
    inst.close_shutter()
    try:
        if inst.mode == "analog":
            af = inst.acquire_analog(duration_s=dwell_s, n_bins=n_bins,
                                     frame_periods=frame_periods)
            af.check()
            m = af.means
            if m.shape[0] < 2:
                raise RuntimeError("the analog dark measurement gave fewer than 2 frames: "
                                   "measure longer")
            per_frame = m.mean(axis=1)
            return AnalogDark(level=float(per_frame.mean()),
                              sigma=float(per_frame.std(ddof=1) / np.sqrt(len(per_frame))),
                              dwell_s=af.dwell_s)
        frames = inst.acquire(duration_s=dwell_s)
    finally:
        if was_open:
            inst.open_shutter()
    if frames.n_frames == 0:
        raise RuntimeError("the dark measurement produced no usable frame")
    t = frames.dwell_s
    total = frames.counts.sum(axis=0, dtype=np.float64)
    return Dark(rate_cps=total / t, sigma_rate_cps=np.sqrt(np.maximum(total, 1.0)) / t,
                dwell_s=t, frames=frames)


def _estimate(frames: FrameSet, cal: Calibration, dark: Dark | None) -> Estimate:
    frame_time = frames.frame_time_s
    d = dark.per_frame(frame_time) if dark is not None else 0.0
    sd = dark.sigma_per_frame(frame_time) if dark is not None else 0.0
    return estimate(frames.counts, cal.a0_rad, phase_offset=cal.phase_offset_rad, dark=d,
                    dark_sigma=sd, dead_time=cal.dead_time_s,
                    frame_time=frame_time if cal.dead_time_s else None, bin_span=frames.bin_span)


def measure(inst, *, dwell_s: float | None = None, target_sigma: float | None = None,
            max_dwell_s: float = 600.0, min_dwell_s: float | None = None,
            calibration: Calibration | None = None, dark: Dark | AnalogDark | None = None,
            rules: FlagRules = FlagRules(), blank: tuple[float, float] | None = None,
            wavelength_nm: float | None = None) -> PointMeasurement:
    """Measure g_lum at the current wavelength.

    Either a fixed ``dwell_s`` (s), or adaptive: count until ``sigma_g ≤ target_sigma`` or
    ``max_dwell_s`` (then the result carries the ``dwell_limit`` flag). The adaptive mode
    re-estimates at growing intervals and stops early, after ``min_dwell_s`` (default 2 % of
    ``max_dwell_s``, at least 1 s), when the emission is not even 2σ above dark: that point is
    reported ``no_emission`` rather than counted for the full maximum dwell.

    Args:
        calibration: A0, φ0, handedness and dead time; default: the instrument's stored one.
        dark: dark rates from :func:`measure_dark`; None assumes no dark counts.
        blank: (g, σ) of an achiral reference at this wavelength, subtracted from g.
        wavelength_nm: the wavelength to report (default: the instrument's current one).
    """
    cal = calibration if calibration is not None else inst.calibration
    if (dwell_s is None) == (target_sigma is None):
        raise ValueError("give either dwell_s (s) or target_sigma (adaptive dwell)")
    if inst.mode == "analog":
        if dark is not None and not isinstance(dark, AnalogDark):
            raise ValueError("in analog mode the dark must be an AnalogDark (measure_dark in "
                             "analog mode)")
        return measure_analog(inst, dwell_s=dwell_s, target_sigma=target_sigma,
                              max_dwell_s=max_dwell_s, calibration=cal, dark=dark, rules=rules,
                              blank=blank, wavelength_nm=wavelength_nm)
    if isinstance(dark, AnalogDark):
        raise ValueError("an analog dark level cannot correct photon counts: measure the dark "
                         "in counting mode")
    if target_sigma is not None and not target_sigma > 0:
        raise ValueError(f"target_sigma must be > 0, got {target_sigma!r}")
    target = float(target_sigma) if target_sigma is not None else math.inf
    if not max_dwell_s > 0:
        raise ValueError(f"max_dwell_s must be > 0 s, got {max_dwell_s!r}")
    wl = wavelength_nm if wavelength_nm is not None else inst.wavelength_nm
    if wl is None:
        raise ValueError("no wavelength: move_to() a wavelength first, or pass wavelength_nm")
    stop_reason = {"target": False, "empty": False}

    if dwell_s is not None:
        frames = inst.acquire(duration_s=dwell_s)
    else:
        floor = min_dwell_s if min_dwell_s is not None else max(1.0, 0.02 * max_dwell_s)
        check = {"at": min(floor, max_dwell_s)}

        def progress(usable: list[Counts], dwell: float) -> bool:
            if dwell < check["at"] or len(usable) < 3:
                return False
            est = _estimate(FrameSet.from_frames(usable), cal, dark)
            if est.sigma_g <= target:
                stop_reason["target"] = True
                return True
            if not est.snr >= 2.0:
                stop_reason["empty"] = True
                return True
            ratio = (est.sigma_g / target) ** 2 if math.isfinite(est.sigma_g) else 4.0
            predicted = dwell * ratio
            check["at"] = min(max(dwell * 1.25, dwell + 0.6 * (predicted - dwell)), max_dwell_s)
            return False

        frames = inst.acquire(duration_s=max_dwell_s, progress=progress)
    if frames.n_frames == 0:
        raise RuntimeError("no usable frame was measured (all were excluded: check the PEM "
                           "lock and the overload guard)")
    est = _estimate(frames, cal, dark)
    hit_limit = (target_sigma is not None and not stop_reason["target"]
                 and not stop_reason["empty"] and not est.sigma_g <= target)
    health = frame_health_flags(f.flags for f in frames.received)
    result = point_from_estimate(est, wl, frames.dwell_s, handedness=cal.handedness,
                                 blank=blank, dwell_limit=hit_limit, frame_flags=health,
                                 rules=rules)
    d = dark.per_frame(frames.frame_time_s) if dark is not None else np.zeros(frames.n_bins)
    return PointMeasurement(float(wl), frames, est, result, hit_limit, d)


def measure_analog(inst, *, dwell_s: float | None = None, target_sigma: float | None = None,
                   max_dwell_s: float = 600.0, calibration: Calibration | None = None,
                   dark: AnalogDark | None = None, rules: FlagRules = FlagRules(),
                   blank: tuple[float, float] | None = None, wavelength_nm: float | None = None,
                   n_bins: int = 16, frame_periods: int = 5000) -> PointMeasurement:
    """Measure g_lum at the current wavelength through the analog (ADC) path.

    The board streams raw samples; the host phase-bins them into frames of
    ``frame_periods`` PEM periods and ``n_bins`` bins and fits them with
    ``estimate(noise="gaussian")``, so σ comes from the frame-to-frame scatter (at least 2
    frames, better ≥ 20). Adaptive dwell measures in chunks until σ_g ≤ target_sigma or
    ``max_dwell_s``.
    """
    cal = calibration if calibration is not None else inst.calibration
    wl = wavelength_nm if wavelength_nm is not None else inst.wavelength_nm
    if wl is None:
        raise ValueError("no wavelength: move_to() a wavelength first, or pass wavelength_nm")
    level = dark.level if dark is not None else 0.0
    level_sd = dark.sigma if dark is not None else 0.0
    chunks: list = []

    def fit():
        sums = np.concatenate([c.sums[c.complete] for c in chunks])
        n = np.concatenate([c.n[c.complete] for c in chunks])
        if sums.shape[0] < 2:
            return None
        return estimate(sums / n, cal.a0_rad, phase_offset=cal.phase_offset_rad, dark=level,
                        dark_sigma=level_sd, noise="gaussian")

    total = 0.0
    est = None
    step = dwell_s if dwell_s is not None else max(1.0, 0.02 * max_dwell_s)
    while True:
        chunk = inst.acquire_analog(duration_s=min(step, max_dwell_s - total) if dwell_s is None
                                    else step, n_bins=n_bins, frame_periods=frame_periods)
        chunk.check()
        chunks.append(chunk)
        total += chunk.dwell_s
        est = fit()
        if dwell_s is not None:
            break
        if est is not None and est.sigma_g <= target_sigma:
            break
        if total >= max_dwell_s * (1 - 1e-9):
            break
        ratio = (est.sigma_g / target_sigma) ** 2 if est is not None else 4.0
        step = max(0.5 * total, (ratio - 1) * total * 0.6, 0.5)
    if est is None:
        raise RuntimeError("fewer than 2 complete analog frames: measure longer")
    hit_limit = target_sigma is not None and not est.sigma_g <= target_sigma
    health = frame_health_flags(b.flags for c in chunks for b in c.blocks)
    result = point_from_estimate(est, wl, total, handedness=cal.handedness, blank=blank,
                                 dwell_limit=hit_limit, frame_flags=health, rules=rules)
    return PointMeasurement(float(wl), chunks, est, result, hit_limit,
                            np.full(n_bins, level))


def calibrate_retardation(inst, *, dwell_s: float = 10.0, wavelength_nm: float | None = None,
                          dark: Dark | AnalogDark | None = None,
                          dead_time_s: float = 0.0) -> tuple[float, float, RetardationFit]:
    """A0 and φ0 from a linear polarizer at 45° in the beam (measurement model §7).

    Returns (a0_rad, phase_offset_rad, fit). The A0 found is the one the instrument actually
    produces when told to hold ``inst.calibration.a0_rad``; callers correct the retardation
    command with it.
    """
    if wavelength_nm is not None:
        inst.move_to(wavelength_nm)
    frames = inst.acquire(duration_s=dwell_s)
    d = dark.per_frame(frames.frame_time_s) if dark is not None else 0.0
    fit = fit_retardation(frames.counts, dark=d, bin_span=frames.bin_span,
                          dead_time=dead_time_s, frame_time=frames.frame_time_s)
    return fit.a0_rad, fit.phase_offset_rad, fit


def calibrate_handedness(inst, *, expected_sign: int, a0_rad: float, phase_offset_rad: float,
                         dwell_s: float = 10.0, dark: Dark | AnalogDark | None = None,
                         dead_time_s: float = 0.0):
    """The handedness sign from a reference of known sign (a circular polarizer: +1 for
    ``circular-polarizer-L``)."""
    frames = inst.acquire(duration_s=dwell_s)
    d = dark.per_frame(frames.frame_time_s) if dark is not None else 0.0
    return fit_handedness(frames.counts, a0_rad, phase_offset_rad, expected_sign=expected_sign,
                          dark=d, bin_span=frames.bin_span, dead_time=dead_time_s,
                          frame_time=frames.frame_time_s)

