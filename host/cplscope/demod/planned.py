"""The fit of a point whose dwell was decided from some of its own frames.

An adaptive dwell stops a point when its σ_g looks small enough. σ_g falls as the fitted
intensity M rises, and g = 2·(M·v)/M falls as M rises, so a rule that looks at the same
counts that the reported g is divided by stops preferentially on upward fluctuations of M and
biases g towards zero: on dark-dominated points at g = 0.8 by about 0.1σ (measured, see
docs/estimator.md). The cure is to split the frames. The *planning* frames (every m-th frame
of the point) are the only ones whose totals the stopping rule looks at; in the fit their
bin shape counts, but their total is given a free scale λ, so that it does not inform M:

    E-frames:  μ_k = n_E·(x_k·θ + d_k)
    P-frames:  μ_k = λ·n_P·(x_k·θ + d_k)        (λ free)

which is the Poisson likelihood of the E-frames times the multinomial likelihood of the
P-frames' counts given their total. Given the total counts of the planning frames, how the
photons fall into the bins is independent of when the point stopped, and the E-frames'
totals are independent of it too, so g from this fit carries no first-order stopping bias.
What it costs: M (and through it g at large |g| on dark-dominated points) loses the
planning frames' share of the rate information; the shape information (all of g's at small
|g|) is kept whole.

:func:`planned_fit` solves it by Fisher scoring on (θ, λ) and returns θ for all the frames
and its covariance, with the dark's own error added as :func:`cplscope.demod.estimate` adds
it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["planned_fit"]

_MAX_ITER = 60
_RTOL = 1e-12


def planned_fit(x: np.ndarray, sums_e: np.ndarray, n_e: int, sums_p: np.ndarray, n_p: int,
                dark: np.ndarray, theta0: np.ndarray, rate_factor: float,
                dark_sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """θ (totals over all n_e + n_p frames) and its covariance, P-frames' total free.

    Args:
        x: (B, p) design of one frame's signal, μ_k = x_k·θ_frame + d_k.
        sums_e, sums_p: (B,) bin sums of the E- and P-frames (dead-time corrected).
        n_e, n_p: their numbers of frames (both ≥ 1).
        dark: (B,) expected dark counts per bin per frame.
        theta0: (p,) starting θ per frame (the plain fit's θ / n_frames).
        rate_factor: τ / (live time of a bin in one frame); the variance of a dead-time
            corrected count is μ·(1 + rate_factor·μ_frame) (0 without dead time).
        dark_sd: σ of ``dark`` (scalar common to all bins, or (B,) independent).
    """
    n_bins, n_par = x.shape
    theta = np.asarray(theta0, dtype=np.float64).copy()
    lam = 1.0
    counts = np.concatenate([sums_e, sums_p])
    floor = 1e-9 * max(float(counts.max()), 1.0)
    for _ in range(_MAX_ITER):
        grad, mu, w = _parts(x, theta, lam, n_e, n_p, dark, rate_factor, floor)
        info = (grad.T * w) @ grad
        step = np.linalg.solve(info, grad.T @ (w * (counts - mu)))
        theta += step[:n_par]
        lam = max(lam + float(step[n_par]), 1e-6)
        if np.all(np.abs(step[:n_par]) <= _RTOL * (np.abs(theta).max() + 1e-300)):
            break
    grad, mu, w = _parts(x, theta, lam, n_e, n_p, dark, rate_factor, floor)
    inv = np.linalg.inv((grad.T * w) @ grad)
    n = n_e + n_p
    cov = inv[:n_par, :n_par] * n * n
    if np.any(dark_sd):
        # a shift δ of the dark per bin per frame moves the means by n_e·δ and λ·n_p·δ
        shift = np.concatenate([np.full(n_bins, float(n_e)), np.full(n_bins, lam * n_p)])
        proj = (inv @ (grad.T * (w * shift)).reshape(n_par + 1, 2, n_bins).sum(axis=1)
                )[:n_par] * n
        if dark_sd.ndim == 0:
            col = proj.sum(axis=1) * float(dark_sd)
            cov = cov + np.outer(col, col)
        else:
            scaled = proj * dark_sd
            cov = cov + scaled @ scaled.T
    return theta * n, cov


def _parts(x, theta, lam, n_e, n_p, dark, rate_factor, floor):
    """Gradient rows (2B, p + 1), means (2B,) and weights 1/var (2B,) at (θ, λ)."""
    n_bins, n_par = x.shape
    m = np.maximum(x @ theta + dark, floor / max(n_e, n_p))
    grad = np.zeros((2 * n_bins, n_par + 1))
    grad[:n_bins, :n_par] = n_e * x
    grad[n_bins:, :n_par] = lam * n_p * x
    grad[n_bins:, n_par] = n_p * m
    mu = np.concatenate([n_e * m, lam * n_p * m])
    vf = 1.0 + rate_factor * np.concatenate([m, m])
    return grad, mu, 1.0 / (mu * vf)
