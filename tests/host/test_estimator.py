"""Statistical and input tests of cplscope.demod.estimate (measurement model sections 3, 4, 6).

Every statistical test uses a fixed seed and a tolerance derived from the expected scatter of
the quantity it checks, so that a real defect (bias, lost efficiency, mis-stated σ) fails it.
"""
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from cplscope import _estimate
from cplscope.demod import EMISSION_Z_MIN, estimate
from cplscope.demod.bins import bin_layout

A0 = np.pi / 2


def expected_counts(n_bins, m, u, g, a0=A0, phi0=0.0, dark=0.0, span=1.0):
    lay = bin_layout(n_bins, a0, phi0, span)
    return m * (lay.w + u * lay.c + 0.5 * g * lay.s) + dark


def cramer_rao_sigma_g(n_bins, m, u, g, a0=A0, phi0=0.0, dark=0.0):
    """σ_g bound of the binned Poisson model, F = Σ ∂μ∂μᵀ/μ over p = (M, u, v)."""
    lay = bin_layout(n_bins, a0, phi0)
    mu = expected_counts(n_bins, m, u, g, a0, phi0, dark)
    grads = [lay.w + u * lay.c + 0.5 * g * lay.s, m * lay.c, m * lay.s]
    if not lay.u_identifiable:
        grads.pop(1)
    jac = np.array(grads)
    fisher = (jac / mu) @ jac.T
    return 2.0 * np.sqrt(np.linalg.inv(fisher)[-1, -1])


def run(draws, **kw):
    results = [estimate(d, **kw) for d in draws]
    return (np.array([r.g_lum for r in results]), np.array([r.sigma_g for r in results]),
            results)


# --- bin integrals -----------------------------------------------------------------------

@pytest.mark.parametrize("n_bins", [2, 3, 8, 16, 32, 64])
@pytest.mark.parametrize("a0", [0.3, A0, 1.9159, np.pi])
def test_bin_integrals_match_quadrature_and_bessel_sums(n_bins, a0):
    phi0 = 0.37
    lay = bin_layout(n_bins, a0, phi0)
    assert abs(lay.s.sum()) < 1e-14
    assert lay.c.sum() == pytest.approx(scipy.special.j0(a0), abs=1e-14)
    for k in (0, n_bins // 2, n_bins - 1):
        lo, hi = 2 * np.pi * k / n_bins, 2 * np.pi * (k + 1) / n_bins
        s = scipy.integrate.quad(lambda t: np.sin(a0 * np.sin(t - phi0)), lo, hi,
                                 epsabs=1e-14)[0] / (2 * np.pi)
        c = scipy.integrate.quad(lambda t: np.cos(a0 * np.sin(t - phi0)), lo, hi,
                                 epsabs=1e-14)[0] / (2 * np.pi)
        assert lay.s[k] == pytest.approx(s, abs=1e-13)
        assert lay.c[k] == pytest.approx(c, abs=1e-13)


@pytest.mark.parametrize("n_bins,phi0,identifiable", [
    (2, 0.0, False), (2, 0.7, False), (4, 0.0, False), (4, np.pi / 2, False),
    (4, 0.3, True), (3, 0.0, True), (8, 0.0, True), (16, 0.0, True)])
def test_u_identifiability_follows_the_layout(n_bins, phi0, identifiable):
    assert bin_layout(n_bins, A0, phi0).u_identifiable is identifiable


# --- the Cython kernel against a NumPy reference -----------------------------------------

def reference_moments(frames, dead_ratio):
    x = frames.astype(np.float64)
    if len(dead_ratio):
        x = x / (1.0 - x * dead_ratio)
    return x.sum(axis=0), (x * x).sum(axis=0)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint32, np.int32, np.int64,
                                   np.uint64, np.float32, np.float64])
@pytest.mark.parametrize("dead", [False, True])
def test_frame_moments_kernel_matches_numpy(dtype, dead):
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 3000, size=(37, 16)).astype(dtype)
    frames.setflags(write=False)
    dead_ratio = np.full(16, 1e-5) if dead else np.empty(0)
    sums, sumsq, status, bad = _estimate.frame_moments(frames, dead_ratio)
    ref_sums, ref_sumsq = reference_moments(frames, dead_ratio)
    assert status == _estimate.OK and bad == -1
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-13)
    np.testing.assert_allclose(sumsq, ref_sumsq, rtol=1e-13)


def test_frame_moments_kernel_reports_the_first_bad_value():
    frames = np.ones((3, 4))
    frames[1, 2] = -1.0
    frames[2, 0] = np.nan
    _, _, status, bad = _estimate.frame_moments(frames, np.empty(0))
    assert status == _estimate.NEGATIVE and bad == 6
    frames[1, 2] = 1.0
    _, _, status, bad = _estimate.frame_moments(frames, np.empty(0))
    assert status == _estimate.NON_FINITE and bad == 8
    frames[2, 0] = 1.0
    _, _, status, bad = _estimate.frame_moments(frames, np.full(4, 1.0))
    assert status == _estimate.DEAD_TIME_LIMIT and bad == 0


