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

from ..demod import Estimate
from ..demod.calibrate import RetardationFit, fit_handedness, fit_retardation
from ..science.frames import FrameSet
from ..science.pipeline import PointContext, Retardation
from ..science.results import FlagRules, PointResult, subtract_blank
from ..settings.calibration import Calibration
from .detection import ANALOG_MIN_FRAMES, Analog, Counting, detection_for
from ..science.emission import (PLAN_EVERY, analog_rate_that_matters, dark_per_frame,
                                planned_emission_z, planned_sigma_g, sigma_sqrt_m)
from .planning import is_hopeless, rate_that_matters

__all__ = ["DEFAULT_MAX_DWELL_S", "FLAG_HOPELESS", "AnalogDark", "Dark", "PointMeasurement",
           "calibrate_handedness", "calibrate_retardation", "measure", "measure_dark",
           "measure_point", "point_context", "reevaluate", "retardation_in_force"]

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

    @property
    def sigma_total_rate_cps(self) -> float:
        """σ of :attr:`total_rate_cps` (Poisson)."""
        return float(np.sqrt(np.sum(self.sigma_rate_cps ** 2)))

    @classmethod
    def from_frames(cls, frames: FrameSet, phase_resolved: bool = False) -> Dark:
        """The dark of frames counted with the shutter closed."""
        if frames.n_frames == 0:
            raise RuntimeError("the dark measurement produced no usable frame")
        t = frames.dwell_s
        total = frames.counts.sum(axis=0, dtype=np.float64)
        return cls(rate_cps=total / t, sigma_rate_cps=np.sqrt(np.maximum(total, 1.0)) / t,
                   dwell_s=t, frames=frames, phase_resolved=phase_resolved)

    def pooled(self, more: FrameSet) -> Dark:
        """This dark and ``more`` frames counted with the shutter closed, as one."""
        return Dark.from_frames(self.frames.extend(more), self.phase_resolved)


