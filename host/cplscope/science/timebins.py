"""Time-resolved CPL from gated frames with several contiguous gates (time bins): g(t) and
I(t) at one wavelength, and a fit of the decay with one or two exponential components, each
with its lifetime and g_lum (and their σ).

Gate j is open from δ_j to δ_j + w after each pulse. A component of lifetime τ and rate
density a·e^(−t/τ) just after a pulse (earlier pulses included, measurement model §11) puts

    N_j = a · τ · (e^(−δ_j/τ) − e^(−(δ_j + w)/τ)) / (1 − e^(−T_p/τ))

photons per pulse into gate j, of which (1 + g/2)/2 left- and (1 − g/2)/2 right-handed. The
fit matches each gate's rate I_j (counts per second of open gate) and its circular part
G_j = g_j · I_j.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .frames import GatedFrameSet
from .pipeline import PointContext, process_point
from .results import FlagRules, PointResult

__all__ = ["DecayComponent", "TimeBins", "fit_decay", "time_bins"]


@dataclass(frozen=True)
class TimeBins:
    """g(t) and I(t) of one point, one entry per gate.

    Attributes:
        delay_s, width_s: (N,) each gate's opening after the pulse and its width, s.
        period_s: the pulse period, s.
        rate_cps, sigma_rate_cps: (N,) I(t): the gate's photons per second of open gate
            (dark subtracted, dead time corrected), and its σ.
        g_lum, sigma_g: (N,) g(t) and its σ (NaN for a gate without frames or emission).
        results: the point pipeline's result of each gate (None without frames).
    """

    delay_s: np.ndarray
    width_s: np.ndarray
    period_s: float
    rate_cps: np.ndarray
    sigma_rate_cps: np.ndarray
    g_lum: np.ndarray
    sigma_g: np.ndarray
    results: tuple[PointResult | None, ...]

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per gate."""
        out = []
        for j in range(len(self.delay_s)):
            r = self.results[j]
            out.append({"gate": j, "delay_s": float(self.delay_s[j]),
                        "width_s": float(self.width_s[j]), "rate_cps": float(self.rate_cps[j]),
                        "sigma_rate_cps": float(self.sigma_rate_cps[j]),
                        "g_lum": float(self.g_lum[j]), "sigma_g": float(self.sigma_g[j]),
                        "flags": ";".join(r.flags) if r is not None else "no_frames"})
        return out


def time_bins(frames: GatedFrameSet, ctx: PointContext,
              rules: FlagRules = FlagRules()) -> TimeBins:
    """Each gate of ``frames`` through the point pipeline on its own (its frames, the
    point's context with the gate's own open share and the dark scaled to its frames), as
    g(t) and I(t). ``ctx`` is the point's, whose dark is per frame of the point's fit (whole
    turns through the gates, :meth:`GatedFrameSet.rotations`)."""
    n = frames.n_gates
    delay, width = frames.gate_times_s()
    period = (float(np.mean(frames.pulse_period_ns)) * 1e-9 if frames.n_frames
              else math.nan)
    rate, sigma_rate = np.full(n, math.nan), np.full(n, math.nan)
    g, sg = np.full(n, math.nan), np.full(n, math.nan)
    results: list[PointResult | None] = []
    # the point's dark is per frame of the point's fit: whole turns through the gates
    whole = frames.rotations()
    ref_s = whole.frame_time_s if whole.n_frames else frames.frame_time_s
    for j in range(n):
        sub = frames.rows(j)
        if sub.n_frames == 0:
            results.append(None)
            continue
        scale = sub.frame_time_s / ref_s
        c = replace(ctx, live_fraction=min(1.0, sub.live_fraction),
                    dark=scale_dark(ctx.dark, scale), dark_sigma=scale_dark(ctx.dark_sigma, scale))
        _, res = process_point(sub.counts, sub.frame_time_s, sub.span, sub.dwell_s, c,
                               frame_flags=[f.flags for f in sub.received], rules=rules)
        # the result's intensity is per second of the gate's frames: per second of open gate
        per_open_s = sub.dwell_s / float(sub.live_times_s.sum())
        rate[j], sigma_rate[j] = res.intensity * per_open_s, res.sigma_intensity * per_open_s
        g[j], sg[j] = res.g_lum, res.sigma_g
        results.append(res)
    return TimeBins(delay, width, period, rate, sigma_rate, g, sg, tuple(results))


def scale_dark(value: Any, scale: float) -> Any:
    """A scalar or (B,) dark (or its σ) times ``scale``, kept a scalar or an array."""
    a = np.asarray(value, dtype=np.float64) * scale
    return float(a) if a.ndim == 0 else a


@dataclass(frozen=True)
class DecayComponent:
    """One exponential component of a fitted decay.

    Attributes:
        lifetime_s, sigma_lifetime_s: τ and its σ, s.
        g_lum, sigma_g: the component's g_lum and its σ.
        rate_cps: its rate density just after a pulse, photons per second of open gate at
            t = 0 (the gates' units), and its σ in ``sigma_rate_cps``.
    """

    lifetime_s: float
    sigma_lifetime_s: float
    g_lum: float
    sigma_g: float
    rate_cps: float
    sigma_rate_cps: float


def _kernel(tau: np.ndarray, delay: np.ndarray, width: np.ndarray, period: float) -> np.ndarray:
    """(C, N): mean rate in gate j per unit rate density at t = 0, component c."""
    t = tau[:, None]
    return (t * (np.exp(-delay / t) - np.exp(-(delay + width) / t))
            / width / -np.expm1(-period / t))


