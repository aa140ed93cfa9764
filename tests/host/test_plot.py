"""CPL figure files and the R/S mirror-symmetry report."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from cplscope.plot.cpl import mirror_report, plot_cpl
from cplscope.science.results import FLAG_NO_EMISSION, PointResult
from cplscope.data.spectrum import Spectrum

WL = np.arange(420.0, 480.0, 2.0)                  # 30 wavelengths


def band(wl):
    return np.exp(-0.5 * ((wl - 438.0) / 7.6) ** 2)


def enantiomer(rng, sign, scale=1.0, sigma=6e-5, dark_above=None, name="R"):
    """g = sign·scale·6e-4 with Gaussian noise of σ; points above ``dark_above`` nm emit nothing."""
    pts = []
    for wl in WL:
        i = 1e6 * band(wl) + 1e4
        if dark_above is not None and wl > dark_above:
            nan = math.nan
            pts.append(PointResult(float(wl), 1.0, nan, nan, nan, nan, nan, nan, nan, 1.0, 100,
                                   1.0, (FLAG_NO_EMISSION,), 1.0))
            continue
        g = sign * scale * 6e-4 + sigma * rng.standard_normal()
        d = i * g / 2
        pts.append(PointResult(float(wl), i, (i + d) / 2, (i - d) / 2, d, g, sigma, 0.0, 1e-4,
                               1.0, 100, 1.0, (), 1e3))
    return Spectrum(pts, {"sample": f"{name}-Cs4PbBr6", "units": {"intensity": "cps"}})


def test_true_mirror_pairs_pass_at_the_nominal_rate():
    """p-values of true mirror pairs are uniform: 5 % fall below 0.05; the ratio pulls are
    standard normal."""
    rng = np.random.default_rng(2024)
    reps = 300
    p, pulls, consistent = [], [], 0
    for _ in range(reps):
        rep = mirror_report(enantiomer(rng, +1), enantiomer(rng, -1, name="S"))
        p.append(rep.p_value)
        pulls.append((rep.ratio - 1) / rep.sigma_ratio)
        consistent += rep.consistent
        assert rep.n_points == 30 and rep.dof == 30
    frac = np.mean(np.array(p) < 0.05)
    assert abs(frac - 0.05) < 3 * math.sqrt(0.05 * 0.95 / reps)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 3 / math.sqrt(reps)
    assert abs(pulls.std(ddof=1) - 1) < 3 / math.sqrt(2 * reps)
    assert consistent >= reps * 0.97         # alpha 0.01 plus the 3σ ratio test


def test_half_scaled_partner_is_detected():
    rng = np.random.default_rng(7)
    rep = mirror_report(enantiomer(rng, +1), enantiomer(rng, -1, scale=0.5, name="S"))
    assert not rep.consistent and rep.p_value < 1e-6
    assert abs(rep.ratio - 2.0) < 4 * rep.sigma_ratio
    assert "NOT a mirror pair" in rep.text()
    assert set(rep.as_dict()) >= {"chi2", "dof", "p_value", "ratio", "sigma_ratio"}


def test_report_uses_only_common_wavelengths_with_emission():
    rng = np.random.default_rng(8)
    r = enantiomer(rng, +1, dark_above=460.0)
    s = enantiomer(rng, -1, name="S")
    s.points = s.points[5:]                  # S starts at 430 nm
    rep = mirror_report(r, s)
    assert rep.n_points == np.sum((WL >= 430) & (WL <= 460))
    assert (rep.wavelength_min_nm, rep.wavelength_max_nm) == (430.0, 460.0)
    with pytest.raises(ValueError, match="share no wavelength"):
        mirror_report(r, enantiomer(rng, -1, dark_above=300.0))


def gids(ax, gid):
    """The artists of ``ax`` with that gid."""
    return [a for a in ax.get_children() if a.get_gid() == gid]


def points_x(ax, gid="points"):
    return np.concatenate([np.asarray(ln.get_xdata(), float) for ln in gids(ax, gid)] or
                          [np.empty(0)])


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_figure_files_are_valid(tmp_path, suffix):
    rng = np.random.default_rng(1)
    r, s = enantiomer(rng, +1, dark_above=466.0), enantiomer(rng, -1, dark_above=466.0, name="S")
    path = tmp_path / f"cpl{suffix}"
    fig = plot_cpl([r, s], path, mirror=True, title="R/S Cs4PbBr6")
    data = path.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    else:
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
    ax_cpl, ax_g = fig.axes[0], fig.axes[1]
    x = points_x(ax_g)                         # no_emission points are gaps, not values
    assert x.size == 2 * np.sum(WL <= 466) and x.max() <= 466
    # the mirror report sits above the g panel, not over its data
    assert "mirror pair" in ax_g.get_title(loc="left") and not ax_g.texts
    assert ax_cpl.get_ylabel().startswith("ΔI")
    assert fig.get_suptitle().startswith("R/S Cs4PbBr6")


def test_delta_i_and_total_are_told_apart_with_units_and_aligned_zeros():
    rng = np.random.default_rng(4)
    r, s = enantiomer(rng, +1), enantiomer(rng, -1, name="S")   # ΔI > 0 and ΔI < 0
    fig = plot_cpl([r, s])
    ax_cpl, ax_tot = fig.axes[0], fig.axes[2]
    assert "(cps)" in ax_cpl.get_ylabel() and "(10⁶ cps)" in ax_tot.get_ylabel()
    assert "total" in ax_tot.get_ylabel()
    legend = ax_cpl.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert sum("ΔI" in t for t in texts) == 2 and sum("total I" in t for t in texts) == 2
    handles = dict(zip(texts, legend.legend_handles))
    assert (handles["R-Cs4PbBr6: total I (right axis)"].get_linestyle()
            != ax_cpl.get_lines()[0].get_linestyle())           # dashed against solid
    (lo1, hi1), (lo2, hi2) = ax_cpl.get_ylim(), ax_tot.get_ylim()
    assert lo1 < 0 < hi1 and lo2 < 0 < hi2            # S's ΔI is negative
    assert -lo1 / (hi1 - lo1) == pytest.approx(-lo2 / (hi2 - lo2), rel=1e-9)
    # all data stay inside both ranges
    assert np.nanmin(s.delta_i) >= lo1 and np.nanmax(r.delta_i) <= hi1
    assert np.nanmax(r.intensity) <= hi2
    ticks = ax_tot.yaxis.get_major_formatter().format_ticks([-1e5, 0.0, 5e5])
    assert ticks == ["", "0", "0.5"]       # no negative intensities; 10⁶ in the axis label


def test_title_names_the_samples_and_the_date():
    rng = np.random.default_rng(11)
    r, s = enantiomer(rng, +1), enantiomer(rng, -1, name="S")
    r.metadata.update(date="2026-03-02T14:05:00+00:00",
                      instrument={"board": "sim", "sim_seed": 17})
    s.metadata.update(date="2026-03-02T15:40:00+00:00",
                      instrument={"board": "sim", "sim_seed": 18})
    title = plot_cpl([r, s]).get_suptitle()
    assert "R-Cs4PbBr6" in title and "S-Cs4PbBr6" in title
    assert "measured 2026-03-02 14:05–15:40 UTC" in title and "seeds 17, 18" in title
    s.metadata["date"] = "2026-03-04T09:00:00+00:00"
    title = plot_cpl([r, s]).get_suptitle()
    assert "R-Cs4PbBr6 2026-03-02 14:05 UTC, S-Cs4PbBr6 2026-03-04 09:00 UTC" in title
    assert "date not recorded" in plot_cpl(enantiomer(rng, +1)).get_suptitle()


def test_legends_are_off_the_data_and_their_colours_match_the_data():
    rng = np.random.default_rng(12)
    r, s = enantiomer(rng, +1), enantiomer(rng, -1, name="S")
    fig = plot_cpl([r, s], mirror=True)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax_cpl, ax_g, ax_tot = fig.axes
    frames = [ax.get_window_extent(renderer) for ax in (ax_cpl, ax_g)]
    for ax in (ax_cpl, ax_g):
        box = ax.get_legend().get_window_extent(renderer)
        assert not any(box.overlaps(f) for f in frames), ax.get_ylabel()
    # each legend entry's colour is its data's colour: ΔI band and line, the band mean's box
    # and segment, the points
    for spec_i, name in enumerate(("R-Cs4PbBr6", "S-Cs4PbBr6")):
        color = to_rgb(f"C{spec_i}")
        handles = dict(zip([t.get_text() for t in ax_g.get_legend().get_texts()],
                           ax_g.get_legend().legend_handles))
        assert to_rgb(handles[f"{name}: g$_{{lum}}$ at each point, ±1σ"].get_color()) == color
        mean = [h for t, h in handles.items() if t.startswith(f"{name}: band mean")]
        assert mean, handles
        segments = [ln for ln in gids(ax_g, "band-mean") if to_rgb(ln.get_color()) == color]
        boxes = [p for p in gids(ax_g, "band-sigma") if to_rgb(p.get_facecolor()) == color]
        assert len(segments) == len(boxes) == 1
    points = gids(ax_g, "points")
    assert {to_rgb(p.get_color()) for p in points} == {to_rgb("C0"), to_rgb("C1")}


def test_weak_points_are_clipped_at_the_axis_with_markers_and_every_band_is_shown():
    """Issue 25: error bars ran off a g axis set by the strong band, and the weak 504-nm band
    could not be seen. Now: bars end at the axis with a marker, and the axis holds every
    band's estimate ± its σ."""
    wl = np.arange(400.0, 561.0, 2.0)
    strong = np.exp(-0.5 * ((wl - 438.0) / 7.6) ** 2)
    weak = 0.03 * np.exp(-0.5 * ((wl - 504.0) / 8.5) ** 2)
    rng = np.random.default_rng(13)
    pts = []
    for lam, a, b in zip(wl, strong, weak):
        i = 1.5e6 * (a + b)
        if i < 200:
            nan = math.nan
            pts.append(PointResult(float(lam), i, nan, nan, nan, nan, nan, nan, nan, 1.0, 30,
                                   6.0, (FLAG_NO_EMISSION,), 3.0))
            continue
        sg = max(2e-4, 2.4 / math.sqrt(i * 300))
        g = (6e-4 if a > b else 0.0) + sg * rng.standard_normal()
        d = i * g / 2
        pts.append(PointResult(float(lam), i, (i + d) / 2, (i - d) / 2, d, g, sg, 0.0, 1e-3,
                               1.0, 100, 300.0, (), math.sqrt(i)))
    spec = Spectrum(pts, {"sample": "R-Cs4PbBr6"})
    fig = plot_cpl(spec)
    ax_g = fig.axes[1]
    lo, hi = ax_g.get_ylim()
    from cplscope.science.bands import band_means

    bands = band_means(spec.wavelength_nm, spec.intensity, spec.g_lum, spec.sigma_g,
                       spec.sigma_intensity)
    assert [round(b.peak_nm) for b in bands] == [438, 504]
    for b in bands:                         # every band's estimate and its σ on the axis
        assert lo < b.g - b.sigma_g and b.g + b.sigma_g < hi
    segments = sorted(gids(ax_g, "band-mean"), key=lambda ln: ln.get_xdata()[0])
    assert [ln.get_ydata()[0] for ln in segments] == pytest.approx([b.g for b in bands])
    legend = " ".join(t.get_text() for t in ax_g.get_legend().get_texts())
    assert "inverse-variance mean over each emission band" in legend
    assert "438 nm band" in legend and "504 nm band" in legend
    # no error bar leaves the axis; each one that would carries a marker on the frame
    bars = gids(ax_g, "error-bars")
    segs = np.concatenate([np.asarray(c.get_segments()).reshape(-1, 2) for c in bars])
    assert segs[:, 1].min() >= lo and segs[:, 1].max() <= hi
    g, sg = spec.g_lum, spec.sigma_g
    ok = np.isfinite(g)
    inside = ok & (g >= lo) & (g <= hi)
    n_bar_clipped = int(np.sum(inside & (g + sg > hi)) + np.sum(inside & (g - sg < lo)))
    n_value_clipped = int(np.sum(ok & ((g > hi) | (g < lo))))
    assert n_bar_clipped > 0 and n_value_clipped > 0
    clipped = sum(len(ln.get_xdata()) for ln in gids(ax_g, "bar-clipped"))
    beyond = sum(len(ln.get_xdata()) for ln in gids(ax_g, "value-clipped"))
    assert (clipped, beyond) == (n_bar_clipped, n_value_clipped)
    for ln in gids(ax_g, "bar-clipped") + gids(ax_g, "value-clipped"):
        assert set(np.round(ln.get_ydata(), 12)) <= {round(lo, 12), round(hi, 12)}
    assert "error bar continues beyond the axis" in legend and "beyond the axis" in legend
    # the weak band's total I is drawn once more, magnified and labelled
    ax_tot = fig.axes[2]
    assert any(t.get_text().startswith("×") for t in ax_tot.texts)


