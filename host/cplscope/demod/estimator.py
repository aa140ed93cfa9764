"""The binned g_lum estimator (measurement model, sections 3, 4 and 6).

Counts in B equal phase bins of the PEM period have expectation

    μ_k = M·(w_k + u·C_k + v·S_k) + d_k,

which is linear in (M, M·u, M·v). :func:`estimate` finds the Poisson maximum-likelihood
solution by iteratively reweighted least squares (Fisher scoring), so its σ reaches the
Cramér–Rao bound of the binned model, and reports g_lum = 2v with its σ from the Fisher
information. With ``noise="gaussian"`` (the analog ADC path) the same linear model is fitted
by weighted least squares and σ comes from the frame-to-frame scatter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .. import _estimate
from .bins import BinLayout, bin_layout

__all__ = ["Estimate", "estimate"]

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
            they cancel in g.
        n_frames: number of frames used.
        sigma_intensity: standard uncertainty of ``intensity``.
        n_bins: B.
        dof: degrees of freedom of ``chi2_red``.
        noise: ``"poisson"`` or ``"gaussian"``.
        covariance: covariance matrix of (M, u, v), or of (M, v) when u is not identifiable.
        note: caveats for the reader of the result (empty when none).
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
    flicker, ≈ 1 when the modulation model (A0, φ0, bins) holds and g and u are steady."""

    @property
    def delta_i(self) -> float:
        """ΔI = I_L − I_R = M·v, same units as ``intensity``."""
        return self.i_left - self.i_right

    @property
    def snr(self) -> float:
        """Significance of the emission: intensity / sigma_intensity."""
        return self.intensity / self.sigma_intensity if self.sigma_intensity > 0 else float("nan")


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
) -> Estimate:
    """Estimate g_lum, I_L, I_R and linear polarization from phase-binned frames.

    Args:
        counts: shape (B,) or (n_frames, B). Photon counts per phase bin (``"poisson"``), or
            per-frame mean signals per bin from the analog path (``"gaussian"``). Bin k spans
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
            n_frames ≥ 2; σ from the frame-to-frame scatter).
        bin_span: fraction s of the PEM period that the B bins cover, in (0, 1]; bin k then
            spans θ ∈ [2πk·s/B, 2π(k+1)·s/B) (a counter that leaves a gap before the next
            reference edge reports s < 1 in its COUNTS frames). ``intensity`` stays the
            signal of a whole period.

    Returns:
        An :class:`Estimate`.

    Raises:
        ValueError: on a wrong shape, B < 2, negative or non-finite values, a retardation
            outside (0, π], bad dark/dead-time/frame-time values, or a layout that carries no
            information on g.
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

    layout = bin_layout(n_bins, a0, phi0, span)
    if not np.any(np.abs(layout.s) > 1e-12 * np.abs(layout.w).max()):
        raise ValueError(
            f"with B={n_bins} bins and phase_offset={phi0:.6g} rad every bin sees the same "
            "sin δ, so the counts carry no information on g_lum: shift the bins (phase_offset) "
            "or use more bins")
    sums, sumsq = _moments(frames, dead_ratio, noise)
    if noise == "poisson":
        return _poisson_fit(frames, sums, sumsq, n_frames, dark_k, layout, dead_time, frame_time,
                            span, dead_ratio, dark_sd)
    if n_frames < 2:
        raise ValueError("noise='gaussian' needs at least 2 frames to measure the "
                         f"frame-to-frame scatter; got counts of shape {frames.shape}")
    return _gaussian_fit(frames, sums, sumsq, dark_k, layout, dark_sd)


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
    return np.full(n_bins, tau / (t * span / n_bins))


def _moments(frames: np.ndarray, dead_ratio: np.ndarray, noise: str):
    sums, sumsq, status, bad = _estimate.frame_moments(frames, dead_ratio)
    if status != _estimate.OK:
        f, k = divmod(int(bad), frames.shape[1])
        value = frames[f, k]
        if status == _estimate.NEGATIVE and noise == "poisson":
            raise ValueError(f"counts must be ≥ 0; frame {f}, bin {k} holds {value}")
        if status == _estimate.NON_FINITE:
            raise ValueError(f"counts must be finite; frame {f}, bin {k} holds {value}")
        if status == _estimate.DEAD_TIME_LIMIT:
            raise ValueError(
                f"frame {f}, bin {k} holds {value} counts, at or above the dead-time limit of "
                "its live time: check dead_time and frame_time (s), or the detector saturated")
        if noise == "gaussian":  # negative analog levels are legitimate (offsets)
            sums, sumsq, status, bad = _moments_signed(frames)
    return sums, sumsq


def _moments_signed(frames: np.ndarray):
    x = frames.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        f, k = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"counts must be finite; frame {f}, bin {k} holds {x[f, k]}")
    return x.sum(axis=0), np.einsum("fk,fk->k", x, x), _estimate.OK, -1


# --- fits --------------------------------------------------------------------------------

def _design(layout: BinLayout) -> np.ndarray:
    x = layout.design
    return x if layout.u_identifiable else x[:, [0, 2]]


def _dark_covariance(proj: np.ndarray, dark_sd: np.ndarray, scale: float) -> np.ndarray | float:
    """Covariance that an error of the dark level adds to θ = proj @ (data − dark)."""
    if not np.any(dark_sd):
        return 0.0
    if dark_sd.ndim == 0:
        col = proj.sum(axis=1) * float(dark_sd) * scale
        return np.outer(col, col)
    scaled = proj * (dark_sd * scale)
    return scaled @ scaled.T


def _poisson_fit(frames, sums, sumsq, n_frames, dark_k, layout, dead_time, frame_time,
                 span, dead_ratio, dark_sd) -> Estimate:
    x = _design(layout)
    n_par = x.shape[1]
    dark_total = n_frames * dark_k
    y = sums - dark_total
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

    m_frame = mu / n_frames
    chi2 = float(np.sum((sumsq - 2.0 * m_frame * sums + n_frames * m_frame**2)
                        / (m_frame * var_factor)))
    dof = n_frames * len(sums) - n_par
    shape = _shape_chi2(frames, dead_ratio, mu / mu.sum(), var_factor, n_par)
    return _result(theta, cov_lin, layout, chi2, dof, n_frames, "poisson", shape)


def _shape_chi2(frames, dead_ratio, p, var_factor, n_par) -> tuple[float, int]:
    """Σ_f Σ_k (x_fk − T_f·p_k)² / (T_f·p_k·vf_k) over frames with T_f > 0."""
    x = frames.astype(np.float64)
    if len(dead_ratio):
        x = x / (1.0 - x * dead_ratio)
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


def _gaussian_fit(frames, sums, sumsq, dark_k, layout, dark_sd) -> Estimate:
    n_frames, n_bins = frames.shape
    x = (n_bins / layout.w.sum()) * _design(layout)
    n_par = x.shape[1]
    mean = sums / n_frames - dark_k
    var = np.maximum((sumsq - sums**2 / n_frames) / (n_frames - 1), 0.0)
    floor = 1e-24 * max(float(np.max(np.abs(mean))) ** 2, 1e-300)
    var = np.maximum(var, floor)
    w = n_frames / var
    xtw = x.T * w
    proj = np.linalg.solve(xtw @ x, xtw)          # (n_par, B): θ = proj @ mean
    theta = proj @ mean
    per_frame = (frames - dark_k) @ proj.T         # (n_frames, n_par), linear so unbiased
    dev = per_frame - theta
    cov_lin = (dev.T @ dev) / (n_frames - 1) / n_frames
    cov_lin = cov_lin + _dark_covariance(proj, dark_sd, 1.0)
    resid = mean - x @ theta
    chi2 = float(np.sum(resid**2 * w))
    dof = n_bins - n_par
    return _result(theta, cov_lin, layout, chi2, dof, n_frames, "gaussian", (chi2, dof))


def _result(theta, cov_lin, layout: BinLayout, chi2, dof, n_frames, noise,
            shape: tuple[float, int]) -> Estimate:
    if layout.u_identifiable:
        a, b, c = theta
    else:
        (a, c), b = theta, 0.0
    n_par = len(theta)
    chi2_red = chi2 / dof if dof > 0 else float("nan")
    chi2_shape, dof_shape = shape
    shape_red = chi2_shape / dof_shape if dof_shape > 0 else float("nan")
    note = ""
    if not layout.u_identifiable:
        j0 = float(layout.c.sum())
        note = ("linear polarization is not identifiable with this bin layout: fitted with "
                f"u = 0; a real u would scale intensity by (1 + u·J0(A0)) = (1 + {j0:.4f}·u) "
                "and g_lum by its inverse")
    sigma_m = float(np.sqrt(cov_lin[0, 0]))
    if not a > 0:
        nan = float("nan")
        note = "; ".join(filter(None, [note, "no signal above dark: g_lum undefined"]))
        return Estimate(nan, nan, float(a), nan, nan, nan, nan, chi2_red, n_frames,
                        sigma_m, len(layout.w), dof, noise,
                        np.full((n_par, n_par), np.nan), note, shape_red, dof_shape)
    # Jacobian of (M, u, v) = (a, b/a, c/a) with respect to the linear parameters.
    if layout.u_identifiable:
        jac = np.array([[1.0, 0.0, 0.0],
                        [-b / a**2, 1.0 / a, 0.0],
                        [-c / a**2, 0.0, 1.0 / a]])
    else:
        jac = np.array([[1.0, 0.0], [-c / a**2, 1.0 / a]])
    cov = jac @ cov_lin @ jac.T
    v = c / a
    sigma_v = float(np.sqrt(cov[-1, -1]))
    if layout.u_identifiable:
        linear, sigma_linear = float(b / a), float(np.sqrt(cov[1, 1]))
    else:
        linear = sigma_linear = float("nan")
    m = float(a)
    return Estimate(
        g_lum=float(2.0 * v), sigma_g=2.0 * sigma_v, intensity=m,
        i_left=float(m * (1.0 + v) / 2.0), i_right=float(m * (1.0 - v) / 2.0),
        linear=linear, sigma_linear=sigma_linear, chi2_red=chi2_red, n_frames=n_frames,
        sigma_intensity=sigma_m, n_bins=len(layout.w), dof=dof, noise=noise,
        covariance=cov, note=note, chi2_shape_red=shape_red, dof_shape=dof_shape)
