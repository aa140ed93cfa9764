"""Scans that plan: the survey, the time budget, hopeless points, the two rate limits, and
resuming an interrupted scan from its archive (on the simulated instrument)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cplscope
from cplscope.data.archive import Archive
from cplscope.plans.reprocess import reprocess
from cplscope.plans.calibrate import calibrate_simulated
from cplscope.settings.calibration import CalibrationError
from cplscope.settings.rate_limits import RateLimits, load_limits, save_limits
from cplscope.plans.scan import ScanInterrupted


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("home")
    mp.setenv("CPLSCOPE_HOME", str(path))
    try:
        calibrate_simulated(seed=3, dwell_s=5.0, save=True)
        yield path
    finally:
        mp.undo()


@pytest.fixture
def inst(home, monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(home))
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=5) as i:
        i.prepare(bins=16, periods=5000)
        yield i


def test_rate_limits_are_validated_and_kept_per_instrument(tmp_path):
    assert RateLimits().linear_cps < RateLimits().damage_cps
    with pytest.raises(CalibrationError, match="below the linear-range"):
        RateLimits(linear_cps=5e6, damage_cps=1e6)
    with pytest.raises(CalibrationError, match="positive"):
        RateLimits(linear_cps=-1.0)
    p = save_limits("abc", RateLimits(1e6, 4e6), tmp_path / "l.json")
    assert load_limits("abc", p) == RateLimits(1e6, 4e6)
    assert load_limits("abc", tmp_path / "missing.json") == RateLimits()


def test_time_budget_scan_never_overruns_and_skips_dark_points(inst, tmp_path):
    budget = 60.0
    surveys = []
    spec = inst.scan(420, 580, 20, time_budget_s=budget, output=tmp_path / "b.csv",
                     archive=tmp_path / "b.h5",
                     sinks=[lambda n, d: surveys.append(d) if n == "survey" else None])
    frame = 5000 / 50_000
    assert len(surveys) == 1
    survey_dwell = surveys[0].dwell_s
    # the counting time of the whole scan stays within one frame per point of the budget
    assert spec.dwell_s.sum() <= budget + frame * len(spec) + 1e-9
    assert spec.dwell_s.sum() >= budget - frame * len(spec)
    dark = spec.has_flag("no_emission")
    assert dark.any() and (~dark).any()
    # points without emission get nothing beyond the survey
    np.testing.assert_allclose(spec.dwell_s[dark], survey_dwell, rtol=1e-9)
    assert (spec.dwell_s[~dark] >= survey_dwell - 1e-9).all()
    plan = spec.metadata["plan"]
    assert plan["budget_s"] == budget and len(plan["points"]) == len(spec)
    assert all(p["achieved_sigma_g"] is not None for p, d in zip(plan["points"], dark) if not d)
    # the run reprocesses to the same rows, plan included
    again = reprocess(tmp_path / "b.h5")
    assert _rows_equal(again, spec)
    assert again.metadata["plan"] == plan


def test_survey_predicts_nonlinear_points_and_the_scan_keeps_them(inst, tmp_path):
    inst.set_rate_limits(linear_cps=1.0e6, save=False)
    surveys = []
    spec = inst.scan(430, 446, 4, dwell_s=1.0, survey=0.5, survey_callback=surveys.append)
    (sv,) = surveys
    predicted = [sv.wavelengths_nm[i] for i in range(len(sv.points)) if sv.nonlinear(i)]
    assert predicted, "the survey should see the 438-nm peak above 1e6 counts/s"
    assert "above the linear range" in sv.summary()
    flagged = [p.wavelength_nm for p in spec if p.has("nonlinear")]
    assert set(predicted) <= set(flagged)
    # kept, not lost: those points have a g and its σ
    assert all(math.isfinite(p.g_lum) for p in spec if p.has("nonlinear"))
    assert spec.metadata["survey"]["nonlinear_nm"] == predicted
    # the survey's frames start every point: each point counted survey + dwell
    assert np.all(spec.dwell_s >= 1.5 - 0.1)


def test_adaptive_scan_can_skip_hopeless_points(inst):
    spec = inst.scan(440, 500, 30, target_sigma=1e-6, max_dwell_s=100.0, skip_hopeless=True,
                     dark=False)
    for p in spec:
        if p.has("no_emission"):
            continue
        assert p.has("hopeless") and not p.has("dwell_limit")
        assert p.dwell_s < 10.0


def test_an_interrupted_scan_resumes_without_repeating_or_losing_points(inst, tmp_path):
    calls = []

    def stop_after_four(point, i, acc):
        calls.append((i, acc))
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(ScanInterrupted) as info:
        inst.scan(430, 440, 2, dwell_s=0.5, accumulations=2, dark_dwell_s=1.0,
                  output=tmp_path / "r.csv", archive=tmp_path / "r.h5",
                  callback=stop_after_four)
    assert len(info.value.spectrum) == 4
    with Archive.open(tmp_path / "r.h5") as arc:
        assert arc.exit_status == "abort" and len(arc) == 4
    spec = inst.resume(tmp_path / "r.h5", output=tmp_path / "r.csv")
    assert np.array_equal(spec.wavelength_nm, [430, 432, 434, 436, 438, 440])
    assert (spec.accumulations == 2).all()
    with Archive.open(tmp_path / "r.h5") as arc:
        keys = [(p.settings.index, p.settings.accumulation) for p in arc]
        assert arc.exit_status == "success"
        assert sorted(keys) == sorted(set(keys)) and len(keys) == 12
        # the first accumulation's dark is reused, not measured again
        assert {p.settings.dark_source for p in arc if p.settings.accumulation == 0} == {
            "dark:0"}
    assert spec.metadata["resumed"] == 1
    again = reprocess(tmp_path / "r.h5")
    assert _rows_equal(again, spec)


def test_resume_refuses_another_instrument_or_configuration(inst, tmp_path):
    with pytest.raises(ScanInterrupted):
        inst.scan(430, 434, 2, dwell_s=0.5, archive=tmp_path / "x.h5",
                  callback=lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    inst.configure_counting(bins=8, periods=5000)
    with pytest.raises(ValueError, match="bins"):
        inst.resume(tmp_path / "x.h5")


def _rows_equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    for p, q in zip(a, b):
        for x, y in zip(p.as_dict().values(), q.as_dict().values()):
            if isinstance(x, float) and math.isnan(x) and isinstance(y, float) and math.isnan(y):
                continue
            if x != y:
                return False
    return True
