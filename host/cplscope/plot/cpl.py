"""CPL figures and the mirror-symmetry check of an enantiomer pair.

:func:`plot_cpl` draws the figure of the seed paper's Fig. 3 (b, d) as a CPL paper shows it
(docs/figures.md):

- a title with the samples, the date and the instrument;
- top panel: ΔI = I_L − I_R ± 1σ (left axis, solid) and the total I = I_L + I_R (right axis,
  dashed, lightly filled), in the file's intensity unit, with the zeros of both axes at the
  same height; a weak band's total I also magnified ("×30", dotted);
- bottom panel: g_lum at every point with its ±1σ bar, bars clipped at the axis with a
  marker, and each emission band's inverse-variance mean g ± σ (:mod:`cplscope.plot.panels`,
  :mod:`cplscope.science.bands`); the axis shows every band's estimate. An optional smoothed
  curve states its window.

``no_emission`` points (g is NaN) are gaps, shaded where no spectrum emits. Several spectra
(an R/S pair) are overlaid, one colour each; legends and the mirror report sit above and
below the panels, never over the data. The figure uses matplotlib's Agg canvas unless given
a figure, so it never needs a display; the file format follows the suffix (.png, .svg,
.pdf).

:func:`mirror_report` tests whether g_R + g_S is consistent with 0 at the wavelengths where
both spectra have emission, and estimates the mirror ratio g_R/(−g_S).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..data.spectrum import Spectrum
from ..science.bands import BandMean, band_means, band_regions
from ..science.results import FLAG_NO_EMISSION, chi2_sf
from .panels import (
    FAINT_FACTOR,
    GSeries,
    draw_g_panel,
    figure_format,
    finish,
    legend_above,
    legend_below,
    PowerFormatter,
    new_figure,
    power_label,
    series_label,
    set_titles,
    shade_runs,
    superscript,
    typical_sigma,
)

__all__ = ["MirrorReport", "mirror_report", "plot_cpl"]

@dataclass(frozen=True)
class MirrorReport:
    """Mirror symmetry of an R/S pair at their common wavelengths with emission.

    Attributes:
        n_points: wavelengths used.
        wavelength_min_nm, wavelength_max_nm: their range, nm.
        chi2: Σ (g_R + g_S)² / (σ_R² + σ_S²).
        dof: degrees of freedom (= n_points).
        p_value: P(χ²(dof) ≥ chi2), Wilson–Hilferty approximation.
        ratio: maximum-likelihood g_R/(−g_S) (errors in both, York), 1 for a perfect mirror.
        sigma_ratio: its standard uncertainty.
        alpha: significance level of ``consistent``.
        consistent: p_value ≥ alpha and |ratio − 1| ≤ 3·sigma_ratio.
    """

    n_points: int
    wavelength_min_nm: float
    wavelength_max_nm: float
    chi2: float
    dof: int
    p_value: float
    ratio: float
    sigma_ratio: float
    alpha: float
    consistent: bool

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)

    def text(self) -> str:
        """Two short lines for a report or a figure."""
        verdict = "consistent with a mirror pair" if self.consistent else "NOT a mirror pair"
        return (f"g_R + g_S over {self.wavelength_min_nm:g}–{self.wavelength_max_nm:g} nm "
                f"(n = {self.n_points}): χ² = {self.chi2:.1f}/{self.dof}, p = {self.p_value:.2g}"
                f" — {verdict}\n"
                f"g_R/(−g_S) = {self.ratio:.3f} ± {self.sigma_ratio:.3f}")


def mirror_report(r: Spectrum, s: Spectrum, *, alpha: float = 0.01,
                  wavelength_decimals: int = 6) -> MirrorReport:
    """Compare the g_lum spectra of two enantiomers.

    Uses the wavelengths (equal to ``wavelength_decimals`` decimals of a nm) where both have
    a finite g and σ > 0 (``no_emission`` points are left out).

    Raises:
        ValueError: when the spectra share no wavelength with emission.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    s_index = {round(w, wavelength_decimals): i for i, w in enumerate(s.wavelength_nm)}
    pairs = [(i, s_index[round(w, wavelength_decimals)]) for i, w in enumerate(r.wavelength_nm)
             if round(w, wavelength_decimals) in s_index]
    ir = np.array([p[0] for p in pairs], dtype=int)
    js = np.array([p[1] for p in pairs], dtype=int)
    gr, sr = (r.g_lum[ir], r.sigma_g[ir]) if pairs else (np.empty(0), np.empty(0))
    gs, ss = (s.g_lum[js], s.sigma_g[js]) if pairs else (np.empty(0), np.empty(0))
    ok = np.isfinite(gr) & np.isfinite(gs) & (sr > 0) & (ss > 0)
    if not ok.any():
        raise ValueError("the two spectra share no wavelength where both have emission "
                         "(finite g_lum); measure them on the same wavelength grid")
    gr, sr, gs, ss = gr[ok], sr[ok], gs[ok], ss[ok]
    wl = r.wavelength_nm[ir][ok]
    chi2 = float(np.sum((gr + gs) ** 2 / (sr**2 + ss**2)))
    n = int(ok.sum())
    k, sigma_k = _mirror_ratio(gr, sr, gs, ss)
    p = chi2_sf(chi2, n)
    consistent = bool(p >= alpha and math.isfinite(k) and abs(k - 1.0) <= 3.0 * sigma_k)
    return MirrorReport(n, float(wl.min()), float(wl.max()), chi2, n, p, k, sigma_k, alpha,
                        consistent)


