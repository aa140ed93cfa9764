"""Tests of cplscope.demod.retardation: σ_g per photon from the Fisher information, and the A0
that minimizes it.

The statistical test uses a fixed seed and a tolerance of 4 standard errors of an empirical
standard deviation (relative standard error 1/√(2(n − 1)) for n draws).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.special

from cplscope.demod import estimate
from cplscope.demod.bins import bin_layout
from cplscope.demod.retardation import fisher_sigma_g, optimal_retardation


def continuous_bound(a0: float) -> float:
    """σ_g·√M for infinitely fine bins: 2/sqrt(<sin²δ>), <sin²δ> = ½(1 − J0(2A0))."""
    return 2.0 / math.sqrt(0.5 * (1.0 - scipy.special.j0(2.0 * a0)))


@pytest.mark.parametrize("a0, table", [(math.pi / 2, 2.477), (1.9159, 2.388), (2.4048, 2.543)])
@pytest.mark.parametrize("phi0", [0.0, 0.3])
def test_fine_bins_reach_the_continuous_bound_and_the_model_table(a0, table, phi0):
    sigma = fisher_sigma_g(1024, a0, phi0)
    # B = 1024 loses about (π/B)²-order information: far below the table's 3 decimals.
    assert sigma == pytest.approx(continuous_bound(a0), rel=1e-5)
    assert abs(sigma - table) <= 0.0006


@pytest.mark.parametrize("a0", [0.5, 1.2, math.pi / 2, 1.99, 2.6, math.pi])
def test_two_half_period_bins_match_the_struve_closed_form(a0):
    # B = 2 aligned with δ: S_k = ±H0(A0)/2, u not identifiable, so σ_g·√M = 2/H0(A0).
    expected = 2.0 / scipy.special.struve(0, a0)
    assert fisher_sigma_g(2, a0) == pytest.approx(expected, rel=1e-10)
    assert fisher_sigma_g(2, a0, u_free=False) == pytest.approx(expected, rel=1e-10)


def test_optimum_of_two_bins_is_the_maximum_of_struve_h0():
    best = scipy.optimize.minimize_scalar(lambda x: -scipy.special.struve(0, x),
                                          bounds=(1.0, 3.0), method="bounded",
                                          options={"xatol": 1e-10}).x
    assert optimal_retardation(2) == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("n_bins, phi0, span", [(8, 0.3, 1.0), (16, 0.3, 1.0), (16, 1.1, 1.0),
                                                (32, 0.0, 0.986), (4, 0.3, 1.0)])
def test_optimum_agrees_with_an_independent_bounded_minimizer(n_bins, phi0, span):
    a0 = optimal_retardation(n_bins, phi0, span)
    ref = scipy.optimize.minimize_scalar(lambda x: fisher_sigma_g(n_bins, x, phi0, span),
                                         bounds=(1.0, math.pi), method="bounded",
                                         options={"xatol": 1e-9}).x
    assert a0 == pytest.approx(ref, abs=1e-5)
    grid = np.linspace(0.05, math.pi, 400)
    best = fisher_sigma_g(n_bins, a0, phi0, span)
    assert all(best <= fisher_sigma_g(n_bins, x, phi0, span) + 1e-12 for x in grid)


def test_sixteen_bins_optimum_is_near_1_92_and_saves_photons():
    a0 = optimal_retardation(16, 0.3)
    assert abs(a0 - 1.92) < 0.02
    assert math.pi / 2 < a0 < 1.9159          # bin averaging pulls it below the fine-bin value
    photons = (fisher_sigma_g(16, a0, 0.3) / fisher_sigma_g(16, math.pi / 2, 0.3)) ** 2
    assert 0.92 < photons < 0.94              # about 7 % fewer photons for the same σ_g
    assert optimal_retardation(256) == pytest.approx(1.9159, abs=2e-3)


def test_fisher_sigma_matches_the_estimators_cramer_rao_sigma():
    # estimate() reports σ from the Fisher information at its solution: on noise-free counts
    # at u = v = 0 it is the same bound, computed by different code.
    m = 1e8
    for n_bins, a0, phi0 in [(16, 1.9, 0.3), (8, math.pi / 2, 0.7), (32, 2.4, 0.0),
                             (2, 1.7, 0.0)]:
        lay = bin_layout(n_bins, a0, phi0)
        e = estimate(m * lay.w, a0, phase_offset=phi0)
        assert e.sigma_g * math.sqrt(m) == pytest.approx(fisher_sigma_g(n_bins, a0, phi0),
                                                         rel=1e-6)


def test_dark_counts_scale_sigma_and_fixing_u_never_hurts():
    base = fisher_sigma_g(16, 1.9, 0.3)
    assert fisher_sigma_g(16, 1.9, 0.3, dark_fraction=0.44) == pytest.approx(base * 1.2)
    assert fisher_sigma_g(16, 1.9, 0.3, u_free=False) <= base + 1e-12
    # B = 4 aligned with δ cannot identify u: the u-free call falls back to u = 0.
    assert fisher_sigma_g(4, 1.9, 0.0) == pytest.approx(fisher_sigma_g(4, 1.9, 0.0,
                                                                       u_free=False))


def test_layout_without_information_on_g():
    # B = 2 with the bin edges at the δ peaks: both bins see the same mean sin δ.
    assert fisher_sigma_g(2, 1.9, math.pi / 2) == math.inf
    with pytest.raises(ValueError, match="no information on g"):
        optimal_retardation(2, math.pi / 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_bins=1, a0_rad=1.0), "n_bins"),
    (dict(n_bins=16, a0_rad=0.0), r"\(0, π\]"),
    (dict(n_bins=16, a0_rad=3.5), r"\(0, π\]"),
    (dict(n_bins=16, a0_rad=1.0, span=0.0), "span"),
    (dict(n_bins=16, a0_rad=1.0, dark_fraction=-1.0), "dark_fraction"),
    (dict(n_bins=16, a0_rad=1.0, phase_offset_rad=math.nan), "phase_offset"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fisher_sigma_g(**kwargs)


@pytest.mark.parametrize("n_bins, phi0, a0", [(16, 0.3, "optimal"), (16, 0.3, math.pi / 2),
                                              (2, 0.0, "optimal")])
def test_estimator_empirical_sigma_matches_the_fisher_prediction(n_bins, phi0, a0):
    if a0 == "optimal":
        a0 = optimal_retardation(n_bins, phi0)
    rng = np.random.default_rng(20261201 + n_bins)
    n_draws, m, g = 4000, 1e7, 1e-3
    lay = bin_layout(n_bins, a0, phi0)
    mu = m * (lay.w + 0.5 * g * lay.s)
    gs = np.array([estimate(c, a0, phase_offset=phi0).g_lum
                   for c in rng.poisson(mu, size=(n_draws, n_bins))])
    predicted = fisher_sigma_g(n_bins, a0, phi0) / math.sqrt(m)
    tolerance = 4.0 / math.sqrt(2.0 * (n_draws - 1))
    assert gs.std(ddof=1) == pytest.approx(predicted, rel=tolerance)
    assert abs(gs.mean() - g) < 4.0 * predicted / math.sqrt(n_draws)
