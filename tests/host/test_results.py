"""PointResult: corrections (dwell, handedness, blank) and the automatic flags."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cplscope.demod import estimate
from cplscope.demod.bins import bin_layout
from cplscope.protocol import Flags
from cplscope.science.results import (
    FLAG_FLICKER,
    FLAG_DWELL_LIMIT,
    FLAG_LINEAR_POL,
    FLAG_LINEAR_UNKNOWN,
    FLAG_MISFIT,
    FLAG_NO_EMISSION,
    FlagRules,
    PointResult,
    chi2_misfit,
    chi2_quantile,
    chi2_sf,
    frame_health_flags,
    point_from_estimate,
)

A0, PHI0, B = np.pi / 2, 0.3, 16
FRAME_TIME = 0.01  # s


def frames(rng, m, g=0.0, u=0.0, dark=0.5, n=200, bins=B, flicker=0.0):
    """Poisson frames with M signal counts per frame, g_lum = g, linear = u."""
    lay = bin_layout(bins, A0, PHI0)
    mu = m * (lay.w + u * lay.c + 0.5 * g * lay.s)
    scale = 1.0 + flicker * rng.standard_normal((n, 1)) if flicker else 1.0
    return rng.poisson(np.maximum(mu * scale, 0) + dark, size=(n, bins))


def est(counts, dark=0.5):
    return estimate(counts, A0, phase_offset=PHI0, dark=dark)


def test_dwell_normalization_and_handedness_flip_signs_and_swap_l_r():
    rng = np.random.default_rng(11)
    e = est(frames(rng, 2e4, g=0.02))
    dwell = 200 * FRAME_TIME
    plus = point_from_estimate(e, 438.0, dwell)
    minus = point_from_estimate(e, 438.0, dwell, handedness=-1)
    assert plus.intensity == pytest.approx(e.intensity / dwell, rel=1e-12)
    assert plus.sigma_intensity == pytest.approx(e.sigma_intensity / dwell, rel=1e-12)
    assert plus.g_lum == pytest.approx(e.g_lum, rel=1e-12)
    assert plus.delta_i == pytest.approx(e.delta_i / dwell, rel=1e-9)
    assert minus.g_lum == -plus.g_lum and minus.delta_i == -plus.delta_i
    assert minus.i_left == pytest.approx(plus.i_right) and minus.i_right == pytest.approx(plus.i_left)
    assert minus.sigma_g == plus.sigma_g and minus.linear == plus.linear
    # the true rate is 2e4 counts per 0.01 s frame
    assert abs(plus.intensity - 2e6) < 4 * plus.sigma_intensity
    assert plus.g_lum == pytest.approx(2 * plus.delta_i / plus.intensity)


def test_blank_subtraction_pulls_are_standard_normal():
    """g − g_blank with σ² + σ_blank²: pulls against the true difference have unit spread."""
    rng = np.random.default_rng(5)
    g_true, g_blank_true, sigma_blank = 4e-3, 1.5e-3, 2e-3
    pulls = []
    for _ in range(300):
        e = est(frames(rng, 5e3, g=g_true, n=50))
        blank = (g_blank_true + sigma_blank * rng.standard_normal(), sigma_blank)
        p = point_from_estimate(e, 500.0, 0.5, blank=blank)
        pulls.append((p.g_lum - (g_true - g_blank_true)) / p.sigma_g)
        assert p.delta_i == pytest.approx(p.intensity * p.g_lum / 2)
    pulls = np.array(pulls)
    n = len(pulls)
    assert abs(pulls.mean()) < 3 / math.sqrt(n)
    assert abs(pulls.std(ddof=1) - 1) < 3 / math.sqrt(2 * n)


def test_dark_only_is_no_emission_with_nan_g_and_never_a_noisy_g():
    rng = np.random.default_rng(2)
    flagged = 0
    for _ in range(200):
        p = point_from_estimate(est(frames(rng, 0.0, dark=5.0, n=100), dark=5.0), 313.0, 1.0)
        if p.has(FLAG_NO_EMISSION):
            flagged += 1
            for name in ("g_lum", "sigma_g", "delta_i", "linear", "sigma_linear", "i_left",
                         "i_right"):
                assert math.isnan(getattr(p, name)), name
            assert math.isfinite(p.intensity) and p.sigma_intensity > 0
    # P(snr ≥ 5 | no signal) ≈ 3e-7: every one of 200 dark-only points is flagged
    assert flagged == 200


def test_significant_emission_is_not_flagged_and_threshold_is_a_parameter():
    rng = np.random.default_rng(3)
    e = est(frames(rng, 40.0, dark=5.0, n=100), dark=5.0)   # snr ≈ 4000/sqrt(4000 + 8000) ≈ 37
    assert e.snr > 15
    p = point_from_estimate(e, 438.0, 1.0)
    assert not p.has(FLAG_NO_EMISSION)
    assert p.snr >= e.snr * 0.99      # the score test is at least as sensitive as the Wald ratio
    strict = FlagRules(snr_min=p.snr * 1.01)
    assert point_from_estimate(e, 438.0, 1.0, rules=strict).has(FLAG_NO_EMISSION)


def test_linear_pol_flag_rule():
    rng = np.random.default_rng(4)
    big_u = point_from_estimate(est(frames(rng, 2e4, g=1e-3, u=0.2)), 450.0, 2.0)
    assert big_u.has(FLAG_LINEAR_POL)
    # the same u next to a large g is not a leakage worry (|u| < 10·|g|)
    big_g = point_from_estimate(est(frames(rng, 2e4, g=0.05, u=0.2)), 450.0, 2.0)
    assert not big_g.has(FLAG_LINEAR_POL)
    clean = point_from_estimate(est(frames(rng, 2e4, g=1e-3, u=0.0)), 450.0, 2.0)
    assert not clean.has(FLAG_LINEAR_POL)
    # the significance gate alone (ratio 0): u = 0 data is flagged at the 3σ two-sided rate
    only_sig = FlagRules(linear_ratio=0.0)
    hits = sum(point_from_estimate(est(frames(rng, 2e3, n=10)), 450.0, 0.1, rules=only_sig)
               .has(FLAG_LINEAR_POL) for _ in range(300))
    assert hits <= 4          # expected 300·0.0027 = 0.8; P(≥ 5) ≈ 2e-3
    assert point_from_estimate(est(frames(rng, 2e3, u=0.1, n=10)), 450.0, 0.1,
                               rules=only_sig).has(FLAG_LINEAR_POL)


def test_linear_unknown_when_layout_cannot_see_u():
    rng = np.random.default_rng(6)
    lay = bin_layout(2, A0, 0.0)
    counts = rng.poisson(1e4 * (lay.w + 0.5 * 0.01 * lay.s), size=(50, 2))
    p = point_from_estimate(estimate(counts, A0), 450.0, 0.5)
    assert p.has(FLAG_LINEAR_UNKNOWN) and math.isnan(p.linear)
    assert math.isfinite(p.g_lum)


def test_misfit_false_alarm_rate_and_flicker_detection():
    rng = np.random.default_rng(7)
    false_alarms = sum(point_from_estimate(est(frames(rng, 500.0, g=0.01, n=50)), 440.0, 0.5)
                       .has(FLAG_MISFIT) for _ in range(300))
    # expected 300·2e-3 = 0.6 false alarms; P(≥ 5) ≈ 4e-4
    assert false_alarms <= 4
    flicker = point_from_estimate(est(frames(rng, 1e4, g=0.01, flicker=0.05, n=100)), 440.0, 1.0)
    # expected chi2_red ≈ 1 + 0.05²·1e4/16; common-mode flicker leaves the shape and g alone
    assert flicker.has(FLAG_FLICKER) and not flicker.has(FLAG_MISFIT)
    assert flicker.chi2_red > 1.5
    # a 10 % wrong A0 on linearly polarized light breaks the shape itself
    counts = frames(rng, 1e6, u=1.0, n=20)
    wrong = point_from_estimate(estimate(counts, 1.1 * A0, phase_offset=PHI0, dark=0.5),
                                440.0, 1.0)
    assert wrong.has(FLAG_MISFIT) and not wrong.has(FLAG_FLICKER)


def test_dwell_limit_and_frame_flags_pass_through_in_the_fixed_order():
    rng = np.random.default_rng(8)
    e = est(frames(rng, 1e3, n=20))
    p = point_from_estimate(e, 440.0, 0.2, dwell_limit=True,
                            frame_flags=["overload", "saturated", "overload"])
    assert p.flags == (FLAG_DWELL_LIMIT, "saturated", "overload")   # FLAG_ORDER, no repeats


def test_frame_health_flags_from_protocol_flags():
    ok = int(Flags.PEM_LOCKED | Flags.HV_ON | Flags.SHUTTER_OPEN)
    assert frame_health_flags([ok, ok]) == ()
    assert frame_health_flags(np.array([ok, ok | Flags.SATURATED, ok | Flags.OVERLOAD])) == (
        "saturated", "overload")
    assert frame_health_flags([ok, int(Flags.HV_ON)]) == ("pem_unlocked",)
    assert frame_health_flags([ok | Flags.MONO_MOVING | Flags.OVERRUN]) == ("mono_moving", "overrun")
    assert frame_health_flags([]) == ()


@pytest.mark.parametrize("kwargs, match", [
    (dict(handedness=0), "handedness"),
    (dict(dwell_s=0.0), "dwell_s"),
    (dict(wavelength_nm=float("nan")), "wavelength_nm"),
    (dict(blank=(float("nan"), 1e-4)), "blank"),
    (dict(blank=(0.0, -1e-4)), "blank"),
    (dict(frame_flags=["Over load"]), "flag"),
    (dict(frame_flags=["a,b"]), "flag"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    rng = np.random.default_rng(9)
    args = dict(est=est(frames(rng, 1e3, n=10)), wavelength_nm=440.0, dwell_s=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        point_from_estimate(**args)


def test_flags_must_be_a_tuple_of_names_not_a_string():
    with pytest.raises(ValueError, match="tuple of names"):
        PointResult(440.0, 1, 1, 0, 1, 0, 0, 0, 0, 1, 1, 1.0, flags="misfit")  # type: ignore[arg-type]


def test_wilson_hilferty_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in (30, 100, 1000, 48_000):
        for p in (1e-3, 0.05, 0.5, 0.95, 0.999):
            exact = stats.chi2.ppf(p, dof)
            assert chi2_quantile(p, dof) == pytest.approx(exact, rel=0.01)
            assert chi2_sf(exact, dof) == pytest.approx(1 - p, rel=0.05, abs=1e-4)
    assert chi2_misfit(1.0, 1000) is False
    assert chi2_misfit(1.3, 1000) and chi2_misfit(0.75, 1000)
    assert chi2_misfit(float("nan"), 10) is False and chi2_misfit(5.0, 0) is False
