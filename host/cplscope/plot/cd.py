"""CD figures and the mirror-symmetry check of an enantiomer pair's g_abs.

:func:`plot_cd` draws the figure of the seed paper's Fig. 3 (a, c): a panel with the CD as
ellipticity θ (mdeg, or ΔA) and its ±σ band, with the absorbance on the right axis
(dashed), and a panel with g_abs at each point with its ±1σ bar (:mod:`cplscope.plot.panels`:
bars clipped at the axis with a marker, an axis range set by the well-measured points).
``opaque`` points are gaps with a grey band behind them; several spectra (an R/S pair) are
overlaid, one colour each, with the legends above and below the panels, off the data, and a
title with the samples and the date. As :func:`cplscope.plot.cpl.plot_cpl`, it draws on
matplotlib's Agg canvas unless given a figure, and the file format follows the suffix
(.png, .svg, .pdf).

:func:`cd_mirror_report` is :func:`cplscope.plot.cpl.mirror_report` on g_abs: whether
g_R + g_S is consistent with 0 where both spectra have a g_abs, and the mirror ratio
g_R/(−g_S).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.cd_spectrum import CDSpectrum
from ..science.bands import band_means as band_means_of
from ..science.cd import FLAG_OPAQUE
from .cpl import MirrorReport, mirror_report
from . import panels
from .panels import GSeries, draw_g_panel, shade_runs

__all__ = ["cd_mirror_report", "plot_cd"]

_UNITS = ("mdeg", "delta_a")


@dataclass
class _GView:
    """The three columns :func:`cplscope.plot.cpl.mirror_report` reads, taken from g_abs."""

    wavelength_nm: np.ndarray
    g_lum: np.ndarray
    sigma_g: np.ndarray


def cd_mirror_report(r: CDSpectrum, s: CDSpectrum, *, alpha: float = 0.01) -> MirrorReport:
    """Compare the g_abs spectra of two enantiomers (R first).

    Uses the wavelengths the two share where both have a finite g_abs and σ > 0 (``opaque``,
    ``no_baseline`` and ``no_absorbance`` points are left out); ``chi2`` is
    Σ (g_R + g_S)²/(σ_R² + σ_S²) and ``ratio`` the maximum-likelihood g_R/(−g_S).

    Raises:
        ValueError: when the spectra share no wavelength with a g_abs.
    """
    views = [_GView(x.wavelength_nm, x.g_abs, x.sigma_g_abs) for x in (r, s)]
    try:
        return mirror_report(views[0], views[1], alpha=alpha)  # type: ignore[arg-type]
    except ValueError as exc:
        if "share no wavelength" not in str(exc):
            raise
        raise ValueError("the two CD spectra share no wavelength where both have a g_abs (a "
                         "baseline, and absorbance that is not opaque): measure both against "
                         "a baseline on the same wavelength grid") from None


def plot_cd(spectra: CDSpectrum | Sequence[CDSpectrum],
            path: str | os.PathLike[str] | None = None, *,
            labels: Sequence[str] | None = None, title: str | None = None,
            mirror: bool | MirrorReport = False, cd_unit: str = "mdeg",
            show_absorbance: bool = True, band_means: bool = False,
            figure: Figure | None = None) -> Figure:
    """Draw the CD figure and optionally save it.

    Args:
        spectra: one CD spectrum or several to overlay (e.g. an R/S pair).
        path: file to write; the suffix picks PNG, SVG or PDF.
        labels: legend labels (default: each spectrum's ``sample`` metadata).
        title: the figure's title (default: the samples and "CD"); the line under it always
            says when and on which instrument the spectra were measured.
        mirror: True to compute :func:`cd_mirror_report` of the first two spectra and print
            it above the g_abs panel, or a report to print.
        cd_unit: ``"mdeg"`` (ellipticity θ) or ``"delta_a"`` (ΔA) for the CD panel.
        show_absorbance: draw A on the CD panel's right axis (dashed).
        band_means: also draw the inverse-variance mean g_abs over each absorption band
            (:mod:`cplscope.science.bands`, bands of A). Off by default: a CD band is often
            a couplet whose g_abs changes sign across it, and then its mean says nothing.
        figure: draw on this (empty) Figure, e.g. one of ``matplotlib.pyplot`` to show it;
            default: a new Figure on matplotlib's Agg canvas.

    Returns:
        The matplotlib Figure.

    Raises:
        ValueError: on an unsupported suffix or unit, a label count that does not match, an
            empty spectrum, or ``mirror=True`` with fewer than two spectra.
    """
    specs = [spectra] if isinstance(spectra, CDSpectrum) else list(spectra)
    if not specs or any(len(s) == 0 for s in specs):
        raise ValueError("nothing to plot: pass CD spectra with at least one point each")
    if labels is not None and len(labels) != len(specs):
        raise ValueError(f"{len(labels)} labels for {len(specs)} spectra")
    if cd_unit not in _UNITS:
        raise ValueError(f"cd_unit must be 'mdeg' or 'delta_a', got {cd_unit!r}")
    if mirror is True and len(specs) < 2:
        raise ValueError("mirror=True needs two spectra (R and S)")
    fmt = panels.figure_format(path)
    names = list(labels) if labels is not None else [panels.series_label(s, i)
                                                     for i, s in enumerate(specs)]

    fig = panels.new_figure(figure, (7.2, 8.0))
    ax_cd, ax_g = fig.subplots(2, 1, sharex=True, height_ratios=(1.0, 1.1))
    ax_a = ax_cd.twinx() if show_absorbance else None
    series: list[GSeries] = []
    top_handles: list[Any] = []
    top_labels: list[str] = []
    for i, (spec, name) in enumerate(zip(specs, names)):
        color = f"C{i % 10}"
        order = np.argsort(spec.wavelength_nm, kind="stable")
        wl = spec.wavelength_nm[order]
        if cd_unit == "mdeg":
            y, sy = spec.ellipticity_mdeg[order], spec.sigma_ellipticity_mdeg[order]
        else:
            y, sy = spec.delta_a[order], spec.sigma_delta_a[order]
        ax_cd.fill_between(wl, y - sy, y + sy, color=color, alpha=0.25, lw=0)
        (line,) = ax_cd.plot(wl, y, color=color, lw=1.4)
        top_handles.append((Patch(color=color, alpha=0.25, lw=0), line))
        top_labels.append(f"{name}: CD ±1σ (left axis)")
        if ax_a is not None and np.isfinite(spec.absorbance).any():
            (a_line,) = ax_a.plot(wl, spec.absorbance[order], color=color, lw=1.0, ls="--",
                                  alpha=0.8)
            top_handles.append(a_line)
            top_labels.append(f"{name}: absorbance A (right axis)")
        g, sg = spec.g_abs[order], spec.sigma_g_abs[order]
        bands = (band_means_of(wl, spec.absorbance[order], g, sg,
                               spec.sigma_absorbance[order]) if band_means else [])
        series.append(GSeries(name, color, wl, g, sg, bands, _SPREAD))
    g_handles, g_labels = draw_g_panel(ax_g, series, band_means=band_means,
                                       band_note=" (inverse-variance mean over each "
                                                 "absorption band, A ≥ 10 % of its peak)",
                                       quantity="g$_{abs}$")
    wl0 = np.sort(specs[0].wavelength_nm)
    if all(np.array_equal(np.sort(s.wavelength_nm), wl0) for s in specs):
        opaque = np.logical_or.reduce([s.has_flag(FLAG_OPAQUE)[np.argsort(
            s.wavelength_nm, kind="stable")] for s in specs])
        if shade_runs(ax_g, wl0, opaque, color="0.85"):
            shade_runs(ax_cd, wl0, opaque, color="0.85")
            g_handles.append(Patch(facecolor="0.85", lw=0))
            g_labels.append("opaque: too little light through the sample")
    for ax in (ax_cd, ax_g):
        ax.axhline(0.0, color="0.55", lw=0.7)
    ax_cd.set_ylabel("CD, θ (mdeg)" if cd_unit == "mdeg" else "CD, ΔA = A$_L$ − A$_R$")
    if ax_a is not None:
        ax_a.set_ylabel("absorbance A")
        ax_a.set_ylim(bottom=0.0)
    ax_g.set_ylabel("g$_{abs}$ = ΔA / A")
    ax_g.set_xlabel("wavelength (nm)")
    lo, hi = float(wl0.min()), float(wl0.max())
    step = float(np.median(np.diff(wl0))) if wl0.size > 1 else 1.0
    ax_g.set_xlim(lo - step, hi + step)
    ax_g.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2), useMathText=True)
    if cd_unit == "delta_a":
        ax_cd.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2), useMathText=True)
    panels.legend_above(ax_cd, top_handles, top_labels, ncols=2)
    panels.legend_below(ax_g, g_handles, g_labels, ncols=1)
    panels.set_titles(fig, specs, names, "CD and g$_{abs}$", title)
    report = mirror if isinstance(mirror, MirrorReport) else (
        cd_mirror_report(specs[0], specs[1]) if mirror else None)
    return panels.finish(fig, ax_g, report, path, fmt)


#: g_abs points with σ within this × the spectrum's typical σ are the well-measured ones.
_SPREAD = 4.0
