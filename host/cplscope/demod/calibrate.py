"""Calibration fits on phase-binned counts (measurement model, section 7).

- :func:`fit_retardation`: A0 and φ0 from a linear polarizer at 45° (u = 1, v = 0). Since
  cos δ is even in δ, this light fixes φ0 only modulo π; the handedness fixes the rest.
- :func:`fit_retardation_analog`: the same from analog frames (per-frame bin means of ADC
  samples, Gaussian noise from the frames' scatter), at the phases each bin sampled.
- :func:`fit_handedness`: the sign that makes a reference of known sign come out right
  (a circular polarizer, v = ±1, or a reference emitter such as Eu(facam)3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .bins import SampledPhases, bin_layout, subset
from .deadtime import dead_time_correct
from .estimator import _usable_analog, estimate

__all__ = ["HandednessFit", "RetardationFit", "fit_handedness", "fit_retardation",
           "fit_retardation_analog"]


@dataclass(frozen=True)
class RetardationFit:
    """A0 (rad) and φ0 (rad, in [0, π)) with standard uncertainties; ``intensity`` M
    (counts), ``chi2_red`` of the fit and its ``dof``."""

    a0_rad: float
    sigma_a0: float
    phase_offset_rad: float
    sigma_phase: float
    intensity: float
    chi2_red: float
    dof: int


@dataclass(frozen=True)
class HandednessFit:
    """``handedness`` (+1 or −1) that multiplies every g_lum, from a reference whose g
    measured ``g_measured`` ± ``sigma_g`` with the instrument's raw sign."""

    handedness: int
    g_measured: float
    sigma_g: float


def _model(params, n_bins, span, u, dark):
    m, a0, phi0 = params
    lay = bin_layout(n_bins, float(a0), float(np.remainder(phi0, 2 * np.pi)), span)
    return m * (lay.w + u * lay.c) + dark


def _fit_a0_phase(p: np.ndarray, model: Any, observed: np.ndarray, weight: Any, cost: Any,
                  what: str) -> tuple[np.ndarray, np.ndarray]:
    """Scoring iterations for (M, A0, φ0) from the start ``p``: Fisher matrix JᵀWJ and
    gradient JᵀW(observed − model) with W = ``weight(model)``, J by central differences, a
    quarter step when a full one raises ``cost``. Returns (p, Fisher matrix)."""
    fisher = np.eye(3)
    for _ in range(50):
        mu = model(p)
        jac = np.empty((mu.size, 3))
        for i in range(3):
            dp = np.zeros(3)
            dp[i] = 1e-6 * (abs(p[i]) if i == 0 else 1.0)
            jac[:, i] = (model(p + dp) - model(p - dp)) / (2 * dp[i])
        w = weight(mu)
        fisher = (jac.T * w) @ jac
        try:
            delta = np.linalg.solve(fisher, jac.T @ (w * (observed - mu)))
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"the {what} do not constrain A0 and φ0 (is the light linearly "
                             "polarized at 45°?)") from exc
        new = p + delta
        new[1] = np.clip(new[1], 1e-3, np.pi)
        if cost(new) > cost(p):
            new = p + 0.25 * delta
        done = np.all(np.abs(new - p) <= 1e-10 * np.maximum(np.abs(p), 1.0))
        p = new
        if done:
            break
    return p, fisher