# --- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("counts,kwargs,match", [
    (np.ones((2, 3, 4)), {}, "shape"),
    (np.ones(1), {}, "B=2"),
    (np.ones((0, 8)), {}, "no frames"),
    (np.array([1, -1, 3, 4]), {}, "≥ 0"),
    (np.array([1, np.nan, 3, 4]), {}, "finite"),
    (np.array([1, np.inf, 3, 4]), {}, "finite"),
    (np.array(["a", "b"]), {}, "numeric"),
    (np.ones(8), {"retardation": 0.0}, r"\(0, π\]"),
    (np.ones(8), {"retardation": -1.0}, r"\(0, π\]"),
    (np.ones(8), {"retardation": 3.2}, r"\(0, π\]"),
    (np.ones(8), {"retardation": np.nan}, r"\(0, π\]"),
    (np.ones(8), {"phase_offset": np.inf}, "phase_offset"),
    (np.ones(8), {"dark": np.ones(3)}, "dark"),
    (np.ones(8), {"dark": -1.0}, "dark"),
    (np.ones(8), {"dead_time": 1e-8}, "frame_time"),
    (np.ones(8), {"dead_time": -1e-8, "frame_time": 1.0}, "dead_time"),
    (np.ones(8), {"dead_time": 1e-8, "frame_time": 0.0}, "frame_time"),
    (np.full(8, 1e6), {"dead_time": 1e-8, "frame_time": 1e-3}, "dead-time limit"),
    (np.ones(8), {"noise": "lorentzian"}, "noise"),
    (np.ones(8), {"bin_span": 0.0}, "bin_span"),
    (np.ones(8), {"bin_span": 1.01}, "bin_span"),
    (np.ones(8), {"noise": "gaussian"}, "2 frames"),
    (np.ones((4, 8)), {"noise": "gaussian", "dead_time": 1e-8, "frame_time": 1.0},
     "counting only"),
    (np.ones(2), {"phase_offset": np.pi / 2}, "no information on g"),
])
def test_bad_input_raises_a_clear_value_error(counts, kwargs, match):
    kwargs = {"retardation": A0, **kwargs}
    with pytest.raises(ValueError, match=match):
        estimate(counts, **kwargs)


def test_accepts_lists_read_only_and_non_contiguous_arrays():
    mu = expected_counts(8, 1e6, 0.1, 0.01)
    frames = np.random.default_rng(3).poisson(np.tile(mu, (6, 2)))[:, ::2]
    frames.setflags(write=False)
    a = estimate(frames, A0)
    b = estimate(np.ascontiguousarray(frames).tolist(), A0)
    assert a.g_lum == b.g_lum and a.n_frames == 6


# --- statistical properties ----------------------------------------------------------------

CASES = [  # n_bins, M per draw, u, g, phi0, dark per bin
    (2, 4e6, 0.0, 6e-4, 0.4, 0.0),
    (3, 4e6, 0.3, -0.2, 1.1, 20.0),
    (8, 4e6, 0.5, 1.0, 2.5, 0.0),
    (16, 4e6, -0.5, -1.0, 5.9, 100.0),
    (16, 4e6, 0.0, 0.0, 0.0, 0.0),
    (32, 4e6, 0.2, 0.05, 3.3, 5.0),
    (64, 4e6, -0.3, 0.8, 0.9, 1.0),
]


@pytest.mark.parametrize("n_bins,m,u,g,phi0,dark", CASES)
def test_unbiased_and_calibrated(n_bins, m, u, g, phi0, dark):
    rng = np.random.default_rng(1000 + n_bins)
    n_draws = 1500
    mu = expected_counts(n_bins, m, u, g, A0, phi0, dark)
    gs, sigmas, results = run(rng.poisson(mu, size=(n_draws, n_bins)),
                              retardation=A0, phase_offset=phi0, dark=dark)
    lay = bin_layout(n_bins, A0, phi0)
    truth = g if lay.u_identifiable else g / (1 + u * lay.c.sum())
    sd = gs.std(ddof=1)
    # the mean of n_draws estimates scatters by sd/√n: 4 of those is a fixed-seed 4σ test
    assert abs(gs.mean() - truth) < 4 * sd / np.sqrt(n_draws)
    # mean reported σ vs empirical σ: relative scatter of sd is 1/√(2n) ≈ 1.8 %, allow 10 %
    assert np.mean(sigmas) == pytest.approx(sd, rel=0.10)
    if lay.u_identifiable:
        us = np.array([r.linear for r in results])
        su = np.array([r.sigma_linear for r in results])
        assert abs(us.mean() - u) < 4 * us.std(ddof=1) / np.sqrt(n_draws)
        assert np.mean(su) == pytest.approx(us.std(ddof=1), rel=0.10)
    else:
        assert all(np.isnan(r.linear) and "not identifiable" in r.note for r in results)
    ms = np.array([r.intensity for r in results])
    assert abs(ms.mean() - m) < 4 * ms.std(ddof=1) / np.sqrt(n_draws)


