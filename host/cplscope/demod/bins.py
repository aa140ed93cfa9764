"""Phase-bin integrals of the PEM modulation (measurement model, section 3).

For B equal bins, bin k spans θ ∈ [2πk·s/B, 2π(k+1)·s/B) from the PEM reference rising edge,
where s is the bin span, the fraction of the period the bins cover (1 unless the counter leaves
a gap before the next reference edge), and the retardation is δ(θ) = A0·sin(θ − φ0). The
integrals

    w_k = s/B,   S_k = (1/2π) ∫_bin sin δ(θ) dθ,   C_k = (1/2π) ∫_bin cos δ(θ) dθ

give the expected counts μ_k = M·(w_k + u·C_k + v·S_k) + d_k.

An ADC that samples the stream at fixed or few phases (a rate that is a multiple of the PEM
frequency) sees, in bin k, the signal at the phases it sampled, not its average over the bin.
:class:`SampledPhases` holds the Fourier moments of the phases actually sampled in each bin,
and :meth:`SampledPhases.layout` gives the layout of that design for any (A0, φ0):
B·C_k and B·S_k are then the means of cos δ and sin δ over the sampled phases.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(48)

#: Harmonics of the sampled-phase moments. The Fourier series of sin δ and cos δ have
#: coefficients 2·J_n(A0); for A0 ≤ π the first one left out, J_21(π), is below 1e-16.
HARMONICS = 20
_GRID = 128  # points per period for the Fourier coefficients of sin δ and cos δ


@dataclass(frozen=True)
class BinLayout:
    """Design of the binned model for one (B, A0, φ0).

    Attributes:
        w: (B,) bin weights s/B, the fraction of the period each bin covers.
        c: (B,) C_k, bin integrals of cos δ divided by 2π.
        s: (B,) S_k, bin integrals of sin δ divided by 2π.
        u_identifiable: False when all C_k are equal to rounding (B = 2, or B = 4 with the
            bins exactly aligned with δ), so that no data can tell u from M. True does not
            mean that u is constrained by a given set of counts: :func:`estimate` decides that
            from the Fisher information of the data at hand (``Estimate.u_sigma_bound``).
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
    return _frozen(w, c, s)


def _frozen(w: np.ndarray, c: np.ndarray, s: np.ndarray) -> BinLayout:
    # C_k all equal to rounding: the cos δ column is a multiple of the w column.
    u_ok = bool(np.ptp(c) > 64 * np.finfo(float).eps * max(np.abs(c).max(), 1e-300))
    for arr in (w, c, s):
        arr.setflags(write=False)
    return BinLayout(w=w, c=c, s=s, u_identifiable=u_ok)


def subset(layout: BinLayout, keep: np.ndarray) -> BinLayout:
    """The layout of the bins selected by the boolean or index array ``keep``."""
    return _frozen(layout.w[keep].copy(), layout.c[keep].copy(), layout.s[keep].copy())


@lru_cache(maxsize=256)
def _modulation_series(retardation: float, phase_offset: float) -> tuple[np.ndarray, ...]:
    """Fourier coefficients (a_n, b_n), n = 0 … HARMONICS, of cos δ(θ) and sin δ(θ):
    f(θ) = Σ a_n·cos nθ + b_n·sin nθ, from the FFT of f on a grid (exact to rounding)."""
    theta = 2.0 * np.pi * np.arange(_GRID) / _GRID
    delta = retardation * np.sin(theta - phase_offset)
    out = []
    for f in (np.cos(delta), np.sin(delta)):
        spec = np.fft.rfft(f)[: HARMONICS + 1] / _GRID
        a, b = 2.0 * spec.real, -2.0 * spec.imag
        a[0] *= 0.5
        b[0] = 0.0
        out.extend([a, b])
    return tuple(out)


@dataclass(frozen=True)
class SampledPhases:
    """Fourier moments of the reference phases at which a stream was sampled, per bin.

    For the samples i of bin k (of one frame, or of the whole stream) at phases θ_i (rad,
    from the PEM reference rising edge), ``moments[..., k, :]`` holds

        [n, Σ cos θ_i, …, Σ cos H·θ_i, Σ sin θ_i, …, Σ sin H·θ_i],   H = HARMONICS,

    so ``moments[..., 0]`` is the number of samples. Computed by
    :func:`cplscope.demod.phase_binning.sampled_phases` (and ``phase_bin(...,
    sampled_phases=True)``) with the same bin rule as the sums.

    Attributes:
        moments: float64 array, shape (B, 2H+1) or (n_frames, B, 2H+1).
    """

    moments: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.moments, dtype=np.float64)
        if m.ndim not in (2, 3) or m.shape[-1] != 2 * HARMONICS + 1:
            raise ValueError("SampledPhases.moments must have shape (B, 2H+1) or (n_frames, "
                             f"B, 2H+1) with H = {HARMONICS}, got {m.shape}")
        object.__setattr__(self, "moments", m)

    @property
    def n_bins(self) -> int:
        """B."""
        return int(self.moments.shape[-2])

    @property
    def counts(self) -> np.ndarray:
        """Samples per bin, shape (B,) or (n_frames, B)."""
        return self.moments[..., 0]

    def mean_moments(self, frames: np.ndarray | None = None) -> np.ndarray:
        """(B, 2H+1) per-bin means of [1, cos nθ, sin nθ] over the samples, averaged over the
        selected frames (a boolean or index array; all when None) with equal weight per frame,
        as the mean of per-frame bin means is. Bins without samples give NaN."""
        m = self.moments if self.moments.ndim == 3 else self.moments[None]
        if frames is not None:
            m = m[frames]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_frame = m / m[..., :1]
        return per_frame.mean(axis=0)

    def layout(self, retardation: float, phase_offset: float,
               frames: np.ndarray | None = None) -> BinLayout:
        """The design for the phases actually sampled: w_k = 1/B, B·C_k and B·S_k the means of
        cos δ and sin δ over the samples of bin k (averaged over ``frames``, see
        :meth:`mean_moments`), for δ(θ) = A0·sin(θ − φ0), A0 = ``retardation`` (rad) and
        φ0 = ``phase_offset`` (rad). Empty bins get NaN."""
        mm = self.mean_moments(frames)
        h = HARMONICS
        cos_n, sin_n = mm[:, : h + 1], np.concatenate([np.zeros((len(mm), 1)), mm[:, h + 1:]],
                                                      axis=1)
        ac, bc, as_, bs = _modulation_series(float(retardation), float(phase_offset))
        b = self.n_bins
        c = (cos_n @ ac + sin_n @ bc) / b
        s = (cos_n @ as_ + sin_n @ bs) / b
        w = np.full(b, 1.0 / b)
        return _frozen(w, c, s)
