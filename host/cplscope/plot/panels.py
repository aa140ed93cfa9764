"""What the CPL and CD figures share: the g panel (points with error bars clipped at the axis,
band means, an axis range that shows every band), the title with sample and date, legends
kept off the data, and number formatting.

A g panel shows, per spectrum in one colour:

- every point with g as a marker and its ±1σ bar; points much noisier than the spectrum's
  best (σ > ``faint_factor`` × its 10th percentile) are open, lighter markers;
- a bar that runs past the axis stops at it with an open triangle (△ or ▽) on the frame,
  and a point whose g lies past the axis is a filled triangle (▲ or ▼) there: nothing runs
  off the figure unannounced;
- with band means, each band's inverse-variance mean (:mod:`cplscope.science.bands`) as a
  horizontal segment across the points averaged, inside a ±1σ box, and its value in the
  legend;
- the axis range holds 0, every band mean ± 1.5σ and every well-measured point ± 1σ, so the
  noise of weak points cannot flatten the band, and no band's estimate is cut off.
"""
from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import Formatter

from ..science.bands import BandMean

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: σ ≤ this × a spectrum's typical σ (10th percentile): a well-measured point.
FAINT_FACTOR = 3.0
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def figure_format(path: str | os.PathLike[str] | None) -> str | None:
    """The matplotlib format of a figure path (None for no path); ValueError otherwise."""
    if path is None:
        return None
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the figure format from {Path(path).name!r}: use a "
                         f"file name ending in {', '.join(FORMATS)}")
    return fmt


def new_figure(figure: Figure | None, size: tuple[float, float]) -> Figure:
    """``figure`` (emptied, resized, constrained layout), or a new Figure on matplotlib's
    Agg canvas: the figures never need a display or touch pyplot's state unless the caller
    hands in a pyplot figure to show."""
    if figure is None:
        figure = Figure(figsize=size, layout="constrained")
        FigureCanvasAgg(figure)
        return figure
    figure.clear()
    figure.set_size_inches(*size)
    figure.set_layout_engine("constrained")
    return figure


def series_label(spec: Any, i: int) -> str:
    """The legend label of a spectrum (CPL or CD): its sample's name, else its index."""
    sample = spec.metadata.get("sample")
    if isinstance(sample, str) and sample and sample != "unknown":
        return sample
    if isinstance(sample, dict) and sample.get("name"):
        return str(sample["name"])
    return f"spectrum {i + 1}"


def title_lines(specs: Sequence[Any], names: Sequence[str], what: str,
                title: str | None) -> tuple[str, str]:
    """The figure's title (the sample names and what is shown, or ``title``) and the line
    under it: when each spectrum was measured (UTC) and on which instrument."""
    main = title or f"{' and '.join(dict.fromkeys(names))}: {what}"
    dates = [(name, _date(spec.metadata.get("date"))) for spec, name in zip(specs, names)]
    known = sorted({d for _, d in dates if d})
    days = {d[:10] for d in known}
    if not known:
        when_text = "date not recorded"
    elif len(known) == 1:
        when_text = f"measured {known[0]}"
    elif len(days) == 1 and all(d.endswith(" UTC") for d in known):   # one day: a span
        when_text = f"measured {known[0][:-4]}–{known[-1][11:]}"
    else:
        when_text = "measured " + ", ".join(f"{n} {d}" for n, d in dates if d)
    sub = f"{when_text}; {_instrument([s.metadata for s in specs])}"
    return main, "\n".join(textwrap.wrap(sub, 100))