@pytest.mark.parametrize("n_bins,phi0,u,g", [(16, 0.3, 0.0, 6e-4), (8, 1.2, 0.2, 0.3),
                                             (2, 0.5, 0.0, 6e-4)])
def test_efficient_at_the_cramer_rao_bound(n_bins, phi0, u, g):
    """Empirical σ of g within 3 % of the CR bound (σ of a sample sd: 1/√(2n) ≈ 0.9 %)."""
    rng = np.random.default_rng(11 + n_bins)
    n_draws, m = 6000, 1e7
    mu = expected_counts(n_bins, m, u, g, A0, phi0)
    gs, _, _ = run(rng.poisson(mu, size=(n_draws, n_bins)), retardation=A0, phase_offset=phi0)
    bound = cramer_rao_sigma_g(n_bins, m, u, g, A0, phi0)
    assert gs.std(ddof=1) / bound == pytest.approx(1.0, abs=0.03)


def test_efficiency_of_equal_bins_matches_the_measurement_model_table():
    """η = σ²(continuous) / σ²(B bins) at A0 = π/2, small g and u (measurement model §4)."""
    sin2 = 0.5 * (1 - scipy.special.j0(2 * A0))
    continuous = 2 / np.sqrt(sin2)
    for n_bins, eta in [(2, 0.866), (8, 0.945), (16, 0.986), (32, 0.996)]:
        binned = cramer_rao_sigma_g(n_bins, 1.0, 0.0, 1e-9)
        assert (continuous / binned) ** 2 == pytest.approx(eta, abs=0.0015)


def test_chi2_red_is_one_on_poisson_frames():
    rng = np.random.default_rng(5)
    n_bins, n_frames, n_draws = 16, 50, 300
    mu = expected_counts(n_bins, 2e5, 0.3, 0.01, A0, 0.8)
    chi2 = np.array([estimate(rng.poisson(mu, size=(n_frames, n_bins)), A0,
                              phase_offset=0.8).chi2_red for _ in range(n_draws)])
    dof = n_frames * n_bins - 3
    # each chi2_red scatters by √(2/dof); their mean by √(2/dof/n)
    assert abs(chi2.mean() - 1.0) < 4 * np.sqrt(2 / dof / n_draws)
    assert chi2.std(ddof=1) == pytest.approx(np.sqrt(2 / dof), rel=0.15)


def test_shape_chi2_is_one_on_poisson_frames_and_sees_a_wrong_retardation():
    rng = np.random.default_rng(17)
    n_bins, n_frames = 16, 30
    mu = expected_counts(n_bins, 1e6, 1.0, 0.0, A0, 0.3) / n_frames
    shapes = []
    for _ in range(200):
        e = estimate(rng.poisson(mu, size=(n_frames, n_bins)), A0, phase_offset=0.3)
        shapes.append(e.chi2_shape_red)
        assert e.dof_shape == n_frames * (n_bins - 1) - 2
    assert abs(np.mean(shapes) - 1) < 4 * np.sqrt(2 / e.dof_shape / len(shapes))
    counts = rng.poisson(mu * 100, size=(n_frames, n_bins))
    wrong = estimate(counts, 1.1 * A0, phase_offset=0.3)
    assert wrong.chi2_shape_red > 1 + 20 * np.sqrt(2 / wrong.dof_shape)


def test_chi2_red_flags_a_retardation_10_percent_wrong_on_a_linear_polarizer():
    rng = np.random.default_rng(6)
    n_bins, phi0 = 16, 0.3
    mu = expected_counts(n_bins, 1e7, 1.0, 0.0, A0, phi0)
    counts = rng.poisson(mu)
    good = estimate(counts, A0, phase_offset=phi0)
    wrong = estimate(counts, 1.1 * A0, phase_offset=phi0)
    dof = n_bins - 3
    assert good.chi2_red < 1 + 4 * np.sqrt(2 / dof)
    # noncentral χ²: the misfit of the noiseless counts is λ; mean dof + λ, var 2(dof + 2λ)
    lam = estimate(mu, 1.1 * A0, phase_offset=phi0).chi2_red * dof
    assert lam > 50
    assert wrong.chi2_red * dof == pytest.approx(dof + lam, abs=4 * np.sqrt(2 * (dof + 2 * lam)))


def test_chi2_red_sees_frame_to_frame_flicker_but_g_stays_unbiased():
    rng = np.random.default_rng(8)
    n_bins, n_frames = 16, 40
    mu = expected_counts(n_bins, 1e5, 0.0, 0.2, A0, 0.5)
    gs, chis, shapes = [], [], []
    for _ in range(300):
        scale = 1 + 0.05 * rng.standard_normal((n_frames, 1))
        e = estimate(rng.poisson(mu * scale), A0, phase_offset=0.5)
        gs.append(e.g_lum)
        chis.append(e.chi2_red)
        shapes.append(e.chi2_shape_red)
    gs = np.array(gs)
    assert abs(gs.mean() - 0.2) < 4 * gs.std(ddof=1) / np.sqrt(len(gs))
    assert np.mean(chis) > 1 + 10 * np.sqrt(2 / (n_frames * n_bins - 3))
    # the shape statistic frees each frame's total: flicker leaves it at 1
    dof_shape = n_frames * (n_bins - 1) - 2
    assert abs(np.mean(shapes) - 1) < 4 * np.sqrt(2 / dof_shape / len(shapes))


