"""CD physics (cplscope.science.cd) on frames from the simulated bench's transmission geometry.

Bench frames → cplscope.demod.estimate → cd_point, without the full twin. Statistical
assertions use fixed seeds and tolerances from the expected scatter (χ² quantiles over the
repeated draws, or a number of standard errors of a mean).
"""
import math

import numpy as np
import pytest
from scipy import stats

from cplscope.science.cd import (CSA_DELTA_EPS_290, FLAG_LINEAR_DICHROISM, FLAG_NO_ABSORBANCE,
                         FLAG_NO_BASELINE, FLAG_OPAQUE, MDEG_PER_DELTA_A, BaselinePoint,
                         CDCalibration, CDPointResult, CDRules, baseline_from_point, cd_point,
                         delta_a_from_v, fit_csa, v_from_delta_a)
from cplscope.data.cd_spectrum import CDSpectrum
from cplscope.demod import estimate
from cplscope.sim.bench import Bench, InstrumentState
from cplscope.sim.samples import CSA_CONCENTRATION_M, Absorption, Sample

QUIET = dict(flicker_rms=0.0, drift_rel=0.0)
N_BINS, PERIODS = 16, 2000
FRAME_S = PERIODS / 50_000.0
A0 = math.pi / 2


def frames(bench, lam, n_frames, *, shutter=True, periods=PERIODS):
    drive = A0 * bench.pem_drive_per_rad_nm * lam
    frame_s = periods * bench.pem_period_s
    out = [bench.counts_frame(InstrumentState(lam, drive, shutter, 800.0, i * frame_s),
                              N_BINS, periods).counts for i in range(n_frames)]
    return np.array(out)


def measure(bench, lam, n_frames, *, a0_host=A0, shutter=True, periods=PERIODS):
    """(estimate, dwell) as a host would compute them from the bench's frames, with the dark
    counts known (as from a dark measurement)."""
    frame_s = periods * bench.pem_period_s
    dark = bench.expected_counts(InstrumentState(lam, 0.0, False, 800.0), N_BINS, periods,
                                 dead_time=False)
    est = estimate(frames(bench, lam, n_frames, shutter=shutter, periods=periods), a0_host,
                   phase_offset=bench.pem_phase_offset_rad, dead_time=bench.dead_time_s,
                   frame_time=frame_s, dark=dark)
    return est, n_frames * frame_s


def point(bench, lam, n_frames, baseline=None, *, a0_host=A0, periods=PERIODS, **kw):
    est, dwell = measure(bench, lam, n_frames, a0_host=a0_host, periods=periods)
    return cd_point(est, lam, dwell, baseline=baseline, **kw)


def baseline(bench, lam, n_frames, **kw):
    return baseline_from_point(point(bench, lam, n_frames, **kw))


COUPLET_LAM = np.linspace(380.0, 420.0, 401)


def couplet_sample():
    """A flat A = 0.6 on the solvent-like 0.04, with a bisignate couplet ΔA = ±6e-3 at 400 nm."""
    lam = COUPLET_LAM
    x = (lam - 400.0) / 8.0
    delta_a = 6e-3 * 2.33 * x * np.exp(-x * x)
    ab = Absorption(lam, np.full_like(lam, 0.64), delta_a, np.zeros_like(lam))
    return Sample("couplet", lam, np.zeros_like(lam), np.zeros_like(lam), np.zeros_like(lam),
                  0.0, absorption=ab)


def flat_sample(a, name, delta_a=0.0, ld=0.0):
    lam = np.array([150.0, 1200.0])
    ab = Absorption(lam, np.full(2, a), np.full(2, delta_a), np.full(2, ld))
    return Sample(name, lam, np.zeros(2), np.zeros(2), np.zeros(2), 0.0, absorption=ab)


# --- the physics ------------------------------------------------------------------------------

def test_v_and_delta_a_are_inverse_and_have_the_model_sign():
    da = np.array([-0.5, -1e-3, 0.0, 2e-3, 0.3])
    np.testing.assert_allclose(delta_a_from_v(v_from_delta_a(da)), da, rtol=1e-12, atol=1e-18)
    # more absorption of left light (ΔA > 0) leaves less left light: v < 0
    assert v_from_delta_a(1e-3) < 0
    t_l, t_r = 10 ** -(1.0 + 5e-4), 10 ** -(1.0 - 5e-4)
    assert v_from_delta_a(1e-3) == pytest.approx((t_l - t_r) / (t_l + t_r), rel=1e-12)
    assert MDEG_PER_DELTA_A == 32980.0


