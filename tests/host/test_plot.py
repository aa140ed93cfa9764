"""CPL figure files and the R/S mirror-symmetry report."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

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
    g_lines = [ln for ln in ax_g.get_lines() if ln.get_label() in ("R-Cs4PbBr6", "S-Cs4PbBr6")]
    assert len(g_lines) == 2
    for ln in g_lines:                        # no_emission points are gaps, not values
        y = np.asarray(ln.get_ydata(), dtype=float)
        x = np.asarray(ln.get_xdata(), dtype=float)
        assert np.isnan(y[x > 466]).all() and np.isfinite(y[x <= 466]).all()
    # the mirror report sits above the g panel, not over its data
    assert "mirror pair" in ax_g.get_title(loc="left") and not ax_g.texts
    assert ax_cpl.get_ylabel().startswith("ΔI")


def test_delta_i_and_total_are_told_apart_with_units_and_aligned_zeros():
    rng = np.random.default_rng(4)
    r, s = enantiomer(rng, +1), enantiomer(rng, -1, name="S")   # ΔI > 0 and ΔI < 0
    fig = plot_cpl([r, s])
    ax_cpl, ax_tot = fig.axes[0], fig.axes[2]
    assert "(cps)" in ax_cpl.get_ylabel() and "(cps)" in ax_tot.get_ylabel()
    assert "total" in ax_tot.get_ylabel()
    legend = [t.get_text() for t in ax_cpl.get_legend().get_texts()]
    assert sum("ΔI" in t for t in legend) == 2 and sum("total I" in t for t in legend) == 2
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax_cpl.get_lines() + ax_tot.get_lines()}
    assert styles["R-Cs4PbBr6: ΔI (left axis)"] != styles["R-Cs4PbBr6: total I (right axis)"]
    (lo1, hi1), (lo2, hi2) = ax_cpl.get_ylim(), ax_tot.get_ylim()
    assert lo1 < 0 < hi1 and lo2 < 0 < hi2            # S's ΔI is negative
    assert -lo1 / (hi1 - lo1) == pytest.approx(-lo2 / (hi2 - lo2), rel=1e-9)
    # all data stay inside both ranges
    assert np.nanmin(s.delta_i) >= lo1 and np.nanmax(r.delta_i) <= hi1
    assert np.nanmax(r.intensity) <= hi2
    ticks = ax_tot.yaxis.get_major_formatter().format_ticks([-1e5, 0.0, 1e5])
    assert ticks[0] == "" and ticks[1] != ""           # no negative intensities labelled


def test_faint_points_are_faded_markers_and_do_not_set_the_g_range():
    rng = np.random.default_rng(5)
    r = enantiomer(rng, +1)
    edge = (WL < 426) | (WL > 470)
    for i in np.flatnonzero(edge):                     # weak band edges: σ 30× the rest
        p = r.points[i]
        r.points[i] = p.__class__(**{**p.__dict__, "sigma_g": 30 * p.sigma_g,
                                     "g_lum": 5e-3 * (-1) ** i})
    fig = plot_cpl(r)
    ax_g = fig.axes[1]
    (line,) = [ln for ln in ax_g.get_lines() if ln.get_label() == "R-Cs4PbBr6"]
    y = np.asarray(line.get_ydata(), dtype=float)
    assert np.isnan(y[edge]).all() and np.isfinite(y[~edge]).all()
    (bars,) = ax_g.containers                          # the faint points, with error bars
    x_faint = np.asarray(bars.lines[0].get_xdata(), dtype=float)
    assert sorted(x_faint) == sorted(WL[edge]) and bars.lines[0].get_alpha() < 0.5
    assert all(c.get_alpha() < 0.5 for c in bars.lines[2])
    lo, hi = ax_g.get_ylim()
    assert hi < 5e-3 and lo > -5e-3                    # set by the well-measured band
    assert hi > 6e-4 + 2 * 6e-5 and lo <= 0
    legend = [t.get_text() for t in ax_g.get_legend().get_texts()]
    assert any("faded" in t for t in legend)


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