def dead_time_counts(rng, mu_true, tau, bin_time, shape):
    """Non-paralyzable counter in live time t: mean n/(1+nτ)·t, variance mean/(1+nτ)².

    Renewal-process result; with ≥ 10³ counts per bin the normal approximation is exact to
    far below the tolerances used here.
    """
    rate = mu_true / bin_time
    mean = mu_true / (1 + rate * tau)
    sd = np.sqrt(mean) / (1 + rate * tau)
    return np.rint(mean + sd * rng.standard_normal(shape)).astype(np.int64)


def test_dead_time_correction_is_unbiased_up_to_a_few_mcps():
    rng = np.random.default_rng(9)
    n_bins, n_frames, n_draws = 16, 10, 1500
    tau, frame_time, rate_total, g = 18e-9, 0.01, 3e6, 0.5
    mu = expected_counts(n_bins, rate_total * frame_time, 0.2, g, A0, 0.6)
    draws = dead_time_counts(rng, mu, tau, frame_time / n_bins, (n_draws, n_frames, n_bins))
    gs, sigmas, results = run(draws, retardation=A0, phase_offset=0.6, dead_time=tau,
                              frame_time=frame_time)
    sd = gs.std(ddof=1)
    assert abs(gs.mean() - g) < 4 * sd / np.sqrt(n_draws)
    assert np.mean(sigmas) == pytest.approx(sd, rel=0.10)
    chi2 = np.array([r.chi2_red for r in results])
    assert abs(chi2.mean() - 1) < 4 * np.sqrt(2 / (n_frames * n_bins - 3) / n_draws)
    m = np.array([r.intensity for r in results])
    assert abs(m.mean() - n_frames * rate_total * frame_time) < 4 * m.std() / np.sqrt(n_draws)
    # the same counts without the correction show the compression g/(1 + rτ) of §6
    uncorrected = np.array([estimate(d, A0, phase_offset=0.6).g_lum for d in draws[:200]])
    assert uncorrected.mean() < g - 20 * sd / np.sqrt(200)


# --- analog (gaussian) mode ----------------------------------------------------------------

def analog_frames(rng, n_frames, n_bins, level, u, g, phi0, noise, flicker=0.0, offset=0.0):
    lay = bin_layout(n_bins, A0, phi0)
    shape = n_bins * (lay.w + u * lay.c + 0.5 * g * lay.s)
    scale = level * (1 + flicker * rng.standard_normal((n_frames, 1)))
    return scale * shape + offset + noise * rng.standard_normal((n_frames, n_bins))


@pytest.mark.parametrize("flicker", [0.0, 0.02])
def test_gaussian_mode_is_unbiased_and_its_sigma_comes_from_the_scatter(flicker):
    rng = np.random.default_rng(12)
    n_draws, g = 800, 0.01
    gs, sigmas, results = run(
        [analog_frames(rng, 40, 16, 1000.0, 0.1, g, 0.4, 5.0, flicker, 37.0)
         for _ in range(n_draws)],
        retardation=A0, phase_offset=0.4, dark=37.0, noise="gaussian")
    sd = gs.std(ddof=1)
    assert abs(gs.mean() - g) < 4 * sd / np.sqrt(n_draws)
    assert np.mean(sigmas) == pytest.approx(sd, rel=0.10)
    assert np.mean([r.intensity for r in results]) == pytest.approx(1000.0, rel=1e-3)
    assert all(r.noise == "gaussian" and r.n_frames == 40 for r in results)


def test_gaussian_mode_accepts_negative_levels():
    rng = np.random.default_rng(13)
    frames = analog_frames(rng, 20, 8, 100.0, 0.0, 0.02, 0.0, 1.0, offset=-500.0)
    e = estimate(frames, A0, dark=-500.0, noise="gaussian")
    assert abs(e.g_lum - 0.02) < 5 * e.sigma_g


# --- reported quantities -------------------------------------------------------------------

def test_reported_quantities_follow_section_3():
    rng = np.random.default_rng(14)
    e = estimate(rng.poisson(expected_counts(16, 1e8, 0.2, 0.4, A0, 1.0)), A0, phase_offset=1.0)
    v = e.g_lum / 2
    assert e.i_left == pytest.approx(e.intensity * (1 + v) / 2)
    assert e.i_right == pytest.approx(e.intensity * (1 - v) / 2)
    assert e.delta_i == pytest.approx(e.intensity * v)
    assert e.covariance.shape == (3, 3)
    assert e.sigma_g == pytest.approx(2 * np.sqrt(e.covariance[2, 2]))
    assert e.n_bins == 16 and e.dof == 13 and e.snr > 1000


def test_sign_convention_left_light_gives_positive_g():
    """v > 0 puts more counts where δ > 0 (the first half period for φ0 = 0)."""
    mu = expected_counts(16, 1e8, 0.0, 0.5)
    assert mu[:8].sum() > mu[8:].sum()
    assert estimate(np.rint(mu), A0).g_lum == pytest.approx(0.5, rel=1e-3)


