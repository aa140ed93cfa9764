"""Phase-bin integrals of the PEM modulation (measurement model, section 3).

For B equal bins, bin k spans θ ∈ [2πk·s/B, 2π(k+1)·s/B) from the PEM reference rising edge,
where s is the bin span, the fraction of the period the bins cover (1 unless the counter leaves
a gap before the next reference edge), and the retardation is δ(θ) = A0·sin(θ − φ0). The
integrals

    w_k = s/B,   S_k = (1/2π) ∫_bin sin δ(θ) dθ,   C_k = (1/2π) ∫_bin cos δ(θ) dθ

give the expected counts μ_k = M·(w_k + u·C_k + v·S_k) + d_k.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)

#: Relative spread of C_k below which u is indistinguishable from M (B = 2, or B = 4 aligned).
DEGENERATE_RTOL = 1e-9


@dataclass(frozen=True)
class BinLayout:
    """Design of the binned model for one (B, A0, φ0).

    Attributes:
        w: (B,) bin weights s/B, the fraction of the period each bin covers.
        c: (B,) C_k, bin integrals of cos δ divided by 2π.
        s: (B,) S_k, bin integrals of sin δ divided by 2π.
        u_identifiable: False when all C_k are equal, so that u cannot be told from M.
    """

    w: np.ndarray
    c: np.ndarray
    s: np.ndarray
    u_identifiable: bool

    @property
    def design(self) -> np.ndarray:
        """(B, 3) design matrix [w, C, S] for the linear parameters (M, M·u, M·v)."""
        return np.column_stack([self.w, self.c, self.s])


def _bin_integrals(n_bins: int, retardation: float, phase_offset: float, span: float):
    edges = 2.0 * np.pi * span * np.arange(n_bins + 1) / n_bins
    lo, hi = edges[:-1, None], edges[1:, None]
    half = 0.5 * (hi - lo)
    theta = lo + half * (_NODES[None, :] + 1.0)
    delta = retardation * np.sin(theta - phase_offset)
    scale = half[:, 0] / (2.0 * np.pi)
    s = scale * (np.sin(delta) @ _WEIGHTS)
    c = scale * (np.cos(delta) @ _WEIGHTS)
    return s, c


@lru_cache(maxsize=256)
def bin_layout(n_bins: int, retardation: float, phase_offset: float,
               span: float = 1.0) -> BinLayout:
    """Return the (cached) bin integrals for ``n_bins`` equal bins.

    Args:
        n_bins: B, number of equal phase bins per PEM period (≥ 2).
        retardation: A0, peak retardation in rad.
        phase_offset: φ0 in rad, phase of the zero crossing of δ after the reference edge.
        span: fraction of the PEM period covered by the B bins, in (0, 1].
    """
    s, c = _bin_integrals(n_bins, float(retardation), float(phase_offset), float(span))
    # Each bin of B ≤ 64 spans ≤ π: Gauss–Legendre with 48 nodes is exact to rounding for
    # |δ| ≤ π; the sums Σ S_k = 0 and Σ C_k = J0(A0) are checked in the tests.
    w = np.full(n_bins, float(span) / n_bins)
    spread = np.ptp(c)
    u_ok = bool(spread > DEGENERATE_RTOL * max(np.abs(c).max(), 1e-300))
    for arr in (w, c, s):
        arr.setflags(write=False)
    return BinLayout(w=w, c=c, s=s, u_identifiable=u_ok)
