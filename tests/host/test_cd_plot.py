"""CD figure and the g_abs mirror report."""
import math

import numpy as np
import pytest

from cplscope.science.cd import FLAG_OPAQUE, CDPointResult
from cplscope.data.cd_spectrum import CDSpectrum
from cplscope.plot.cd import cd_mirror_report, plot_cd

NAN = float("nan")
LAM = np.arange(400.0, 461.0, 2.0)


def synthetic(sign, seed, *, scale=1.0, sigma=2e-4, opaque_below=None, name="R"):
    """A couplet g_abs(λ) drawn with Gaussian noise of σ (fixed seed)."""
    rng = np.random.default_rng(seed)
    g_true = sign * scale * 8e-3 * np.sin((LAM - 400.0) / 60.0 * 2 * math.pi)
    pts = []
    for lam, g in zip(LAM, g_true + sigma * rng.standard_normal(LAM.size)):
        if opaque_below is not None and lam < opaque_below:
            pts.append(CDPointResult(lam, *([NAN] * 8), 1.0, 10, 1.0, (FLAG_OPAQUE,)))
            continue
        a = 0.5
        pts.append(CDPointResult(lam, a, 1e-3, g * a, sigma * a, g, sigma, 32980 * g * a, 0.0,
                                 1.0, 10, 1.0))
    return CDSpectrum(pts, {"sample": name})


def test_mirror_report_accepts_a_mirror_pair_and_rejects_an_unequal_one():
    r, s = synthetic(+1, 1), synthetic(-1, 2, name="S")
    rep = cd_mirror_report(r, s)
    assert rep.n_points == LAM.size and rep.consistent
    assert abs(rep.ratio - 1.0) < 4 * rep.sigma_ratio
    bad = cd_mirror_report(r, synthetic(-1, 3, scale=0.8))   # S 20 % weaker: not a mirror
    assert not bad.consistent and bad.ratio > 1.1
    opaque = cd_mirror_report(synthetic(+1, 4, opaque_below=420.0), s)
    assert opaque.n_points == np.sum(LAM >= 420.0) and opaque.wavelength_min_nm == 420.0


def test_mirror_report_needs_shared_g_abs():
    r = synthetic(+1, 1)
    far = CDSpectrum([CDPointResult(600.0, 0.5, 1e-3, 1e-3, 1e-4, 2e-3, 2e-4, 33.0, 0.0, 1.0,
                                    10, 1.0)])
    with pytest.raises(ValueError, match="share no wavelength where both have a g_abs"):
        cd_mirror_report(r, far)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_cd_writes_the_figure(tmp_path, suffix):
    r, s = synthetic(+1, 1, opaque_below=406.0), synthetic(-1, 2, name="S")
    path = tmp_path / f"cd{suffix}"
    fig = plot_cd([r, s], path, mirror=True, title="pair")
    assert path.stat().st_size > 10_000
    ax_cd, ax_a, ax_g = fig.axes[0], fig.axes[2], fig.axes[1]
    assert "mdeg" in ax_cd.get_ylabel() and "g$_{abs}$" in ax_g.get_ylabel()
    assert "absorbance" in ax_a.get_ylabel()
    report = ax_g.get_title(loc="left")          # above the g_abs panel, off its data
    assert "g_R + g_S" in report and "g_R/(−g_S)" in report and not ax_g.texts
    assert [t.get_text() for t in ax_g.get_legend().get_texts()][:1] == [
        "R: g$_{abs}$ at each point, ±1σ"]
    # the g axis holds the couplet (±8e-3) and is not blown up by the opaque NaNs
    lo, hi = ax_g.get_ylim()
    assert -1.2e-2 < lo < -8e-3 and 8e-3 < hi < 1.2e-2
    assert fig.get_suptitle().startswith("pair\n")


def test_cd_figure_has_sample_and_date_legends_off_the_data_and_clipped_bars():
    r, s = synthetic(+1, 1), synthetic(-1, 2, name="S")
    r.metadata["date"] = "2026-01-05T10:00:00+00:00"
    weak = r.points[3]
    r.points[3] = CDPointResult(*[getattr(weak, n) for n in (
        "wavelength_nm", "absorbance", "sigma_absorbance", "delta_a", "sigma_delta_a")],
        weak.g_abs, 0.5, *[getattr(weak, n) for n in (
            "ellipticity_mdeg", "linear_dichroism", "chi2_red", "n_frames", "dwell_s")])
    fig = plot_cd([r, s])
    title = fig.get_suptitle()
    assert "R and S" in title and "2026-01-05 10:00 UTC" in title
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax_cd, ax_g = fig.axes[0], fig.axes[1]
    frames = [ax.get_window_extent(renderer) for ax in (ax_cd, ax_g)]
    for ax in (ax_cd, ax_g):
        box = ax.get_legend().get_window_extent(renderer)
        assert not any(box.overlaps(f) for f in frames)
    lo, hi = ax_g.get_ylim()
    clipped = [a for a in ax_g.get_children() if a.get_gid() == "bar-clipped"]
    assert clipped and {round(y, 12) for ln in clipped for y in ln.get_ydata()} == {
        round(lo, 12), round(hi, 12)}


def test_plot_cd_single_spectrum_in_delta_a_and_errors(tmp_path):
    fig = plot_cd(synthetic(+1, 1), cd_unit="delta_a", show_absorbance=False)
    assert "ΔA" in fig.axes[0].get_ylabel() and len(fig.axes) == 2
    with pytest.raises(ValueError, match="cd_unit must be"):
        plot_cd(synthetic(+1, 1), cd_unit="deg")
    with pytest.raises(ValueError, match="mirror=True needs two spectra"):
        plot_cd(synthetic(+1, 1), mirror=True)
    with pytest.raises(ValueError, match="cannot tell the figure format"):
        plot_cd(synthetic(+1, 1), tmp_path / "cd.jpg")
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_cd(CDSpectrum())
    with pytest.raises(ValueError, match="1 labels for 2 spectra"):
        plot_cd([synthetic(+1, 1), synthetic(-1, 2)], labels=["R"])