def _mirror_ratio(gr: np.ndarray, sr: np.ndarray, gs: np.ndarray, ss: np.ndarray,
                  ) -> tuple[float, float]:
    """Maximum-likelihood k in g_R = −k·g_S with Gaussian errors on both (York's
    straight line through the origin). Minimizes Σ (g_R + k·g_S)²/(σ_R² + k²σ_S²) by the
    fixed point k = −Σ w·g_R·X / Σ w·g_S·X, where X are the adjusted (error-free) −g_S
    estimates; σ_k = 1/sqrt(Σ w·X²). The naive weighted slope would be biased low by
    1/(1 + 1/SNR²) because g_S carries noise."""
    k = 1.0
    for _ in range(100):
        w = 1.0 / (sr**2 + k**2 * ss**2)
        x_adj = gs - k * ss**2 * w * (gr + k * gs)
        denom = float(np.sum(w * gs * x_adj))
        if denom == 0.0:
            return math.nan, math.nan
        new = -float(np.sum(w * gr * x_adj)) / denom
        done = abs(new - k) <= 1e-12 * max(1.0, abs(new))
        k = new
        if done:
            break
    w = 1.0 / (sr**2 + k**2 * ss**2)
    x_adj = gs - k * ss**2 * w * (gr + k * gs)
    return k, float(1.0 / math.sqrt(np.sum(w * x_adj**2)))