def test_bisignate_couplet_recovered_within_sigma_and_sigma_calibrated():
    """Repeated draws: each point's ΔA, A and g_abs scatter about the truth as their σ says."""
    sample = Bench(couplet_sample(), seed=101, geometry="cd", **QUIET)
    solvent = Bench(flat_sample(0.04, "solvent-like"), seed=102, geometry="cd", **QUIET)
    lams = [386.0, 392.0, 396.0, 400.0, 404.0, 408.0, 414.0]
    repeats, n_frames = 30, 25
    z = {"delta_a": [], "absorbance": [], "g_abs": []}
    means = []
    for lam in lams:
        truth = sample.cd_truth(lam, flat_sample(0.04, "b"))
        vals = []
        for _ in range(repeats):
            p = point(sample, lam, n_frames, baseline=baseline(solvent, lam, n_frames))
            assert p.flags == ()
            z["delta_a"].append((p.delta_a - truth.delta_a) / p.sigma_delta_a)
            z["absorbance"].append((p.absorbance - truth.absorbance) / p.sigma_absorbance)
            z["g_abs"].append((p.g_abs - truth.g_abs) / p.sigma_g_abs)
            vals.append(p.delta_a)
        means.append((np.mean(vals), np.std(vals, ddof=1) / math.sqrt(repeats), truth.delta_a))
    n = len(lams) * repeats
    lo, hi = stats.chi2.ppf([1e-4, 1 - 1e-4], n)
    for key, values in z.items():
        chi2 = float(np.sum(np.square(values)))
        assert lo < chi2 < hi, f"{key}: χ² = {chi2:.0f} over {n} draws"
        assert abs(np.mean(values)) < 4.0 / math.sqrt(n), f"{key} biased"
    # the couplet: sign change at 400 nm, each lobe's mean within 4 standard errors
    for mean, se, true in means:
        assert abs(mean - true) < 4 * se
    assert means[1][0] < -10 * means[1][1] and means[5][0] > 10 * means[5][1]


def test_mirror_pair_r_and_s_with_the_papers_g_abs():
    r = Bench("R-Cs4PbBr6", seed=111, geometry="cd", **QUIET)
    s = Bench("S-Cs4PbBr6", seed=112, geometry="cd", **QUIET)
    solvent = Bench("solvent", seed=113, geometry="cd", **QUIET)
    for lam in (426.0, 446.0):
        b = baseline(solvent, lam, 2000)
        pr, ps = point(r, lam, 2000, b), point(s, lam, 2000, b)
        tr, ts = r.cd_truth(lam, "solvent"), s.cd_truth(lam, "solvent")
        for p, t in ((pr, tr), (ps, ts)):
            assert abs(p.g_abs - t.g_abs) < 4 * p.sigma_g_abs
            assert p.sigma_g_abs < abs(t.g_abs) / 8
        assert np.sign(pr.g_abs) == -np.sign(ps.g_abs)
        # g_R + (8.5/8.8)·g_S = 0 for the library's mirror pair
        k = 8.5 / 8.8
        assert abs(pr.g_abs + k * ps.g_abs) < 4 * math.hypot(pr.sigma_g_abs, k * ps.sigma_g_abs)
    assert 8.0e-3 < r.cd_truth(426.0, "solvent").g_abs < 8.5e-3  # near the paper's maximum


@pytest.mark.parametrize("name, lams", [("N-Cs4PbBr6", (305.0, 313.0, 330.0, 350.0)),
                                        ("CsPbBr3", (440.0, 470.0, 485.0, 500.0))])
def test_achiral_samples_are_consistent_with_zero(name, lams):
    bench = Bench(name, seed=121, geometry="cd")
    solvent = Bench("solvent", seed=122, geometry="cd")
    chi2 = 0.0
    for lam in lams:
        p = point(bench, lam, 400, baseline(solvent, lam, 400))
        assert FLAG_OPAQUE not in p.flags and p.absorbance > 0.02
        chi2 += (p.delta_a / p.sigma_delta_a) ** 2
    assert chi2 < stats.chi2.ppf(1 - 1e-4, len(lams))


