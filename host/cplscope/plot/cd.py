"""CD figures and the mirror-symmetry check of an enantiomer pair's g_abs.

:func:`plot_cd` draws the figure of the seed paper's Fig. 3 (a, c): a panel with the CD as
ellipticity θ (mdeg, or ΔA) and its ±σ band, with the absorbance on the right axis
(dashed), and a panel with g_abs and its ±σ band. ``opaque`` points are gaps with a grey
band behind them; several spectra (an R/S pair) are overlaid with a legend. As
:func:`cplscope.plot.cpl.plot_cpl`, it draws on matplotlib's Agg canvas, never pyplot, and the
file format follows the suffix (.png, .svg, .pdf).

:func:`cd_mirror_report` is :func:`cplscope.plot.cpl.mirror_report` on g_abs: whether
g_R + g_S is consistent with 0 where both spectra have a g_abs, and the mirror ratio
g_R/(−g_S).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..science.cd import FLAG_OPAQUE
from ..data.cd_spectrum import CDSpectrum
from .cpl import MirrorReport, _g_limits, _label, mirror_report

__all__ = ["cd_mirror_report", "plot_cd"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
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
            show_absorbance: bool = True) -> Figure:
    """Draw the CD figure and optionally save it.

    Args:
        spectra: one CD spectrum or several to overlay (e.g. an R/S pair).
        path: file to write; the suffix picks PNG, SVG or PDF.
        labels: legend labels (default: each spectrum's ``sample`` metadata).
        title: figure title.
        mirror: True to compute :func:`cd_mirror_report` of the first two spectra and print
            it on the g_abs panel, or a report to print.
        cd_unit: ``"mdeg"`` (ellipticity θ) or ``"delta_a"`` (ΔA) for the CD panel.
        show_absorbance: draw A on the CD panel's right axis (dashed).

    Returns:
        The matplotlib Figure (Agg canvas).

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
    fmt = None
    if path is not None:
        fmt = _FORMATS.get(Path(path).suffix.lower())
        if fmt is None:
            raise ValueError(f"cannot tell the figure format from {Path(path).name!r}: use a "
                             f"file name ending in {', '.join(_FORMATS)}")
    names = list(labels) if labels is not None else [_label(s, i) for i, s in enumerate(specs)]

    fig = Figure(figsize=(7.0, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_cd, ax_g = fig.subplots(2, 1, sharex=True)
    ax_a = ax_cd.twinx() if show_absorbance else None
    g_all: list[np.ndarray] = []
    for i, (spec, name) in enumerate(zip(specs, names)):
        color = f"C{i % 10}"
        order = np.argsort(spec.wavelength_nm, kind="stable")
        wl = spec.wavelength_nm[order]
        if cd_unit == "mdeg":
            y, sy = spec.ellipticity_mdeg[order], spec.sigma_ellipticity_mdeg[order]
        else:
            y, sy = spec.delta_a[order], spec.sigma_delta_a[order]
        ax_cd.fill_between(wl, y - sy, y + sy, color=color, alpha=0.25, lw=0)
        ax_cd.plot(wl, y, color=color, lw=1.4, label=f"{name} CD")
        if ax_a is not None and np.isfinite(spec.absorbance).any():
            ax_a.plot(wl, spec.absorbance[order], color=color, lw=1.0, ls="--", alpha=0.7,
                      label=f"{name} A")
        g, sg = spec.g_abs[order], spec.sigma_g_abs[order]
        ax_g.fill_between(wl, g - sg, g + sg, color=color, alpha=0.25, lw=0)
        ax_g.plot(wl, g, color=color, lw=1.4, label=name)
        g_all.append(np.column_stack([g, sg]))
        _shade_opaque(ax_cd, wl, spec.has_flag(FLAG_OPAQUE)[order])
        _shade_opaque(ax_g, wl, spec.has_flag(FLAG_OPAQUE)[order])
    _limits(ax_g, np.concatenate(g_all))
    for ax in (ax_cd, ax_g):
        ax.axhline(0.0, color="0.6", lw=0.6)
    ax_cd.set_ylabel("CD, θ (mdeg)  (band: ±1σ)" if cd_unit == "mdeg"
                     else "CD, ΔA = A_L − A_R  (band: ±1σ)")
    if ax_a is not None:
        ax_a.set_ylabel("absorbance A (dashed)")
        ax_a.set_ylim(bottom=0.0)
    ax_g.set_ylabel("g_abs = ΔA/A  (band: ±1σ)")
    ax_g.set_xlabel("wavelength (nm)")
    ax_g.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    if cd_unit == "delta_a":
        ax_cd.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_g.legend(loc="upper right", fontsize="small")
    if title:
        fig.suptitle(title)
    report = mirror if isinstance(mirror, MirrorReport) else (
        cd_mirror_report(specs[0], specs[1]) if mirror else None)
    if report is not None:
        ax_g.text(0.01, 0.02, report.text(), transform=ax_g.transAxes, fontsize="x-small",
                  va="bottom", ha="left", bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    if path is not None:
        fig.savefig(path, format=fmt, dpi=150)
    return fig


def _shade_opaque(ax, wl: np.ndarray, opaque: np.ndarray) -> None:
    """Grey bands over runs of opaque points (half a step beyond each end)."""
    if not opaque.any() or wl.size < 2:
        return
    step = float(np.median(np.diff(wl)))
    idx = np.flatnonzero(opaque)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    for k, run in enumerate(runs):
        ax.axvspan(wl[run[0]] - step / 2, wl[run[-1]] + step / 2, color="0.85", lw=0,
                   zorder=0, label="opaque" if k == 0 and ax.get_label() != "shaded" else None)
    ax.set_label("shaded")


def _limits(ax, y_sigma: np.ndarray, spread: float = 4.0) -> None:
    """Scale the axis to the well-measured points (σ within ``spread``× the best)."""
    sy = y_sigma[:, 1]
    ok = np.isfinite(y_sigma[:, 0]) & np.isfinite(sy) & (sy > 0)
    if ok.any():
        _g_limits(ax, y_sigma[ok & (sy <= spread * sy[ok].min())])