def fit_retardation(counts: np.ndarray, *, dark: float | np.ndarray = 0.0,
                    bin_span: float = 1.0, linear: float = 1.0, dead_time: float = 0.0,
                    frame_time: float | None = None) -> RetardationFit:
    """Fit A0 and φ0 to counts of light with known linear polarization and no CPL.

    Args:
        counts: (B,) or (n_frames, B) photon counts of a linear polarizer at 45° before the
            PEM. B ≥ 3 (B = 2 and aligned B = 4 cannot see the cos δ shape; use 16 or 32).
        dark: expected dark counts per bin per frame.
        bin_span: fraction of the PEM period covered by the bins.
        linear: u of the light (1 for a polarizer at +45°, −1 at −45°).
        dead_time, frame_time: non-paralyzable dead time (s) and frame duration (s): each
            frame's bins are corrected as c/(1 − c·τ/t_k) first. Dead time compresses the
            strong cos δ modulation of polarized light and would bias A0.

    Returns:
        A :class:`RetardationFit`; φ0 is in [0, π).

    Raises:
        ValueError: bad input, or the counts do not constrain A0 (too few counts, or light
            that is not linearly polarized).
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2 or c.shape[1] < 3:
        raise ValueError(f"counts must have shape (B,) or (n_frames, B) with B ≥ 3, got {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("counts must be finite and ≥ 0")
    n_frames, n_bins = c.shape
    c = dead_time_correct(c, dead_time, frame_time, bin_span)
    n = c.sum(axis=0)
    d = n_frames * np.broadcast_to(np.asarray(dark, dtype=np.float64), (n_bins,))
    signal = (n - d).sum()
    if not signal > 100:
        raise ValueError(f"only {signal:.0f} signal counts: the linear polarizer gives no light "
                         "(check the shutter, HV and wavelength)")

    def deviance(p):
        mu = np.maximum(_model(p, n_bins, bin_span, linear, d), 1e-12)
        pos = n > 0
        return 2 * np.sum(mu - n) + 2 * np.sum(n[pos] * np.log(n[pos] / mu[pos]))

    best: tuple[float, np.ndarray] | None = None
    for a0 in np.linspace(0.3, np.pi, 10):
        for phi in np.linspace(0, np.pi, 18, endpoint=False):
            lay = bin_layout(n_bins, a0, phi, bin_span)
            shape = lay.w + linear * lay.c
            m = max(signal / shape.sum(), 1.0)
            dev = deviance((m, a0, phi))
            if best is None or dev < best[0]:
                best = (dev, np.array([m, a0, phi]))
    assert best is not None
    p, fisher = _fit_a0_phase(
        best[1], lambda q: np.maximum(_model(q, n_bins, bin_span, linear, d), 1e-12), n,
        lambda mu: 1.0 / mu, deviance, "counts")
    cov = np.linalg.inv(fisher)
    mu = np.maximum(_model(p, n_bins, bin_span, linear, d), 1e-12)
    per_frame = mu / n_frames
    chi2 = float(np.sum((c - per_frame) ** 2 / per_frame))
    dof = n_frames * n_bins - 3
    return RetardationFit(
        a0_rad=float(p[1]), sigma_a0=float(np.sqrt(cov[1, 1])),
        phase_offset_rad=float(np.remainder(p[2], np.pi)), sigma_phase=float(np.sqrt(cov[2, 2])),
        intensity=float(p[0]), chi2_red=chi2 / dof if dof > 0 else float("nan"), dof=dof)


def fit_retardation_analog(means: np.ndarray, sampled_phases: SampledPhases | None = None, *,
                           dark: float = 0.0, linear: float = 1.0) -> RetardationFit:
    """A0 and φ0 from analog frames of light with known linear polarization and no CPL.

    Weighted least squares of the mean bin profile, level_k − dark = M·(1 + u·B·C_k(A0, φ0)),
    with each bin's variance from the frames' scatter; C_k over the phases each bin actually
    sampled when ``sampled_phases`` is given (the analog collector records them).

    Args:
        means: (n_frames, B) per-frame bin means, ADC counts (NaN: an empty bin), ≥ 4 frames.
        sampled_phases: the phases of the samples (:class:`SampledPhases`), or None for bins
            that integrate their whole phase range.
        dark: the dark level (the front end's offset), ADC counts.
        linear: u of the light (1 for a polarizer at +45°).

    Returns:
        A :class:`RetardationFit` (``intensity`` M in ADC counts; φ0 in [0, π)).

    Raises:
        ValueError: too few frames or bins, or frames that do not constrain A0.
    """
    x = np.asarray(means, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4 or x.shape[1] < 4:
        raise ValueError(f"means must have shape (n_frames ≥ 4, B ≥ 4), got {x.shape}")
    n_bins = x.shape[1]
    frames, keep_bins, keep_frames = _usable_analog(x)
    n_frames = frames.shape[0]
    y = frames.mean(axis=0) - float(dark)
    var = frames.var(axis=0, ddof=1) / n_frames
    if not np.all(var > 0):
        raise ValueError("a bin's level does not vary between frames: these are not ADC data")
    weight = 1.0 / var
    if not y.mean() > 0:
        raise ValueError(f"the mean level {y.mean():.3g} ADC counts above the dark: the linear "
                         "polarizer gives no light (check the shutter, HV and wavelength)")

    def shape(a0: float, phi: float) -> np.ndarray:
        phi = float(np.remainder(phi, 2 * np.pi))
        if sampled_phases is not None:
            lay = sampled_phases.layout(a0, phi, None if sampled_phases.moments.ndim == 2
                                        else keep_frames)
        else:
            lay = bin_layout(n_bins, a0, phi)
        if keep_bins is not None:
            lay = subset(lay, keep_bins)
        return 1.0 + linear * lay.c / lay.w

    def model(p: np.ndarray) -> np.ndarray:
        return p[0] * shape(p[1], p[2])

    def cost(p: np.ndarray) -> float:
        return float(np.sum(weight * (y - model(p)) ** 2))

    starts = [np.array([y.mean() / shape(a0, phi).mean(), a0, phi])
              for a0 in np.linspace(0.3, np.pi, 10)
              for phi in np.linspace(0, np.pi, 18, endpoint=False)]
    p, fisher = _fit_a0_phase(min(starts, key=cost), model, y, lambda mu: weight, cost,
                              "frames")
    cov = np.linalg.inv(fisher)
    dof = y.size - 3
    return RetardationFit(
        a0_rad=float(p[1]), sigma_a0=float(np.sqrt(cov[1, 1])),
        phase_offset_rad=float(np.remainder(p[2], np.pi)), sigma_phase=float(np.sqrt(cov[2, 2])),
        intensity=float(p[0]), chi2_red=cost(p) / dof if dof > 0 else float("nan"), dof=dof)


def fit_handedness(counts: np.ndarray, retardation: float, phase_offset: float, *,
                   expected_sign: int, dark: float | np.ndarray = 0.0, bin_span: float = 1.0,
                   min_significance: float = 5.0, dead_time: float = 0.0,
                   frame_time: float | None = None, noise: str = "poisson",
                   sampled_phases: SampledPhases | None = None,
                   dark_sigma: float = 0.0) -> HandednessFit:
    """The handedness sign from a reference of known sign of g_lum.

    Args:
        counts: (B,) or (n_frames, B) counts of the reference.
        retardation, phase_offset: A0 and φ0 (rad) in use (φ0 as fitted, modulo π).
        expected_sign: +1 if the reference's true g_lum is positive (left-circular light, a
            ``circular-polarizer-L``), −1 if negative.
        min_significance: |g|/σ_g needed to decide.
        noise, sampled_phases, dark_sigma: as :func:`~cplscope.demod.estimate` (analog frames:
            ``noise="gaussian"``).

    Raises:
        ValueError: the reference's g is not significant enough to decide.
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or −1, got {expected_sign!r}")
    e = estimate(counts, retardation, phase_offset=phase_offset, dark=dark, bin_span=bin_span,
                 dead_time=dead_time, frame_time=frame_time if dead_time else None,
                 noise=noise, sampled_phases=sampled_phases,  # type: ignore[arg-type]
                 dark_sigma=dark_sigma)
    if not abs(e.g_lum) >= min_significance * e.sigma_g:
        raise ValueError(f"the reference gives g = {e.g_lum:.3g} ± {e.sigma_g:.2g}, not "
                         f"significant at {min_significance:g}σ: measure longer or use a "
                         "stronger reference")
    return HandednessFit(int(np.sign(e.g_lum)) * expected_sign, e.g_lum, e.sigma_g)