def _date(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return value
    return t.strftime("%Y-%m-%d %H:%M UTC" if t.utcoffset() is not None else "%Y-%m-%d %H:%M")


def _instrument(metas: Sequence[dict[str, Any]]) -> str:
    """Which instrument measured the spectra: the simulated one with its noise seeds, or the
    serial numbers of real ones."""
    insts = [m.get("instrument") or {} for m in metas]
    sources: list[dict[str, Any]] = [m["source"] for m in metas
                                     if isinstance(m.get("source"), dict)]
    if sources and not any(insts):
        return "from " + ", ".join(f"{s.get('file', '?')} ({s.get('format', 'a file')})"
                                   for s in sources)
    if all(i.get("board") == "sim" for i in insts):
        seeds = []
        for meta, inst in zip(metas, insts):
            seed = (meta.get("settings") or {}).get("seed", inst.get("sim_seed"))
            if seed is not None and seed not in seeds:
                seeds.append(seed)
        if not seeds:
            return "simulated instrument"
        word = "seed" if len(seeds) == 1 else "seeds"
        return f"simulated instrument, {word} {', '.join(str(s) for s in seeds)}"
    serials = list(dict.fromkeys(str(i["serial"]) for i in insts if i.get("serial")))
    if serials:
        return ("instrument " if len(serials) == 1 else "instruments ") + ", ".join(serials)
    return "instrument not recorded"


def set_titles(fig, specs: Sequence[Any], names: Sequence[str], what: str,
               title: str | None) -> None:
    main, sub = title_lines(specs, names, what, title)
    fig.suptitle(f"{main}\n{sub}", fontsize="medium")


class PowerFormatter(Formatter):
    """Tick labels divided by 10^power (the power goes into the axis label, where it cannot
    collide with a legend as matplotlib's floating "×10⁶" does); none below 0 when
    ``non_negative`` (an intensity axis whose negative part only aligns its zero with a
    ΔI axis)."""

    def __init__(self, power: int, non_negative: bool = False) -> None:
        self.power, self.non_negative = power, non_negative

    def __call__(self, x: float, pos: int | None = None) -> str:
        if self.non_negative and x < 0:
            return ""
        return f"{x / 10.0 ** self.power:g}".replace("-", "−")


def power_label(top: float) -> int:
    """The power of ten (a multiple of 3, 0 below 10⁴) to show an axis reaching ``top``."""
    if not (math.isfinite(top) and top >= 1e4):
        return 0
    return 3 * int(math.floor(math.log10(top) / 3))


def superscript(n: int) -> str:
    return str(n).translate(_SUPERSCRIPT)


def pm_text(value: float, sigma: float) -> str:
    """``value ± sigma`` with σ to 2 significant digits and, outside 0.01 … 999, a common
    power of ten: ``(+6.33 ± 0.51)×10⁻⁴``, ``+0.500 ± 0.020``."""
    if not (math.isfinite(value) and math.isfinite(sigma) and sigma > 0):
        return f"{value:+.2g}"
    exp = int(math.floor(math.log10(max(abs(value), sigma))))
    if -2 <= exp <= 2:        # 0.01 … 999: no power of ten needed
        exp = 0
    scale = 10.0 ** exp
    decimals = max(0, exp - int(math.floor(math.log10(sigma))) + 1)
    v, s = value / scale, sigma / scale
    body = f"{v:+.{decimals}f} ± {s:.{decimals}f}".replace("-", "−")
    return body if exp == 0 else f"({body})×10{str(exp).translate(_SUPERSCRIPT)}"


def typical_sigma(sg: np.ndarray) -> float:
    """The typical σ of a spectrum's best points: the 10th percentile over its finite σ > 0
    (the target σ of an adaptive scan; the peak's σ of a fixed-dwell one)."""
    ok = np.isfinite(sg) & (sg > 0)
    return float(np.quantile(sg[ok], 0.1)) if ok.any() else math.nan


@dataclass
class GSeries:
    """One spectrum's g panel: wavelengths (nm), g and σ, colour, name and band means."""

    name: str
    color: str
    wavelength_nm: np.ndarray
    g: np.ndarray
    sigma_g: np.ndarray
    bands: list[BandMean] = field(default_factory=list)
    faint_factor: float = FAINT_FACTOR
    #: False when the bands are runs of points (no intensity to find the bands with)
    bands_have_peaks: bool = True

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.g) & np.isfinite(self.sigma_g) & (self.sigma_g > 0)

    @property
    def without_sigma(self) -> np.ndarray:
        """Points with a g but no σ (a file that does not carry σ, such as a JASCO export)."""
        return np.isfinite(self.g) & ~(np.isfinite(self.sigma_g) & (self.sigma_g > 0))

    @property
    def well(self) -> np.ndarray:
        """Points within ``faint_factor`` × the typical σ."""
        return self.valid & (self.sigma_g <= self.faint_factor * typical_sigma(self.sigma_g))


