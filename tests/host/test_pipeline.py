"""The point pipeline: one pure path from frames and context to a spectrum row."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cplscope.data.archive import RawFrames
from cplscope.settings.calibration import Calibration, default_calibration
from cplscope.demod.bins import bin_layout
from cplscope.science.frames import FrameSet
from cplscope.science.pipeline import PointContext, Retardation, process_point, spectrum_row
from cplscope.science.results import FlagRules, combine_points, subtract_blank

B, PHI0, FRAME_T = 16, 0.3, 0.01


def counts(rng, m, g, a0=math.pi / 2, n=100, dark=2.0):
    lay = bin_layout(B, a0, PHI0)
    return rng.poisson(m * (lay.w + 0.5 * g * lay.s) + dark, size=(n, B))


def ctx(a0=math.pi / 2, **kw):
    return PointContext(wavelength_nm=438.0, a0_rad=a0, phase_offset_rad=PHI0, dark=2.0,
                        **kw)


def test_frameset_is_the_archives_frame_type():
    assert RawFrames is FrameSet


def test_the_blank_is_subtracted_once_after_combining_accumulations():
    rng = np.random.default_rng(1)
    raw = [process_point(counts(rng, 4e4, 1e-3), FRAME_T, 1.0, 1.0, ctx(accumulation=a))[1]
           for a in range(3)]
    blank = (2e-4, 3e-3)
    row = spectrum_row(raw, blank)
    combined = combine_points(raw)
    assert row.sigma_g == pytest.approx(math.hypot(combined.sigma_g, blank[1]), rel=1e-12)
    assert row.g_lum == pytest.approx(combined.g_lum - blank[0], rel=1e-12)
    # the blank's σ is one measurement: the row can never be more certain than the blank
    assert row.sigma_g > blank[1]
    # subtracting per accumulation and then combining (the old way) would divide it by √3
    per_acc = combine_points([subtract_blank(p, blank) for p in raw])
    assert per_acc.sigma_g < 0.8 * row.sigma_g


def test_a_single_accumulation_row_is_the_point_with_its_blank():
    rng = np.random.default_rng(2)
    _, raw = process_point(counts(rng, 4e4, 1e-3), FRAME_T, 1.0, 1.0, ctx())
    assert spectrum_row([raw], None) == raw
    assert spectrum_row([raw], (1e-4, 1e-4)) == subtract_blank(raw, (1e-4, 1e-4))


def test_the_fit_uses_the_retardation_of_the_context():
    """Counts made at A0 = 2.405 rad are unbiased when fitted at 2.405 and biased at π/2."""
    rng = np.random.default_rng(3)
    g = 0.02
    good, bad = [], []
    for _ in range(20):
        c = counts(rng, 2e5, g, a0=2.405)
        good.append(process_point(c, FRAME_T, 1.0, 1.0, ctx(a0=2.405))[1])
        bad.append(process_point(c, FRAME_T, 1.0, 1.0, ctx())[1])
    mean_good = combine_points(good)
    mean_bad = combine_points(bad)
    assert abs(mean_good.g_lum - g) < 4 * mean_good.sigma_g
    assert abs(mean_bad.g_lum - g) > 6 * mean_bad.sigma_g and mean_bad.has("misfit")


def test_retardation_in_force_follows_the_calibration_scale():
    cal = Calibration(**{**default_calibration("s1").__dict__, "a0_rad": 1.6,
                         "a0_command_rad": math.pi / 2, "source": "manual"})
    assert cal.retardation_scale == pytest.approx(1.6 / (math.pi / 2))
    # untracked: the firmware's nominal A0 fell as 1/λ, the fit uses the scaled nominal value
    r = Retardation(nominal_rad=math.pi / 2 * 500 / 600, commanded_rad=math.pi / 2,
                    tracking=False)
    c = PointContext.build(600.0, cal, r)
    assert c.a0_rad == pytest.approx(1.6 * 500 / 600)
    assert c.a0_tracking is False and c.a0_nominal_rad == r.nominal_rad
    # a new calibration rescales from the nominal A0, not from the old one
    new = Calibration(**{**cal.__dict__, "a0_rad": 1.5})
    assert c.recalibrated(cal, new).a0_rad == pytest.approx(1.5 * 500 / 600)
    with pytest.raises(ValueError, match="PEM off"):
        cal.a0_in_force(0.0)


def test_dwell_limit_and_hopeless_follow_from_the_context():
    rng = np.random.default_rng(4)
    c = counts(rng, 1e3, 1e-3, n=10)
    _, fixed = process_point(c, FRAME_T, 1.0, 0.1, ctx())
    assert "dwell_limit" not in fixed.flags
    _, limited = process_point(c, FRAME_T, 1.0, 0.1, ctx(target_sigma=1e-6,
                                                         stopped="max_dwell"))
    assert "dwell_limit" in limited.flags
    _, hopeless = process_point(c, FRAME_T, 1.0, 0.1, ctx(target_sigma=1e-6, stopped="hopeless",
                                                          extra_flags=("hopeless",)))
    assert "hopeless" in hopeless.flags and "dwell_limit" not in hopeless.flags


def test_no_emission_uses_the_score_statistic_in_combined_points():
    rng = np.random.default_rng(5)
    dark_only = [process_point(rng.poisson(2.0, size=(50, B)), FRAME_T, 1.0, 0.5,
                               ctx(accumulation=a))[1] for a in range(4)]
    row = spectrum_row(dark_only, None, FlagRules())
    assert row.has("no_emission") and math.isnan(row.g_lum)
    bright = [process_point(counts(rng, 2e3, 0.0, n=50), FRAME_T, 1.0, 0.5, ctx())[1]
              for _ in range(2)]
    assert not spectrum_row(bright, None).has("no_emission")
