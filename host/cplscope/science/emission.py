"""Is there emission, and does it matter? The statistics a point's dwell and flags follow.

Three questions are kept apart (docs/estimator.md, "No emission, or too faint to tell"):

- **Is there emission?** ``emission_z`` (the estimator's score test of the counts against
  the dark) ≥ ``FlagRules.snr_min`` (5): a false alarm on pure dark once in 3.5 million.
  Only then is g reported.
- **Is there nothing worth measuring?** :func:`exclusion_z` tests the hypothesis that the
  point emits at the *rate that matters* (``PointContext.matter_rate``: the faintest signal
  that could reach the scan's target σ within its maximum dwell, or be detected at all, see
  :func:`cplscope.plans.planning.rate_that_matters`). ``exclusion_z ≥
  FlagRules.exclude_z`` (3) rejects it: the point is ``no_emission``, and a point that does
  emit at that rate is called so with probability ≤ 1.3e-3.
- Neither: the point is ``undetected``: emission may be there, fainter than its dwell could
  show. It is not written off.

The adaptive dwell decides when to stop from the *planning frames* only (every
``PLAN_EVERY``-th frame of a point; :mod:`cplscope.demod.planned` explains why):
:func:`planned_sigma_g` and :func:`planned_emission_z` predict σ_g and the emission's
significance from their total counts alone.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from ..demod import _stats
from ..demod.bins import bin_layout
from ..demod.retardation import fisher_sigma_g

__all__ = ["PLAN_EVERY", "analog_rate_that_matters", "dark_per_frame", "emission_probability", "exclusion_z",
           "photon_noise_coefficient", "planned_emission_z", "planned_rate", "planned_sigma_g",
           "planning_mask", "sigma_sqrt_m"]

#: Every PLAN_EVERY-th frame of an adaptive or planned point (the first, the fifth, …) is a
#: planning frame: the stopping rule and the time planner look at these frames' totals only,
#: and the fit does not take the intensity from them. 4 keeps 3/4 of the rate information
#: for the intensity and gives the stopping rule a rate from 1/4 of the photons.
PLAN_EVERY = 4


def planning_mask(n_frames: int, plan_every: int) -> np.ndarray | None:
    """(n_frames,) booleans marking the planning frames (frame i with i % plan_every == 0),
    or None when the point is not split (``plan_every`` 0)."""
    if plan_every <= 0 or n_frames <= 0:
        return None
    return np.arange(int(n_frames)) % int(plan_every) == 0


def photon_noise_coefficient(rate_cps: float, dark_cps: float, sigma_sqrt_m: float,
                             span: float = 1.0) -> float:
    """c = σ_g²·t (s) at signal rate ``rate_cps`` (a whole period's photons per s), dark
    ``dark_cps`` in the bins (counts/s), k = ``sigma_sqrt_m`` and bin span s:
    c = k²·(1 + D/(R·s))/R. Inf when R ≤ 0."""
    if not rate_cps > 0:
        return math.inf
    return sigma_sqrt_m ** 2 * (1.0 + dark_cps / (rate_cps * span)) / rate_cps


@lru_cache(maxsize=256)
def _k(n_bins: int, a0: float, phi0: float, span: float) -> float:
    return fisher_sigma_g(n_bins, a0, phi0, span)


def sigma_sqrt_m(n_bins: int, a0_rad: float, phase_offset_rad: float, span: float = 1.0) -> float:
    """k = σ_g·√M of the layout at g = u = 0 (cached; :func:`cplscope.demod.retardation.
    fisher_sigma_g`)."""
    return _k(int(n_bins), round(float(a0_rad), 12), round(float(phase_offset_rad), 12),
              round(float(span), 12))


def dark_per_frame(ctx: Any, n_bins: int) -> tuple[float, float]:
    """(expected dark counts of one frame over all bins, its σ) of a counting point's
    context: a scalar ``dark_sigma`` is an error common to the bins, an array independent
    errors."""
    dark = float(np.sum(np.broadcast_to(np.asarray(ctx.dark, dtype=np.float64), (n_bins,))))
    sd = np.asarray(ctx.dark_sigma, dtype=np.float64)
    sd_total = float(sd) * n_bins if sd.ndim == 0 else float(np.sqrt(np.sum(sd ** 2)))
    return dark, sd_total


def _dark_parts(ctx: Any, n_bins: int, n_frames: int) -> tuple[float, float]:
    """(expected dark counts over ``n_frames`` frames and all bins, its σ)."""
    dark, sd = dark_per_frame(ctx, n_bins)
    return dark * n_frames, sd * n_frames


def _planning_totals(counts: np.ndarray, ctx: Any) -> tuple[float, float, int] | None:
    """(planning frames' total counts, their expected dark, their number), None if unsplit."""
    mask = planning_mask(counts.shape[0], int(getattr(ctx, "plan_every", 0)))
    if mask is None:
        return None
    n_p = int(mask.sum())
    dark, _ = _dark_parts(ctx, counts.shape[1], n_p)
    return float(counts[mask].sum(dtype=np.float64)), dark, n_p


def planned_rate(counts: np.ndarray, frame_time_s: float, span: float,
                 ctx: Any) -> tuple[float, float, float] | None:
    """(signal rate, dark counts/s in the bins, planning time in s) from the planning
    frames' total counts alone; None when the point is not split."""
    counts = np.asarray(counts)
    got = _planning_totals(counts, ctx)
    if got is None:
        return None
    total, dark, n_p = got
    t_p = n_p * frame_time_s
    return (total - dark) / (span * t_p), dark / t_p, t_p


def planned_sigma_g(counts: np.ndarray, frame_time_s: float, span: float, ctx: Any) -> float:
    """σ_g predicted for all of ``counts``' frames at g = u = 0 from the signal rate of the
    planning frames alone (no dependence on their bin shape or on the other frames). Inf
    when that rate is not positive; NaN when the point is not split."""
    got = planned_rate(counts, frame_time_s, span, ctx)
    if got is None:
        return math.nan
    rate, dark_cps, _ = got
    n_frames, n_bins = np.asarray(counts).shape
    k = sigma_sqrt_m(n_bins, ctx.a0_rad, ctx.phase_offset_rad, span)
    c = photon_noise_coefficient(rate, dark_cps, k, span)
    return math.sqrt(c / (n_frames * frame_time_s)) if math.isfinite(c) else math.inf


def planned_emission_z(counts: np.ndarray, frame_time_s: float, ctx: Any) -> float:
    """The emission's significance over all of ``counts``' frames, predicted from the signal
    rate of the planning frames: (expected signal counts)/√(dark variance). NaN when the
    point is not split."""
    counts = np.asarray(counts)
    got = _planning_totals(counts, ctx)
    if got is None:
        return math.nan
    total, dark_p, n_p = got
    n_frames, n_bins = counts.shape
    signal = (total - dark_p) * n_frames / n_p
    dark, sd = _dark_parts(ctx, n_bins, n_frames)
    var = dark + sd * sd
    return signal / math.sqrt(var) if var > 0 else (math.inf if signal > 0 else 0.0)


def exclusion_z(counts: np.ndarray, frame_time_s: float, span: float, ctx: Any) -> float:
    """How strongly the data exclude a signal of ``ctx.matter_rate`` (NaN when unknown).

    Counting: under that hypothesis the total counts N have mean λ = S + D (S the signal
    counts of ``matter_rate`` over the frames' time and bin span, D the dark) and variance
    λ + σ_D²; z = (λ − N − ½)/√(λ + σ_D²). The normal lower tail with the continuity
    correction is heavier than the Poisson's (and the gamma-mixed Poisson's), so
    P(z ≥ x | the point emits at matter_rate) ≤ Φ(−x).

    Analog (``ctx.noise == "gaussian"``): the mean level's excess over the dark against the
    level of ``matter_rate`` with the frames' own scatter, a one-sided t test at F − 1 degrees
    of freedom mapped to the normal score (conservative with few frames).
    """
    matter = float(getattr(ctx, "matter_rate", math.nan))
    counts = np.asarray(counts, dtype=np.float64)
    if not math.isfinite(matter) or counts.size == 0:
        return math.nan
    n_frames, n_bins = counts.shape
    if ctx.noise == "gaussian":
        return _analog_exclusion(counts, ctx, matter)
    dark, sd = _dark_parts(ctx, n_bins, n_frames)
    lam = matter * span * n_frames * frame_time_s + dark
    n = float(counts.sum())
    return (lam - n - 0.5) / math.sqrt(lam + sd * sd) if lam > 0 else -math.inf


def _analog_exclusion(means: np.ndarray, ctx: Any, matter_level: float) -> float:
    level = np.nanmean(means, axis=1) - float(np.mean(ctx.dark))
    if level.size < 2:
        return math.nan
    # a point emitting at matter_level has at least the dark's noise in every frame
    spread = max(float(np.std(level, ddof=1)), _finite_or(ctx, "dark_noise", 0.0))
    se = spread / math.sqrt(level.size)
    sd = np.asarray(ctx.dark_sigma, dtype=np.float64)
    se = math.hypot(se, float(sd) if sd.ndim == 0 else float(np.sqrt(np.mean(sd ** 2))))
    if not se > 0:
        return math.inf if float(level.mean()) < matter_level else -math.inf
    t = (matter_level - float(level.mean())) / se
    return _stats.z_from_upper_tail(_stats.t_upper_tail(t, level.size - 1))


def emission_probability(counts: np.ndarray, frame_time_s: float, span: float, ctx: Any,
                         rate_cps: float) -> float:
    """The probability that a point emits at ``rate_cps`` rather than not at all, from its
    planning frames' total counts (the Poisson likelihood ratio of the two, even odds
    before): how much it is worth finding out. NaN when the point is not split."""
    counts = np.asarray(counts)
    got = _planning_totals(counts, ctx)
    if got is None:
        return math.nan
    total, dark, n_p = got
    signal = rate_cps * span * n_p * frame_time_s
    if not signal > 0:
        return 0.0
    if dark <= 0:
        return 1.0 if total > 0 else math.exp(-signal) / (1.0 + math.exp(-signal))
    llr = total * math.log1p(signal / dark) - signal
    return 1.0 / (1.0 + math.exp(-min(max(llr, -700.0), 700.0)))


def _finite_or(ctx: Any, name: str, default: float) -> float:
    value = float(getattr(ctx, name, math.nan))
    return value if math.isfinite(value) else default


def analog_rate_that_matters(ctx: Any, n_bins: int, frame_time_s: float, horizon_s: float,
                             target: float | None, snr_min: float = 5.0) -> float:
    """The analog counterpart of :func:`cplscope.plans.planning.rate_that_matters`, in the
    signal's units (the period-mean level M): the larger of the faintest level detectable
    within ``horizon_s`` over the dark's noise, z·√(σ_f²·t_f/T + σ_D²), and, with a target,
    the level at which σ_g reaches it within ``horizon_s`` when the frames carry the dark's
    noise, K·σ_f·√(t_f/T)/target (K = 2·‖projection of v‖·√B of the least-squares fit; the
    signal's own shot noise left out, so the level is an underestimate and a point is written
    off only more cautiously). NaN when the dark's frame noise is not known."""
    noise = _finite_or(ctx, "dark_noise", math.nan)
    if not (math.isfinite(noise) and noise > 0 and frame_time_s > 0 and horizon_s > 0):
        return math.nan
    frames = max(horizon_s / frame_time_s, 1.0)
    sd = np.asarray(ctx.dark_sigma, dtype=np.float64)
    sd_level = float(sd) if sd.ndim == 0 else float(np.sqrt(np.mean(sd ** 2)))
    rate = snr_min * math.sqrt(noise * noise / frames + sd_level * sd_level)
    if target is not None:
        k = _analog_k(int(n_bins), round(float(ctx.a0_rad), 12),
                      round(float(ctx.phase_offset_rad), 12))
        rate = max(rate, k * noise / math.sqrt(frames) / target)
    return rate


@lru_cache(maxsize=64)
def _analog_k(n_bins: int, a0: float, phi0: float) -> float:
    lay = bin_layout(n_bins, a0, phi0)
    x = (lay.design / lay.w[:, None])[:, [0, 2]]
    proj = np.linalg.pinv(x)
    return float(2.0 * np.linalg.norm(proj[1]) * math.sqrt(n_bins))