def plot_cpl(spectra: Spectrum | Sequence[Spectrum], path: str | os.PathLike[str] | None = None,
             *, labels: Sequence[str] | None = None, title: str | None = None,
             mirror: bool | MirrorReport = False, smooth_points: int | None = None,
             faint_factor: float = FAINT_FACTOR, band_means: bool = True,
             figure: Figure | None = None) -> Figure:
    """Draw the CPL figure and optionally save it.

    Args:
        spectra: one spectrum or several to overlay (e.g. an R/S pair).
        path: file to write; the suffix picks PNG, SVG or PDF.
        labels: legend labels (default: each spectrum's ``sample`` metadata).
        title: the figure's title (default: the samples and "CPL"); the line under it always
            says when and on which instrument the spectra were measured.
        mirror: True to compute :func:`mirror_report` of the first two spectra and print it
            above the g_lum panel, or a report to print.
        smooth_points: also draw g_lum smoothed by an inverse-variance weighted moving
            average over this many neighbouring points (odd, ≥ 3); the legend states it.
        faint_factor: points whose σ_g exceeds this many times the spectrum's typical σ_g
            (the 10th percentile of its σ_g) are open markers and do not set the g axis range.
        band_means: draw each emission band's inverse-variance mean g
            (:func:`cplscope.science.bands.band_means`) with its σ.
        figure: draw on this (empty) Figure, e.g. one of ``matplotlib.pyplot`` to show it in
            a window; default: a new Figure on matplotlib's Agg canvas.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: on an unsupported suffix, a label count that does not match, an empty
            spectrum, or a smoothing window that is not an odd number ≥ 3.
    """
    specs = [spectra] if isinstance(spectra, Spectrum) else list(spectra)
    if not specs or any(len(s) == 0 for s in specs):
        raise ValueError("nothing to plot: pass spectra with at least one point each")
    if labels is not None and len(labels) != len(specs):
        raise ValueError(f"{len(labels)} labels for {len(specs)} spectra")
    if smooth_points is not None and (smooth_points < 3 or smooth_points % 2 == 0):
        raise ValueError(f"smooth_points must be an odd number of points ≥ 3, got "
                         f"{smooth_points!r}")
    if not faint_factor > 1:
        raise ValueError(f"faint_factor must be > 1, got {faint_factor!r}")
    fmt = figure_format(path)
    if mirror is True and len(specs) < 2:
        raise ValueError("mirror=True needs two spectra (R and S)")
    names = list(labels) if labels is not None else [series_label(s, i)
                                                     for i, s in enumerate(specs)]
    has_top = any(np.isfinite(s.intensity).any() or np.isfinite(s.delta_i).any()
                  for s in specs)
    fig = new_figure(figure, (7.2, 8.4) if has_top else (7.2, 5.6))
    if has_top:
        ax_cpl, ax_g = fig.subplots(2, 1, sharex=True, height_ratios=(1.0, 1.15))
        ax_tot = ax_cpl.twinx()
    else:
        ax_g, ax_cpl, ax_tot = fig.subplots(), None, None
    colors = [f"C{i % 10}" for i in range(len(specs))]
    series: list[GSeries] = []
    top: tuple[list[Any], list[str]] = ([], [])
    for spec, name, color in zip(specs, names, colors):
        order = np.argsort(spec.wavelength_nm, kind="stable")
        if ax_cpl is not None:
            _intensity_panel(ax_cpl, ax_tot, spec, order, name, color, top)
        bands = _bands(spec) if band_means else []
        series.append(GSeries(name, color, spec.wavelength_nm[order], spec.g_lum[order],
                              spec.sigma_g[order], bands, faint_factor,
                              bands_have_peaks=bool(np.isfinite(spec.intensity).any())))
    note = (_BAND_NOTE if all(np.isfinite(s.intensity).any() for s in specs)
            else _RUN_NOTE)
    g_handles, g_labels = draw_g_panel(ax_g, series, band_means=band_means, band_note=note,
                                       quantity="g$_{lum}$")
    if smooth_points is not None:   # drawn where it is as well measured as the band
        for gs in series:
            g_s, sg_s = _smooth(gs.g, gs.sigma_g, smooth_points)
            shown = np.isfinite(g_s) & (sg_s <= gs.faint_factor * typical_sigma(gs.sigma_g))
            (line,) = ax_g.plot(gs.wavelength_nm, np.where(shown, g_s, np.nan),
                                color=gs.color, lw=2.0, alpha=0.8, solid_capstyle="round")
            g_handles.append(line)
            g_labels.append(f"{gs.name}: smoothed ({smooth_points}-point weighted mean)")
    if _shade_no_emission(specs, [ax for ax in (ax_g, ax_cpl) if ax is not None]):
        g_handles.append(Patch(facecolor="0.92", lw=0))
        g_labels.append("no emission: g undefined")
    if ax_cpl is not None:
        unit = str(specs[0].metadata.get("units", {}).get("intensity", "cps"))
        _align_zeros(ax_cpl, ax_tot)
        power = power_label(ax_tot.get_ylim()[1])
        ax_tot.yaxis.set_major_formatter(PowerFormatter(power, non_negative=True))
        ax_cpl.axhline(0.0, color="0.55", lw=0.7)
        ax_cpl.set_ylabel(f"ΔI = I$_L$ − I$_R$ ({unit})")
        scale = f"10{superscript(power)} " if power else ""
        ax_tot.set_ylabel(f"total I = I$_L$ + I$_R$ ({scale}{unit})")
        legend_above(ax_cpl, *top, ncols=2)
    ax_g.set_ylabel("g$_{lum}$ = 2ΔI / I")
    ax_g.set_xlabel("wavelength (nm)")
    lo = min(float(np.min(s.wavelength_nm)) for s in specs)
    hi = max(float(np.max(s.wavelength_nm)) for s in specs)
    step = _step(series[0].wavelength_nm)
    ax_g.set_xlim(lo - step, hi + step)
    for ax in (ax_cpl, ax_g):
        if ax is not None:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
    legend_below(ax_g, g_handles, g_labels, ncols=1)
    set_titles(fig, specs, names, "CPL and g$_{lum}$" if has_top else "g$_{lum}$", title)
    report = mirror if isinstance(mirror, MirrorReport) else (
        mirror_report(specs[0], specs[1]) if mirror else None)
    return finish(fig, ax_g, report, path, fmt)