def test_no_signal_above_dark_gives_nan_g():
    counts = np.full(16, 90.0)
    e = estimate(counts, A0, dark=100.0)
    assert np.isnan(e.g_lum) and np.isnan(e.sigma_g) and "no signal" in e.note


def test_gaussian_mode_rejects_non_finite_after_a_negative_value():
    """inf is an error; NaN marks an empty bin in analog mode (tested below)."""
    frames = -np.ones((3, 8))
    frames[2, 5] = np.inf
    with pytest.raises(ValueError, match="frame 2, bin 5"):
        estimate(frames, A0, noise="gaussian")


def test_bins_that_leave_a_gap_before_the_next_edge():
    """A counter whose B bins cover only s of the period (rp2 at B = 64: s ≈ 0.947)."""
    rng = np.random.default_rng(15)
    n_bins, span, g, u, phi0, n_draws = 64, 0.947, 0.3, 0.2, 0.7, 800
    mu = expected_counts(n_bins, 4e6, u, g, A0, phi0, span=span)
    draws = rng.poisson(mu, size=(n_draws, n_bins))
    gs, sigmas, results = run(draws, retardation=A0, phase_offset=phi0, bin_span=span)
    sd = gs.std(ddof=1)
    assert abs(gs.mean() - g) < 4 * sd / np.sqrt(n_draws)
    assert np.mean(sigmas) == pytest.approx(sd, rel=0.10)
    assert np.mean([r.intensity for r in results]) == pytest.approx(4e6, rel=1e-3)
    assert np.mean([r.chi2_red for r in results]) == pytest.approx(1.0, abs=0.05)
    # ignoring the gap misplaces every bin edge: χ² and g show it
    wrong = [estimate(d, A0, phase_offset=phi0) for d in draws[:100]]
    assert np.mean([w.chi2_red for w in wrong]) > 1.5


def test_analog_mode_with_a_bin_span():
    rng = np.random.default_rng(16)
    lay = bin_layout(16, A0, 0.2, 0.9)
    level = 500.0
    shape = level * (lay.w + 0.5 * 0.1 * lay.s) / lay.w
    frames = shape + 2.0 * rng.standard_normal((50, 16))
    e = estimate(frames, A0, phase_offset=0.2, noise="gaussian", bin_span=0.9)
    assert abs(e.g_lum - 0.1) < 4 * e.sigma_g
    assert e.intensity == pytest.approx(level, rel=1e-3)


@pytest.mark.parametrize("per_bin", [False, True])
def test_dark_uncertainty_is_propagated(per_bin):
    """The dark level comes from one measurement: its error is the same in every draw."""
    rng = np.random.default_rng(18)
    n_bins, n_frames, n_draws = 16, 20, 600
    dark_true, dark_sd = 50.0, 10.0           # counts per bin per frame, and its uncertainty
    mu = expected_counts(n_bins, 2e4, 0.1, 0.05, A0, 0.5, dark_true) / 1.0
    ms, sig_m, gs, sig_g = [], [], [], []
    for _ in range(n_draws):
        err = dark_sd * (rng.standard_normal(n_bins) if per_bin else rng.standard_normal())
        e = estimate(rng.poisson(mu, size=(n_frames, n_bins)), A0, phase_offset=0.5,
                     dark=dark_true + err, dark_sigma=np.full(n_bins, dark_sd) if per_bin
                     else dark_sd)
        ms.append(e.intensity), sig_m.append(e.sigma_intensity)
        gs.append(e.g_lum), sig_g.append(e.sigma_g)
    # σ of a sample sd over 600 draws is ~2.9 %: allow 12 %
    assert np.mean(sig_m) == pytest.approx(np.std(ms, ddof=1), rel=0.12)
    assert np.mean(sig_g) == pytest.approx(np.std(gs, ddof=1), rel=0.12)
    without = estimate(rng.poisson(mu, size=(n_frames, n_bins)), A0, phase_offset=0.5,
                       dark=dark_true)
    assert np.mean(sig_m) > 1.2 * without.sigma_intensity


# --- identifiability of u from the Fisher information (issue 10) ---------------------------

def u0_model_sigma_g(n_bins, m, g, phi0):
    """σ_g bound of the binned Poisson model with u fixed at 0, p = (M, v)."""
    lay = bin_layout(n_bins, A0, phi0)
    mu = m * (lay.w + 0.5 * g * lay.s)
    jac = np.array([lay.w + 0.5 * g * lay.s, m * lay.s])
    return 2.0 * np.sqrt(np.linalg.inv((jac / mu) @ jac.T)[-1, -1])


