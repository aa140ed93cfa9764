"""CPL figures and the mirror-symmetry check of an enantiomer pair.

:func:`plot_cpl` draws the figure of the seed paper's Fig. 3 (b, d) as a CPL paper shows it:

- top panel: ΔI = I_L − I_R (left axis, solid) and the total I = I_L + I_R (right axis,
  dashed, lightly filled), both in the file's intensity unit, told apart by a legend, with
  the zeros of both axes at the same height;
- bottom panel: g_lum. Well-measured points (σ_g within ``faint_factor`` × the spectrum's
  best σ_g, its 10th percentile) are a line with a ±1σ band; the others (weak emission at the band edges) are
  faded markers with ±1σ error bars, and the axis range is set by the well-measured points,
  so their noise cannot flatten the band. An optional smoothed curve states its window.

``no_emission`` points (g is NaN) are gaps. Several spectra (an R/S pair) are overlaid, one
colour each. A mirror report goes above the g panel, never over the data. The figure uses
matplotlib's Agg canvas directly, so it never needs a display or touches pyplot's global
state; the file format follows the suffix (.png, .svg, .pdf).

:func:`mirror_report` tests whether g_R + g_S is consistent with 0 at the wavelengths where
both spectra have emission, and estimates the mirror ratio g_R/(−g_S).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import ScalarFormatter

from ..science.results import chi2_sf
from ..data.spectrum import Spectrum

__all__ = ["MirrorReport", "mirror_report", "plot_cpl"]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


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
             faint_factor: float = 3.0) -> Figure:
    """Draw the CPL figure and optionally save it.

    Args:
        spectra: one spectrum or several to overlay (e.g. an R/S pair).
        path: file to write; the suffix picks PNG, SVG or PDF.
        labels: legend labels (default: each spectrum's ``sample`` metadata).
        title: figure title.
        mirror: True to compute :func:`mirror_report` of the first two spectra and print it
            above the g_lum panel, or a report to print.
        smooth_points: also draw g_lum smoothed by an inverse-variance weighted moving
            average over this many neighbouring points (odd, ≥ 3); the legend states it.
        faint_factor: points whose σ_g exceeds this many times the spectrum's typical σ_g
            (the 10th percentile of its σ_g) are drawn faded, with error bars, and do not set the g
            axis range.

    Returns:
        The matplotlib Figure (Agg canvas).

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
    fmt = None
    if path is not None:
        fmt = _FORMATS.get(Path(path).suffix.lower())
        if fmt is None:
            raise ValueError(f"cannot tell the figure format from {Path(path).name!r}: use a "
                             f"file name ending in {', '.join(_FORMATS)}")
    if mirror is True and len(specs) < 2:
        raise ValueError("mirror=True needs two spectra (R and S)")
    names = list(labels) if labels is not None else [_label(s, i) for i, s in enumerate(specs)]
    unit = str(specs[0].metadata.get("units", {}).get("intensity", "cps"))

    fig = Figure(figsize=(7.0, 7.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax_cpl, ax_g = fig.subplots(2, 1, sharex=True, height_ratios=(1.0, 1.0))
    ax_tot = ax_cpl.twinx()
    colors = [f"C{i % 10}" for i in range(len(specs))]
    well_sets: list[np.ndarray] = []
    any_faint = False
    for spec, name, color in zip(specs, names, colors):
        order = np.argsort(spec.wavelength_nm, kind="stable")
        wl = spec.wavelength_nm[order]
        total = spec.intensity[order]
        ax_tot.fill_between(wl, 0.0, total, color=color, alpha=0.08, lw=0)
        ax_tot.plot(wl, total, color=color, lw=1.0, ls="--", alpha=0.8,
                    label=f"{name}: total I (right axis)")
        g, sg = spec.g_lum[order], spec.sigma_g[order]
        well, faint = _significance(g, sg, faint_factor)
        delta_i = spec.delta_i[order]
        # ΔI = I·g/2 carries g's noise: drawn as a line where g is well measured, and as
        # faded markers with ±1σ bars (σ_ΔI = I·σ_g/2) where it is not, as in the g panel
        ax_cpl.plot(wl, np.where(well, delta_i, np.nan), color=color, lw=1.6,
                    label=f"{name}: ΔI (left axis)")
        if faint.any():
            bars = ax_cpl.errorbar(wl[faint], delta_i[faint], yerr=0.5 * total[faint] * sg[faint],
                                   fmt="o", ms=2.5, color=color, alpha=0.35, capsize=0, lw=0)
            for collection in bars.lines[2]:
                collection.set_alpha(0.15)
                collection.set_linewidth(0.8)
        any_faint |= bool(faint.any())
        g_well = np.where(well, g, np.nan)
        ax_g.fill_between(wl, g_well - sg, g_well + sg, color=color, alpha=0.25, lw=0)
        ax_g.plot(wl, g_well, color=color, lw=1.4, marker="o", ms=2.5, label=name)
        if faint.any():
            bars = ax_g.errorbar(wl[faint], g[faint], yerr=sg[faint], fmt="o", ms=3,
                                 color=color, alpha=0.35, capsize=0, lw=0)
            for collection in bars.lines[2]:   # the bars fainter than their markers
                collection.set_alpha(0.15)
                collection.set_linewidth(0.8)
        if smooth_points is not None:  # drawn where it is as well measured as the band
            g_s, sg_s = _smooth(g, sg, smooth_points)
            shown = _significance(g_s, sg_s, faint_factor, typical=_typical(sg))[0]
            ax_g.plot(wl, np.where(shown, g_s, np.nan), color=color, lw=2.4, alpha=0.9,
                      solid_capstyle="round",
                      label=f"{name}: smoothed ({smooth_points}-point weighted mean)")
        well_sets.append(np.column_stack([g[well], sg[well]]))
    _align_zeros(ax_cpl, ax_tot)
    ax_tot.yaxis.set_major_formatter(_NonNegativeFormatter(useMathText=True))
    ax_cpl.axhline(0.0, color="0.6", lw=0.6)
    ax_g.axhline(0.0, color="0.6", lw=0.6)
    _g_limits(ax_g, np.concatenate(well_sets))
    ax_cpl.set_ylabel(f"ΔI = I$_L$ − I$_R$ ({unit})")
    ax_tot.set_ylabel(f"total I = I$_L$ + I$_R$ ({unit})")
    ax_g.set_ylabel("g$_{lum}$ = 2ΔI / I")
    ax_g.set_xlabel("wavelength (nm)")
    for ax in (ax_cpl, ax_tot, ax_g):
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useMathText=True)
    handles = [*ax_cpl.get_legend_handles_labels()[0], *ax_tot.get_legend_handles_labels()[0]]
    ax_cpl.legend(handles=handles, loc="upper right", fontsize="x-small", framealpha=0.85)
    g_handles, g_labels = ax_g.get_legend_handles_labels()
    g_handles.append(Patch(color="0.5", alpha=0.3, lw=0))
    g_labels.append("band: ±1σ")
    if any_faint:
        g_handles.append(Line2D([], [], marker="o", ms=3, ls="", color="0.4", alpha=0.35))
        g_labels.append(f"faded, bars ±1σ: σ$_g$ > {faint_factor:g}× the best (weak emission)")
    ax_g.legend(g_handles, g_labels, loc="best", fontsize="x-small", framealpha=0.85)
    if title:
        fig.suptitle(title)
    report = mirror if isinstance(mirror, MirrorReport) else (
        mirror_report(specs[0], specs[1]) if mirror else None)
    if report is not None:  # above the panel, where no data can be
        ax_g.set_title(report.text(), loc="left", fontsize="x-small")
    if path is not None:
        fig.savefig(path, format=fmt, dpi=150)
    return fig


class _NonNegativeFormatter(ScalarFormatter):
    """Tick labels of an intensity axis: none below 0 (that part of the axis only keeps
    the zeros of the two axes aligned when ΔI is negative)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return "" if x < 0 else super().__call__(x, pos)


def _typical(sg: np.ndarray) -> float:
    """The typical σ_g of a spectrum's best points: the 10th percentile over its points with
    emission (the target σ of an adaptive scan; the peak's σ of a fixed-dwell one)."""
    ok = np.isfinite(sg) & (sg > 0)
    return float(np.quantile(sg[ok], 0.1)) if ok.any() else math.nan


def _significance(g: np.ndarray, sg: np.ndarray, factor: float, *,
                  typical: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the well-measured points (σ_g ≤ factor × the typical σ_g, by default the
    10th percentile of ``sg``) and of the faint ones (finite, but noisier); no-emission
    points are in neither."""
    ok = np.isfinite(g) & np.isfinite(sg) & (sg > 0)
    if not ok.any():
        return ok, ok
    ref = _typical(sg) if typical is None else typical
    well = ok & (sg <= factor * ref)
    return well, ok & ~well


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


def _g_limits(ax, g_sigma: np.ndarray) -> None:
    """Scale the g axis to the well-measured points (their g ± 2σ and 0), so the noise of
    the band edges does not flatten the band itself; faint points run off-axis."""
    g, sg = g_sigma[:, 0], g_sigma[:, 1]
    ok = np.isfinite(g) & np.isfinite(sg) & (sg > 0)
    if not ok.any():
        return
    lo = min(0.0, float(np.min(g[ok] - 2 * sg[ok])))
    hi = max(0.0, float(np.max(g[ok] + 2 * sg[ok])))
    pad = 0.15 * (hi - lo) or 1e-4
    ax.set_ylim(lo - pad, hi + pad)


def _label(spec: Any, i: int) -> str:
    """The legend label of a spectrum (CPL or CD): its sample's name, else its index."""
    sample = spec.metadata.get("sample")
    if isinstance(sample, str) and sample:
        return sample
    if isinstance(sample, dict) and sample.get("name"):
        return str(sample["name"])
    return f"spectrum {i + 1}"
