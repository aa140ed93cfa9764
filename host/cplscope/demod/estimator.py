"""The binned g_lum estimator (measurement model, sections 3, 4 and 6).

Counts in B equal phase bins of the PEM period have expectation

    μ_k = M·(w_k + u·C_k + v·S_k) + d_k,

which is linear in (M, M·u, M·v). :func:`estimate` finds the Poisson maximum-likelihood
solution by iteratively reweighted least squares (Fisher scoring), so its σ reaches the
Cramér–Rao bound of the binned model, and reports g_lum = 2v with its σ from the Fisher
information. With ``noise="gaussian"`` (the analog ADC path) the same linear model is fitted
by least squares and σ comes from the frame-to-frame scatter, with Student-t degrees of
freedom (``dof_sigma``).

Whether u can be fitted is decided from the Fisher information of the data at hand: u is
fitted when its Cramér–Rao σ is below :data:`U_SIGMA_MAX`, else the fit uses u = 0 and says
so. ``emission_z`` is a score test of the total signal against the dark under the no-signal
hypothesis; ``emission_z ≥`` :data:`EMISSION_Z_MIN` has a false-alarm rate of 2.9e-7.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .. import _estimate
from . import _stats
from .bins import BinLayout, SampledPhases, bin_layout, subset
from .deadtime import apply_dead_time, dead_time_ratio
from .planned import planned_fit

__all__ = ["EMISSION_Z_MIN", "Estimate", "U_SIGMA_MAX", "estimate"]

#: u is fitted when the Cramér–Rao σ of u for the data at hand is below this (u lies in
#: [−1, 1]). Above it u is not constrained: fitting it would make M, and g through g ∝ 1/M,
#: uncertain by J0(A0)·σ_u (≥ 5 % at A0 = π/2) and the fit ill-conditioned, so the fit uses
#: u = 0 instead, whose only cost is a scale error (1 + u·J0(A0)) of M and its inverse on g.
U_SIGMA_MAX = 0.1

#: ``emission_z`` at or above this rejects "no emission" with a false-alarm rate of
#: P(N(0,1) ≥ 5) = 2.9e-7 (one-sided), in both noise modes.
EMISSION_Z_MIN = 5.0

# Above this many dark counts the Poisson (or gamma-mixed Poisson) tail of emission_z uses
# a normal score with a skewness correction instead of the exact series.
_EXACT_TAIL_MAX = 1e4

_KERNEL_DTYPES = {np.dtype(t) for t in (np.uint16, np.int16, np.uint32, np.int32, np.int64,
                                         np.uint64, np.float32, np.float64)}
_MAX_ITER = 60
_RTOL = 1e-12


@dataclass(frozen=True)
class Estimate:
    """Result of :func:`estimate`.

    In counting mode (``noise="poisson"``) intensities are photon counts summed over all
    frames and bins (signal only, dark removed). In analog mode (``noise="gaussian"``) they
    are in the input's signal units, as the period-mean level.

    Attributes:
        g_lum: 2·(I_L − I_R)/(I_L + I_R), dimensionless; NaN when there is no signal.
        sigma_g: standard uncertainty of ``g_lum``.
        intensity: M = I_L + I_R, the signal for unpolarized light.
        i_left: I_L = M(1 + v)/2.
        i_right: I_R = M(1 − v)/2.
        linear: u = U/I, reduced linear (±45°) polarization; NaN when the bin layout cannot
            identify it (then the fit used u = 0, see ``note``).
        sigma_linear: standard uncertainty of ``linear`` (NaN when not identifiable).
        chi2_red: reduced χ² of the fit across all frames and bins; ≈ 1 when the model holds.
            Frame-to-frame intensity fluctuations (lamp flicker, drift) raise it although
            they cancel in g. In analog mode it is the χ²(dof)-equivalent of two exact tests
            (the shape test of ``chi2_shape_red`` and a test of the frame totals' scatter
            against the bins' own noise), so the same χ² threshold applies.
        n_frames: number of frames used.
        sigma_intensity: standard uncertainty of ``intensity``.
        n_bins: B.
        dof: degrees of freedom of ``chi2_red``.
        noise: ``"poisson"`` or ``"gaussian"``.
        covariance: covariance matrix of (M, u, v), or of (M, v) when u is not identifiable.
        note: caveats for the reader of the result (empty when none).
        chi2_shape_red, dof_shape: see below.
        u_sigma_bound: Cramér–Rao σ of u for these data (analog: from the frames' scatter),
            on which the decision to fit u was made (fitted when < :data:`U_SIGMA_MAX`).
        emission_z: normal-equivalent score test of "no emission": the total counts (analog:
            the mean level) against the dark, under the hypothesis that there is no signal,
            with the dark's own σ. z = Φ⁻¹(1 − p), p the one-sided p-value (exact Poisson
            tail, mixed over the dark's uncertainty, in counting mode; Student t over the
            frames in analog mode, at n_frames − 1 degrees of freedom even with a
            ``dark_sigma``, which keeps the rate), capped near ±37.5. ``emission_z ≥ EMISSION_Z_MIN`` (5)
            has a false-alarm rate of 2.9e-7 on pure dark. It is computed even when the
            fitted M is not positive.
        emission_p: the p-value of ``emission_z``.
        dof_sigma: degrees of freedom of ``sigma_g`` (and of the covariance): inf in counting
            mode (σ from the Fisher information); in analog mode n_frames − 1 (more with a
            ``dark_sigma``, Welch–Satterthwaite), so (g − g_true)/σ_g follows Student's t.
            See :meth:`coverage_factor`.
        empty_bins: analog mode, bins that held no sample (NaN in every frame) and were left
            out of the fit.
        frames_dropped: analog mode, frames left out because a bin that other frames filled
            was empty in them.
    """

    g_lum: float
    sigma_g: float
    intensity: float
    i_left: float
    i_right: float
    linear: float
    sigma_linear: float
    chi2_red: float
    n_frames: int
    sigma_intensity: float = float("nan")
    n_bins: int = 0
    dof: int = 0
    noise: str = "poisson"
    covariance: np.ndarray = field(default_factory=lambda: np.full((3, 3), np.nan), repr=False)
    note: str = ""
    chi2_shape_red: float = float("nan")
    dof_shape: int = 0
    """Reduced χ² of the bin *shape* with every frame's total free (multinomial), over
    ``dof_shape`` = n_frames·(B−1) − (p−1) degrees of freedom: blind to common-mode
    flicker, ≈ 1 when the modulation model (A0, φ0, bins) holds and g and u are steady.
    In analog mode: the χ²(dof_shape)-equivalent of Hotelling's T² of the mean bin profile's
    residual (an exact test under Gaussian noise of any covariance between bins) from
    4·(B − p) frames on; with fewer, the residual scatter is pooled over bins (exact for
    independent bins of equal noise), dof_shape = B − p."""
    u_sigma_bound: float = float("nan")
    emission_z: float = float("nan")
    emission_p: float = float("nan")
    dof_sigma: float = float("inf")
    empty_bins: tuple[int, ...] = ()
    frames_dropped: int = 0

    @property
    def delta_i(self) -> float:
        """ΔI = I_L − I_R = M·v, same units as ``intensity``."""
        return self.i_left - self.i_right

    @property
    def snr(self) -> float:
        """intensity / sigma_intensity, a Wald statistic of the fitted M (its σ carries the
        signal's own variance and, with u fitted, the M–u correlation). Decide "no emission"
        with :attr:`emission_z`, whose false-alarm rate is documented."""
        return self.intensity / self.sigma_intensity if self.sigma_intensity > 0 else float("nan")

    def coverage_factor(self, z: float = 1.0) -> float:
        """Factor k so that ±k·z·σ covers what ±z·σ of a normal distribution would.

        With ``dof_sigma`` finite (analog mode), σ is itself estimated from the frames and
        (g − g_true)/σ_g follows Student's t: k = t_{dof}(Φ(z))/z, e.g. 6.4 at z = 3 with 3
        frames, 1.05 with 50. 1 in counting mode.
        """
        if not z > 0:
            raise ValueError(f"z must be > 0, got {z!r}")
        if not np.isfinite(self.dof_sigma):
            return 1.0
        if not self.dof_sigma > 0:
            return float("nan")
        p = 1.0 - _stats.upper_tail_from_z(z)
        return _stats.t_quantile(p, self.dof_sigma) / z


def estimate(
    counts: np.ndarray,
    retardation: float,
    *,
    phase_offset: float = 0.0,
    dark: float | np.ndarray = 0.0,
    dark_sigma: float | np.ndarray = 0.0,
    dead_time: float = 0.0,
    frame_time: float | None = None,
    noise: Literal["poisson", "gaussian"] = "poisson",
    bin_span: float = 1.0,
    sampled_phases: SampledPhases | None = None,
    shape_only: np.ndarray | None = None,
    dark_noise: float = float("nan"),
    dark_noise_dof: float = float("inf"),
) -> Estimate:
    """Estimate g_lum, I_L, I_R and linear polarization from phase-binned frames.

    Args:
        counts: shape (B,) or (n_frames, B). Photon counts per phase bin (``"poisson"``), or
            per-frame mean signals per bin from the analog path (``"gaussian"``; NaN marks a
            bin that got no sample, e.g. ``sums / n`` from :func:`phase_bin`). Bin k spans
            θ ∈ [2πk/B, 2π(k+1)/B) from the PEM reference rising edge.
        retardation: A0, peak retardation in rad, 0 < A0 ≤ π.
        phase_offset: φ0 in rad; δ(θ) = A0·sin(θ − φ0).
        dark: expected dark counts (or dark signal level) per bin per frame; scalar or (B,).
        dark_sigma: standard uncertainty of ``dark`` (one measurement, so the same error in
            every frame): a scalar is an error common to all bins (a uniform dark level), a
            (B,) array independent errors per bin. It is added to the covariance.
        dead_time: non-paralyzable dead time τ in s (counting only). Needs ``frame_time``.
            Each frame's bin k is corrected as c/(1 − c·τ/t_k), t_k = frame_time/B, and the
            variance of the corrected counts, μ_k·(1 + r_k·τ), enters σ and χ².
        frame_time: duration of one frame in s (K PEM periods).
        noise: ``"poisson"`` for photon counts, ``"gaussian"`` for analog signals (needs
            n_frames ≥ 2 usable frames; σ from the frame-to-frame scatter, with
            ``dof_sigma`` = n_frames − 1 degrees of freedom).
        bin_span: fraction s of the PEM period that the B bins cover, in (0, 1]; bin k then
            spans θ ∈ [2πk·s/B, 2π(k+1)·s/B) (a counter that leaves a gap before the next
            reference edge reports s < 1 in its COUNTS frames). ``intensity`` stays the
            signal of a whole period.
        sampled_phases: analog mode only: the phases at which the samples of each bin were
            taken (from :func:`phase_bin` with ``sampled_phases=True``). The fit then uses
            the means of sin δ and cos δ over those phases instead of the bin integrals,
            which is the right model when the ADC rate is (nearly) a multiple of the PEM
            frequency and the samples sit at fixed phases. Per-frame moments must have one
            row per row of ``counts``.
        shape_only: counting only, (n_frames,) booleans: the *planning* frames, whose totals
            decided how long the point was measured (an adaptive dwell). Their bin shape
            enters the fit, their total does not inform M (:mod:`cplscope.demod.planned`), so
            the stopping rule cannot bias g. Ignored (the plain fit) when it marks no frame
            or every frame.
        dark_noise: analog only: the σ of one frame's mean dark level (frames as long as
            these), known from a dark measurement of ``dark_noise_dof`` + 1 frames. Without a
            signal the point's frames have that noise, so the emission test compares the
            mean level with the dark against it (Student t at ``dark_noise_dof``) instead of
            the point's own few frames: it keeps its false-alarm rate and gains the power a
            t test at F − 1 degrees of freedom lacks with 3 frames. NaN: the frames' own
            scatter.

    Returns:
        An :class:`Estimate`.

    Raises:
        ValueError: on a wrong shape, B < 2, negative or non-finite values (NaN is allowed
            for empty bins in analog mode), a retardation outside (0, π], bad
            dark/dead-time/frame-time values, fewer than 2 usable analog frames, or a layout
            that carries no information on g.
    """
    frames = _as_frames(counts)
    n_frames, n_bins = frames.shape
    a0, phi0 = _check_angles(retardation, phase_offset)
    if noise not in ("poisson", "gaussian"):
        raise ValueError(f"noise must be 'poisson' or 'gaussian', not {noise!r}")
    dark_k = _as_dark(dark, n_bins, noise)
    dark_sd = np.asarray(dark_sigma, dtype=np.float64)
    if dark_sd.ndim > 1 or (dark_sd.ndim == 1 and dark_sd.shape != (n_bins,)) or not np.all(
            np.isfinite(dark_sd)) or np.any(dark_sd < 0):
        raise ValueError(f"dark_sigma must be a finite scalar or ({n_bins},) array ≥ 0")
    span = float(bin_span)
    if not np.isfinite(span) or not 0.0 < span <= 1.0:
        raise ValueError("bin_span must be in (0, 1], the fraction of the PEM period the bins "
                         f"cover, got {bin_span!r}")
    dead_ratio = _dead_ratio(dead_time, frame_time, n_bins, noise, span)
    if sampled_phases is not None:
        if noise != "gaussian":
            raise ValueError("sampled_phases describes ADC samples: use it with "
                             "noise='gaussian'; photon counters integrate over the whole bin")
        if not isinstance(sampled_phases, SampledPhases):
            raise ValueError("sampled_phases must be a SampledPhases (from phase_bin(..., "
                             f"sampled_phases=True)), got {type(sampled_phases).__name__}")
        shape = sampled_phases.moments.shape
        if shape[-2] != n_bins or (len(shape) == 3 and shape[0] != n_frames):
            raise ValueError(f"sampled_phases has moments of shape {shape[:-1]}, counts has "
                             f"shape {frames.shape}: they must come from the same phase_bin call")
        if span != 1.0:
            raise ValueError("bin_span does not apply with sampled_phases, which place every "
                             "sample at its own phase")

    keep_bins = keep_frames = None
    if noise == "gaussian":
        if n_frames < 2:
            raise ValueError("noise='gaussian' needs at least 2 frames to measure the "
                             f"frame-to-frame scatter; got counts of shape {frames.shape}")
        frames, keep_bins, keep_frames = _usable_analog(frames)
    if sampled_phases is not None:
        layout = sampled_phases.layout(a0, phi0, None if sampled_phases.moments.ndim == 2
                                       else keep_frames)
        if keep_bins is not None:
            layout = subset(layout, keep_bins)
        if not (np.all(np.isfinite(layout.c)) and np.all(np.isfinite(layout.s))):
            raise ValueError("sampled_phases has no sample in a bin that the data fill: they "
                             "must come from the same phase_bin call as the sums")
    else:
        layout = bin_layout(n_bins, a0, phi0, span)
        if keep_bins is not None:
            layout = subset(layout, keep_bins)
    if keep_bins is not None:
        dark_k = dark_k[keep_bins]
        if dark_sd.ndim == 1:
            dark_sd = dark_sd[keep_bins]
    if not np.any(np.abs(layout.s) > 1e-12 * np.abs(layout.w).max()):
        raise ValueError(
            f"with B={n_bins} bins and phase_offset={phi0:.6g} rad every bin sees the same "
            "sin δ, so the counts carry no information on g_lum: shift the bins (phase_offset) "
            "or use more bins")
    planning = _planning_mask(shape_only, n_frames, noise)
    if noise == "poisson":
        sums, sumsq = _moments(frames, dead_ratio)
        return _poisson_fit(frames, sums, sumsq, n_frames, dark_k, layout, dead_time,
                            frame_time, span, dead_ratio, dark_sd, planning)
    empty = tuple(int(k) for k in np.flatnonzero(~keep_bins)) if keep_bins is not None else ()
    dropped = int(n_frames - frames.shape[0])
    note = ""
    if empty and sampled_phases is None:
        note = (f"{len(empty)} of {n_bins} bins got no sample (the ADC rate is locked to the "
                "PEM): fitted with the bin integrals, which is biased for samples at fixed "
                "phases; pass sampled_phases (phase_bin(..., sampled_phases=True))")
    if dropped:
        note = "; ".join(filter(None, [note, f"{dropped} frames with an empty bin left out"]))
    return _gaussian_fit(frames, dark_k, layout, dark_sd, empty, dropped, note,
                         (float(dark_noise), float(dark_noise_dof)))


def _usable_analog(frames: np.ndarray):
    """Drop the bins that are NaN (empty) in every frame, then the frames that still have
    an empty bin. Returns (frames, keep_bins, keep_frames); the masks are None when nothing
    was dropped."""
    x = frames.astype(np.float64, copy=False)
    nan = np.isnan(x)
    bad = np.isinf(x)
    if bad.any():
        f, k = np.argwhere(bad)[0]
        raise ValueError(f"counts must be finite (NaN marks an empty bin); frame {f}, bin {k} "
                         f"holds {x[f, k]}")
    if not nan.any():
        return frames, None, None
    keep_bins = ~nan.all(axis=0)
    keep_frames = ~nan[:, keep_bins].any(axis=1)
    n_used = int(keep_frames.sum())
    if n_used < 2:
        raise ValueError(
            f"only {n_used} of {x.shape[0]} frames have a sample in every bin that is filled "
            "at all: use longer frames (more PEM periods per frame) or fewer bins")
    return np.ascontiguousarray(x[np.ix_(keep_frames, keep_bins)]), keep_bins, keep_frames


# --- input checks -----------------------------------------------------------------------

def _as_frames(counts) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.dtype == object or arr.dtype.kind not in "uif":
        raise ValueError(f"counts must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    elif arr.ndim != 2:
        raise ValueError(f"counts must have shape (B,) or (n_frames, B), got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"need at least B=2 phase bins, got B={arr.shape[1]}")
    if arr.shape[0] < 1:
        raise ValueError("counts holds no frames (shape (0, B))")
    if arr.dtype not in _KERNEL_DTYPES:
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def _check_angles(retardation, phase_offset) -> tuple[float, float]:
    a0 = float(retardation)
    if not np.isfinite(a0) or not 0.0 < a0 <= np.pi:
        raise ValueError(f"retardation A0 must be in (0, π] rad, got {retardation!r}; "
                         "a quarter-wave setting is π/2")
    phi0 = float(phase_offset)
    if not np.isfinite(phi0):
        raise ValueError(f"phase_offset must be finite, got {phase_offset!r}")
    return a0, float(np.remainder(phi0, 2.0 * np.pi))


def _as_dark(dark, n_bins: int, noise: str) -> np.ndarray:
    d = np.asarray(dark, dtype=np.float64)
    if d.ndim == 0:
        d = np.full(n_bins, float(d))
    elif d.shape != (n_bins,):
        raise ValueError(f"dark must be a scalar or have shape ({n_bins},), got {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("dark must be finite")
    if noise == "poisson" and np.any(d < 0):
        raise ValueError("dark must be ≥ 0: expected dark counts per bin per frame")
    return d


def _planning_mask(shape_only, n_frames: int, noise: str) -> np.ndarray | None:
    """The planning frames as a boolean mask, or None when the plain fit applies."""
    if shape_only is None:
        return None
    if noise != "poisson":
        raise ValueError("shape_only applies to photon counting (noise='poisson')")
    mask = np.asarray(shape_only)
    if mask.dtype != np.bool_ or mask.shape != (n_frames,):
        raise ValueError(f"shape_only must be ({n_frames},) booleans, one per frame; got "
                         f"{mask.dtype} of shape {mask.shape}")
    return mask if 0 < int(mask.sum()) < n_frames else None


def _dead_ratio(dead_time, frame_time, n_bins: int, noise: str, span: float) -> np.ndarray:
    tau = float(dead_time)
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"dead_time must be a finite number of seconds ≥ 0, got {dead_time!r}")
    if tau == 0.0:
        return np.empty(0)
    if noise != "poisson":
        raise ValueError("dead_time applies to photon counting only; use noise='poisson'")
    if frame_time is None:
        raise ValueError("dead_time needs frame_time, the duration of one frame in s "
                         "(K PEM periods), to know each bin's live time")
    t = float(frame_time)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"frame_time must be a positive number of seconds, got {frame_time!r}")
    return np.full(n_bins, dead_time_ratio(tau, t, n_bins, span))


def _moments(frames: np.ndarray, dead_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin sums and sums of squares of photon counts (dead-time corrected), checked."""
    sums, sumsq, status, bad = _estimate.frame_moments(frames, dead_ratio)
    if status != _estimate.OK:
        f, k = divmod(int(bad), frames.shape[1])
        value = frames[f, k]
        if status == _estimate.NEGATIVE:
            raise ValueError(f"counts must be ≥ 0; frame {f}, bin {k} holds {value}")
        if status == _estimate.NON_FINITE:
            raise ValueError(f"counts must be finite; frame {f}, bin {k} holds {value}")
        raise ValueError(
            f"frame {f}, bin {k} holds {value} counts, at or above the dead-time limit of "
            "its live time: check dead_time and frame_time (s), or the detector saturated")
    return sums, sumsq


# --- fits --------------------------------------------------------------------------------

def _u_sigma_bound(x3: np.ndarray, inv_var: np.ndarray, m_hat: float) -> float:
    """Cramér–Rao σ of u at u = 0 for a design x3 = [w, C, S] (columns scaled as in the fit)
    and data variances 1/inv_var: σ_u² = 1 / (M²·‖r‖²_W), r the part of the C column that
    the w and S columns cannot explain (weighted least squares residual, formed explicitly:
    w and S are nearly orthogonal, so the 2×2 solve is well conditioned, and near-degenerate
    layouts give a large σ_u rather than rounding noise)."""
    if not (m_hat > 0 and np.isfinite(m_hat)):
        return float("inf")
    sw = np.sqrt(inv_var)
    other = x3[:, [0, 2]] * sw[:, None]
    col = x3[:, 1] * sw
    beta = np.linalg.solve(other.T @ other, other.T @ col)
    r = col - other @ beta
    norm2 = float(r @ r)
    # numerically rank-deficient: the C column is a combination of the others to rounding
    if not norm2 > (1e3 * np.finfo(float).eps) ** 2 * float(col @ col):
        return float("inf")
    return float(1.0 / (m_hat * np.sqrt(norm2)))


def _dark_covariance(proj: np.ndarray, dark_sd: np.ndarray, scale: float) -> np.ndarray | float:
    """Covariance that an error of the dark level adds to θ = proj @ (data − dark)."""
    if not np.any(dark_sd):
        return 0.0
    if dark_sd.ndim == 0:
        col = proj.sum(axis=1) * float(dark_sd) * scale
        return np.outer(col, col)
    scaled = proj * (dark_sd * scale)
    return scaled @ scaled.T


def _dark_total_sd(dark_sd: np.ndarray, n_bins: int, scale: float) -> float:
    """σ of the dark summed over bins (times ``scale``): a common error adds up over bins."""
    if dark_sd.ndim == 0:
        return float(dark_sd) * n_bins * scale
    return float(np.sqrt(np.sum(dark_sd**2))) * scale


#: |z| beyond which the skewness correction of the large-dark emission score is not applied.
_CF_Z_MAX = 8.0
#: |emission_z| cap: the exact tails cannot resolve p-values beyond it (z ≈ 37.5).
_Z_CAP = 37.5


def _poisson_emission(n_total: float, dark_total: float, dark_sd: float) -> tuple[float, float]:
    """(z, p) of the score test of N against the dark D ± σ_D under "no signal".

    H0: N ~ Poisson(λ), λ the dark. With σ_D = 0, p = P(N' ≥ N | λ = D), the exact Poisson
    tail; with σ_D > 0, λ ~ Gamma(mean D, sd σ_D), so that N' is negative binomial and
    p = I_{1/(1+β)}(N, α), α = D²/σ_D², β = D/σ_D². Above 1e4 dark counts: the normal score
    (N − D)/√(D + σ_D²) corrected for the skewness γ of that distribution (Cornish–Fisher,
    z − γ(z² − 1)/6)."""
    n, d, sd = float(n_total), float(dark_total), float(dark_sd)
    if d <= 0.0 and sd <= 0.0:
        p = 1.0 if n <= 0.0 else 0.0
        return _stats.z_from_upper_tail(p), p
    d = max(d, 1e-300)
    var = d + sd * sd
    if d > _EXACT_TAIL_MAX:
        z = (n - d) / np.sqrt(var)
        gamma = (d + 3.0 * sd**2 + 2.0 * sd**4 / d) / var**1.5
        # The Cornish–Fisher term is a small-|z| expansion: it is monotone in z only while
        # γ·|z| < 3, and far out (a bright point) it would turn a huge z negative. Apply it
        # where it is valid (it matters near the decision threshold), keep the normal score
        # elsewhere, and cap both as the exact tails are capped.
        if abs(z) <= _CF_Z_MAX and gamma * abs(z) < 1.5:
            z = z - gamma * (z * z - 1.0) / 6.0
        z = float(np.clip(z, -_Z_CAP, _Z_CAP))
        return z, _stats.upper_tail_from_z(z)
    if sd == 0.0:
        p = _stats.poisson_upper_tail(n, d)
    elif n <= 0.0:
        p = 1.0
    else:
        alpha, beta = d * d / (sd * sd), d / (sd * sd)
        p = _stats.betainc(n, alpha, 1.0 / (1.0 + beta))
    return _stats.z_from_upper_tail(p), p


def _poisson_fit(frames, sums, sumsq, n_frames, dark_k, layout, dead_time, frame_time,
                 span, dead_ratio, dark_sd, planning=None) -> Estimate:
    dark_total = n_frames * dark_k
    y = sums - dark_total
    x3 = layout.design
    u_bound = _u_sigma_bound(x3, 1.0 / np.maximum(sums, 1.0), float(y.sum() / x3[:, 0].sum()))
    fit_u = layout.u_identifiable and u_bound < U_SIGMA_MAX
    x = x3 if fit_u else x3[:, [0, 2]]
    n_par = x.shape[1]
    tau = float(dead_time)
    bin_time_total = (n_frames * float(frame_time) * span / len(sums)) if tau > 0 else 1.0

    weights = 1.0 / np.maximum(sums, 1.0)
    theta = np.zeros(n_par)
    mu = sums
    var_factor = np.ones_like(sums)
    for _ in range(_MAX_ITER):
        xtw = x.T * weights
        new = np.linalg.solve(xtw @ x, xtw @ y)
        mu = np.maximum(x @ new + dark_total, 1e-9 * max(sums.max(), 1.0))
        if tau > 0:
            var_factor = 1.0 + tau * mu / bin_time_total
        weights = 1.0 / (mu * var_factor)
        done = np.all(np.abs(new - theta) <= _RTOL * (np.abs(new).max() + 1e-300))
        theta = new
        if done:
            break
    fisher = (x.T * weights) @ x
    cov_lin = np.linalg.inv(fisher)
    cov_lin = cov_lin + _dark_covariance(cov_lin @ (x.T * weights), dark_sd, n_frames)
    if planning is not None:
        sums_p = _moments(frames[planning], dead_ratio)[0]
        n_p = int(planning.sum())
        rate_factor = tau / (float(frame_time) * span / len(sums)) if tau > 0 else 0.0
        theta, cov_lin = planned_fit(x, sums - sums_p, n_frames - n_p, sums_p, n_p, dark_k,
                                     theta / n_frames, rate_factor, dark_sd)

    m_frame = mu / n_frames
    chi2 = float(np.sum((sumsq - 2.0 * m_frame * sums + n_frames * m_frame**2)
                        / (m_frame * var_factor)))
    dof = n_frames * len(sums) - n_par
    shape = _shape_chi2(frames, dead_ratio, mu / mu.sum(), var_factor, n_par)
    z, p = _poisson_emission(float(sums.sum()), float(dark_total.sum()),
                             _dark_total_sd(dark_sd, len(sums), n_frames))
    extra = dict(u_sigma_bound=u_bound, emission_z=z, emission_p=p)
    return _result(theta, cov_lin, layout, fit_u, chi2, dof, n_frames, "poisson", shape,
                   extra)


def _shape_chi2(frames, dead_ratio, p, var_factor, n_par) -> tuple[float, int]:
    """Σ_f Σ_k (x_fk − T_f·p_k)² / (T_f·p_k·vf_k) over frames with T_f > 0."""
    x = apply_dead_time(frames, dead_ratio) if len(dead_ratio) else frames.astype(np.float64)
    totals = x.sum(axis=1)
    keep = totals > 0
    if not np.all(keep):
        x, totals = x[keep], totals[keep]
    n = x.shape[0]
    if n == 0:
        return float("nan"), 0
    sq_over_t = np.einsum("fk,fk,f->k", x, x, 1.0 / totals)
    chi2 = float(np.sum((sq_over_t - 2.0 * p * x.sum(axis=0) + p**2 * totals.sum())
                        / (p * var_factor)))
    return chi2, n * (x.shape[1] - 1) - (n_par - 1)


def _gaussian_fit(frames, dark_k, layout: BinLayout, dark_sd, empty: tuple[int, ...],
                  dropped: int, note: str,
                  dark_noise: tuple[float, float] = (float("nan"), float("inf"))) -> Estimate:
    """Least squares on the mean bin profile; σ, χ² and the emission test from the frames.

    The coefficients do not depend on the data (ordinary least squares), so the fit applied
    to each frame gives independent, identically distributed parameter vectors whose sample
    covariance / F is the covariance of the fit with F − 1 degrees of freedom, common-mode
    flicker included. Weights estimated from the same few frames would make σ too small.
    """
    y = frames.astype(np.float64, copy=False) - dark_k
    n_frames, n_bins = y.shape
    x3 = layout.design / layout.w[:, None]       # mean level = M·(1 + u·B·C_k + v·B·S_k)
    ybar = y.mean(axis=0)
    m_hat = float(ybar.mean() / x3[:, 0].mean())
    # noise of one frame per residual direction of the u = 0 model, pooled over directions
    q2 = np.linalg.qr(x3[:, [0, 2]], mode="complete")[0][:, 2:]
    dev2 = (y - ybar) @ q2
    pooled = float(np.sum(dev2**2) / max(dev2.size - dev2.shape[1], 1))
    u_bound = _u_sigma_bound(x3, np.full(n_bins, n_frames / max(pooled, 1e-300)), m_hat)
    fit_u = layout.u_identifiable and u_bound < U_SIGMA_MAX and n_bins > 3
    x = x3 if fit_u else x3[:, [0, 2]]
    n_par = x.shape[1]
    qf, rf = np.linalg.qr(x, mode="complete")
    q_fit, q_res = qf[:, :n_par], qf[:, n_par:]
    proj = np.linalg.solve(rf[:n_par], q_fit.T)    # (n_par, B): θ = proj @ y
    per_frame = y @ proj.T                         # (F, n_par)
    theta = per_frame.mean(axis=0)
    dev = per_frame - theta
    cov_frames = (dev.T @ dev) / (n_frames - 1) / n_frames
    cov_dark = _dark_covariance(proj, dark_sd, 1.0)
    cov_lin = cov_frames + cov_dark

    shape, total = _gaussian_chi2(y, x @ theta, q_res)
    # emission: the mean level against the dark, Student t over the frames
    level = y.mean(axis=1)
    var_dark = _dark_total_sd(dark_sd, n_bins, 1.0 / n_bins) ** 2
    noise, noise_dof = dark_noise
    if np.isfinite(noise) and noise > 0 and noise_dof >= 1:
        # without a signal the frames have the dark's noise, known from its many frames
        z, p = _t_score(float(level.mean()), noise * noise / n_frames, var_dark, noise_dof)
    else:
        z, p = _t_score(float(level.mean()), float(level.var(ddof=1) / n_frames), var_dark,
                        n_frames - 1)
    extra = dict(u_sigma_bound=u_bound, emission_z=z, emission_p=p, empty_bins=empty,
                 frames_dropped=dropped, _cov_parts=(cov_frames, cov_dark, n_frames - 1))
    return _result(theta, cov_lin, layout, fit_u, total[0], total[1], n_frames, "gaussian",
                   shape, extra, note)


def _t_score(mean: float, var_frames: float, var_known: float, dof: float
             ) -> tuple[float, float]:
    """(z, p) of a one-sided t test of mean > 0 with variance var_frames (estimated with
    ``dof`` degrees of freedom) + var_known."""
    var = var_frames + var_known
    if not var > 0:
        p = 0.0 if mean > 0 else 1.0
        return _stats.z_from_upper_tail(p), p
    # dof of the frames alone, not Welch–Satterthwaite: with a known part in the variance
    # the t tail at dof is an upper bound of the true one, so the false-alarm rate holds
    # even at 2 frames (Welch–Satterthwaite overshoots it there).
    p = _stats.t_upper_tail(mean / np.sqrt(var), dof)
    return _stats.z_from_upper_tail(p), p


def _welch_dof(var_estimated: float, var_known: float, dof: int) -> float:
    """Welch–Satterthwaite degrees of freedom of var_estimated (dof) + var_known (exact)."""
    if not var_estimated > 0:
        return float("inf")
    return float(dof * ((var_estimated + var_known) / var_estimated) ** 2)


def _gaussian_chi2(y: np.ndarray, fitted: np.ndarray, q_res: np.ndarray
                   ) -> tuple[tuple[float, int], tuple[float, int]]:
    """Shape and total χ²/dof of the analog fit, each the χ²(dof)-equivalent of an exact
    test, so that one χ² rule decides on both.

    shape: the mean profile's components z̄ on the q = B − p residual directions, with
    Hotelling's T² = F·z̄ᵀS⁻¹z̄ (S their covariance over frames; (F − q)/(q(F − 1))·T² ~
    F(q, F − q)) when F ≥ 4q, else with the scatter pooled over directions
    (F·|z̄|²/q / s² ~ F(q, q(F − 1)) for independent bins of equal noise). Common-mode
    flicker scales the fitted profile, which has no residual component: it cannot raise it.

    total: the shape test plus the frame-to-frame scatter of the fitted profile's direction
    against the pooled residual scatter (~ F(F − 1, q(F − 1)) when the bins' noise is
    independent: common-mode flicker raises it, F − 1 more degrees of freedom).
    """
    n_frames = y.shape[0]
    q = q_res.shape[1]
    if q == 0 or n_frames < 2:
        nan = (float("nan"), 0)
        return nan, nan
    z = y @ q_res
    zbar = z.mean(axis=0)
    zdev = z - zbar
    pooled = float(np.sum(zdev**2) / (q * (n_frames - 1)))
    if not pooled > 0:
        nan = (float("nan"), 0)
        return nan, nan
    if n_frames >= 4 * q:   # enough frames for the full covariance to keep the test's power
        cov = zdev.T @ zdev / (n_frames - 1)
        t2 = n_frames * float(zbar @ np.linalg.solve(cov, zbar))
        p_shape = _stats.f_upper_tail(t2 * (n_frames - q) / (q * (n_frames - 1)), q,
                                      n_frames - q)
    else:
        stat = n_frames * float(zbar @ zbar) / q / pooled
        p_shape = _stats.f_upper_tail(stat, q, q * (n_frames - 1))
    shape = _stats.chi2_equivalent(p_shape, q)
    e = fitted / max(float(np.linalg.norm(fitted)), 1e-300)
    along = y @ e
    p_common = _stats.f_upper_tail(float(along.var(ddof=1)) / pooled, n_frames - 1,
                                   q * (n_frames - 1))
    common = _stats.chi2_equivalent(p_common, n_frames - 1)
    dof = q + n_frames - 1
    total = (shape * q + common * (n_frames - 1)) / dof
    return (shape * q, q), (total * dof, dof)


def _result(theta, cov_lin, layout: BinLayout, fit_u: bool, chi2, dof, n_frames, noise,
            shape: tuple[float, int], extra: dict, note: str = "") -> Estimate:
    if fit_u:
        a, b, c = theta
    else:
        (a, c), b = theta, 0.0
    n_par = len(theta)
    chi2_red = chi2 / dof if dof > 0 else float("nan")
    chi2_shape, dof_shape = shape
    shape_red = chi2_shape / dof_shape if dof_shape > 0 else float("nan")
    cov_parts = extra.pop("_cov_parts", None)
    if not fit_u:
        j0 = float(layout.c.sum() / layout.w.sum())
        bound = extra.get("u_sigma_bound", float("inf"))
        why = ("this bin layout cannot tell u from M" if not layout.u_identifiable or
               not np.isfinite(bound) else
               f"the data constrain it only to σ_u = {bound:.2g} (fitted when < {U_SIGMA_MAX:g})")
        note = "; ".join(filter(None, [note, (
            f"linear polarization is not identifiable ({why}): fitted with u = 0; a real u "
            f"would scale intensity by (1 + u·J0(A0)) = (1 + {j0:.4f}·u) and g_lum by its "
            "inverse")]))
    sigma_m = float(np.sqrt(cov_lin[0, 0]))
    common = dict(n_bins=len(layout.w), dof=dof, noise=noise, chi2_shape_red=shape_red,
                  dof_shape=dof_shape, **extra)
    if not a > 0:
        nan = float("nan")
        note = "; ".join(filter(None, [note, "no signal above dark: g_lum undefined"]))
        return Estimate(nan, nan, float(a), nan, nan, nan, nan, chi2_red, n_frames,
                        sigma_m, covariance=np.full((n_par, n_par), np.nan), note=note,
                        dof_sigma=float("nan") if cov_parts else float("inf"), **common)
    # Jacobian of (M, u, v) = (a, b/a, c/a) with respect to the linear parameters.
    if fit_u:
        jac = np.array([[1.0, 0.0, 0.0],
                        [-b / a**2, 1.0 / a, 0.0],
                        [-c / a**2, 0.0, 1.0 / a]])
    else:
        jac = np.array([[1.0, 0.0], [-c / a**2, 1.0 / a]])
    cov = jac @ cov_lin @ jac.T
    # v = c/a is a ratio: E[ĉ/â] = v − Cov(â, v̂)/a + O(n⁻²). Remove that second-order bias
    # (it reaches 0.05σ at g = 0.8 on dark-dominated points; docs/estimator.md), and the
    # same for u = b/a.
    v = c / a + cov[0, -1] / a
    sigma_v = float(np.sqrt(cov[-1, -1]))
    dof_sigma = float("inf")
    if cov_parts is not None:
        cov_frames, cov_dark, n_dof = cov_parts
        var_f = float((jac @ cov_frames @ jac.T)[-1, -1])
        var_d = float((jac @ np.broadcast_to(cov_dark, cov_frames.shape) @ jac.T)[-1, -1])
        dof_sigma = _welch_dof(var_f, var_d, n_dof)
    if fit_u:
        linear, sigma_linear = float(b / a + cov[0, 1] / a), float(np.sqrt(cov[1, 1]))
    else:
        linear = sigma_linear = float("nan")
    m = float(a)
    return Estimate(
        g_lum=float(2.0 * v), sigma_g=2.0 * sigma_v, intensity=m,
        i_left=float(m * (1.0 + v) / 2.0), i_right=float(m * (1.0 - v) / 2.0),
        linear=linear, sigma_linear=sigma_linear, chi2_red=chi2_red, n_frames=n_frames,
        sigma_intensity=sigma_m, covariance=cov, note=note, dof_sigma=dof_sigma, **common)