@pytest.mark.parametrize("phi0", [1e-7, 1e-6, 1e-5, 1e-3])
def test_near_degenerate_four_bin_layouts_fit_u_zero_and_reach_the_u0_bound(phi0):
    """B = 4 with the bins almost aligned with δ: u is not constrained by 1e7 counts
    (σ_u ≥ 0.5), so every draw is fitted with u = 0: finite g, σ at the u = 0 bound."""
    rng = np.random.default_rng(int(40 + 1e7 * phi0) % 2**31)
    n_draws, m, g = 1500, 1e7, 0.05
    mu = expected_counts(4, m, 0.0, g, A0, phi0)
    gs, sigmas, results = run(rng.poisson(mu, size=(n_draws, 4)), retardation=A0,
                              phase_offset=phi0)
    assert np.all(np.isfinite(gs)) and np.all(np.isfinite(sigmas))
    assert all(np.isnan(r.linear) and "not identifiable" in r.note
               and r.u_sigma_bound > 0.4 and r.covariance.shape == (2, 2) for r in results)
    bound = u0_model_sigma_g(4, m, g, phi0)
    sd = gs.std(ddof=1)
    # the sd of n_draws normal values scatters by 1/√(2n) = 1.8 % (relative): 4 of those
    assert sd / bound == pytest.approx(1.0, abs=4 / np.sqrt(2 * n_draws))
    assert np.mean(sigmas) / bound == pytest.approx(1.0, abs=0.01)
    assert abs(gs.mean() - g) < 4 * sd / np.sqrt(n_draws)


def test_u_is_fitted_once_the_counts_constrain_it():
    """The decision depends on the data: B = 4, φ0 = 1e-3 constrains u with 1e11 counts."""
    rng = np.random.default_rng(41)
    n_bins, phi0, u = 4, 1e-3, 0.3
    few = estimate(rng.poisson(expected_counts(n_bins, 1e7, u, 0.01, A0, phi0)), A0,
                   phase_offset=phi0)
    many = estimate(rng.poisson(expected_counts(n_bins, 1e11, u, 0.01, A0, phi0)), A0,
                    phase_offset=phi0)
    assert few.u_sigma_bound > 0.1 and np.isnan(few.linear)
    assert many.u_sigma_bound < 0.1
    assert abs(many.linear - u) < 4 * many.sigma_linear and many.sigma_linear < 0.1


def test_sixteen_bins_still_fit_u_at_its_bound():
    rng = np.random.default_rng(42)
    mu = expected_counts(16, 1e7, 0.0, 1e-3, A0, 0.3)
    e = estimate(rng.poisson(mu), A0, phase_offset=0.3)
    lay = bin_layout(16, A0, 0.3)
    jac = np.array([lay.w, 1e7 * lay.c, 1e7 * lay.s])
    crb_u = np.sqrt(np.linalg.inv((jac / mu) @ jac.T)[1, 1])
    assert np.isfinite(e.linear) and e.covariance.shape == (3, 3) and not e.note
    assert e.u_sigma_bound == pytest.approx(crb_u, rel=1e-3)
    assert e.sigma_linear == pytest.approx(crb_u, rel=1e-2)


# --- the no-emission score test (issue 10) -----------------------------------------------

def false_alarm_rate(z_of_n, pmf, n_max):
    n = np.arange(n_max + 1)
    return float(np.sum(pmf(n)[np.array([z_of_n(k) >= 5.0 for k in n])]))


@pytest.mark.parametrize("dark_total", [0.2, 3.0, 40.0, 800.0, 9000.0])
def test_emission_score_false_alarm_rate_is_at_most_the_documented_one(dark_total):
    """Exact, by enumeration: P(emission_z ≥ 5 | only dark) ≤ 2.87e-7, and close to it once
    the counts are not too discrete (a discrete test cannot hit the rate exactly)."""
    import scipy.stats
    from cplscope.demod.estimator import _poisson_emission

    n_max = int(dark_total + 40 * np.sqrt(dark_total) + 60)
    nominal = scipy.stats.norm.sf(5.0)
    rate = false_alarm_rate(lambda n: _poisson_emission(n, dark_total, 0.0)[0],
                            lambda n: scipy.stats.poisson.pmf(n, dark_total), n_max)
    assert rate <= nominal * (1 + 1e-9)
    if dark_total >= 40:
        assert rate > 0.5 * nominal
    # with the dark known only to ±σ_D the H0 is the gamma-mixed Poisson (negative binomial)
    sd = 0.3 * np.sqrt(dark_total) + 0.1
    alpha, beta = dark_total**2 / sd**2, dark_total / sd**2
    rate = false_alarm_rate(lambda n: _poisson_emission(n, dark_total, sd)[0],
                            lambda n: scipy.stats.nbinom.pmf(n, alpha, beta / (1 + beta)),
                            int(n_max * 1.5))
    assert rate <= nominal * (1 + 1e-9)


def test_emission_score_of_large_darks_keeps_the_rate():
    """Above 1e4 dark counts the normal score with a skewness correction is used."""
    import scipy.stats
    from cplscope.demod.estimator import _poisson_emission

    for dark_total in (2e4, 1e6):
        n = np.arange(int(dark_total + 4 * np.sqrt(dark_total)),
                      int(dark_total + 8 * np.sqrt(dark_total)))
        z = np.array([_poisson_emission(k, dark_total, 0.0)[0] for k in n])
        rate = scipy.stats.poisson.pmf(n, dark_total)[z >= 5].sum()
        assert rate == pytest.approx(scipy.stats.norm.sf(5.0), rel=0.15)


