"""CPL figures and the mirror-symmetry check of an enantiomer pair.

:func:`plot_cpl` draws the figure of the seed paper's Fig. 3 (b, d): a panel with ΔI
(left axis) and the total intensity "DC" (right axis, dashed) against wavelength, and a panel
with g_lum and its ±σ band. ``no_emission`` points are gaps. Several spectra (an R/S pair) are
overlaid with a legend. The figure uses matplotlib's Agg canvas directly, so it never needs a
display or touches pyplot's global state; the file format follows the suffix (.png, .svg,
.pdf).

:func:`mirror_report` tests whether g_R + g_S is consistent with 0 at the wavelengths where
both spectra have emission, and estimates the mirror ratio g_R/(−g_S).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .results import chi2_sf
from .spectrum import Spectrum

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
             mirror: bool | MirrorReport = False) -> Figure:
    """Draw the CPL figure and optionally save it.

    Args:
        spectra: one spectrum or several to overlay (e.g. an R/S pair).
        path: file to write; the suffix picks PNG, SVG or PDF.
        labels: legend labels (default: each spectrum's ``sample`` metadata).
        title: figure title.
        mirror: True to compute :func:`mirror_report` of the first two spectra and print it
            on the g_lum panel, or a report to print.

    Returns:
        The matplotlib Figure (Agg canvas).

    Raises:
        ValueError: on an unsupported suffix, a label count that does not match, or an empty
            spectrum.
    """
    specs = [spectra] if isinstance(spectra, Spectrum) else list(spectra)
    if not specs or any(len(s) == 0 for s in specs):
        raise ValueError("nothing to plot: pass spectra with at least one point each")
    if labels is not None and len(labels) != len(specs):
        raise ValueError(f"{len(labels)} labels for {len(specs)} spectra")
    fmt = None
    if path is not None:
        fmt = _FORMATS.get(Path(path).suffix.lower())
        if fmt is None:
            raise ValueError(f"cannot tell the figure format from {Path(path).name!r}: use a "
                             f"file name ending in {', '.join(_FORMATS)}")
    names = list(labels) if labels is not None else [_label(s, i) for i, s in enumerate(specs)]
    unit = str(specs[0].metadata.get("units", {}).get("intensity", "cps"))

    fig = Figure(figsize=(7.0, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_cpl, ax_g = fig.subplots(2, 1, sharex=True)
    ax_dc = ax_cpl.twinx()
    colors = [f"C{i % 10}" for i in range(len(specs))]
    well: list[np.ndarray] = []
    for spec, name, color in zip(specs, names, colors):
        order = np.argsort(spec.wavelength_nm, kind="stable")
        wl = spec.wavelength_nm[order]
        ax_cpl.plot(wl, spec.delta_i[order], color=color, lw=1.4, label=f"{name} ΔI")
        ax_dc.plot(wl, spec.intensity[order], color=color, lw=1.0, ls="--", alpha=0.7,
                   label=f"{name} DC")
        g, sg = spec.g_lum[order], spec.sigma_g[order]
        ax_g.fill_between(wl, g - sg, g + sg, color=color, alpha=0.25, lw=0)
        ax_g.plot(wl, g, color=color, lw=1.4, label=name)
        well.append(np.column_stack([g, sg]))
    _g_limits(ax_g, np.concatenate(well))
    ax_cpl.axhline(0.0, color="0.6", lw=0.6)
    ax_g.axhline(0.0, color="0.6", lw=0.6)
    ax_cpl.set_ylabel(f"ΔI = I_L − I_R ({unit})")
    ax_dc.set_ylabel(f"DC, I_L + I_R ({unit}, dashed)")
    ax_g.set_ylabel("g_lum  (band: ±1σ)")
    ax_g.set_xlabel("wavelength (nm)")
    ax_g.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_g.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    report = mirror if isinstance(mirror, MirrorReport) else (
        mirror_report(specs[0], specs[1]) if mirror and len(specs) >= 2 else None)
    if mirror is True and len(specs) < 2:
        raise ValueError("mirror=True needs two spectra (R and S)")
    if report is not None:
        ax_g.text(0.01, 0.02, report.text(), transform=ax_g.transAxes, fontsize="x-small",
                  va="bottom", ha="left", bbox=dict(boxstyle="round", fc="white", alpha=0.8))
    if path is not None:
        fig.savefig(path, format=fmt, dpi=150)
    return fig


def _g_limits(ax, g_sigma: np.ndarray, spread: float = 4.0) -> None:
    """Scale the g axis to the well-measured points (σ within ``spread``× the best), so the
    noise of the band edges does not flatten the band itself; worse points run off-axis."""
    g, sg = g_sigma[:, 0], g_sigma[:, 1]
    ok = np.isfinite(g) & np.isfinite(sg) & (sg > 0)
    if not ok.any():
        return
    good = ok & (sg <= spread * sg[ok].min())
    lo = min(0.0, float(np.min(g[good] - 2 * sg[good])))
    hi = max(0.0, float(np.max(g[good] + 2 * sg[good])))
    pad = 0.15 * (hi - lo) or 1e-4
    ax.set_ylim(lo - pad, hi + pad)


def _label(spec: Spectrum, i: int) -> str:
    sample = spec.metadata.get("sample")
    if isinstance(sample, str) and sample:
        return sample
    if isinstance(sample, dict) and sample.get("name"):
        return str(sample["name"])
    return f"spectrum {i + 1}"