def _residuals(p: np.ndarray, tb: TimeBins, ok: np.ndarray, n: int) -> np.ndarray:
    tau = np.exp(p[:n])
    a, g = p[n:2 * n], p[2 * n:]
    k = _kernel(tau, tb.delay_s[ok], tb.width_s[ok], tb.period_s)
    i_model = a @ k
    gi_model = (a * g) @ k
    i, gi, si, sgi = _data(tb, ok)
    return np.concatenate([(i_model - i) / si, (gi_model - gi) / sgi])


def _data(tb: TimeBins, ok: np.ndarray) -> tuple[np.ndarray, ...]:
    i, si = tb.rate_cps[ok], tb.sigma_rate_cps[ok]
    g, sg = tb.g_lum[ok], tb.sigma_g[ok]
    gi = g * i
    sgi = np.sqrt((i * sg) ** 2 + (g * si) ** 2)
    return i, gi, si, sgi


def _linear(tau: np.ndarray, tb: TimeBins, ok: np.ndarray) -> tuple[float, np.ndarray]:
    """χ² and the best (a, g) for fixed lifetimes (weighted linear least squares)."""
    k = _kernel(tau, tb.delay_s[ok], tb.width_s[ok], tb.period_s)
    i, gi, si, sgi = _data(tb, ok)
    a = np.linalg.lstsq((k / si).T, i / si, rcond=None)[0]
    b = np.linalg.lstsq((k / sgi).T, gi / sgi, rcond=None)[0]
    chi2 = float(np.sum(((a @ k - i) / si) ** 2) + np.sum(((b @ k - gi) / sgi) ** 2))
    g = np.where(a != 0, b / np.where(a != 0, a, 1.0), 0.0)
    return chi2, np.concatenate([a, g])


def fit_decay(tb: TimeBins, components: int = 1) -> tuple[list[DecayComponent], float]:
    """Fit ``components`` (1 or 2) exponentials to g(t) and I(t); returns the components
    (shortest lifetime first) and the reduced χ². σ from the fit's curvature (Gauss-Newton
    covariance, not scaled by χ²). Raises ValueError when there are too few usable gates
    (at least 2 per fitted parameter's pair) or the gates do not constrain the lifetimes."""
    if components not in (1, 2):
        raise ValueError(f"fit 1 or 2 components, got {components}")
    ok = (np.isfinite(tb.rate_cps) & np.isfinite(tb.g_lum) & (tb.sigma_rate_cps > 0)
          & (tb.sigma_g > 0))
    n_par = 3 * components
    if 2 * int(ok.sum()) <= n_par or not math.isfinite(tb.period_s):
        raise ValueError(f"a {components}-component decay needs more than {n_par // 2} gates "
                         f"with emission, got {int(ok.sum())}")
    d, w = tb.delay_s[ok], tb.width_s[ok]
    lo = math.log(max(float(np.min(w)) / 20, 1e-9))
    hi = math.log(max(float(np.max(d + w)) * 20, 10 * math.exp(lo)))
    grid = np.linspace(lo, hi, 120 if components == 1 else 40)
    best: tuple[float, np.ndarray] | None = None
    if components == 1:
        for x in grid:
            chi2, lin = _linear(np.array([math.exp(x)]), tb, ok)
            if best is None or chi2 < best[0]:
                best = (chi2, np.concatenate([[x], lin]))
    else:
        for i1, x1 in enumerate(grid):
            for x2 in grid[i1 + 1:]:
                chi2, lin = _linear(np.exp([x1, x2]), tb, ok)
                if best is None or chi2 < best[0]:
                    best = (chi2, np.concatenate([[x1, x2], lin]))
    assert best is not None
    p = best[1]
    # Levenberg-Marquardt on every parameter from the grid's best
    lam = 1e-3
    r = _residuals(p, tb, ok, components)
    for _ in range(60):
        jac = _jacobian(p, tb, ok, components)
        h = jac.T @ jac
        step = np.linalg.solve(h + lam * np.diag(np.diag(h) + 1e-12), -jac.T @ r)
        trial = p + step
        rt = _residuals(trial, tb, ok, components)
        if rt @ rt < r @ r:
            p, r, lam = trial, rt, lam / 3
            if np.max(np.abs(step)) < 1e-8:
                break
        else:
            lam *= 4
    jac = _jacobian(p, tb, ok, components)
    try:
        cov = np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        raise ValueError("the gates do not constrain the decay (singular fit): more or "
                         "longer time bins, or fewer components") from None
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    n = components
    out = [DecayComponent(lifetime_s=float(math.exp(p[c])),
                          sigma_lifetime_s=float(math.exp(p[c]) * sd[c]),
                          g_lum=float(p[2 * n + c]), sigma_g=float(sd[2 * n + c]),
                          rate_cps=float(p[n + c]), sigma_rate_cps=float(sd[n + c]))
           for c in range(n)]
    dof = 2 * int(ok.sum()) - n_par
    return sorted(out, key=lambda x: x.lifetime_s), float(r @ r) / dof


def _jacobian(p: np.ndarray, tb: TimeBins, ok: np.ndarray, n: int) -> np.ndarray:
    base = _residuals(p, tb, ok, n)
    jac = np.empty((base.size, p.size))
    for k in range(p.size):
        h = 1e-6 * max(1.0, abs(p[k]))
        q = p.copy()
        q[k] += h
        jac[:, k] = (_residuals(q, tb, ok, n) - base) / h
    return jac
