"""A quick coarse pass over a scan's wavelengths before the long one.

:func:`survey` measures every point briefly and predicts, before hours are committed, which
points exceed the counting head's linear range (``nonlinear``) or would trip its damage
guard, which show no emission that matters (their data exclude it), which are still
undecided (too faint to tell yet: they stay in play), and how much instrument time the scan
will take with its target σ and maximum dwell. A time-budget scan plans its allocation from
the same survey (:class:`cplscope.plans.planning.BudgetPlan`), and every scan reuses the
survey's frames as the start of each point, so the survey costs no photons. The survey's
points are split into planning and estimation frames (:mod:`cplscope.demod.planned`): what
the planner takes from them comes from the planning frames only.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..science.emission import emission_probability, photon_noise_coefficient, planned_rate
from ..science.emission import sigma_sqrt_m
from ..science.pipeline import peak_rate_cps
from ..science.results import FLAG_UNDETECTED
from .point import Dark, PointMeasurement, measure_point
from .planning import SurveyPoint, faintest_detectable_cps

__all__ = ["Survey", "survey"]


@dataclass
class Survey:
    """The survey's measurements and what they predict.

    Attributes:
        wavelengths_nm: the surveyed wavelengths, nm, in scan order.
        points: the survey measurement of each point.
        dwell_s: survey dwell per point, s.
        linear_cps, damage_cps: the rate limits judged against, counts/s.
        target_sigma: the scan's target of the mode's figure of merit (σ_g for CPL; NaN:
            none).
        max_dwell_s: the scan's maximum dwell, s.
        min_dwell_s: the adaptive dwell's early-stop floor, s.
        matter_cps: the faintest signal that matters for the scan (counts/s;
            :func:`cplscope.plans.planning.rate_that_matters`), NaN: not known.
        faintest_cps: the faintest signal the scan can detect within its longest dwell
            with its dark (counts/s), NaN: not known.
        dark: the dark the survey was evaluated with (its rate and dwell are reported).
    """

    wavelengths_nm: list[float]
    points: list[PointMeasurement]
    dwell_s: float
    linear_cps: float
    damage_cps: float
    target_sigma: float = math.nan
    max_dwell_s: float = math.inf
    min_dwell_s: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    matter_cps: float = math.nan
    faintest_cps: float = math.nan
    dark: Any = None
    emitting: list[bool] | None = None
    """Per point, whether it has signal to measure (the mode's judgement: CPL emission, CD
    transmission); None: from the points' ``no_emission`` flag."""

    def peak_rate_cps(self, i: int) -> float:
        """Highest observed count rate of point i's survey frames, counts/s."""
        f = self.points[i].frames
        return peak_rate_cps(f.counts, f.frame_time_s)

    def emits(self, i: int) -> bool:
        if self.emitting is not None:
            return self.emitting[i]
        return not self.points[i].result.has("no_emission")

    def undetected(self, i: int) -> bool:
        """Point i neither shows emission nor excludes the signal that matters yet."""
        return self.points[i].result.has(FLAG_UNDETECTED)

    def peak_signal_cps(self) -> float:
        """The brightest signal the survey detected (counts/s), NaN when none."""
        rates = [p.result.intensity for i, p in enumerate(self.points)
                 if self.emits(i) and not self.undetected(i)]
        return float(max(rates)) if rates else math.nan

    def merit(self, i: int) -> float:
        """The survey's figure of merit at point i (σ_g for CPL)."""
        m = self.points[i]
        return m.merit if math.isfinite(m.merit) else m.result.sigma_g

    def nonlinear(self, i: int) -> bool:
        return self.peak_rate_cps(i) > self.linear_cps

    def would_trip(self, i: int) -> bool:
        return self.peak_rate_cps(i) > self.damage_cps

    def predicted_dwell_s(self, i: int) -> float:
        """Dwell the adaptive scan will spend at point i (survey included), s."""
        if not math.isfinite(self.target_sigma):
            return self.dwell_s
        r = self.points[i].result
        sigma = self.merit(i)
        if not self.emits(i):
            return max(self.dwell_s, min(self.min_dwell_s, self.max_dwell_s))
        if self.undetected(i) or not (math.isfinite(sigma) and sigma > 0):
            return min(max(self._time_to_exclude(), self.dwell_s, self.min_dwell_s),
                       self.max_dwell_s)
        need = r.dwell_s * (sigma / self.target_sigma) ** 2
        return min(max(need, r.dwell_s), self.max_dwell_s)

    def predicted_sigma(self, i: int) -> float:
        """σ_g expected at point i after :meth:`predicted_dwell_s`."""
        r = self.points[i].result
        sigma = self.merit(i)
        if not self.emits(i) or not math.isfinite(sigma):
            return math.nan
        return sigma * math.sqrt(r.dwell_s / self.predicted_dwell_s(i))

    def _time_to_exclude(self) -> float:
        """Dwell (s) after which a point without emission excludes the signal that matters
        (the scan's dark, 3σ): z²·D/(m² − z²·σ_D²); inf when the dark's own σ forbids it."""
        d = self.dark
        m = self.matter_cps
        if d is None or not math.isfinite(m) or not hasattr(d, "total_rate_cps"):
            return self.max_dwell_s
        dark, sd = d.total_rate_cps, float(np.sqrt(np.sum(d.sigma_rate_cps ** 2)))
        room = m * m - 9.0 * sd * sd
        return 9.0 * dark / room if room > 0 else math.inf

    @property
    def predicted_total_s(self) -> float:
        """Instrument time of the counting the scan will do, survey included, s."""
        return sum(self.predicted_dwell_s(i) for i in range(len(self.points)))

    def planner_points(self) -> list[SurveyPoint]:
        """The survey as the time-budget planner's input. An undetected point is planned
        as the emitter it may be (at the larger of its planning frames' rate and the signal
        that matters), weighted by the probability that it emits at all: time in proportion
        to the value of finding out."""
        out = []
        for i, p in enumerate(self.points):
            if self.emits(i) and self.undetected(i):
                out.append(SurveyPoint(p.result.dwell_s, emits=True, undecided=True,
                                       coefficient=self._undecided_coefficient(p)))
            else:
                out.append(SurveyPoint(p.result.dwell_s, self.merit(i), emits=self.emits(i)))
        return out

    def _undecided_coefficient(self, p: PointMeasurement) -> float:
        f, ctx = p.frames, p.context
        if ctx is None or not math.isfinite(self.matter_cps):
            return math.inf
        got = planned_rate(f.counts, f.frame_time_s, f.span, ctx)
        if got is None:
            return math.inf
        rate, dark_cps, _ = got
        hypothesis = max(rate, self.matter_cps)
        k = sigma_sqrt_m(f.n_bins, ctx.a0_rad, ctx.phase_offset_rad, f.span)
        weight = emission_probability(f.counts, f.frame_time_s, f.span, ctx, hypothesis)
        return weight * photon_noise_coefficient(hypothesis, dark_cps, k, f.span)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the run metadata."""
        n = len(self.points)
        dark = self.dark
        return {
            "dwell_s": self.dwell_s, "points": n,
            "predicted_total_s": self.predicted_total_s,
            "matter_cps": _nan_none(self.matter_cps),
            "faintest_detectable_cps": _nan_none(self.faintest_cps),
            "dark_cps": getattr(dark, "total_rate_cps", None),
            "dark_dwell_s": getattr(dark, "dwell_s", None),
            "no_emission_nm": [self.wavelengths_nm[i] for i in range(n) if not self.emits(i)],
            "undetected_nm": [self.wavelengths_nm[i] for i in range(n) if self.undetected(i)],
            "nonlinear_nm": [self.wavelengths_nm[i] for i in range(n) if self.nonlinear(i)],
            "over_damage_limit_nm": [self.wavelengths_nm[i] for i in range(n)
                                     if self.would_trip(i)],
            "peak_rate_cps": max((self.peak_rate_cps(i) for i in range(n)), default=0.0),
            "linear_limit_cps": self.linear_cps, "damage_limit_cps": self.damage_cps,
            **self.extra,
        }

    def summary(self) -> str:
        """A few lines for the user: what the scan will meet and how long it will take."""
        d = self.as_dict()
        hours = d["predicted_total_s"] / 3600.0
        lines = [f"survey of {d['points']} points ({self.dwell_s:g} s each): predicted "
                 f"counting time {_duration(d['predicted_total_s'])} ({hours:.2f} h)"]
        lines += self._sensitivity_lines()
        if d["no_emission_nm"]:
            lines.append(f"  no emission at {len(d['no_emission_nm'])} points: "
                         f"{_ranges(d['no_emission_nm'])} nm (their data exclude "
                         f"{self.matter_cps:.3g} counts/s or more: no more time)")
        if d["undetected_nm"]:
            lines.append(f"  undetected at {len(d['undetected_nm'])} points: "
                         f"{_ranges(d['undetected_nm'])} nm (neither emission nor its "
                         "absence shown yet: they stay in play)")
        if d["nonlinear_nm"]:
            lines.append(f"  above the linear range ({self.linear_cps:.3g} counts/s) at "
                         f"{_ranges(d['nonlinear_nm'])} nm: kept, flagged nonlinear")
        if d["over_damage_limit_nm"]:
            lines.append(f"  ABOVE THE DAMAGE LIMIT ({self.damage_cps:.3g} counts/s) at "
                         f"{_ranges(d['over_damage_limit_nm'])} nm: lower the HV or the "
                         "light before scanning")
        lines.append(f"  peak count rate {d['peak_rate_cps']:.3g} counts/s")
        return "\n".join(lines)


    def _sensitivity_lines(self) -> list[str]:
        d = self.dark
        out = []
        if math.isfinite(self.faintest_cps) and d is not None and hasattr(d, "total_rate_cps"):
            out.append(f"  faintest detectable signal: {self.faintest_cps:.3g} counts/s within "
                       f"{self.horizon_s:g} s (5σ over a dark of {d.total_rate_cps:.3g} "
                       f"counts/s measured for {d.dwell_s:.0f} s)")
        if math.isfinite(self.matter_cps):
            out.append(f"  signal that matters: {self.matter_cps:.3g} counts/s or more (a "
                       "point whose data exclude it is no_emission)")
        return out

    @property
    def horizon_s(self) -> float:
        """The longest a point may count, s: the maximum dwell (or the survey's dwell)."""
        return self.max_dwell_s if math.isfinite(self.max_dwell_s) else self.dwell_s


def _nan_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def survey(inst, wavelengths_nm: Sequence[float], *, dwell_s: float = 1.0,
           dark: Dark | None = None, calibration: Any = None, rules: Any = None,
           target_sigma: float | None = None, max_dwell_s: float = math.inf,
           min_dwell_s: float = 1.0, linear_cps: float | None = None,
           damage_cps: float | None = None, dark_source: str | None = None,
           mode: Any = None, accumulation: int = 0,
           matter_rate: float | None = None) -> Survey:
    """Measure every wavelength for ``dwell_s`` s (nm, s) and predict the scan.

    Args:
        mode: the measurement mode (:mod:`cplscope.plans.modes`; default CPL emission with
            ``rules``).
        dark: the dark to subtract (:func:`cplscope.plans.point.measure_dark`).
        target_sigma, max_dwell_s, min_dwell_s: the scan's adaptive-dwell settings, for the
            duration prediction.
        linear_cps, damage_cps: the rate limits (counts/s); default the rules' linear limit
            and :data:`cplscope.settings.rate_limits.DEFAULT_DAMAGE_RATE_CPS`.
        matter_rate: the signal that matters for the scan (counts/s); default from the
            target σ and maximum dwell (:func:`cplscope.plans.point.measure_point`).
    """
    from ..settings.rate_limits import DEFAULT_DAMAGE_RATE_CPS
    from ..science.results import FlagRules

    from .modes import Emission

    if mode is None:
        mode = Emission(rules=rules if rules is not None else FlagRules())
    linear = linear_cps if linear_cps is not None else (
        rules.nonlinear_rate_cps if rules is not None else mode.binned_rules.nonlinear_rate_cps)
    points: list[PointMeasurement] = []
    for wl in wavelengths_nm:
        inst.move_to(float(wl))
        points.append(measure_point(inst, mode, dwell_s=dwell_s, calibration=calibration,
                                    dark=dark, wavelength_nm=float(wl),
                                    dark_source=dark_source, accumulation=accumulation,
                                    **relevance_of(target_sigma, max_dwell_s, dwell_s,
                                                   matter_rate)))
    matter = points[0].context.matter_rate if points and points[0].context else math.nan
    sv = Survey([float(w) for w in wavelengths_nm], points, float(dwell_s), float(linear),
                float(damage_cps if damage_cps is not None else DEFAULT_DAMAGE_RATE_CPS),
                float(target_sigma) if target_sigma is not None else math.nan,
                float(max_dwell_s), float(min_dwell_s), matter_cps=float(matter),
                dark=dark, emitting=[mode.emits(m) for m in points])
    if isinstance(dark, Dark) and points and getattr(mode, "splits", False):
        sv.faintest_cps = faintest_detectable_cps(
            sv.horizon_s, dark.total_rate_cps, dark.sigma_total_rate_cps,
            points[0].frames.span, mode.rules.snr_min)
    return sv


def relevance_of(target: float | None, max_dwell_s: float, dwell_s: float,
                 matter_rate: float | None) -> dict[str, Any]:
    """measure_point's arguments that make a survey point judge its emission as the scan
    will (the signal that matters, planning frames)."""
    return dict(planned=True, matter_rate=matter_rate, relevance=(
        target, max_dwell_s if math.isfinite(max_dwell_s) else dwell_s))


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _ranges(values: Sequence[float]) -> str:
    if len(values) <= 4:
        return ", ".join(f"{v:g}" for v in values)
    return f"{values[0]:g} … {values[-1]:g}"