def test_faint_points_are_open_markers_and_do_not_set_the_g_range():
    rng = np.random.default_rng(5)
    r = enantiomer(rng, +1)
    edge = (WL < 426) | (WL > 470)
    for i in np.flatnonzero(edge):                     # weak band edges: σ 30× the rest
        p = r.points[i]
        r.points[i] = p.__class__(**{**p.__dict__, "sigma_g": 30 * p.sigma_g,
                                     "g_lum": 5e-3 * (-1) ** i})
    fig = plot_cpl(r, band_means=False)
    ax_g = fig.axes[1]
    assert sorted(points_x(ax_g)) == sorted(WL[~edge])
    assert set(points_x(ax_g, "weak-points")) | set(
        x for ln in gids(ax_g, "value-clipped") for x in ln.get_xdata()) >= set(WL[edge])
    lo, hi = ax_g.get_ylim()
    assert hi < 5e-3 and lo > -5e-3                    # set by the well-measured band
    assert hi > 6e-4 + 6e-5 and lo <= 0
    legend = [t.get_text() for t in ax_g.get_legend().get_texts()]
    assert any("weak light" in t for t in legend)
    assert not gids(ax_g, "band-mean")


def test_a_file_without_sigma_or_intensity_still_plots():
    pts = [PointResult(float(w), math.nan, math.nan, math.nan, math.nan, 1e-3 * math.sin(w),
                       math.nan, math.nan, math.nan, math.nan, 0, math.nan) for w in WL]
    fig = plot_cpl(Spectrum(pts, {"sample": "plain"}))
    assert len(fig.axes) == 1                          # no intensity: the g panel alone
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "gives no σ" in legend