def test_opaque_points_are_nan_not_noise():
    r = Bench("R-Cs4PbBr6", seed=131, geometry="cd")
    solvent = Bench("solvent", seed=132, geometry="cd")
    p = point(r, 265.0, 200, baseline(solvent, 265.0, 200))  # A ≈ 3.6 > max_absorbance
    assert p.flags[0] == FLAG_OPAQUE
    for name in ("absorbance", "sigma_absorbance", "delta_a", "sigma_delta_a", "g_abs",
                 "sigma_g_abs", "ellipticity_mdeg", "linear_dichroism"):
        assert math.isnan(getattr(p, name)), name
    assert p.intensity > 0 and p.n_frames == 200          # the rate is still reported
    # the same point with a higher limit is measured (the twin has no stray light)
    q = point(r, 265.0, 200, baseline(solvent, 265.0, 200), rules=CDRules(max_absorbance=5))
    assert FLAG_OPAQUE not in q.flags and q.absorbance > 3
    # lamp shutter closed: no significant transmitted light at all, with or without baseline
    est, dwell = measure(r, 436.0, 50, shutter=False)
    for b in (None, BaselinePoint(3e5, 100.0)):
        dark = cd_point(est, 436.0, dwell, baseline=b)
        assert FLAG_OPAQUE in dark.flags and math.isnan(dark.delta_a)


def test_without_baseline_delta_a_only():
    r = Bench("R-Cs4PbBr6", seed=141, geometry="cd", **QUIET)
    p = point(r, 426.0, 500)
    assert p.flags == (FLAG_NO_BASELINE,)
    assert math.isnan(p.absorbance) and math.isnan(p.g_abs)
    assert abs(p.delta_a - r.cd_truth(426.0).delta_a) < 4 * p.sigma_delta_a
    assert p.ellipticity_mdeg == pytest.approx(32980 * p.delta_a)


def test_solvent_against_itself_has_no_absorbance_and_no_g():
    a = Bench("solvent", seed=151, geometry="cd", **QUIET)
    b = Bench("solvent", seed=152, geometry="cd", **QUIET)
    p = point(a, 450.0, 200, baseline(b, 450.0, 200))
    assert abs(p.absorbance) < 4 * p.sigma_absorbance
    if abs(p.absorbance) < 3 * p.sigma_absorbance:
        assert FLAG_NO_ABSORBANCE in p.flags and math.isnan(p.g_abs)


def test_baseline_cd_is_subtracted():
    est, dwell = measure(Bench("R-Cs4PbBr6", seed=161, geometry="cd"), 426.0, 100)
    base = BaselinePoint(8e5, 100.0, delta_a=1e-3, sigma_delta_a=2e-4)
    with_b = cd_point(est, 426.0, dwell, baseline=base)
    without = cd_point(est, 426.0, dwell, baseline=base, subtract_baseline_cd=False)
    assert with_b.delta_a == pytest.approx(without.delta_a - 1e-3)
    assert with_b.sigma_delta_a == pytest.approx(math.hypot(without.sigma_delta_a, 2e-4))


def test_linear_dichroism_is_measured_and_flagged():
    ld = Bench(flat_sample(0.5, "ld", ld=0.02), seed=171, geometry="cd", **QUIET)
    p = point(ld, 400.0, 200, BaselinePoint(1e6, 50.0))
    assert FLAG_LINEAR_DICHROISM in p.flags
    assert abs(p.linear_dichroism - 0.02) < 4 * p.sigma_linear_dichroism
    assert abs(p.delta_a) < 4 * p.sigma_delta_a            # LD does not leak into ΔA here
    plain = point(Bench(flat_sample(0.5, "plain"), seed=172, geometry="cd", **QUIET), 400.0, 200,
                  BaselinePoint(1e6, 50.0))
    assert FLAG_LINEAR_DICHROISM not in plain.flags


# --- calibration from CSA ---------------------------------------------------------------------

def csa_spectrum(bench, solvent, lams, n_frames, *, calibration=CDCalibration(), **kw):
    spec = CDSpectrum()
    for lam in lams:
        b = baseline_from_point(point(solvent, lam, n_frames, calibration=calibration, **kw))
        spec.append(point(bench, lam, n_frames, b, calibration=calibration, **kw))
    return spec


CSA_LAMS = np.arange(284.0, 297.0, 1.0)
LONG = 25_000  # 0.5-s frames: the bench's cost is per frame, not per photon


