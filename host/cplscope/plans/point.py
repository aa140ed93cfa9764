"""Measurements on a :class:`~cplscope.board.controller.Controller`: dark, one point (fixed or
adaptive dwell) and the calibration routines. Scans are in :mod:`cplscope.plans.scan`.

Every function takes the instrument first; the same functions are methods of
``Instrument`` (``inst.measure(...)`` is ``measure(inst, ...)``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..settings.calibration import Calibration
from ..demod import Estimate, SampledPhases
from ..demod.calibrate import RetardationFit, fit_handedness, fit_retardation
from ..science.frames import FrameSet
from ..science.pipeline import PointContext, Retardation, estimate_frames, process_point
from .planning import is_hopeless
from ..science.results import FlagRules, PointResult, emission_significance, subtract_blank

__all__ = ["DEFAULT_MAX_DWELL_S", "FLAG_HOPELESS", "AnalogDark", "Dark", "PointMeasurement",
           "calibrate_handedness", "calibrate_retardation", "measure", "measure_dark",
           "point_context", "retardation_in_force"]

#: Set when the adaptive dwell gave a point up because its target σ was out of reach within
#: the maximum dwell (``skip_hopeless``).
FLAG_HOPELESS = "hopeless"

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
    """One measured point.

    Attributes:
        wavelength_nm: wavelength, nm.
        frames: the usable frames (a :class:`~cplscope.science.frames.FrameSet`; in analog mode the
            list of :class:`~cplscope.science.analog.AnalogFrames` chunks).
        estimate: the fit of the frames.
        result: the point's result, with the blank (if any) subtracted.
        dwell_limit: the adaptive dwell ended at the maximum dwell above the target σ.
        dark: expected dark per bin per frame that was subtracted.
        context: everything else the result depends on (the archive stores it).
        raw_result: the result before blank subtraction (what accumulations combine).
    """

    wavelength_nm: float
    frames: Any
    estimate: Estimate | None
    result: PointResult
    dwell_limit: bool
    dark: np.ndarray
    context: PointContext | None = None
    raw_result: PointResult | None = None


#: Default maximum dwell per point of the adaptive mode (s), the same for every entry point.
DEFAULT_MAX_DWELL_S = 300.0
#: Emission significance below which the adaptive dwell stops a point early (no emission).
_EARLY_EMPTY_Z = 2.0


def measure_dark(inst, dwell_s: float = 10.0, *, n_bins: int = 16,
                 frame_periods: int = 5000) -> Dark | AnalogDark:
    """Close the shutter, count (or sample) for ``dwell_s`` s, restore the shutter. Returns
    the per-bin dark rate, or in analog mode the dark level."""
    if not (math.isfinite(dwell_s) and dwell_s > 0):
        raise ValueError(f"the dark dwell must be > 0 s, got {dwell_s!r}")
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
            per_frame = np.nanmean(m, axis=1)
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


def retardation_in_force(inst) -> Retardation:
    """The retardation the firmware holds now (:class:`~cplscope.science.pipeline.Retardation`),
    from STATUS and the last SET_RETARDATION / PEM_CONFIG settings."""
    getter = getattr(inst, "retardation", None)
    if callable(getter):
        return getter()
    return Retardation(nominal_rad=float(inst.status().get("a0_rad") or math.nan))


def point_context(wl: float, cal: Calibration, ret: Retardation, dark: Dark | None,
                  frames: FrameSet, **kw: Any) -> PointContext:
    """A point's context at wavelength ``wl`` (nm): the retardation in force under ``cal``,
    the dark (per bin per frame at these frames' frame time) and ``kw`` (PointContext
    fields)."""
    t = frames.frame_time_s
    d = dark.per_frame(t) if dark is not None else 0.0
    sd = dark.sigma_per_frame(t) if dark is not None else 0.0
    return PointContext.build(wl, cal, ret, dark=d, dark_sigma=sd, **kw)


def measure(inst, *, dwell_s: float | None = None, target_sigma: float | None = None,
            max_dwell_s: float = DEFAULT_MAX_DWELL_S, min_dwell_s: float | None = None,
            calibration: Calibration | None = None, dark: Dark | AnalogDark | None = None,
            rules: FlagRules = FlagRules(), blank: tuple[float, float] | None = None,
            wavelength_nm: float | None = None, accumulation: int = 0,
            skip_hopeless: bool = False, dark_source: str | None = None,
            prior: FrameSet | None = None, stopped: str | None = None) -> PointMeasurement:
    """Measure g_lum at the current wavelength.

    Either a fixed ``dwell_s`` (s), or adaptive: count until ``sigma_g ≤ target_sigma`` or
    ``max_dwell_s`` (then the result carries the ``dwell_limit`` flag). The adaptive mode
    counts in chunks whose lengths follow from the data so far (so the same data give the
    same chunks), and stops early, after ``min_dwell_s`` (default 2 % of ``max_dwell_s``, at
    least 1 s), when the emission is not even 2σ above dark: that point is reported
    ``no_emission`` rather than counted for the full maximum dwell.

    Args:
        calibration: A0 scale, φ0, handedness and dead time; default: the instrument's
            stored one. Each point is fitted with the retardation really in force at its
            wavelength (the calibration's scale times the firmware's nominal A0).
        dark: dark rates from :func:`measure_dark`; None assumes no dark counts.
        blank: (g, σ) of an achiral reference at this wavelength, subtracted from g.
        wavelength_nm: the wavelength to report (default: the instrument's current one).
        accumulation: index of the scan this point belongs to (recorded in its context).
        skip_hopeless: in adaptive mode, stop a point as soon as the rate measured so far
            shows that the target σ cannot be reached within ``max_dwell_s``; it is flagged
            ``hopeless``.
        dark_source: how the dark is referred to in the context (default ``"given"`` or
            ``"none"``).
        prior: frames already measured at this wavelength with the same settings (a
            survey's): they start the point, and ``dwell_s`` (which may then be 0) or the
            adaptive dwell adds to them.
        stopped: why the point ends, for its context (default from the dwell mode).
    """
    cal = calibration if calibration is not None else inst.calibration
    if (dwell_s is None) == (target_sigma is None):
        raise ValueError("give either dwell_s (s) or target_sigma (adaptive dwell)")
    if dwell_s is not None and not (math.isfinite(dwell_s) and (
            dwell_s > 0 or (dwell_s == 0 and prior is not None))):
        raise ValueError(f"the dwell must be > 0 s, got {dwell_s!r}")
    if target_sigma is not None and not (math.isfinite(target_sigma) and target_sigma > 0):
        raise ValueError(f"the target σ(g) must be > 0, got {target_sigma!r}")
    if not (math.isfinite(max_dwell_s) and max_dwell_s > 0):
        raise ValueError(f"the maximum dwell must be > 0 s, got {max_dwell_s!r}")
    if inst.mode == "analog":
        if dark is not None and not isinstance(dark, AnalogDark):
            raise ValueError("in analog mode the dark must be an AnalogDark (measure_dark in "
                             "analog mode)")
        return measure_analog(inst, dwell_s=dwell_s, target_sigma=target_sigma,
                              max_dwell_s=max_dwell_s, calibration=cal, dark=dark, rules=rules,
                              blank=blank, wavelength_nm=wavelength_nm,
                              accumulation=accumulation)
    if isinstance(dark, AnalogDark):
        raise ValueError("an analog dark level cannot correct photon counts: measure the dark "
                         "in counting mode")
    target = float(target_sigma) if target_sigma is not None else math.inf
    wl = wavelength_nm if wavelength_nm is not None else inst.wavelength_nm
    if wl is None:
        raise ValueError("no wavelength: move_to() a wavelength first, or pass wavelength_nm")
    ret = retardation_in_force(inst)
    source = dark_source or ("given" if dark is not None else "none")
    common = dict(dark_source=source, accumulation=int(accumulation),
                  target_sigma=float(target_sigma) if target_sigma is not None else math.nan)

    def estimate_so_far(fs: FrameSet) -> Estimate:
        ctx = point_context(float(wl), cal, ret, dark, fs, **common)
        return estimate_frames(fs.counts, fs.frame_time_s, fs.span, ctx)

    extra: tuple[str, ...] = ()
    if dwell_s is not None:
        frames = inst.acquire(duration_s=dwell_s) if dwell_s > 0 else FrameSet.from_frames(
            [], n_bins=prior.n_bins if prior is not None else 0)
        if prior is not None:
            frames = prior.extend(frames)
        reason = stopped or "dwell"
    else:
        floor = min_dwell_s if min_dwell_s is not None else max(1.0, 0.02 * max_dwell_s)
        if prior is not None and prior.n_frames:
            frames = prior
            if prior.dwell_s < floor:
                frames = frames.extend(inst.acquire(duration_s=floor - prior.dwell_s))
        else:
            frames = inst.acquire(duration_s=min(floor, max_dwell_s))
        reason = "target"
        while True:
            if frames.n_frames == 0:
                break
            est = estimate_so_far(frames)
            dwell = frames.dwell_s
            if est.sigma_g <= target:
                reason = "target"
                break
            if not emission_significance(est.intensity, est.sigma_intensity,
                                         float(getattr(est, "emission_z", math.nan))
                                         ) >= _EARLY_EMPTY_Z:
                reason = "no_emission"
                break
            if dwell + 0.5 * frames.frame_time_s >= max_dwell_s:
                reason = "max_dwell"
                break
            if skip_hopeless and is_hopeless(est.sigma_g, dwell, target, max_dwell_s):
                reason = "hopeless"
                extra = (FLAG_HOPELESS,)
                break
            ratio = (est.sigma_g / target) ** 2 if math.isfinite(est.sigma_g) else 4.0
            predicted = dwell * ratio
            upto = min(max(dwell * 1.25, dwell + 0.6 * (predicted - dwell)), max_dwell_s)
            frames = frames.extend(inst.acquire(duration_s=max(upto - dwell,
                                                               frames.frame_time_s)))
    if frames.n_frames == 0:
        raise RuntimeError("no usable frame was measured (all were excluded: check the PEM "
                           "lock and the overload guard)")
    ctx = point_context(float(wl), cal, ret, dark, frames, stopped=reason, extra_flags=extra,
                   **common)
    est, raw = process_point(frames.counts, frames.frame_time_s, frames.span, frames.dwell_s,
                             ctx, frame_flags=[f.flags for f in frames.received], rules=rules)
    result = subtract_blank(raw, blank, rules)
    return PointMeasurement(float(wl), frames, est, result, result.has("dwell_limit"),
                            np.broadcast_to(np.asarray(ctx.dark, dtype=np.float64),
                                            (frames.n_bins,)).copy(), ctx, raw)


def measure_analog(inst, *, dwell_s: float | None = None, target_sigma: float | None = None,
                   max_dwell_s: float = DEFAULT_MAX_DWELL_S,
                   calibration: Calibration | None = None,
                   dark: AnalogDark | None = None, rules: FlagRules = FlagRules(),
                   blank: tuple[float, float] | None = None, wavelength_nm: float | None = None,
                   n_bins: int = 16, frame_periods: int = 5000,
                   accumulation: int = 0) -> PointMeasurement:
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
    ret = retardation_in_force(inst)
    ctx = PointContext.build(
        float(wl), cal, ret, dark=dark.level if dark is not None else 0.0,
        dark_sigma=dark.sigma if dark is not None else 0.0,
        dark_source="given" if dark is not None else "none", accumulation=int(accumulation),
        noise="gaussian",
        target_sigma=float(target_sigma) if target_sigma is not None else math.nan)
    chunks: list = []

    def means() -> np.ndarray:
        return np.concatenate([c.means for c in chunks])

    def phases() -> SampledPhases | None:
        moments = [c.moments for c in chunks]
        if any(m is None for m in moments):
            return None
        return SampledPhases(np.concatenate(moments))

    def fit() -> Estimate | None:
        m = means()
        if m.shape[0] < 2:
            return None
        return estimate_frames(m, math.nan, 1.0, ctx, phases())

    total = 0.0
    est = None
    target = float(target_sigma) if target_sigma is not None else math.inf
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
        if est is not None and est.sigma_g <= target:
            break
        if total >= max_dwell_s * (1 - 1e-9):
            break
        ratio = (est.sigma_g / target) ** 2 if est is not None else 4.0
        step = max(0.5 * total, (ratio - 1) * total * 0.6, 0.5)
    if est is None:
        raise RuntimeError("fewer than 2 complete analog frames: measure longer")
    stopped = "dwell" if dwell_s is not None else (
        "target" if est.sigma_g <= target else "max_dwell")
    ctx = replace(ctx, stopped=stopped)
    est, raw = process_point(means(), math.nan, 1.0, total, ctx,
                             frame_flags=[b.flags for c in chunks for b in c.blocks],
                             rules=rules, sampled_phases=phases())
    result = subtract_blank(raw, blank, rules)
    return PointMeasurement(float(wl), chunks, est, result, result.has("dwell_limit"),
                            np.full(n_bins, ctx.dark), ctx, raw)


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
    fit = fit_retardation(frames.counts, dark=d, bin_span=frames.span,
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
                          dark=d, bin_span=frames.span, dead_time=dead_time_s,
                          frame_time=frames.frame_time_s)