@dataclass(frozen=True)
class AnalogDark:
    """Dark level of the analog path (shutter closed): the front end's offset (its bias,
    docs/build.md) plus the PMT's dark current. Every analog point subtracts it: without it
    the offset would count as light and pull g towards 0 by M/(M + offset).

    Attributes:
        level: mean ADC reading (ADC counts), the same in every bin.
        sigma: its standard uncertainty (ADC counts): the scatter of the dark's frame means
            over √n_frames.
        dwell_s: sampling time, s.
        noise: the scatter (SD) of one dark frame's mean level, ADC counts: the front end's
            and the dark current's noise at this frame length (NaN when not measured).
        n_frames: frames the dark was measured in (0: not known).
        frame_periods: PEM periods per frame of that measurement (0: not known).
    """

    level: float
    sigma: float
    dwell_s: float
    noise: float = math.nan
    n_frames: int = 0
    frame_periods: int = 0

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
        merit: the figure of merit the mode's planner drives down (σ_g for CPL).
        product: the mode's own result when it is not the binned one (a CD point's
            :class:`~cplscope.science.cd.CDPointResult`); None for CPL.
    """

    wavelength_nm: float
    frames: Any
    estimate: Estimate | None
    result: PointResult
    dwell_limit: bool
    dark: np.ndarray
    context: PointContext | None = None
    raw_result: PointResult | None = None
    merit: float = math.nan
    product: Any = None


#: Default maximum dwell per point of the adaptive mode (s), the same for every entry point.
DEFAULT_MAX_DWELL_S = 300.0


def measure_dark(inst, dwell_s: float = 10.0, *, n_bins: int | None = None,
                 frame_periods: int | None = None) -> Dark | AnalogDark:
    """Close the shutter, count (or sample) for ``dwell_s`` s, restore the shutter. Returns
    the per-bin dark rate, or in analog mode the dark level (the front end's offset) and its
    noise, binned as the points will be (``inst.analog_binning`` unless given)."""
    if not (math.isfinite(dwell_s) and dwell_s > 0):
        raise ValueError(f"the dark dwell must be > 0 s, got {dwell_s!r}")
    was_open = bool(inst.status().get("shutter_open"))
    inst.close_shutter()
    try:
        if inst.mode == "analog":
            det = detection_for(inst)
            return _analog_dark(inst, dwell_s, n_bins or det.n_bins,  # type: ignore[union-attr]
                                frame_periods or det.frame_periods)  # type: ignore[union-attr]
        frames = inst.acquire(duration_s=dwell_s)
    finally:
        if was_open:
            inst.open_shutter()
    return Dark.from_frames(frames)


def reevaluate(m: PointMeasurement, mode: Any, *, dark: Dark | None,
               matter_rate: float | None, dark_source: str | None = None) -> PointMeasurement:
    """A counting point's measurement redone from its own frames and context with another
    dark (and signal that matters): what a survey point becomes when the scan's dark has
    been measured longer. No instrument access."""
    frames, ctx = m.frames, m.context
    assert ctx is not None
    t = frames.frame_time_s
    ctx = replace(ctx, dark=dark.per_frame(t) if dark is not None else 0.0,
                  dark_sigma=dark.sigma_per_frame(t) if dark is not None else 0.0,
                  dark_source=dark_source or ctx.dark_source,
                  matter_rate=float(matter_rate) if matter_rate is not None else math.nan)
    det = Counting()
    est, raw = det.process(frames, ctx, mode.binned_rules)
    merit, product = mode.finish(est, ctx, raw, det.frame_flags(frames))
    if ctx.plan_every:
        merit = planned_sigma_g(frames.counts, t, frames.span, ctx)
    return PointMeasurement(m.wavelength_nm, frames, est, raw, raw.has("dwell_limit"),
                            det.dark_per_bin(ctx, frames), ctx, raw, merit, product)


def _analog_dark(inst, dwell_s: float, n_bins: int, frame_periods: int) -> AnalogDark:
    af = inst.acquire_analog(duration_s=dwell_s, n_bins=n_bins, frame_periods=frame_periods)
    af.check()
    per_frame = np.nanmean(af.means, axis=1) if af.n_frames else np.empty(0)
    if per_frame.size < ANALOG_MIN_FRAMES:
        raise RuntimeError(f"the analog dark gave {per_frame.size} usable frames, fewer than "
                           f"{ANALOG_MIN_FRAMES}: measure it longer (--dark-dwell)")
    noise = float(per_frame.std(ddof=1))
    return AnalogDark(level=float(per_frame.mean()), sigma=noise / math.sqrt(per_frame.size),
                      dwell_s=af.dwell_s, noise=noise, n_frames=int(per_frame.size),
                      frame_periods=int(frame_periods))


def retardation_in_force(inst) -> Retardation:
    """The retardation the firmware holds now (:class:`~cplscope.science.pipeline.Retardation`),
    from STATUS and the last SET_RETARDATION / PEM_CONFIG settings."""
    getter = getattr(inst, "retardation", None)
    if callable(getter):
        return getter()
    return Retardation(nominal_rad=float(inst.status().get("a0_rad") or math.nan))


def point_context(wl: float, cal: Calibration, ret: Retardation, dark: Dark | None,
                  frames: FrameSet, **kw: Any) -> PointContext:
    """A counting point's context at wavelength ``wl`` (nm): the retardation in force under
    ``cal``, the dark (per bin per frame at these frames' frame time) and ``kw``
    (PointContext fields)."""
    return Counting().context(wl, cal, ret, dark, frames, **kw)


def measure(inst, *, dwell_s: float | None = None, target_sigma: float | None = None,
            max_dwell_s: float = DEFAULT_MAX_DWELL_S, min_dwell_s: float | None = None,
            calibration: Calibration | None = None, dark: Dark | AnalogDark | None = None,
            rules: FlagRules = FlagRules(), blank: tuple[float, float] | None = None,
            wavelength_nm: float | None = None, accumulation: int = 0,
            skip_hopeless: bool = False, dark_source: str | None = None,
            prior: Any = None, stopped: str | None = None) -> PointMeasurement:
    """Measure g_lum at the current wavelength.

    Either a fixed ``dwell_s`` (s), or adaptive: count until ``sigma_g ≤ target_sigma`` or
    ``max_dwell_s`` (then the result carries the ``dwell_limit`` flag). The adaptive mode
    counts in chunks whose lengths follow from its planning frames (every fourth frame: the
    stop cannot bias g, :mod:`cplscope.demod.planned`), and stops early, after
    ``min_dwell_s`` (default 2 % of ``max_dwell_s``, at least 1 s), once its data exclude the
    signal that matters (the rate at which it could reach the target within
    ``max_dwell_s``, and at least the faintest it could detect): that point is
    ``no_emission``. A point that neither shows emission nor excludes it counts on. In analog
    mode (``inst.mode == "analog"``) the board's ADC samples are phase-binned on the host.

    Args:
        calibration: A0 scale, φ0, handedness and dead time; default: the instrument's
            stored one. Each point is fitted with the retardation really in force at its
            wavelength (the calibration's scale times the firmware's nominal A0).
        dark: dark rates from :func:`measure_dark` (an :class:`AnalogDark` in analog mode);
            None assumes no dark counts.
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
    from .modes import Emission

    return measure_point(inst, Emission(rules=rules), dwell_s=dwell_s, target=target_sigma,
                         max_dwell_s=max_dwell_s, min_dwell_s=min_dwell_s,
                         calibration=calibration, dark=dark, correction=blank,
                         wavelength_nm=wavelength_nm, accumulation=accumulation,
                         skip_hopeless=skip_hopeless, dark_source=dark_source, prior=prior,
                         stopped=stopped)


def measure_point(inst, mode: Any, *, dwell_s: float | None = None,
                  target: float | None = None, max_dwell_s: float = DEFAULT_MAX_DWELL_S,
                  min_dwell_s: float | None = None, calibration: Calibration | None = None,
                  dark: Dark | AnalogDark | None = None, correction: Any = None,
                  wavelength_nm: float | None = None, accumulation: int = 0,
                  skip_hopeless: bool = False, dark_source: str | None = None,
                  prior: Any = None, stopped: str | None = None,
                  matter_rate: float | None = None, planned: bool | None = None,
                  chunks: int = 1,
                  relevance: tuple[float | None, float] | None = None) -> PointMeasurement:
    """Measure one point in ``mode`` (:mod:`cplscope.plans.modes`): a fixed ``dwell_s``
    (s), or adaptive until the mode's figure of merit reaches ``target``; see
    :func:`measure` for the arguments. ``correction`` is the mode's reference at this
    wavelength (a CPL blank (g, σ), subtracted from the returned result).

    Args:
        matter_rate: the faintest signal that matters (counts/s), below which the point is
            ``no_emission`` once its data exclude it; default from ``target`` and the
            longest the point may count (``max_dwell_s``, or ``dwell_s``) with ``dark``
            (:func:`cplscope.plans.planning.rate_that_matters`).
        planned: split the frames into planning and estimation frames
            (:mod:`cplscope.demod.planned`); default: for an adaptive dwell. A survey, and a
            time-budget grant planned from it, pass True.
        chunks: a fixed dwell is measured in this many parts, and ends early when its data
            already exclude the signal that matters (``no_emission``).
        relevance: (target σ or None, the longest the point may count in s) for which the
            default ``matter_rate`` is worked out; default this point's own (``target`` and
            ``max_dwell_s``, or ``dwell_s``). A survey passes the scan's.
    """
    _check_dwell(dwell_s, target, max_dwell_s, prior)
    det = detection_for(inst)
    _check_dark(det, dark)
    check_time_bins(inst, dwell_s is None or bool(planned))
    if isinstance(det, Analog) and dwell_s is not None and prior is None:
        det.check_dwell(inst, float(dwell_s), warn=False)
    cal = (calibration if calibration is not None else inst.calibration).for_mode(
        det.calibration_mode)
    wl = wavelength_nm if wavelength_nm is not None else inst.wavelength_nm
    if wl is None:
        raise ValueError("no wavelength: move_to() a wavelength first, or pass wavelength_nm")
    split = (dwell_s is None) if planned is None else bool(planned)
    loop = _PointLoop(inst, mode, det, float(wl), cal, dark, dict(
        dark_source=dark_source or ("given" if dark is not None else "none"),
        accumulation=int(accumulation),
        plan_every=PLAN_EVERY if split and getattr(mode, "splits", False)
        and isinstance(det, Counting) else 0))
    aim = relevance if relevance is not None else (
        target, max_dwell_s if dwell_s is None else float(dwell_s))
    loop.relevance(aim[0], aim[1], matter_rate)
    extra: tuple[str, ...] = ()
    if dwell_s is not None:
        frames, early = loop.fixed(float(dwell_s), prior, max(int(chunks), 1))
        reason = early or stopped or "dwell"
    else:
        floor = min_dwell_s if min_dwell_s is not None else max(1.0, 0.02 * max_dwell_s)
        frames, reason, extra = loop.adaptive(float(target), max_dwell_s,  # type: ignore[arg-type]
                                              floor, skip_hopeless, prior)
    return loop.finish(frames, target, reason, extra, correction)


def _check_dwell(dwell_s: float | None, target: float | None, max_dwell_s: float,
                 prior: Any) -> None:
    if (dwell_s is None) == (target is None):
        raise ValueError("give either dwell_s (s) or target_sigma (adaptive dwell)")
    if dwell_s is not None and not (math.isfinite(dwell_s) and (
            dwell_s > 0 or (dwell_s == 0 and prior is not None))):
        raise ValueError(f"the dwell must be > 0 s, got {dwell_s!r}")
    if target is not None and not (math.isfinite(target) and target > 0):
        raise ValueError(f"the target σ(g) must be > 0, got {target!r}")
    if not (math.isfinite(max_dwell_s) and max_dwell_s > 0):
        raise ValueError(f"the maximum dwell must be > 0 s, got {max_dwell_s!r}")


def check_time_bins(inst: Any, planned: bool) -> None:
    """Time bins (several gates) are counted at a fixed dwell: the adaptive dwell, the
    survey and the time budget decide on planning frames, which with several gates would
    be frames of one gate or another."""
    gating = getattr(inst, "gating", None)
    if planned and gating is not None and gating.gates > 1:
        raise ValueError(f"time bins ({gating.gates} gates) are measured with a fixed dwell "
                         "(dwell_s, --dwell): the adaptive dwell, the survey and the time "
                         "budget plan on frames of one gate; use one gate for them")


def _check_dark(det: Any, dark: Any) -> None:
    if isinstance(det, Analog) and dark is None:
        raise ValueError("analog mode needs the dark level: the front end's offset would "
                         "otherwise count as light and pull g towards 0. Measure it "
                         "(measure_dark in analog mode, or a scan with dark=True; the CLI "
                         "without --no-dark)")
    if isinstance(det, Analog) and not isinstance(dark, AnalogDark):
        raise ValueError("in analog mode the dark must be an AnalogDark (measure_dark in "
                         "analog mode)")
    if isinstance(det, Counting) and isinstance(dark, AnalogDark):
        raise ValueError("an analog dark level cannot correct photon counts: measure the dark "
                         "in counting mode")


#: The adaptive dwell stops on its target only once the planning frames predict an emission
#: significance of at least this: the point is then reported (emission_z ≥ 5) with near
#: certainty, so that the report's own threshold does not select which g values are shown.
TARGET_MIN_Z = 10.0


class _PointLoop:
    """One point's acquisitions, fits and stopping rule (one instance per point)."""

    def __init__(self, inst: Any, mode: Any, det: Any, wl: float, cal: Calibration,
                 dark: Any, common: dict[str, Any]) -> None:
        self.inst, self.mode, self.det, self.wl, self.cal = inst, mode, det, wl, cal
        self.dark, self.common = dark, common
        self.ret = retardation_in_force(inst)
        self.min_frames = det.min_frames
        self._relevance: tuple[float | None, float] = (None, math.inf)

    def relevance(self, target: float | None, horizon_s: float,
                  matter_rate: float | None) -> None:
        """What the point is measured for: the signal that matters, given or from the
        target and the longest the point may count (worked out at the first frames)."""
        self._relevance = (target, horizon_s)
        if matter_rate is not None:
            self.common["matter_rate"] = float(matter_rate)

    def context(self, frames: Any, **kw: Any) -> PointContext:
        if "matter_rate" not in self.common:
            ctx = self.det.context(self.wl, self.cal, self.ret, self.dark, frames,
                                   **self.common, **kw)
            self.common["matter_rate"] = self._matter(ctx, frames)
        return self.det.context(self.wl, self.cal, self.ret, self.dark, frames,
                                **self.common, **kw)

    def _matter(self, ctx: PointContext, frames: Any) -> float:
        if not getattr(self.mode, "splits", False):
            return math.nan
        target, horizon = self._relevance
        rules = getattr(self.mode, "rules", FlagRules())
        if isinstance(self.det, Analog):
            return analog_rate_that_matters(ctx, frames.n_bins, frames.frame_time_s, horizon,
                                            target, rules.snr_min)
        t, span = frames.frame_time_s, frames.span
        dark, sd = dark_per_frame(ctx, frames.n_bins)
        dark_cps, sd_cps = dark / t, sd / t
        k = sigma_sqrt_m(frames.n_bins, ctx.a0_rad, ctx.phase_offset_rad, span)
        return rate_that_matters(horizon_s=horizon, dark_cps=dark_cps, sigma_dark_cps=sd_cps,
                                 sigma_sqrt_m=k, target=target, span=span,
                                 snr_min=rules.snr_min)

    def evaluate(self, frames: Any) -> tuple[float, str | None, float]:
        """(figure of merit, why the point has nothing more to give or None, the emission's
        significance as the stopping rule sees it). A split point's merit and significance
        come from its planning frames alone; its significance is 0 while the point as a
        whole does not show emission (it does not stop on its target before it does)."""
        ctx = self.context(frames)
        est, raw = self.det.process(frames, ctx, self.mode.binned_rules)
        sigma, stop, _ = self.mode.evaluate(est, ctx, frames.dwell_s,
                                            self.det.frame_flags(frames), raw=raw)
        if not ctx.plan_every:
            return sigma, stop, math.inf
        z = planned_emission_z(frames.counts, frames.frame_time_s, ctx)
        shown = raw.snr >= self.mode.binned_rules.snr_min
        return (planned_sigma_g(frames.counts, frames.frame_time_s, frames.span, ctx), stop,
                z if shown else min(z, 0.0))

    def acquire(self, seconds: float) -> Any:
        return self.det.acquire(self.inst, seconds)

    def fixed(self, dwell_s: float, prior: Any, chunks: int) -> tuple[Any, str | None]:
        """The frames of a fixed dwell after ``prior``: in ``chunks`` parts of whole frames,
        ending early with ``"no_emission"`` when the data exclude the signal that matters."""
        if dwell_s <= 0:
            return (prior if prior is not None else self.det.empty(prior)), None
        frames = prior
        parts = [dwell_s] if chunks <= 1 else _whole_frame_parts(
            dwell_s, prior.frame_time_s if prior is not None and prior.n_frames
            else self.inst.frame_time_s(), chunks)
        for i, seconds in enumerate(parts):
            new = self.acquire(seconds)
            frames = frames.extend(new) if frames is not None else new
            if i + 1 < len(parts) and frames.n_frames >= self.min_frames \
                    and self.evaluate(frames)[1] == "no_emission":
                return frames, "no_emission"
        return frames, None

    def adaptive(self, target: float, max_dwell_s: float, floor: float, skip_hopeless: bool,
                 prior: Any) -> tuple[Any, str, tuple[str, ...]]:
        if prior is not None and prior.n_frames:
            frames = prior
            if prior.dwell_s < floor:
                frames = frames.extend(self.acquire(floor - prior.dwell_s))
        else:
            frames = self.acquire(min(floor, max_dwell_s))
        while True:
            if frames.n_frames < self.det.useful_frames:
                if frames.n_frames == 0 or frames.dwell_s >= max_dwell_s:
                    return frames, "max_dwell", ()
                frames = frames.extend(self.acquire(max(frames.dwell_s, 0.5)))
                continue
            sigma, stop, z = self.evaluate(frames)
            dwell = frames.dwell_s
            if sigma <= target and z >= TARGET_MIN_Z:
                return frames, "target", ()
            if stop is not None:
                return frames, stop, ()
            if dwell + 0.5 * frames.frame_time_s >= max_dwell_s:
                return frames, "max_dwell", ()
            if skip_hopeless and is_hopeless(sigma, dwell, target, max_dwell_s):
                return frames, "hopeless", (FLAG_HOPELESS,)
            ratio = max((sigma / target) ** 2 if math.isfinite(sigma) else 4.0,
                        (TARGET_MIN_Z / z) ** 2 if z > 0 else 2.0)
            frames = frames.extend(self.acquire(_next_chunk(ratio, dwell, max_dwell_s,
                                                            frames.frame_time_s)))

    def finish(self, frames: Any, target: float | None, reason: str, extra: tuple[str, ...],
               correction: Any) -> PointMeasurement:
        if frames.n_frames < self.min_frames:
            raise RuntimeError("no usable frame was measured (all were excluded: check the PEM "
                               "lock and the overload guard)" if frames.n_frames == 0 else
                               f"{frames.n_frames} complete analog frames, fewer than "
                               f"{self.min_frames}: measure longer")
        ctx = self.mode.context(self.context(frames), target, reason, extra)
        est, raw = self.det.process(frames, ctx, self.mode.binned_rules)
        merit, product = self.mode.finish(est, ctx, raw, self.det.frame_flags(frames))
        if ctx.plan_every:
            merit = planned_sigma_g(frames.counts, frames.frame_time_s, frames.span, ctx)
        result = subtract_blank(raw, correction, self.mode.binned_rules) \
            if product is None else raw
        return PointMeasurement(self.wl, frames, est, result, result.has("dwell_limit"),
                                self.det.dark_per_bin(ctx, frames), ctx, raw, merit,
                                product)


def _whole_frame_parts(dwell_s: float, frame_s: float, chunks: int) -> list[float]:
    """``dwell_s`` (whole frames of ``frame_s``) in up to ``chunks`` parts of whole frames."""
    n = max(1, int(math.floor(dwell_s / frame_s + 0.5)))
    edges = [round(n * k / chunks) for k in range(chunks + 1)]
    return [(b - a) * frame_s for a, b in zip(edges, edges[1:]) if b > a]


def _next_chunk(ratio: float, dwell: float, max_dwell_s: float, frame_time_s: float) -> float:
    """The next acquisition of the adaptive dwell, s: 60 % of the way to the dwell the
    σ ∝ 1/√t law predicts (``ratio`` times the dwell so far), at least 25 % more than so far
    and one frame."""
    predicted = dwell * ratio
    upto = min(max(dwell * 1.25, dwell + 0.6 * (predicted - dwell)), max_dwell_s)
    return max(upto - dwell, frame_time_s)


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