@pytest.mark.parametrize("from_absorbance", [True, False])
def test_csa_fit_recovers_a_deliberately_wrong_sign_and_scale(from_absorbance):
    # polarizer at −45° (sign flipped) and a host that believes A0 = 0.8 rad (true π/2), which
    # scales the apparent v by ~1.5
    csa = Bench("CSA", seed=181, geometry="cd", cd_polarizer_deg=-45)
    solvent = Bench("solvent", seed=182, geometry="cd", cd_polarizer_deg=-45)
    raw = csa_spectrum(csa, solvent, CSA_LAMS, 100, a0_host=0.8, periods=LONG)
    conc = None if from_absorbance else CSA_CONCENTRATION_M
    fit = fit_csa(raw, concentration_mol_l=conc, path_cm=1.0)
    cal = fit.calibration
    assert cal.cd_sign == -1
    assert abs(cal.cd_scale - 1.0) > 10 * cal.sigma_scale      # the scale really was wrong
    # re-measured with the fitted calibration, CSA gives the accepted value
    good = csa_spectrum(csa, solvent, CSA_LAMS, 100, a0_host=0.8, calibration=cal,
                        periods=LONG)
    i = int(np.argmin(abs(CSA_LAMS - 290.0)))
    truth = Bench("CSA", seed=0, geometry="cd").cd_truth(290.0, "solvent").delta_a
    tol = 4 * math.hypot(good[i].sigma_delta_a, truth * cal.sigma_scale / cal.cd_scale)
    assert abs(good[i].delta_a - truth) < tol
    assert fit.expected_delta_a == pytest.approx(CSA_DELTA_EPS_290 * CSA_CONCENTRATION_M,
                                                 rel=0.02)


def test_csa_fit_on_a_right_instrument_is_the_identity_and_checks_the_band_ratio():
    csa = Bench("CSA-1mm", seed=191, geometry="cd", **QUIET)
    solvent = Bench("solvent", seed=192, geometry="cd", **QUIET)
    lams = np.concatenate([np.arange(186.0, 200.0, 1.0), np.arange(284.0, 297.0, 1.0)])
    spec = csa_spectrum(csa, solvent, lams, 400, periods=LONG)
    fit = fit_csa(spec, concentration_mol_l=CSA_CONCENTRATION_M, path_cm=0.1)
    assert fit.calibration.cd_sign == 1
    assert abs(fit.calibration.cd_scale - 1.0) < 4 * fit.calibration.sigma_scale + 5e-3
    assert abs(fit.ratio_192 - (-2.0)) < 4 * fit.sigma_ratio_192 + 0.02
    assert "cd_sign = +1" in fit.text() and "192.5" in fit.text()


def test_csa_fit_errors():
    spec = CDSpectrum([CDPointResult(300.0, 0.1, 0.01, 1e-5, 1e-4, 1e-4, 1e-3, 0.3, 0.0, 1.0,
                                     10, 1.0)])
    with pytest.raises(ValueError, match="no usable points around 290.5 nm"):
        fit_csa(spec)
    lams = np.arange(285.0, 296.0)
    noisy = CDSpectrum([CDPointResult(x, 0.1, 0.01, 1e-5, 1e-4, 1e-4, 1e-3, 0.3, 0.0, 1.0, 10,
                                      1.0) for x in lams])
    with pytest.raises(ValueError, match="not significant"):
        fit_csa(noisy)


# --- argument checks ---------------------------------------------------------------------------

def test_cd_point_and_calibration_validation():
    est, dwell = measure(Bench("solvent", seed=201, geometry="cd"), 400.0, 5)
    with pytest.raises(ValueError, match="wavelength_nm must be a positive"):
        cd_point(est, float("nan"), dwell)
    with pytest.raises(ValueError, match="dwell_s must be a positive"):
        cd_point(est, 400.0, 0.0)
    with pytest.raises(ValueError, match="cd_sign must be"):
        CDCalibration(cd_sign=0)
    with pytest.raises(ValueError, match="cd_scale must be"):
        CDCalibration(cd_scale=-1.0)
    with pytest.raises(ValueError, match="unknown key"):
        CDCalibration.from_dict({"cd_sign": 1, "handedness": 1})
    assert CDCalibration.from_dict(CDCalibration(-1, 1.1, 0.01, "x").to_dict()).factor == -1.1
    with pytest.raises(ValueError, match="CDRules.max_absorbance"):
        CDRules(max_absorbance=float("inf"))
    with pytest.raises(ValueError, match="baseline scan has no usable value"):
        BaselinePoint(float("nan"), 1.0)
    with pytest.raises(ValueError, match="rate_cps must be > 0"):
        BaselinePoint(0.0, 1.0)
    with pytest.raises(ValueError, match="flag 'Bad'"):
        CDPointResult(400.0, *([0.0] * 8), 1.0, 1, 1.0, flags=("Bad",))