def _intensity_panel(ax_cpl, ax_tot, spec: Spectrum, order: np.ndarray, name: str,
                     color: str, legend: tuple[list[Any], list[str]]) -> None:
    """ΔI ± 1σ (left axis), the total I dashed and lightly filled (right axis), and the total
    I of weak bands magnified; legend entries are appended to ``legend``."""
    wl = spec.wavelength_nm[order]
    total = spec.intensity[order]
    g, sg = spec.g_lum[order], spec.sigma_g[order]
    delta_i = spec.delta_i[order]
    sigma_di = 0.5 * total * sg          # ΔI = I·g/2 carries g's noise
    handles, labels = legend
    if np.isfinite(delta_i).any():
        ax_cpl.fill_between(wl, delta_i - sigma_di, delta_i + sigma_di, color=color,
                            alpha=0.25, lw=0)
        (di_line,) = ax_cpl.plot(wl, delta_i, color=color, lw=1.4)
        handles.append((Patch(color=color, alpha=0.25, lw=0), di_line)
                       if np.isfinite(sigma_di).any() else di_line)
        labels.append(f"{name}: ΔI" + (" ±1σ" if np.isfinite(sigma_di).any() else "")
                      + " (left axis)")
    if np.isfinite(total).any():
        ax_tot.fill_between(wl, 0.0, total, color=color, alpha=0.07, lw=0)
        (tot_line,) = ax_tot.plot(wl, total, color=color, lw=1.0, ls="--", alpha=0.85)
        handles.append(tot_line)
        labels.append(f"{name}: total I (right axis)")
        magnified = _magnify_weak_bands(ax_tot, wl, total, g, sg, color)
        if magnified:
            handles.append(magnified)
            labels.append(f"{name}: total I of a weak band, magnified (right axis)")


def _shade_no_emission(specs: Sequence[Spectrum], axes: Sequence[Any]) -> bool:
    """Grey spans where no spectrum has emission (spectra on one wavelength grid)."""
    order = np.argsort(specs[0].wavelength_nm, kind="stable")
    wl0 = specs[0].wavelength_nm[order]
    if not all(np.array_equal(np.sort(s.wavelength_nm), wl0) for s in specs):
        return False
    empty = np.logical_and.reduce([s.has_flag(FLAG_NO_EMISSION)[np.argsort(
        s.wavelength_nm, kind="stable")] for s in specs])
    shaded = False
    for ax in axes:
        shaded = shade_runs(ax, wl0, empty)
    return shaded


#: What the legend says about the band means.
_BAND_NOTE = " (inverse-variance mean over each emission band, I ≥ 10 % of its peak)"
_RUN_NOTE = " (inverse-variance mean over each run of points with a g)"


