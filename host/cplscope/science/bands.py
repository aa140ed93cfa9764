"""Band means: one g per emission (or absorption) band, where single points are too weak.

A spectrum's points each carry g ± σ. At the wings of a band, and across a weak band, a
single point says little; their inverse-variance mean over the band says what the data know
about the band's g. :func:`band_means` finds the bands of a spectrum from its intensity and
averages g over each:

1. **Regions.** Runs of consecutive points with a finite g and σ > 0 (a ``no_emission``
   point, g = NaN, ends a run).
2. **Bands.** A run is split at a valley of the intensity: a point whose intensity is below
   ``valley`` (0.5) × the lower of the highest intensities on its two sides, by more than
   5 σ of the difference. Splits repeat until no valley is left, so two bands that overlap
   in their wings (438 and 504 nm of Cs4PbBr6) are two bands.
3. **Core.** A band whose highest intensity is below ``min_peak`` (0.5 %) of the spectrum's
   highest is a fragment of a wing, not a band, and is left out. Each band keeps the contiguous points around its highest intensity where the
   intensity is at least ``threshold`` (10 %) of that peak: the wings below it carry few
   photons (3 % of a Gaussian band's) and, between two bands, light of both.
4. **Mean.** ḡ = Σ wᵢgᵢ / Σ wᵢ with wᵢ = 1/σᵢ², σ(ḡ) = (Σ wᵢ)^(−1/2), and
   χ² = Σ wᵢ(gᵢ − ḡ)² over n − 1 degrees of freedom. When the points scatter more than
   their σ (χ²/(n−1) > 1), σ(ḡ) is scaled by √(χ²/(n−1)) (the Particle Data Group's rule):
   a g that varies across the band then shows as a wider error, not a false precision.

The functions take plain arrays (nm, intensity in any unit, g and σ dimensionless), so they
serve CPL (g_lum against the emission intensity) and CD (g_abs against the absorbance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BandMean", "band_means", "band_regions"]


@dataclass(frozen=True)
class BandMean:
    """The inverse-variance mean of g over one band.

    Attributes:
        peak_nm: wavelength of the band's highest intensity, nm.
        start_nm, stop_nm: the first and last wavelength averaged, nm.
        n_points: points averaged.
        g: ḡ, the inverse-variance mean.
        sigma_g: its standard uncertainty, scaled by :attr:`scale`.
        sigma_stat: (Σ 1/σᵢ²)^(−1/2), before scaling.
        chi2: Σ (gᵢ − ḡ)²/σᵢ² about the mean.
        dof: n_points − 1.
        scale: max(1, √(χ²/dof)) (1 for a single point).
        indices: the averaged points' positions in the arrays given.
    """

    peak_nm: float
    start_nm: float
    stop_nm: float
    n_points: int
    g: float
    sigma_g: float
    sigma_stat: float
    chi2: float
    dof: int
    scale: float
    indices: tuple[int, ...]


def band_means(wavelength_nm: ArrayLike, intensity: ArrayLike,
               g: ArrayLike, sigma_g: ArrayLike,
               sigma_intensity: ArrayLike | None = None, *, threshold: float = 0.1,
               valley: float = 0.5, min_peak: float = 0.005) -> list[BandMean]:
    """The bands of a spectrum and the inverse-variance mean of g over each (module
    docstring), in order of wavelength.

    Args:
        wavelength_nm: wavelengths, nm (any order).
        intensity: the intensity that defines the bands (emission I for CPL, absorbance A
            for CD), any unit.
        g, sigma_g: g and its σ at each wavelength; NaN where there is none.
        sigma_intensity: σ of the intensity (default 0: every valley is significant).
        threshold: a band's core holds the points with intensity ≥ threshold × its peak.
        valley: a valley splits a run below valley × the lower of its two sides' peaks.
        min_peak: bands whose peak is below this fraction of the spectrum's highest
            intensity are left out.

    Raises:
        ValueError: on arrays of different lengths or thresholds outside (0, 1).
    """
    wl, inten, gg, sg, si = _arrays(wavelength_nm, intensity, g, sigma_g, sigma_intensity)
    out = []
    for idx in band_regions(wl, inten, gg, sg, si, threshold=threshold, valley=valley,
                            min_peak=min_peak):
        out.append(_mean(wl, inten, gg, sg, idx))
    return out


def band_regions(wavelength_nm: ArrayLike, intensity: ArrayLike,
                 g: ArrayLike, sigma_g: ArrayLike,
                 sigma_intensity: ArrayLike | None = None, *, threshold: float = 0.1,
                 valley: float = 0.5, min_peak: float = 0.005) -> list[np.ndarray]:
    """The points of each band's core (indices into the arrays, by wavelength), steps 1–3 of
    the module docstring."""
    if not 0.0 <= min_peak < 1.0:
        raise ValueError(f"min_peak must be in [0, 1), got {min_peak!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if not 0.0 < valley < 1.0:
        raise ValueError(f"valley must be in (0, 1), got {valley!r}")
    wl, inten, gg, sg, si = _arrays(wavelength_nm, intensity, g, sigma_g, sigma_intensity)
    order = np.argsort(wl, kind="stable")
    ok = (np.isfinite(gg) & np.isfinite(sg) & (sg > 0) & np.isfinite(inten))[order]
    runs: list[np.ndarray] = []
    start = None
    for k in range(order.size + 1):
        if k < order.size and ok[k]:
            start = k if start is None else start
        elif start is not None:
            runs.append(order[start:k])
            start = None
    bands: list[np.ndarray] = []
    for run in runs:
        bands.extend(_split(run, inten, si, valley))
    top = max((float(np.max(inten[b])) for b in bands), default=0.0)
    return [_core(b, inten, threshold) for b in bands
            if float(np.max(inten[b])) >= min_peak * top]


def _arrays(*columns: ArrayLike | None) -> tuple[np.ndarray, ...]:
    n = len(np.asarray(columns[0]))
    out = []
    for c in columns:
        a = np.zeros(n) if c is None else np.asarray(c, dtype=float)
        if a.shape != (n,):
            raise ValueError(f"the columns must all have {n} values, got shape {a.shape}")
        out.append(a)
    return tuple(out)


def _split(run: np.ndarray, inten: np.ndarray, si: np.ndarray,
           valley: float) -> list[np.ndarray]:
    """``run`` split at its deepest significant valley, recursively."""
    if run.size < 3:
        return [run]
    y = inten[run]
    s = np.where(np.isfinite(si[run]), si[run], 0.0)
    left = np.maximum.accumulate(y)
    right = np.maximum.accumulate(y[::-1])[::-1]
    best, best_ratio = -1, valley
    for k in range(1, run.size - 1):
        side = min(left[k - 1], right[k + 1])
        if not side > 0:
            continue
        ratio = y[k] / side
        # the peak on the lower side: its σ enters the significance of the dip
        j = (int(np.argmax(y[:k])) if left[k - 1] <= right[k + 1]
             else k + 1 + int(np.argmax(y[k + 1:])))
        deep = side - y[k] > 5.0 * math.hypot(s[k], s[j])
        if ratio < best_ratio and deep:
            best, best_ratio = k, ratio
    if best < 0:
        return [run]
    return _split(run[:best], inten, si, valley) + _split(run[best + 1:], inten, si, valley)


def _core(band: np.ndarray, inten: np.ndarray, threshold: float) -> np.ndarray:
    """The contiguous points around the band's highest intensity at ≥ threshold × it."""
    y = inten[band]
    top = int(np.argmax(y))
    floor = threshold * y[top]
    lo = top
    while lo > 0 and y[lo - 1] >= floor:
        lo -= 1
    hi = top
    while hi < y.size - 1 and y[hi + 1] >= floor:
        hi += 1
    return band[lo:hi + 1]


def _mean(wl: np.ndarray, inten: np.ndarray, g: np.ndarray, sg: np.ndarray,
          idx: np.ndarray) -> BandMean:
    w = 1.0 / sg[idx] ** 2
    mean = float(np.sum(w * g[idx]) / np.sum(w))
    stat = float(1.0 / math.sqrt(np.sum(w)))
    chi2 = float(np.sum(w * (g[idx] - mean) ** 2))
    dof = int(idx.size - 1)
    scale = max(1.0, math.sqrt(chi2 / dof)) if dof > 0 else 1.0
    peak = int(idx[np.argmax(inten[idx])])
    return BandMean(float(wl[peak]), float(wl[idx].min()), float(wl[idx].max()), int(idx.size),
                    mean, stat * scale, stat, chi2, dof, scale, tuple(int(i) for i in idx))
