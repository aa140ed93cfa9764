"""Planning the instrument time of a scan (pure and deterministic: no instrument access).

A time-budget scan first surveys every point briefly, then spends what is left of a budget
T where it reduces the spectrum's error most. At point i the photon noise gives
σ_i² = c_i / t_i for a dwell t_i, with the *photon-noise coefficient* c_i = σ_i²·t_i (s) known
from the survey. Minimizing Σσ_i² over the emitting points subject to Σt_i = T gives

    t_i ∝ √c_i,   Σσ_i² = (Σ√c_i)² / T

(measure where the noise per photon is high, but only with the square root of it). With a
cap on the dwell of a point and the survey time already spent, the optimum is the same rule
clipped to each point's bounds ("water filling"), which :func:`allocate_dwell` solves
exactly. :class:`BudgetPlan` re-solves it over the points not yet measured with the time
actually left after every point, so rounding to whole frames and the instrument's own
quantization never push a scan over its budget by more than one frame per point.

Also here: the hopeless-point rule for adaptive dwell without a budget
(:func:`is_hopeless`), the signal that matters for a scan and the faintest it can detect
(:func:`rate_that_matters`, :func:`faintest_detectable_cps`), the dark dwell a scan needs
(:func:`dark_dwell_needed`) and :func:`parse_duration` for ``30min``, ``2h``, ``1h30m``,
``90s``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..science.emission import photon_noise_coefficient

__all__ = ["BudgetPlan", "NEGLIGIBLE_FRACTION", "SurveyPoint", "allocate_dwell",
           "dark_dwell_needed", "faintest_detectable_cps", "is_hopeless", "noise_coefficient",
           "parse_duration", "predicted_sigma_at", "rate_that_matters", "survey_dwell"]

_EPS = 1e-9


# --- durations --------------------------------------------------------------------------

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_UNIT_ALIASES = {
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*")
_PLAIN = re.compile(rf"\s*({_NUMBER})\s*")
_FORMS = "a number of seconds (45, 2.5) or amounts with units h, min (or m) and s in that " \
         "order (90s, 30min, 2h, 1h30m, 1h 30min 15s)"


def parse_duration(text: str | float | int) -> float:
    """Parse a duration such as ``30min``, ``2h``, ``90s``, ``1h30m`` or ``45`` into seconds.

    A bare number is seconds. Units are ``h`` (``hr``, ``hour(s)``), ``min`` (``m``,
    ``minute(s)``) and ``s`` (``sec``, ``second(s)``), each at most once, largest first;
    spaces are allowed between the parts, and case is ignored.

    Args:
        text: the duration as typed, or a number of seconds.

    Returns:
        The duration in s, > 0.

    Raises:
        ValueError: naming the text that could not be read and the accepted forms, or when
            the duration is not positive.
    """
    if isinstance(text, bool):
        raise ValueError(f"a duration must be {_FORMS}; got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        if not isinstance(text, str):
            raise ValueError(f"a duration must be {_FORMS}; got {text!r}")
        seconds = _parse_text(text)
    if not math.isfinite(seconds) or seconds <= 0.0:
        raise ValueError(f"a duration must be positive and finite; got {text!r}")
    return seconds


def _parse_text(text: str) -> float:
    s = text.strip().lower()
    if not s:
        raise ValueError(f"the duration is empty: use {_FORMS}")
    plain = _PLAIN.fullmatch(s)
    if plain:
        return float(plain.group(1))
    pos, total, order = 0, 0.0, []
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read the duration {text!r} at {s[pos:]!r}: use {_FORMS}")
        unit = _UNIT_ALIASES.get(m.group(2))
        if unit is None:
            raise ValueError(f"unknown unit {m.group(2)!r} in the duration {text!r}: use "
                             f"{_FORMS}")
        order.append(unit)
        total += float(m.group(1)) * _UNIT_SECONDS[unit]
        pos = m.end()
    ranks = ["hms".index(u) for u in order]
    if not order or ranks != sorted(set(ranks)):
        raise ValueError(f"in the duration {text!r} each unit must appear once, largest "
                         f"first: use {_FORMS}")
    return total


# --- photon noise -----------------------------------------------------------------------

def noise_coefficient(rate_cps: float, dark_cps: float, sigma_sqrt_m: float,
                      span: float = 1.0) -> float:
    """Photon-noise coefficient c = σ_g²·t (s) of a point from its rates.

    σ_g² = k²·(1 + D/(R·s)) / (R·t) for signal rate R (``intensity`` per second, as
    ``estimate`` reports it: a whole period's photons for unpolarized light), dark rate D in
    the bins, bin span s and k = σ_g·√M of the layout
    (:func:`cplscope.demod.retardation.fisher_sigma_g`).

    Args:
        rate_cps: R, signal photons per second (> 0).
        dark_cps: D, dark counts per second in the bins (≥ 0).
        sigma_sqrt_m: k, σ_g·√M of the bin layout and A0 (> 0).
        span: fraction of the PEM period the bins cover, in (0, 1].

    Returns:
        c in s (σ_g² at a dwell of 1 s).
    """
    if not (math.isfinite(rate_cps) and rate_cps > 0):
        raise ValueError(f"rate_cps must be > 0 signal photons per second, got {rate_cps!r}")
    if not (math.isfinite(dark_cps) and dark_cps >= 0):
        raise ValueError(f"dark_cps must be ≥ 0 counts per second, got {dark_cps!r}")
    if not (math.isfinite(sigma_sqrt_m) and sigma_sqrt_m > 0):
        raise ValueError(f"sigma_sqrt_m must be > 0, got {sigma_sqrt_m!r}")
    if not (math.isfinite(span) and 0 < span <= 1):
        raise ValueError(f"span must be in (0, 1], got {span!r}")
    return photon_noise_coefficient(rate_cps, dark_cps, sigma_sqrt_m, span)


# --- the signal that matters -------------------------------------------------------------

#: Emission below this fraction of a spectrum's brightest point does not matter for the
#: spectrum (the planner's and the no-emission rule's default; its wings stay measured down
#: to 0.1 % of the peak).
NEGLIGIBLE_FRACTION = 1e-3


def faintest_detectable_cps(horizon_s: float, dark_cps: float, sigma_dark_cps: float = 0.0,
                            span: float = 1.0, z: float = 5.0) -> float:
    """The faintest signal (a whole period's photons per s) whose expected counts reach
    emission_z = ``z`` within ``horizon_s`` s, over a dark of ``dark_cps`` counts/s in the
    bins known to ``sigma_dark_cps``: z·√(D/T + σ_D²)/s, at least one count in T.

    A short dark caps it: however long the point, it stays above z·σ_D/s (measurement model
    §10). Measure the dark for about as long as the longest point (:func:`dark_dwell_needed`).
    """
    if not (horizon_s > 0 and dark_cps >= 0 and sigma_dark_cps >= 0 and 0 < span <= 1):
        raise ValueError("need horizon_s > 0 s, dark_cps ≥ 0, sigma_dark_cps ≥ 0 and span in "
                         f"(0, 1]; got {horizon_s!r}, {dark_cps!r}, {sigma_dark_cps!r}, {span!r}")
    noise = z * math.sqrt(dark_cps / horizon_s + sigma_dark_cps ** 2) / span
    return max(noise, 1.0 / (span * horizon_s))


def rate_that_matters(*, horizon_s: float, dark_cps: float, sigma_sqrt_m: float,
                      target: float | None = None, sigma_dark_cps: float = 0.0,
                      span: float = 1.0, snr_min: float = 5.0, peak_cps: float = math.nan,
                      negligible: float = NEGLIGIBLE_FRACTION) -> float:
    """The faintest signal (a whole period's photons per s) that matters for a scan.

    The largest of: the faintest signal it can detect within ``horizon_s`` (the longest a
    point may count: the maximum dwell, or the fixed dwell); with a ``target`` σ_g, the rate
    at which a point reaches it within ``horizon_s`` (at g = 0: fainter emission cannot be
    measured as asked); with a known ``peak_cps`` (a survey's brightest point),
    ``negligible`` × that peak (fainter emission does not matter for the spectrum). A point
    whose data exclude this rate is ``no_emission``; one that neither shows emission nor
    excludes it is ``undetected`` and stays in play.
    """
    rate = faintest_detectable_cps(horizon_s, dark_cps, sigma_dark_cps, span, snr_min)
    if target is not None:
        # k²·(1 + D/(R·s))/(R·T) = target²  ⇔  target²·T·R² − k²·R − k²·D/s = 0
        a, k2 = target ** 2 * horizon_s, sigma_sqrt_m ** 2
        rate = max(rate, (k2 + math.sqrt(k2 * k2 + 4.0 * a * k2 * dark_cps / span)) / (2.0 * a))
    if math.isfinite(peak_cps) and peak_cps > 0:
        rate = max(rate, negligible * peak_cps)
    return rate


def dark_dwell_needed(matter_cps: float, dark_cps: float, horizon_s: float, *,
                      span: float = 1.0, z: float = 8.0, minimum_s: float = 10.0) -> float:
    """How long to measure the dark (s) so that a signal of ``matter_cps`` stands ``z``
    standard deviations above the dark's noise within ``horizon_s`` (z = snr_min +
    exclude_z: detected at 5σ by a point that emits it, excluded at 3σ by one that does
    not): D/t_d ≤ (s·m/z)² − D/T. At least ``minimum_s``, at most ``horizon_s`` (a dark as
    long as the longest point at most doubles its dark variance; longer buys little).
    """
    if not (dark_cps > 0 and horizon_s > 0):
        return float(minimum_s)
    room = (span * matter_cps / z) ** 2 - dark_cps / horizon_s
    need = dark_cps / room if room > 0 else math.inf
    return float(min(max(need, minimum_s), max(horizon_s, minimum_s)))


def predicted_sigma_at(sigma_g: float, dwell_s: float, at_dwell_s: float) -> float:
    """σ_g expected after ``at_dwell_s`` s from σ_g measured after ``dwell_s`` s (σ ∝ 1/√t)."""
    if not (dwell_s > 0 and at_dwell_s > 0):
        raise ValueError(f"dwell times must be > 0 s, got {dwell_s!r} and {at_dwell_s!r}")
    return float(sigma_g) * math.sqrt(dwell_s / at_dwell_s)


def is_hopeless(sigma_g: float, dwell_s: float, target_sigma: float, max_dwell_s: float,
                margin: float = 1.0) -> bool:
    """True when the rate measured so far shows ``target_sigma`` is out of reach.

    The rule for adaptive dwell without a budget, when the user asks to skip hopeless points:
    after ``dwell_s`` s a point has σ_g = ``sigma_g``; photon noise gives
    σ(max_dwell_s) = σ_g·sqrt(dwell_s/max_dwell_s). If that exceeds ``margin``·target the
    point is hopeless: stop and flag it. A σ that is not finite (no signal yet) is not judged
    here; the no-emission rule decides those points.

    Args:
        sigma_g: σ_g so far.
        dwell_s: dwell so far, s (> 0).
        target_sigma: the σ_g target (> 0).
        max_dwell_s: the maximum dwell, s (> 0).
        margin: tolerance factor ≥ 1 against an optimistic early σ (1: the plain rule).
    """
    if not (target_sigma > 0 and max_dwell_s > 0 and dwell_s > 0):
        raise ValueError("target_sigma, max_dwell_s and dwell_s must be > 0; got "
                         f"{target_sigma!r}, {max_dwell_s!r}, {dwell_s!r}")
    if not margin >= 1.0:
        raise ValueError(f"margin must be ≥ 1, got {margin!r}")
    if not math.isfinite(sigma_g):
        return False
    at = max(max_dwell_s, dwell_s)
    return predicted_sigma_at(sigma_g, dwell_s, at) > margin * target_sigma


# --- allocation -------------------------------------------------------------------------

def allocate_dwell(coefficients: Sequence[float] | np.ndarray, total_s: float,
                   lower_s: Sequence[float] | np.ndarray | float = 0.0,
                   upper_s: Sequence[float] | np.ndarray | float = math.inf) -> np.ndarray:
    """Dwell times t_i (s) that minimize Σ c_i/t_i with Σ t_i = total_s, lower ≤ t ≤ upper.

    The solution is t_i = clip(λ·√c_i, lower_i, upper_i) with λ chosen to spend
    ``total_s`` exactly (found exactly on the piecewise-linear Σt(λ), not iteratively). When
    no bound binds this is t_i = total·√c_i/Σ√c_j and Σc_i/t_i = (Σ√c_i)²/total. When even
    the lower bounds exceed ``total_s`` the lower bounds are returned; when the upper bounds
    are below it, the upper bounds (time is left over).

    Args:
        coefficients: c_i ≥ 0, σ_i²·t_i in s.
        total_s: time to distribute, s.
        lower_s, upper_s: bounds per point (or one for all), s; 0 ≤ lower ≤ upper.

    Returns:
        t as a float array, s.
    """
    c = np.asarray(coefficients, dtype=np.float64).ravel()
    n = c.size
    lo = np.broadcast_to(np.asarray(lower_s, dtype=np.float64), (n,)).astype(np.float64)
    hi = np.broadcast_to(np.asarray(upper_s, dtype=np.float64), (n,)).astype(np.float64)
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("coefficients must be finite and ≥ 0 (σ²·t in s)")
    if np.any(~np.isfinite(lo)) or np.any(lo < 0) or np.any(np.isnan(hi)) or np.any(hi < lo):
        raise ValueError("bounds must satisfy 0 ≤ lower_s ≤ upper_s, lower_s finite")
    if not math.isfinite(total_s):
        raise ValueError(f"total_s must be a finite number of seconds, got {total_s!r}")
    if n == 0:
        return np.zeros(0)
    if lo.sum() >= total_s:
        return lo
    if np.isfinite(hi).all() and hi.sum() <= total_s:
        return hi
    root = np.sqrt(c)
    live = root > 0
    if not live.any():
        return lo
    r = root[live]
    knots = np.concatenate([lo[live] / r, hi[live] / r])
    knots = np.unique(knots[np.isfinite(knots)])
    fixed = lo[~live].sum()

    values = _clipped_sums(knots, r, lo[live], hi[live]) + fixed
    j = int(np.searchsorted(values, total_s, side="left"))
    if j >= len(knots):
        # Beyond the last knot only the uncapped points still grow (slope Σ√c of those).
        k = knots[-1]
        slope = float(r[~np.isfinite(hi[live])].sum())
        scale = k + (total_s - values[-1]) / slope if slope > 0 else k
    elif j == 0:
        scale = knots[0]
    else:
        k0, k1, v0, v1 = knots[j - 1], knots[j], values[j - 1], values[j]
        scale = k0 + (total_s - v0) * (k1 - k0) / (v1 - v0) if v1 > v0 else k1
    t = lo.copy()
    t[live] = np.clip(scale * r, lo[live], hi[live])
    return t


def _clipped_sums(scales: np.ndarray, r: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> np.ndarray:
    """Σ_i clip(s·r_i, lo_i, hi_i) for every s in ``scales``, in O(n log n).

    Σ lo + Σ_{a_i < s} (s·r_i − lo_i) − Σ_{b_i < s} (s·r_i − hi_i) with a = lo/r, b = hi/r:
    a point enters its linear part at a_i and leaves it at b_i.
    """
    out = np.full(scales.shape, lo.sum())
    for edge, bound, sign in ((lo / r, lo, 1.0), (hi / r, hi, -1.0)):
        order = np.argsort(edge, kind="stable")
        fin = np.isfinite(edge[order])
        cum_r = np.concatenate([[0.0], np.cumsum(np.where(fin, r[order], 0.0))])
        cum_b = np.concatenate([[0.0], np.cumsum(np.where(fin, bound[order], 0.0))])
        k = np.searchsorted(edge[order], scales, side="left")
        out += sign * (scales * cum_r[k] - cum_b[k])
    return out


def survey_dwell(budget_s: float, n_points: int, frame_s: float,
                 fraction: float = 0.1) -> float:
    """Survey dwell per point, s: ``fraction`` of the budget shared over the points, whole frames.

    At least one frame per point. Raises ValueError when one frame per point does not fit in
    the budget.
    """
    if not (budget_s > 0 and frame_s > 0 and n_points >= 1 and 0 < fraction <= 1):
        raise ValueError("need budget_s > 0 s, frame_s > 0 s, n_points ≥ 1 and fraction in "
                         f"(0, 1]; got {budget_s!r}, {frame_s!r}, {n_points!r}, {fraction!r}")
    if n_points * frame_s > budget_s * (1 + _EPS):
        raise ValueError(f"a budget of {budget_s:g} s cannot survey {n_points} points with "
                         f"{frame_s:g}-s frames (one frame each needs {n_points * frame_s:g} "
                         "s): give more time, fewer points or shorter frames")
    frames = math.floor(fraction * budget_s / n_points / frame_s + _EPS)
    return max(1, frames) * frame_s


@dataclass(frozen=True)
class SurveyPoint:
    """What the survey measured at one point.

    Attributes:
        dwell_s: survey dwell, s.
        sigma_g: the survey's σ_g (NaN when unknown).
        emits: False for a point found ``no_emission``: it gets no time beyond the survey.
        undecided: the survey neither showed emission nor excluded it: the point is
            planned with a ``coefficient`` that weighs what it would need if it emits by
            the probability that it does (:meth:`cplscope.plans.survey.Survey.planner_points`),
            and its measurement ends early once its data exclude the signal that matters.
        rate_cps: signal photons per second (``intensity``/dwell); used with ``dark_cps``
            when neither ``sigma_g`` nor ``coefficient`` is given.
        dark_cps: dark counts per second in the bins.
        coefficient: c = σ_g²·t in s, if known directly (overrides ``sigma_g``).
    """

    dwell_s: float
    sigma_g: float = math.nan
    emits: bool = True
    rate_cps: float = math.nan
    dark_cps: float = 0.0
    coefficient: float | None = None
    undecided: bool = False

    def noise_coefficient(self, sigma_sqrt_m: float | None = None) -> float:
        """c_i = σ_i²·t_i in s: given, else from the survey's σ_g and dwell, else from the
        rates with ``sigma_sqrt_m`` (σ_g·√M of the layout)."""
        if self.coefficient is not None:
            return float(self.coefficient)
        if math.isfinite(self.sigma_g) and self.sigma_g > 0 and self.dwell_s > 0:
            return float(self.sigma_g) ** 2 * float(self.dwell_s)
        if sigma_sqrt_m is not None and math.isfinite(self.rate_cps) and self.rate_cps > 0:
            return noise_coefficient(self.rate_cps, self.dark_cps, sigma_sqrt_m)
        raise ValueError("an emitting survey point needs its coefficient, a finite σ_g > 0 "
                         "with its dwell, or a signal rate with sigma_sqrt_m; got "
                         f"{self!r}")


class BudgetPlan:
    """A scan's instrument-time plan after the survey, revised as points are measured.

    Usage: for each point i in any order, ask ``dwell = plan.next_dwell(i)``, measure it for
    ``dwell`` more seconds (combined with its survey frames), then
    ``plan.record(i, dwell_actually_spent, sigma_g_achieved)``. Each ``next_dwell`` re-solves
    the optimal allocation (:func:`allocate_dwell`) over the emitting points not yet measured,
    with the time actually left, and rounds the answer to whole frames, never beyond the time
    left rounded up to a frame. So the scan's total exceeds ``budget_s`` by at most one frame,
    plus whatever the instrument itself adds beyond the dwell it was given (at most one frame
    per point for an instrument that rounds up to whole frames).

    Args:
        survey: one :class:`SurveyPoint` per scan point.
        budget_s: total instrument time of the scan, s, survey included.
        frame_s: the dwell quantum (one frame), s.
        max_dwell_s: cap on a point's total dwell, survey included, s.
        min_dwell_s: shortest extra measurement worth making, s (default one frame): a point
            whose optimal extra time is shorter gets none, and the time goes to the others.
        spent_s: instrument time already used (default: the sum of the survey dwells).
        reuse_survey: the survey frames are combined with the point's later frames (default),
            so a point's σ² = c/(survey + extra). False: the survey time is sunk.
        sigma_sqrt_m: σ_g·√M of the layout, to derive c from rates where a survey point gives
            no σ_g.
    """

    def __init__(self, survey: Sequence[SurveyPoint], budget_s: float, *, frame_s: float,
                 max_dwell_s: float = math.inf, min_dwell_s: float | None = None,
                 spent_s: float | None = None, reuse_survey: bool = True,
                 sigma_sqrt_m: float | None = None) -> None:
        if not (math.isfinite(budget_s) and budget_s > 0):
            raise ValueError(f"budget_s must be a positive number of seconds, got {budget_s!r}")
        if not (math.isfinite(frame_s) and frame_s > 0):
            raise ValueError(f"frame_s must be a positive number of seconds, got {frame_s!r}")
        if not max_dwell_s > 0:
            raise ValueError(f"max_dwell_s must be > 0 s, got {max_dwell_s!r}")
        min_dwell = frame_s if min_dwell_s is None else float(min_dwell_s)
        if not (math.isfinite(min_dwell) and min_dwell >= 0):
            raise ValueError(f"min_dwell_s must be ≥ 0 s, got {min_dwell_s!r}")
        points = list(survey)
        if any(not (math.isfinite(p.dwell_s) and p.dwell_s >= 0) for p in points):
            raise ValueError("every survey dwell_s must be finite and ≥ 0 s")
        self.budget_s = float(budget_s)
        self.frame_s = float(frame_s)
        self.max_dwell_s = float(max_dwell_s)
        self.min_dwell_s = min_dwell
        self.reuse_survey = bool(reuse_survey)
        self.survey = tuple(points)
        n = len(points)
        self._emits = np.array([p.emits for p in points], dtype=bool)
        self._c = np.zeros(n)
        for i, p in enumerate(points):
            if p.emits:
                c = p.noise_coefficient(sigma_sqrt_m)
                if not (math.isfinite(c) and c > 0):
                    raise ValueError(f"survey point {i}: noise coefficient must be > 0, got {c}")
                self._c[i] = c
        self._t0 = np.array([p.dwell_s if reuse_survey else 0.0 for p in points])
        self._cap = np.maximum(self.max_dwell_s, self._t0) - self._t0   # extra time allowed
        self.spent_s = float(sum(p.dwell_s for p in points) if spent_s is None else spent_s)
        if not (math.isfinite(self.spent_s) and self.spent_s >= 0):
            raise ValueError(f"spent_s must be ≥ 0 s, got {spent_s!r}")
        self._measured = np.zeros(n, dtype=bool)
        self._pending: dict[int, float] = {}
        self._used = np.zeros(n)
        self._granted = np.full(n, math.nan)
        self._predicted = np.full(n, math.nan)
        self._achieved = np.full(n, math.nan)
        self.initial_extra_s = self.plan()
        self.initial_sum_sigma2 = self._sum_sigma2(self.initial_extra_s)

    # -- queries --

    @property
    def n_points(self) -> int:
        """Number of scan points."""
        return len(self.survey)

    @property
    def used_s(self) -> float:
        """Instrument time used so far (survey, recorded points and pending grants), s."""
        return self.spent_s + float(self._used.sum()) + sum(self._pending.values())

    @property
    def remaining_s(self) -> float:
        """Budget left, s (negative when over)."""
        return self.budget_s - self.used_s

    def coefficient(self, i: int) -> float:
        """c_i = σ_i²·t_i of point i from the survey, s (0 for a point that does not emit)."""
        return float(self._c[self._index(i)])

    def plan(self) -> np.ndarray:
        """Extra dwell per point beyond the survey, s: recorded time for measured points, the
        grant for pending ones, the current optimum (not rounded) for the rest."""
        extra = self._used.copy()
        for i, g in self._pending.items():
            extra[i] = g
        free = self._free()
        if free.any():
            extra[free] = self._solve(free, self.remaining_s)
        return extra

    def predicted_sigma(self, i: int) -> float:
        """σ_g expected at point i with its planned (or recorded) dwell; NaN if it does not
        emit."""
        i = self._index(i)
        if not self._emits[i]:
            return math.nan
        total = self._t0[i] + self.plan()[i]
        return math.sqrt(self._c[i] / total) if total > 0 else math.inf

    def predicted_sum_sigma2(self) -> float:
        """Σσ_g² over the emitting points expected from the current plan."""
        return self._sum_sigma2(self.plan())

    # -- the scan loop --

    def next_dwell(self, i: int) -> float:
        """Extra dwell (s, whole frames) to measure point i for now; 0 when it gets none.

        Re-solves the allocation over the emitting points not yet measured with the time
        left. Call :meth:`record` with the time actually spent before asking for point i again.
        """
        i = self._index(i)
        if self._measured[i]:
            raise ValueError(f"point {i} is already recorded; each point is measured once")
        if i in self._pending:
            raise ValueError(f"point {i} already has a dwell of {self._pending[i]:g} s: record "
                             "it first")
        grant = 0.0
        if self._emits[i]:
            free = self._free()
            extra = self._solve(free, self.remaining_s)
            x = float(extra[np.flatnonzero(free) == i][0])
            f = self.frame_s
            n = math.floor(x / f + 0.5)
            n = min(n, max(0, math.ceil(self.remaining_s / f - _EPS)))
            if math.isfinite(self._cap[i]):
                n = min(n, math.floor(self._cap[i] / f + _EPS))
            grant = n * f if n * f >= self.min_dwell_s - _EPS and n > 0 else 0.0
        self._pending[i] = grant
        self._granted[i] = grant
        total = self._t0[i] + grant
        self._predicted[i] = (math.sqrt(self._c[i] / total) if self._emits[i] and total > 0
                              else math.nan)
        return grant

    def record(self, i: int, dwell_s: float, sigma_g: float = math.nan) -> None:
        """Record that point i was measured for ``dwell_s`` s beyond its survey, reaching
        ``sigma_g``.

        The time actually spent (which may differ from the grant) is what the later points
        are planned with.
        """
        i = self._index(i)
        if self._measured[i]:
            raise ValueError(f"point {i} is already recorded")
        if not (math.isfinite(dwell_s) and dwell_s >= 0):
            raise ValueError(f"dwell_s must be a finite number of seconds ≥ 0, got {dwell_s!r}")
        self._pending.pop(i, None)
        self._measured[i] = True
        self._used[i] = float(dwell_s)
        self._achieved[i] = float(sigma_g)

    def report(self) -> dict[str, Any]:
        """The plan for the scan's metadata: budget, time used, and per point the survey
        dwell, the coefficient, the granted and spent extra dwell (s), and the predicted and
        achieved σ_g."""
        plan = self.plan()
        return {
            "budget_s": self.budget_s, "used_s": self.used_s, "frame_s": self.frame_s,
            "max_dwell_s": self.max_dwell_s, "min_dwell_s": self.min_dwell_s,
            "reuse_survey": self.reuse_survey,
            "initial_sum_sigma2": self.initial_sum_sigma2,
            "predicted_sum_sigma2": self._sum_sigma2(plan),
            "points": [
                {"index": i, "emits": bool(self._emits[i]), "undecided": bool(p.undecided),
                 "survey_dwell_s": p.dwell_s,
                 "coefficient_s": float(self._c[i]),
                 "initial_extra_s": float(self.initial_extra_s[i]),
                 "granted_s": _nan_none(self._granted[i]),
                 "dwell_s": float(self._used[i]) if self._measured[i] else None,
                 "predicted_sigma_g": _nan_none(self._predicted[i]),
                 "achieved_sigma_g": _nan_none(self._achieved[i])}
                for i, p in enumerate(self.survey)],
        }

    # -- internals --

    def _index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not (
                0 <= i < self.n_points):
            raise ValueError(f"point index must be an integer in [0, {self.n_points}), got {i!r}")
        return int(i)

    def _free(self) -> np.ndarray:
        free = self._emits & ~self._measured
        for i in self._pending:
            free[i] = False
        return free

    def _solve(self, free: np.ndarray, time_left: float) -> np.ndarray:
        """Optimal extra time (s) of the free points with ``time_left`` s, min dwell applied."""
        c, t0, cap = self._c[free], self._t0[free], self._cap[free]
        active = np.ones(c.size, dtype=bool)
        extra = np.zeros(c.size)
        left = max(time_left, 0.0)
        while active.any():
            t = allocate_dwell(c[active], left + t0[active].sum(), t0[active], t0[active] +
                               cap[active])
            x = np.maximum(t - t0[active], 0.0)
            short = (x > 0) & (x < self.min_dwell_s - _EPS)
            if not short.any():
                extra[active] = x
                break
            # Drop the point that needs the least extra time, and share its time again.
            idx = np.flatnonzero(active)
            drop = idx[np.flatnonzero(short)[np.argmin(x[short])]]
            active[drop] = False
        return extra

    def _sum_sigma2(self, extra: np.ndarray) -> float:
        e = self._emits
        if not e.any():
            return 0.0
        total = self._t0[e] + extra[e]
        with np.errstate(divide="ignore"):
            return float(np.sum(np.where(total > 0, self._c[e] / total, math.inf)))


def _nan_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)