def g_range(series: Sequence[GSeries], pad: float = 0.12) -> tuple[float, float]:
    """The g axis range: 0, every band mean ± 1.5σ and every well-measured point ± 1σ,
    padded."""
    lo, hi = 0.0, 0.0
    for s in series:
        for b in s.bands:
            if math.isfinite(b.g) and math.isfinite(b.sigma_g):
                lo, hi = min(lo, b.g - 1.5 * b.sigma_g), max(hi, b.g + 1.5 * b.sigma_g)
        well = s.well
        if well.any():
            lo = min(lo, float(np.min(s.g[well] - s.sigma_g[well])))
            hi = max(hi, float(np.max(s.g[well] + s.sigma_g[well])))
        bare = s.without_sigma
        if bare.any():
            lo, hi = min(lo, float(np.min(s.g[bare]))), max(hi, float(np.max(s.g[bare])))
    if hi == lo:
        valid = [np.abs(s.g[s.valid]) for s in series if s.valid.any()]
        top = float(np.max(np.concatenate(valid))) if valid else 1e-3
        lo, hi = -top, top
    span = hi - lo
    return lo - pad * span, hi + pad * span


def draw_g_panel(ax, series: Sequence[GSeries], *, band_means: bool = True,
                 band_note: str = "", quantity: str = "g") -> tuple[list[Any], list[str]]:
    """Draw every series on ``ax`` (module docstring), fix its y range, and return the
    legend's handles and labels."""
    lo, hi = g_range(series)
    ax.set_ylim(lo, hi)
    ax.axhline(0.0, color="0.55", lw=0.7, zorder=1)
    handles: list[Any] = []
    labels: list[str] = []
    clipped_bar = clipped_value = any_faint = False
    for s in series:
        order = np.argsort(s.wavelength_nm, kind="stable")
        x, g, sg = s.wavelength_nm[order], s.g[order], s.sigma_g[order]
        well, valid = s.well[order], s.valid[order]
        faint = valid & ~well
        any_faint |= bool(faint.any())
        bare = s.without_sigma[order]
        if bare.any():
            ax.plot(x, np.where(bare, g, np.nan), color=s.color, lw=1.2, marker="o", ms=2.5,
                    zorder=3)
            handles.append(Line2D([], [], color=s.color, lw=1.2, marker="o", ms=2.5))
            labels.append(f"{s.name}: {quantity} (the file gives no σ)")
        if not valid.any():
            continue
        for mask, filled in ((well, True), (faint, False)):
            if not mask.any():
                continue
            cb, cv = _points(ax, x[mask], g[mask], sg[mask], lo, hi, s.color, filled)
            clipped_bar |= cb
            clipped_value |= cv
        handles.append(_point_handle(s.color, True))
        labels.append(f"{s.name}: {quantity} at each point, ±1σ")
        if band_means and s.bands:
            step = float(np.median(np.diff(x))) if x.size > 1 else 1.0
            for b in s.bands:
                _band(ax, b, step, s.color, lo, hi)
            handles.append((Patch(color=s.color, alpha=0.22, lw=0),
                            Line2D([], [], color=s.color, lw=2.6)))
            labels.append(f"{s.name}: band mean ±1σ{band_note}")
            for b in s.bands:
                handles.append(Line2D([], [], ls="none"))
                where = (f"{b.peak_nm:g} nm band ({b.start_nm:g}–{b.stop_nm:g} nm, "
                         if s.bands_have_peaks else f"{b.start_nm:g}–{b.stop_nm:g} nm (")
                labels.append(f"    {where}{b.n_points} points): {pm_text(b.g, b.sigma_g)}"
                              + (f", σ×{b.scale:.1f} for scatter" if b.scale > 1.05 else ""))
    if any_faint:
        handles.append(_point_handle("0.45", False))
        labels.append(f"open, light: σ > {series[0].faint_factor:g}× the spectrum's best "
                      "(weak light)")
    if clipped_bar:
        handles.append((_edge_marker("0.35", "^", False), _edge_marker("0.35", "v", False)))
        labels.append("error bar continues beyond the axis")
    if clipped_value:
        handles.append((_edge_marker("0.35", "^", True), _edge_marker("0.35", "v", True)))
        labels.append(f"{quantity} beyond the axis")
    return handles, labels


def _edge_marker(color: str, marker: str, filled: bool) -> Line2D:
    return Line2D([], [], ls="none", marker=marker, ms=5.5 if filled else 4.5, color=color,
                  mfc=color if filled else "white", mew=0.9)


def _point_handle(color: str, filled: bool) -> Line2D:
    return Line2D([], [], color=color, marker="o", ms=3.5, lw=0.9,
                  mfc=color if filled else "white", alpha=1.0 if filled else 0.6)