@pytest.mark.parametrize("n_frames", [1, 3, 30])
def test_emission_z_is_calibrated_on_pure_dark_counts(n_frames):
    rng = np.random.default_rng(43 + n_frames)
    n_draws, dark = 4000, 0.7
    zs = np.array([estimate(rng.poisson(dark, size=(n_frames, 16)), A0, phase_offset=0.3,
                            dark=dark).emission_z for _ in range(n_draws)])
    for threshold in (2.0, 3.0):
        p = scipy.stats.norm.sf(threshold)
        # at most the normal tail (the test is conservative on discrete counts), binomial 4σ
        assert np.mean(zs >= threshold) <= p + 4 * np.sqrt(p * (1 - p) / n_draws)
    assert np.mean(zs >= 2.0) > 0.4 * scipy.stats.norm.sf(2.0)


def test_emission_score_needs_fewer_photons_than_a_wald_test_with_u_free():
    """On 1600 dark counts, 220 signal photons: the score test (variance of the dark only)
    detects most points, the Wald test M/σ_M with u free (σ_M inflated by the M–u
    correlation and the signal's own variance) almost none, both at z ≥ 5."""
    rng = np.random.default_rng(44)
    lay = bin_layout(16, A0, 0.3)
    n_frames, dark, m, n_draws = 10, 10.0, 220.0, 600
    mu = m / n_frames * (lay.w + 0.05 * lay.s) + dark
    x = lay.design

    def wald_u_free(counts):
        s = counts.sum(axis=0)
        fisher = (x.T / np.maximum(s, 1.0)) @ x
        theta = np.linalg.solve(fisher, (x.T / np.maximum(s, 1.0)) @ (s - n_frames * dark))
        return theta[0] / np.sqrt(np.linalg.inv(fisher)[0, 0])

    draws = [rng.poisson(mu, size=(n_frames, 16)) for _ in range(n_draws)]
    score = np.mean([estimate(c, A0, phase_offset=0.3, dark=dark).emission_z >= 5
                     for c in draws])
    wald = np.mean([wald_u_free(c) >= 5 for c in draws])
    # binomial sd of each fraction ≤ 0.5/√600 = 0.02
    assert score > 0.5 and score > wald + 0.3


@pytest.mark.parametrize("n_frames", [2, 3, 10])
def test_analog_emission_z_is_normal_on_pure_dark(n_frames):
    """Student t over the frames, mapped to a normal score: exact at any frame count,
    also with the dark level known only to ±σ (drawn anew for every point)."""
    rng = np.random.default_rng(45 + n_frames)
    n_draws, noise, dark_sd = 3000, 3.0, 0.5
    zs, zs_sd = [], []
    for _ in range(n_draws):
        frames = 100.0 + noise * rng.standard_normal((n_frames, 16))
        zs.append(estimate(frames, A0, phase_offset=0.4, dark=100.0,
                           noise="gaussian").emission_z)
        zs_sd.append(estimate(frames + dark_sd * rng.standard_normal(), A0, phase_offset=0.4,
                              dark=100.0, dark_sigma=dark_sd, noise="gaussian").emission_z)
    for threshold in (2.0, 3.0):
        p = scipy.stats.norm.sf(threshold)
        tol = 4 * np.sqrt(p * (1 - p) / n_draws)
        assert np.mean(np.array(zs) >= threshold) == pytest.approx(p, abs=tol)
        # with a dark σ the t tail at n_frames − 1 is an upper bound: at most the rate
        assert np.mean(np.array(zs_sd) >= threshold) <= p + tol


# --- analog σ, χ² and flicker (issue 10) -----------------------------------------------------

@pytest.mark.parametrize("n_frames", [3, 5, 10, 50])
def test_analog_sigma_coverage_follows_student_t_at_every_frame_count(n_frames):
    rng = np.random.default_rng(46 + n_frames)
    n_draws, g = 2000, 0.01
    results = [estimate(analog_frames(rng, n_frames, 16, 1000.0, 0.1, g, 0.4, 5.0), A0,
                        phase_offset=0.4, noise="gaussian") for _ in range(n_draws)]
    z = np.array([(r.g_lum - g) / r.sigma_g for r in results])
    assert all(r.dof_sigma == n_frames - 1 for r in results)
    nominal = 1 - 2 * scipy.stats.t.sf(3.0, n_frames - 1)
    assert np.mean(np.abs(z) < 3) == pytest.approx(
        nominal, abs=4 * np.sqrt(nominal * (1 - nominal) / n_draws))
    # the coverage factor turns ±3σ into the normal 99.73 % interval
    k = results[0].coverage_factor(3.0)
    assert k == pytest.approx(scipy.stats.t.ppf(scipy.stats.norm.cdf(3.0), n_frames - 1) / 3)
    p = 2 * scipy.stats.norm.sf(3.0)
    assert np.mean(np.abs(z) < 3 * k) == pytest.approx(1 - p, abs=4 * np.sqrt(p / n_draws) + 1e-3)