def _bands(spec: Spectrum) -> list[BandMean]:
    """The emission bands of a CPL spectrum and their mean g (without an intensity: one band
    per run of points with a g)."""
    intensity = spec.intensity
    if not np.isfinite(intensity).any():
        intensity = np.ones(len(spec))
    return band_means(spec.wavelength_nm, intensity, spec.g_lum, spec.sigma_g,
                      spec.sigma_intensity)


#: A band is weak (and its total I is also drawn magnified) below this fraction of the
#: spectrum's highest intensity.
WEAK_BAND = 0.1
_NICE = (2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)


def _magnify_weak_bands(ax, wl: np.ndarray, total: np.ndarray, g: np.ndarray, sg: np.ndarray,
                        color: str) -> Line2D | None:
    """Draw the total I of each weak band (peak < :data:`WEAK_BAND` × the highest) once more,
    multiplied by a round factor that brings it to about half the highest, dotted and
    labelled "×N", as spectroscopists show a weak band beside a strong one."""
    top = float(np.nanmax(total)) if np.isfinite(total).any() else math.nan
    if not top > 0:
        return None
    handle = None
    step = _step(wl)
    for idx in band_regions(wl, total, g, sg):
        peak = float(np.max(total[idx]))
        if not 0 < peak < WEAK_BAND * top:
            continue
        factors = [n for n in _NICE if peak * n <= 0.8 * top]
        if not factors:
            continue
        n = factors[-1]
        x0, x1 = wl[idx].min() - 3 * step, wl[idx].max() + 3 * step
        near = (wl >= x0) & (wl <= x1)
        (handle,) = ax.plot(wl[near], n * total[near], color=color, lw=1.1, ls=":")
        at = int(idx[np.argmax(total[idx])])
        ax.annotate(f"×{n}", (wl[at], n * total[at]), xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", color=color,
                    fontsize="small")
    return handle


def _step(wl: np.ndarray) -> float:
    return float(np.median(np.abs(np.diff(wl)))) if wl.size > 1 else 1.0


def _smooth(g: np.ndarray, sg: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance weighted moving average of g over ``window`` neighbouring points
    (no-emission points carry no weight) and its σ; NaN at no-emission points."""
    ok = np.isfinite(g) & np.isfinite(sg) & (sg > 0)
    w = np.where(ok, 1.0 / np.where(ok, sg, 1.0) ** 2, 0.0)
    wg = np.where(ok, w * np.where(ok, g, 0.0), 0.0)
    kernel = np.ones(window)
    num = np.convolve(wg, kernel, mode="same")
    den = np.convolve(w, kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, sigma = num / den, 1.0 / np.sqrt(den)
    mean[~ok] = np.nan  # keep the gaps of the data
    sigma[~ok] = np.nan
    return mean, sigma


def _align_zeros(left, right) -> None:
    """Set the two y ranges so that 0 is at the same height on both axes (each range
    includes 0 and all its data)."""
    lo1, hi1 = left.get_ylim()
    lo2, hi2 = right.get_ylim()
    lo1, hi1, lo2, hi2 = min(lo1, 0.0), max(hi1, 0.0), min(lo2, 0.0), max(hi2, 0.0)
    if not (hi1 > lo1 and hi2 > lo2):
        return
    # the fraction of each axis below zero; both axes take the larger one
    f = max(-lo1 / (hi1 - lo1), -lo2 / (hi2 - lo2))
    if f >= 1.0:
        return
    left.set_ylim(*_with_zero_at(f, lo1, hi1))
    right.set_ylim(*_with_zero_at(f, lo2, hi2))


def _with_zero_at(f: float, lo: float, hi: float) -> tuple[float, float]:
    """A range holding [lo, hi] with 0 at the fraction ``f`` from the bottom."""
    if f <= 0.0:
        return 0.0, hi
    span = max(hi / (1.0 - f), -lo / f)
    return -f * span, (1.0 - f) * span
