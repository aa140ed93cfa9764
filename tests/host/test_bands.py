"""Band means (cplscope.science.bands): the bands of a spectrum and the inverse-variance mean
of g over each, with a calibrated σ."""
import math

import numpy as np
import pytest

from cplscope.science.bands import band_means, band_regions

WL = np.arange(400.0, 561.0, 2.0)


def gauss(wl, centre, fwhm):
    return np.exp(-0.5 * ((wl - centre) / (fwhm / 2.3548)) ** 2)


def seed_paper_like(rng, g1=6e-4, g2=-3e-4, dwell=100.0):
    """The seed paper's two bands (438 nm; 504 nm at 3 %), a 20-cps dark, and g with the
    photon noise σ_g = 2.4/√(photons) of a fixed dwell; points without significant light
    have no g (no_emission)."""
    intensity = 1.5e6 * (gauss(WL, 438.0, 18.0) + 0.03 * gauss(WL, 504.0, 20.0))
    sigma_i = np.sqrt(intensity + 20.0) / math.sqrt(dwell) * math.sqrt(2.0)
    measured = intensity + sigma_i * rng.standard_normal(WL.size)
    true_g = np.where(gauss(WL, 438.0, 18.0) > 0.03 * gauss(WL, 504.0, 20.0), g1, g2)
    sg = 2.4 / np.sqrt(np.maximum(intensity, 1e-9) * dwell)
    g = true_g + sg * rng.standard_normal(WL.size)
    none = measured < 5 * sigma_i
    g[none], sg[none] = np.nan, np.nan
    return measured, sigma_i, g, sg, true_g


def test_two_overlapping_bands_are_found_and_averaged_over_their_cores():
    rng = np.random.default_rng(1)
    inten, si, g, sg, _ = seed_paper_like(rng)
    bands = band_means(WL, inten, g, sg, si)
    assert [b.peak_nm for b in bands] == [438.0, 504.0]
    first, second = bands
    # the cores: intensity ≥ 10 % of each band's peak (±1.07 FWHM for a Gaussian)
    assert 420.0 <= first.start_nm <= 424.0 and 452.0 <= first.stop_nm <= 456.0
    assert 484.0 <= second.start_nm <= 488.0 and 520.0 <= second.stop_nm <= 524.0
    assert first.n_points == len(first.indices) and second.dof == second.n_points - 1
    w = 1 / sg[list(first.indices)] ** 2
    assert first.g == pytest.approx(np.sum(w * g[list(first.indices)]) / np.sum(w))
    assert first.sigma_stat == pytest.approx(1 / math.sqrt(np.sum(w)))


def test_band_means_are_unbiased_and_their_sigma_is_calibrated():
    """Pulls (ḡ − g_true)/σ over 400 spectra: mean 0, SD 1 with the statistical σ (the
    standard error of the SD is 1/√800 = 0.035: tolerance 3σ), and the σ the figure draws
    (scaled by √(χ²/dof) where the points scatter) is never smaller."""
    rng = np.random.default_rng(2)
    pulls = {438.0: [], 504.0: []}
    scaled = {438.0: [], 504.0: []}
    for _ in range(400):
        inten, si, g, sg, true_g = seed_paper_like(rng)
        for b in band_means(WL, inten, g, sg, si):
            truth = true_g[b.indices[0]]
            pulls[b.peak_nm].append((b.g - truth) / b.sigma_stat)
            scaled[b.peak_nm].append((b.g - truth) / b.sigma_g)
            assert b.sigma_g >= b.sigma_stat and b.scale >= 1.0
    for nm in pulls:
        p = np.array(pulls[nm])
        assert p.size == 400
        assert abs(p.mean()) < 3 / math.sqrt(p.size)
        assert abs(p.std(ddof=1) - 1.0) < 0.11
        assert np.array(scaled[nm]).std(ddof=1) <= p.std(ddof=1)


def test_scatter_beyond_sigma_widens_the_error():
    """A g that changes across the band is not averaged into a false precision."""
    wl = np.arange(420.0, 457.0, 2.0)
    inten = 1e6 * gauss(wl, 438.0, 18.0)
    sg = np.full(wl.size, 1e-4)
    ramp = np.linspace(-1e-3, 1e-3, wl.size)
    (b,) = band_means(wl, inten, ramp, sg)
    assert b.chi2 > 10 * b.dof and b.scale == pytest.approx(math.sqrt(b.chi2 / b.dof))
    assert b.sigma_g == pytest.approx(b.sigma_stat * b.scale)
    (flat,) = band_means(wl, inten, np.full(wl.size, 5e-4), sg)
    assert flat.scale == 1.0 and flat.sigma_g == flat.sigma_stat


def test_runs_split_at_no_emission_gaps_and_noise_is_not_a_valley():
    wl = np.arange(400.0, 441.0, 2.0)
    inten = 1e5 * (gauss(wl, 410.0, 8.0) + gauss(wl, 430.0, 8.0))
    g, sg = np.full(wl.size, 1e-3), np.full(wl.size, 1e-4)
    gap = (wl >= 418) & (wl <= 422)
    g[gap] = np.nan
    left, right = band_regions(wl, inten, g, sg)
    assert wl[left].max() < 418 and wl[right].min() > 422
    # a single band with a noisy top: dips within 5σ of the intensity are not valleys
    rng = np.random.default_rng(3)
    single = 1e5 * gauss(wl, 420.0, 20.0)
    si = np.full(wl.size, 3e3)
    noisy = single + si * rng.standard_normal(wl.size)
    assert len(band_regions(wl, noisy, np.full(wl.size, 1e-3), sg, si)) == 1
    # a fragment of a wing cut off by a gap is not a band
    g2 = np.full(wl.size, 1e-3)
    g2[1] = np.nan
    inten2 = 1e5 * gauss(wl, 430.0, 8.0)
    regions = band_regions(wl, inten2, g2, sg)
    assert len(regions) == 1 and 0 not in regions[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        band_means(WL, WL, WL, WL, threshold=1.5)
    with pytest.raises(ValueError, match="valley"):
        band_means(WL, WL, WL, WL, valley=0.0)
    with pytest.raises(ValueError, match="values"):
        band_means(WL, WL[:-1], WL, WL)
    assert band_means(WL, WL, np.full(WL.size, np.nan), WL) == []