def test_analog_dark_sigma_adds_welch_satterthwaite_degrees_of_freedom():
    rng = np.random.default_rng(47)
    frames = analog_frames(rng, 5, 16, 1000.0, 0.0, 0.01, 0.4, 5.0, offset=20.0)
    plain = estimate(frames, A0, phase_offset=0.4, dark=20.0, noise="gaussian")
    with_sd = estimate(frames, A0, phase_offset=0.4, dark=20.0, dark_sigma=3.0,
                       noise="gaussian")
    assert plain.dof_sigma == 4 and with_sd.dof_sigma > 4
    assert with_sd.sigma_g > plain.sigma_g


@pytest.mark.parametrize("n_frames", [5, 40])
def test_analog_flicker_raises_chi2_red_but_not_the_shape_chi2(n_frames):
    rng = np.random.default_rng(48 + n_frames)
    n_draws = 300
    shapes, totals = [], []
    for _ in range(n_draws):
        e = estimate(analog_frames(rng, n_frames, 16, 1000.0, 0.1, 0.01, 0.4, 2.0, 0.05),
                     A0, phase_offset=0.4, noise="gaussian")
        shapes.append(e.chi2_shape_red)
        totals.append(e.chi2_red)
    dof_shape = e.dof_shape
    assert dof_shape == 13
    # each shape value is χ²(13)/13-equivalent: mean 1, sd √(2/13)
    assert abs(np.mean(shapes) - 1) < 4 * np.sqrt(2 / dof_shape / n_draws)
    assert np.mean(totals) > 1 + 10 * np.sqrt(2 / e.dof / n_draws)


def test_analog_chi2_is_one_without_flicker_and_the_shape_sees_a_wrong_retardation():
    rng = np.random.default_rng(49)
    shapes, totals = [], []
    for n_frames in (20, 60) * 150:   # pooled and full-covariance shape tests
        e = estimate(analog_frames(rng, n_frames, 16, 1000.0, 0.1, 0.01, 0.4, 2.0), A0,
                     phase_offset=0.4, noise="gaussian")
        shapes.append(e.chi2_shape_red)
        totals.append(e.chi2_red)
    assert abs(np.mean(shapes) - 1) < 4 * np.sqrt(2 / e.dof_shape / 300)
    assert abs(np.mean(totals) - 1) < 4 * np.sqrt(2 / e.dof / 300)
    for n_frames in (20, 60):
        polarizer = analog_frames(rng, n_frames, 16, 1000.0, 1.0, 0.0, 0.4, 2.0, 0.05)
        wrong = estimate(polarizer, 1.1 * A0, phase_offset=0.4, noise="gaussian")
        assert wrong.chi2_shape_red > 1 + 20 * np.sqrt(2 / wrong.dof_shape)


def test_stats_helpers_match_scipy():
    from cplscope.demod import _stats

    for a, x in [(0.5, 0.1), (3.0, 1.0), (10.0, 30.0), (100.0, 80.0), (1e4, 1.03e4)]:
        assert _stats.gamma_p(a, x) == pytest.approx(scipy.special.gammainc(a, x), rel=1e-11)
    for a, b, x in [(0.5, 0.5, 0.3), (2, 0.5, 0.9), (50, 0.5, 0.99), (3, 30, 0.01)]:
        assert _stats.betainc(a, b, x) == pytest.approx(scipy.special.betainc(a, b, x),
                                                        rel=1e-11)
    for t, d in [(3, 1), (3, 2), (5, 4), (-1, 3), (10, 50)]:
        assert _stats.t_upper_tail(t, d) == pytest.approx(scipy.stats.t.sf(t, d), rel=1e-11)
    assert _stats.t_quantile(0.99865, 2) == pytest.approx(scipy.stats.t.ppf(0.99865, 2),
                                                          rel=1e-10)
    assert _stats.f_upper_tail(3, 4, 10) == pytest.approx(scipy.stats.f.sf(3, 4, 10), rel=1e-11)
    assert _stats.z_from_upper_tail(scipy.stats.norm.sf(5.0)) == pytest.approx(5.0, rel=1e-9)


def test_emission_score_of_a_bright_point_over_a_large_dark_is_significant():
    """Above 1e4 dark counts the score uses a skewness-corrected normal; its expansion must
    not turn a bright point's huge z negative (it called 1e6-count points no_emission)."""
    rng = np.random.default_rng(12)
    lay = bin_layout(16, 1.9, 0.3)
    for m in (20.0, 444.0, 5000.0):
        counts = rng.poisson(m * lay.w + 0.25, size=(3000, 16))
        e = estimate(counts, 1.9, phase_offset=0.3, dark=np.full(16, 0.25), dark_sigma=0.018)
        assert e.emission_z >= EMISSION_Z_MIN and e.emission_p < 1e-6
    # and pure dark of the same size stays near 0
    dark_only = rng.poisson(0.25, size=(3000, 16))
    e = estimate(dark_only, 1.9, phase_offset=0.3, dark=np.full(16, 0.25), dark_sigma=0.018)
    assert abs(e.emission_z) < 5
