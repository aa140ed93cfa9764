"""The peak retardation A0 that makes photon counting most efficient.

For B equal phase bins the counts have expectation (measurement model, section 3)

    μ_k = M·(w_k + u·C_k + v·S_k) + d_k,

and g = 2v. At u = v = 0 the Fisher information of the binned Poisson model for
p = (M, u, v) is

    F = Σ_k x_k x_kᵀ / μ_k,   x_k = (w_k, M·C_k, M·S_k),

so σ_g·√M = 2·sqrt((F⁻¹)_vv) (with M = 1) does not depend on M: it is the uncertainty of g per
square root of a detected signal photon. :func:`fisher_sigma_g` computes it for any layout and
A0, and :func:`optimal_retardation` finds the A0 in (0, π] that minimizes it. With fine bins the
optimum tends to the A0 where <sin²δ> = ½(1 − J0(2A0)) is largest, 1.9159 rad, where a given
σ_g needs about 7 % fewer photons than at the analog convention A0 = π/2.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .bins import bin_layout

__all__ = ["fisher_sigma_g", "optimal_retardation", "U_DEGENERATE_RTOL"]

#: u counts as not identifiable when the information left on it after M and v are fitted is
#: below this fraction of its own information (then C is a multiple of w, as for B = 2).
U_DEGENERATE_RTOL = 1e-9

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_GRID = 48        # coarse grid over (0, π] that brackets the minimum
_XTOL = 1e-9      # rad, width of the final golden-section bracket


def _layout(n_bins: int, a0: float, phi0: float, span: float):
    # The search visits many A0: bypass bin_layout's cache so that it keeps the layouts the
    # rest of the pipeline reuses.
    raw = getattr(bin_layout, "__wrapped__", bin_layout)
    return raw(n_bins, a0, phi0, span)


def _check(n_bins: int, a0_rad: float | None, phase_offset_rad: float, span: float,
           dark_fraction: float) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer ≥ 2 (the phase bins per PEM period), "
                         f"got {n_bins!r}")
    if a0_rad is not None and not (math.isfinite(a0_rad) and 0.0 < a0_rad <= math.pi):
        raise ValueError(f"retardation A0 must be in (0, π] rad, got {a0_rad!r}")
    if not math.isfinite(phase_offset_rad):
        raise ValueError(f"phase_offset_rad must be finite, got {phase_offset_rad!r}")
    if not (math.isfinite(span) and 0.0 < span <= 1.0):
        raise ValueError(f"span must be in (0, 1], the fraction of the PEM period the bins "
                         f"cover, got {span!r}")
    if not (math.isfinite(dark_fraction) and dark_fraction >= 0.0):
        raise ValueError(f"dark_fraction must be a finite number ≥ 0 (dark counts per signal "
                         f"count in the bins), got {dark_fraction!r}")


def _sigma(n_bins: int, a0: float, phi0: float, span: float, u_free: bool,
           dark_fraction: float) -> float:
    lay = _layout(n_bins, a0, phi0, span)
    w, c, s = lay.w, lay.c, lay.s
    if not np.any(np.abs(s) > 1e-12 * np.abs(w).max()):
        return math.inf                    # every bin sees the same sin δ: no information on g
    mu = w * (1.0 + dark_fraction)          # M = 1; dark spread like the bin durations
    x = np.column_stack([w, c, s])
    fisher = (x.T / mu) @ x
    keep = [0, 1, 2]
    if u_free:
        # Information left on u once M and v are fitted (Schur complement).
        rest = fisher[np.ix_([0, 2], [0, 2])]
        cross = fisher[[0, 2], 1]
        try:
            left = fisher[1, 1] - cross @ np.linalg.solve(rest, cross)
        except np.linalg.LinAlgError:
            left = 0.0
        if not left > U_DEGENERATE_RTOL * fisher[1, 1]:
            keep = [0, 2]
    else:
        keep = [0, 2]
    f = fisher[np.ix_(keep, keep)]
    # Information left on v once the others are fitted: 1/(F⁻¹)_vv.
    others = f[:-1, :-1]
    cross = f[:-1, -1]
    try:
        info_v = f[-1, -1] - cross @ np.linalg.solve(others, cross)
    except np.linalg.LinAlgError:
        return math.inf
    if not info_v > 1e-14 * f[-1, -1] or not info_v > 0.0:
        return math.inf                    # v cannot be told from M (and u): no information
    return 2.0 / math.sqrt(info_v)


def fisher_sigma_g(n_bins: int, a0_rad: float, phase_offset_rad: float = 0.0,
                   span: float = 1.0, u_free: bool = True, dark_fraction: float = 0.0) -> float:
    """σ_g·√M of the binned Poisson model at u = v = 0, from its Fisher information.

    Multiply by 1/√M, M the detected signal photons (summed over all bins, for unpolarized
    light), to get the Cramér–Rao bound on σ(g_lum) that :func:`cplscope.demod.estimate`
    reaches.

    Args:
        n_bins: B, equal phase bins per PEM period (≥ 2).
        a0_rad: A0, peak retardation in rad, in (0, π].
        phase_offset_rad: φ0 in rad, δ(θ) = A0·sin(θ − φ0).
        span: fraction of the PEM period the B bins cover, in (0, 1].
        u_free: fit the linear polarization u as well (as ``estimate`` does) when the layout
            identifies it; a layout whose C_k are a multiple of w_k (B = 2, B = 4 aligned
            with δ) is evaluated with u fixed at 0, as ``estimate`` fits it. False fixes u = 0.
        dark_fraction: dark counts per signal count in the bins (dark spread uniformly in
            time); the σ grows as √(1 + dark_fraction).

    Returns:
        σ_g·√M (dimensionless; per square root of a photon); ``inf`` when the layout carries
        no information on g (every bin sees the same sin δ).

    Raises:
        ValueError: on B < 2, A0 outside (0, π], or a span, φ0 or dark fraction out of range.
    """
    _check(n_bins, a0_rad, phase_offset_rad, span, dark_fraction)
    return _sigma(int(n_bins), float(a0_rad), float(np.remainder(phase_offset_rad, 2 * np.pi)),
                  float(span), bool(u_free), float(dark_fraction))


def _golden_min(f, lo: float, hi: float, xtol: float) -> float:
    """Minimum of a unimodal ``f`` on [lo, hi] by golden-section search."""
    a, b = lo, hi
    x1 = b - _GOLDEN * (b - a)
    x2 = a + _GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    while b - a > xtol:
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - _GOLDEN * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + _GOLDEN * (b - a)
            f2 = f(x2)
    return 0.5 * (a + b)


@lru_cache(maxsize=64)
def _optimum(n_bins: int, phi0: float, span: float) -> float:
    f = lambda a0: _sigma(n_bins, a0, phi0, span, True, 0.0)  # noqa: E731
    grid = np.linspace(math.pi / _GRID, math.pi, _GRID)
    values = np.array([f(a) for a in grid])
    if not np.any(np.isfinite(values)):
        raise ValueError(f"with B={n_bins} bins, phase_offset={phi0:.6g} rad and span={span:g} "
                         "the counts carry no information on g at any A0: shift the bins "
                         "(phase offset) or use more bins")
    i = int(np.argmin(values))
    lo = grid[i - 1] if i > 0 else 1e-6
    hi = grid[i + 1] if i + 1 < _GRID else math.pi
    best = _golden_min(f, lo, hi, _XTOL)
    # The bracket may end at π: keep the boundary when it is better.
    return math.pi if f(math.pi) < f(best) else best


def optimal_retardation(n_bins: int, phase_offset_rad: float = 0.0, span: float = 1.0) -> float:
    """The A0 in (0, π] rad that minimizes σ_g per photon for this bin layout.

    The search fits u as :func:`fisher_sigma_g` does (u free when the layout identifies it).
    Dark counts spread uniformly in time scale σ_g by the same factor at every A0, so they do
    not move the optimum. The result is cached per (B, φ0, span); a call takes a few
    milliseconds the first time.

    Args:
        n_bins: B, equal phase bins per PEM period (≥ 2).
        phase_offset_rad: φ0 in rad.
        span: fraction of the PEM period the B bins cover, in (0, 1].

    Returns:
        A0 in rad (1.9159 for fine bins; 1.92 for B = 16).

    Raises:
        ValueError: on a bad layout, or one that carries no information on g at any A0.
    """
    _check(n_bins, None, phase_offset_rad, span, 0.0)
    phi0 = float(np.remainder(phase_offset_rad, 2 * np.pi))
    return _optimum(int(n_bins), round(phi0, 12), float(span))