def _points(ax, x: np.ndarray, g: np.ndarray, sg: np.ndarray, lo: float, hi: float,
            color: str, filled: bool) -> tuple[bool, bool]:
    """Markers and ±1σ bars clipped at [lo, hi], with carets where a bar or a value leaves
    the axis; returns (a bar was clipped, a value was)."""
    alpha_bar, alpha_marker, lw = (0.8, 1.0, 0.9) if filled else (0.22, 0.5, 0.7)
    inside = (g >= lo) & (g <= hi)
    y0, y1 = np.clip(g - sg, lo, hi), np.clip(g + sg, lo, hi)
    ax.vlines(x, y0, y1, color=color, lw=lw, alpha=alpha_bar, zorder=2, gid="error-bars")
    ax.plot(x[inside], g[inside], ls="none", marker="o", ms=3.2 if filled else 3.0,
            color=color, mfc=color if filled else "white", mew=0.9, alpha=alpha_marker,
            zorder=3, gid="points" if filled else "weak-points")
    over, under = inside & (g + sg > hi), inside & (g - sg < lo)
    above, below = g > hi, g < lo
    for mask, y, marker, solid in ((over, hi, "^", False), (under, lo, "v", False),
                                   (above, hi, "^", True), (below, lo, "v", True)):
        if mask.any():
            ax.plot(x[mask], np.full(int(mask.sum()), y), ls="none", marker=marker,
                    ms=5.5 if solid else 4.5, color=color, mfc=color if solid else "white",
                    mew=0.9, alpha=max(alpha_marker, 0.7), clip_on=False, zorder=4,
                    gid="value-clipped" if solid else "bar-clipped")
    # a bar that leaves the axis on both sides says so twice; a value beyond says it once
    return bool(over.any() or under.any()), bool(above.any() or below.any())


def _band(ax, b: BandMean, step: float, color: str, lo: float, hi: float) -> None:
    """A band mean: its segment across the points averaged and the ±1σ box, clipped."""
    x0, x1 = b.start_nm - step / 2, b.stop_nm + step / 2
    y0, y1 = max(b.g - b.sigma_g, lo), min(b.g + b.sigma_g, hi)
    if y1 > y0:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color=color, alpha=0.22, lw=0,
                               zorder=1.5, gid="band-sigma"))
    if lo <= b.g <= hi:
        ax.plot([x0, x1], [b.g, b.g], color=color, lw=2.6, solid_capstyle="butt", zorder=5,
                gid="band-mean")
    else:
        y = hi if b.g > hi else lo
        ax.plot([(x0 + x1) / 2], [y], marker="^" if b.g > hi else "v", ms=8, color=color,
                clip_on=False, zorder=5, gid="band-mean-clipped")


def legend_below(ax, handles: list[Any], labels: list[str], *, ncols: int = 1) -> None:
    """A legend under the axes (under its x label), off the data."""
    if not handles:
        return
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncols=ncols,
              fontsize="x-small", frameon=False, borderaxespad=0.0,
              handler_map={tuple: HandlerTuple(ndivide=None, pad=0.0)})


def legend_above(ax, handles: list[Any], labels: list[str], *, ncols: int = 2) -> None:
    """A legend over the axes, off the data."""
    if not handles:
        return
    ax.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.0, 1.02), ncols=ncols,
              fontsize="x-small", frameon=False, borderaxespad=0.0,
              handler_map={tuple: HandlerTuple(ndivide=None, pad=0.0)})


def shade_runs(ax, wl: np.ndarray, mask: np.ndarray, *, color: str = "0.92",
               hatch: str | None = None) -> bool:
    """Grey spans over the runs of ``mask`` (half a step beyond each end); True if any."""
    if not mask.any():
        return False
    step = float(np.median(np.diff(wl))) if wl.size > 1 else 1.0
    idx = np.flatnonzero(mask)
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        ax.axvspan(wl[run[0]] - step / 2, wl[run[-1]] + step / 2, facecolor=color,
                   edgecolor="0.8" if hatch else "none", hatch=hatch, lw=0, zorder=0)
    return True


def finish(fig: Any, ax_g: Any, report: Any, path: Any, fmt: Any) -> Any:
    """The mirror report (if any) above the g panel, where no data can be; the figure saved
    to ``path`` when given. Returns the figure."""
    if report is not None:
        ax_g.set_title(report.text(), loc="left", fontsize="x-small")
    if path is not None:
        fig.savefig(path, format=fmt, dpi=150)
    return fig
