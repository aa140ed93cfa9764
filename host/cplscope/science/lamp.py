"""The lamp's drift during a CD scan: readings of the transmitted rate at one reference
wavelength, and a smooth model of the lamp's level between them (docs/cd.md, "Lamp drift").

A single-beam CD instrument measures the absorbance A = −log10(I/I_0) against a baseline
scan taken at another time; a lamp that drifts by 1 % between the two shifts A by 0.004,
far more than the photon noise of a long scan. Nothing in a point's own frames tells the
lamp from the sample, but the rate at a fixed wavelength, read again and again through the
same sample, follows the lamp alone. The scan engine takes such readings
(:class:`LampReading`) every ``every_s`` seconds (:class:`LampMonitor`); :class:`LampDrift`
fits them with a Gaussian process on a free straight line, ln L(t) = β₀ + β₁·t + f(t), f
with the squared-exponential covariance a²·exp(−(t − t')²/2ℓ²), the readings' Poisson noise
known, a and ℓ by maximum likelihood. Its posterior gives the lamp's level at every point
relative to the run's first reading, with a standard uncertainty that grows between
readings and where the lamp moves fast: each point's rate is divided by it and the σ of
both enter σ(A).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["LampDrift", "LampMonitor", "LampReading", "frame_times_s"]

# Maximum-likelihood grid of the drift's amplitude a (relative) and time scale ℓ (s).
_AMPLITUDES = np.logspace(-5.0, -1.0, 13)
_LENGTHS = 11
# Grid points whose likelihood is below this fraction of the best one are left out, and at
# most this many of the likeliest are kept.
_WEIGHT_MIN = 1e-2
_HYPER_MAX = 24
# A point's frames are represented by at most this many times.
_TIMES_PER_POINT = 8


@dataclass(frozen=True)
class LampMonitor:
    """How a CD scan watches its lamp.

    Attributes:
        every_s: a reading after every this many seconds of measuring (instrument time), and
            one before the first and after the last point of each accumulation (more often
            when a fixed dwell foresees fewer than 5 readings).
        dwell_s: the dwell of a reading, s (the run's first, to which every point is
            referred, lasts 4 times as long).
        reference_nm: the wavelength read, nm; None: the scan's longest wavelength (which
            usually transmits most through an absorbing sample).
    """

    every_s: float = 60.0
    dwell_s: float = 5.0
    reference_nm: float | None = None

    def __post_init__(self) -> None:
        for name in ("every_s", "dwell_s"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"the lamp monitor's {name} must be > 0 s, got {value!r}")
        if self.reference_nm is not None and not (math.isfinite(float(self.reference_nm))
                                                  and float(self.reference_nm) > 0):
            raise ValueError(f"the lamp reference must be a wavelength > 0 nm, got "
                             f"{self.reference_nm!r}")

    def wavelength(self, wavelengths_nm: Sequence[float]) -> float:
        """The reference wavelength for a scan over ``wavelengths_nm``."""
        return float(self.reference_nm if self.reference_nm is not None
                     else max(wavelengths_nm))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LampMonitor:
        return cls(**{k: data[k] for k in ("every_s", "dwell_s", "reference_nm") if k in data})


@dataclass(frozen=True)
class LampReading:
    """One reading of the lamp: the transmitted rate at the reference wavelength.

    Attributes:
        time_s: the middle of its frames, s of instrument time.
        rate: the transmitted signal rate (dark subtracted), counts/s or ADC counts.
        sigma_rate: its standard uncertainty.
        wavelength_nm: where it was read, nm.
        accumulation: the accumulation it belongs to.
    """

    time_s: float
    rate: float
    sigma_rate: float
    wavelength_nm: float
    accumulation: int = 0

    @property
    def usable(self) -> bool:
        return (math.isfinite(self.time_s) and math.isfinite(self.rate) and self.rate > 0
                and math.isfinite(self.sigma_rate) and self.sigma_rate > 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LampReading:
        return cls(float(data["time_s"]), float(data["rate"]), float(data["sigma_rate"]),
                   float(data["wavelength_nm"]), int(data.get("accumulation", 0)))


@dataclass(frozen=True)
class LampDrift:
    """The lamp's relative level ln L(t) between its readings (a Gaussian process fit).

    ln L(t) = β₀ + β₁·t + f(t): a free level and slope (flat priors, so a lamp that warms up
    steadily costs nothing) plus f, a Gaussian process of covariance a²·exp(−(t − t')²/2ℓ²)
    for what is not a straight line (Rasmussen & Williams, Gaussian Processes for Machine
    Learning, §2.7). A scan has a handful of readings, too few to pin a and ℓ down: rather
    than plug in their most likely values, the prediction averages over a grid of them,
    weighted by their likelihood (flat priors in log a and log ℓ), so that σ holds how little
    the readings say about the drift's size and pace.

    Attributes:
        times_s: the usable readings' times, s.
        log_rates: their ln(rate).
        variances: their relative variances (σ_rate/rate)².
        hyper: (a, ℓ, weight) of the grid points that matter (weights sum to 1).
    """

    times_s: np.ndarray
    log_rates: np.ndarray
    variances: np.ndarray
    hyper: tuple[tuple[float, float, float], ...]

    @classmethod
    def fit(cls, readings: Sequence[LampReading]) -> LampDrift | None:
        """The model of ``readings`` (the usable ones; at least 2), or None with fewer."""
        use = [r for r in readings if r.usable]
        if len(use) < 2:
            return None
        t = np.array([r.time_s for r in use])
        y = np.log([r.rate for r in use])
        s2 = np.array([(r.sigma_rate / r.rate) ** 2 for r in use])
        span = max(float(t.max() - t.min()), 1e-3)
        if t.size < 3:     # a and ℓ need readings beyond the level and the slope
            return cls(t, y, s2, ((float(_AMPLITUDES[0]), span, 1.0),))
        gaps = np.diff(np.sort(t))
        shortest = max(float(np.median(gaps)), 1e-3)
        lengths = np.logspace(math.log10(shortest), math.log10(10.0 * span), _LENGTHS)
        ll = np.array([_log_likelihoods(t, y, s2, float(length)) for length in lengths])
        w = np.exp(ll - ll.max())
        keep = w > max(_WEIGHT_MIN, float(np.sort(w, axis=None)[-_HYPER_MAX]))
        w = w[keep] / w[keep].sum()
        grid = np.broadcast_to(_AMPLITUDES, ll.shape)[keep]
        lens = np.broadcast_to(lengths[:, None], ll.shape)[keep]
        return cls(t, y, s2, tuple((float(a), float(length), float(x))
                                   for a, length, x in zip(grid, lens, w)))

    def factors(self, times_s: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L(t)/L(t₀), σ of ln that ratio) at ``times_s``, t₀ the first reading's time."""
        ts = np.asarray(times_s, dtype=np.float64)
        mean = np.zeros(ts.size)
        second = np.zeros(ts.size)
        for (_, _, w), gp in zip(self.hyper, self._processes()):
            m, v = gp.difference(self.times_s[0], ts)
            mean += w * m
            second += w * (v + m * m)
        return np.exp(mean), np.sqrt(np.maximum(second - mean * mean, 0.0))

    def _processes(self) -> list[_GP]:
        cached = self.__dict__.get("_gps")
        if cached is None:
            cached = [_GP(self.times_s, self.variances, a, length, self.log_rates)
                      for a, length, _ in self.hyper]
            object.__setattr__(self, "_gps", cached)
        return cached

    def level(self, times_s: Sequence[float] | np.ndarray) -> tuple[float, float]:
        """(mean of L(t)/L(t₀), σ of its log) over the times of one point's frames (a point
        whose frames lie in two stretches, a survey's and its own, averages both). The
        frames' errors are one drift's: their σ are averaged, not added in quadrature."""
        t = np.asarray(times_s, dtype=np.float64)
        if t.size > _TIMES_PER_POINT:
            t = np.quantile(t, np.linspace(0.0, 1.0, _TIMES_PER_POINT))
        factors, sigma = self.factors(t)
        return float(factors.mean()), float(sigma.mean())

    def summary(self) -> dict[str, float]:
        """The drift the readings point to most: ``amplitude`` (relative RMS beyond a
        straight line) and ``length_s`` (its time scale) of the likeliest grid point."""
        a, length, _ = max(self.hyper, key=lambda h: h[2])
        return {"amplitude": a, "length_s": length}


def _log_likelihoods(t: np.ndarray, y: np.ndarray, s2: np.ndarray,
                     length: float) -> np.ndarray:
    """ln p(y | a, ℓ) for every a of the grid at one ℓ, the line integrated out (R&W eq.
    2.45), up to a constant: with K = a²E + S = S^½(a²M + 1)S^½, M = S^-½ E S^-½ = QΛQᵀ,
    one eigendecomposition serves every a."""
    w = 1.0 / np.sqrt(s2)
    e = np.exp(-0.5 * ((t[:, None] - t[None, :]) / length) ** 2)
    lam, q = np.linalg.eigh(w[:, None] * e * w[None, :])
    lam = np.maximum(lam, 0.0)
    scale = max(float(np.ptp(t)), 1e-3)
    h = np.column_stack([np.ones_like(t), (t - t.mean()) / scale])
    yq = q.T @ (w * y)                          # (n,)
    hq = q.T @ (w[:, None] * h)                 # (n, 2)
    d = 1.0 / (_AMPLITUDES[:, None] ** 2 * lam[None, :] + 1.0)      # (grid, n)
    ya = (d * yq * yq).sum(axis=1)
    hy = np.einsum("gn,n,nk->gk", d, yq, hq)
    ah = np.einsum("nj,gn,nk->gjk", hq, d, hq)
    quad = np.einsum("gj,gj->g", hy, np.linalg.solve(ah, hy[..., None])[..., 0])
    return -0.5 * ya + 0.5 * quad + 0.5 * np.log(d).sum(axis=1) - 0.5 * np.linalg.slogdet(ah)[1]


class _GP:
    """A Gaussian process with a free straight line (basis 1, t) at readings t with known
    noise variances s2."""

    def __init__(self, t: np.ndarray, s2: np.ndarray, a: float, length: float,
                 y: np.ndarray) -> None:
        self.t0, self.scale = float(t.mean()), max(float(np.ptp(t)), 1e-3)
        self.t, self.a, self.length = t, a, length
        self.chol = np.linalg.cholesky(self._cov(t, t) + np.diag(s2))
        self.h = self._basis(t)
        kih = self._solve(self.h.T)
        self.a_inv = np.linalg.inv(self.h @ kih)
        beta = self.a_inv @ (kih.T @ y)
        self.beta, self.alpha = beta, self._solve(y - self.h.T @ beta)

    def _cov(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.a ** 2 * np.exp(-0.5 * ((x[:, None] - z[None, :]) / self.length) ** 2)

    def _basis(self, x: np.ndarray) -> np.ndarray:
        return np.vstack([np.ones_like(x), (x - self.t0) / self.scale])

    def _solve(self, b: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.chol.T, np.linalg.solve(self.chol, b))

    def difference(self, t0: float, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of ln L(t) − ln L(t₀) at each of ``ts`` (R&W eqs.
        2.41–2.42 for the pairs (t, t₀))."""
        x = np.concatenate([[t0], ts])
        ks = self._cov(self.t, x)
        kis = self._solve(ks)
        mean = ks.T @ self.alpha + self._basis(x).T @ self.beta
        r = self._basis(x) - self.h @ kis
        ar = self.a_inv @ r
        # cov(x_i, x_j) = k(x_i, x_j) − k_iᵀK⁻¹k_j + r_iᵀA⁻¹r_j, needed for (i, i), (i, 0)
        prior_0 = self._cov(x[:1], x)[0]                       # k(t₀, x)
        cross = prior_0 - ks[:, 0] @ kis + r[:, 0] @ ar
        diag = self.a ** 2 - np.einsum("ij,ij->j", ks, kis) + np.einsum("ij,ij->j", r, ar)
        var = diag[1:] + diag[0] - 2.0 * cross[1:]
        return mean[1:] - mean[0], var


def frame_times_s(frames: Any) -> np.ndarray:
    """The times of a point's frames, s of instrument time: COUNTS frames' time stamps, or an
    analog point's ADC blocks' start times (empty when neither is there)."""
    stamps = getattr(frames, "timestamp_us", None)
    if stamps is not None and len(stamps):
        return np.asarray(stamps, dtype=np.float64) * 1e-6
    blocks = [b for c in getattr(frames, "chunks", ()) for b in c.blocks]
    return np.array([b.t0_ticks / b.tick_hz for b in blocks], dtype=np.float64)
