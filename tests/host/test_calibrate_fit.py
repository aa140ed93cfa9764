"""A0/φ0 and handedness calibration fits (measurement model §7), statistical tests."""
import numpy as np
import pytest

from cplscope.demod.bins import bin_layout
from cplscope.demod.calibrate import fit_handedness, fit_retardation


@pytest.mark.parametrize("a0,phi0,n_bins", [(1.7, 2.0, 16), (np.pi / 2, 4.0, 32),
                                            (2.4, 0.3, 8)])
def test_retardation_fit_is_unbiased_and_calibrated(a0, phi0, n_bins):
    rng = np.random.default_rng(20 + n_bins)
    lay = bin_layout(n_bins, a0, phi0)
    mu = 1e6 * (lay.w + lay.c) + 3.0
    fits = [fit_retardation(rng.poisson(mu, size=(5, n_bins)), dark=3.0 / 5)
            for _ in range(80)]
    a = np.array([f.a0_rad for f in fits])
    p = np.array([f.phase_offset_rad for f in fits])
    n = len(fits)
    # a linear polarizer fixes φ0 only modulo π
    assert abs(a.mean() - a0) < 4 * a.std(ddof=1) / np.sqrt(n)
    assert abs(p.mean() - np.remainder(phi0, np.pi)) < 4 * p.std(ddof=1) / np.sqrt(n)
    # σ of a sample sd over 80 draws is ~8 %: allow 30 %
    assert np.mean([f.sigma_a0 for f in fits]) == pytest.approx(a.std(ddof=1), rel=0.30)
    assert np.mean([f.sigma_phase for f in fits]) == pytest.approx(p.std(ddof=1), rel=0.30)
    assert np.mean([f.chi2_red for f in fits]) == pytest.approx(1.0, abs=0.1)


def test_retardation_fit_rejects_what_cannot_constrain_it():
    with pytest.raises(ValueError, match="B ≥ 3"):
        fit_retardation(np.ones(2))
    with pytest.raises(ValueError, match="signal counts"):
        fit_retardation(np.zeros(16))
    with pytest.raises(ValueError, match="≥ 0"):
        fit_retardation(-np.ones(16))


@pytest.mark.parametrize("true_sign,phi0_shift", [(1, 0.0), (-1, 0.0), (1, np.pi)])
def test_handedness_from_a_circular_polarizer(true_sign, phi0_shift):
    """A φ0 found modulo π may be off by π; the handedness fit then returns −1 for it."""
    rng = np.random.default_rng(30)
    a0, phi0 = np.pi / 2, 0.4
    lay = bin_layout(16, a0, phi0)
    g = 2.0 * true_sign                                   # circular polarizer, v = ±1
    counts = rng.poisson(1e5 * (lay.w + 0.5 * g * lay.s))
    fit = fit_handedness(counts, a0, phi0 + phi0_shift, expected_sign=true_sign)
    assert fit.handedness == (1 if phi0_shift == 0 else -1)
    assert abs(fit.g_measured) > 5 * fit.sigma_g


def test_handedness_needs_a_significant_reference():
    lay = bin_layout(16, np.pi / 2, 0.0)
    counts = np.rint(1e4 * lay.w)
    with pytest.raises(ValueError, match="not significant"):
        fit_handedness(counts, np.pi / 2, 0.0, expected_sign=1)
    with pytest.raises(ValueError, match="expected_sign"):
        fit_handedness(counts, np.pi / 2, 0.0, expected_sign=0)