def test_smoothing_is_optional_stated_and_an_inverse_variance_mean():
    from cplscope.plot.cpl import _smooth

    rng = np.random.default_rng(6)
    r = enantiomer(rng, +1, dark_above=470.0)
    fig = plot_cpl(r, smooth_points=5)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert any("5-point" in t for t in labels)
    assert not any("smoothed" in t for t in
                   [t.get_text() for t in plot_cpl(r).axes[1].get_legend().get_texts()])
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan, 7.0])
    sg = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.nan, 1.0])
    out, sigma = _smooth(g, sg, 3)
    np.testing.assert_allclose(out[[0, 1, 2, 3, 4, 6]], [1.5, 2.0, 3.0, 4.0, 4.5, 7.0])
    np.testing.assert_allclose(sigma[[1, 2, 3]], 1 / np.sqrt(3))
    assert np.isnan(out[5]) and np.isnan(sigma[5])     # the gap stays a gap
    sg2 = np.array([1.0, 1e3, 1.0, 1.0, 1.0, 1.0, 1.0])   # a noisy point hardly counts
    assert _smooth(np.array([0, 100, 0, 0, 0, 0, 0.0]), sg2, 3)[0][0] == \
        pytest.approx(0, abs=1e-3)
    for bad in (1, 2, 4):
        with pytest.raises(ValueError, match="odd number"):
            plot_cpl(r, smooth_points=bad)


def test_single_spectrum_and_bad_arguments(tmp_path):
    rng = np.random.default_rng(3)
    r = enantiomer(rng, +1)
    fig = plot_cpl(r)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match="figure format"):
        plot_cpl(r, tmp_path / "cpl.jpeg2")
    with pytest.raises(ValueError, match="labels"):
        plot_cpl([r], labels=["a", "b"])
    with pytest.raises(ValueError, match="two spectra"):
        plot_cpl(r, mirror=True)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_cpl(Spectrum())
