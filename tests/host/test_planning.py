"""Tests of cplscope.plans.planning: the optimal time allocation, the revised budget plan, the
hopeless-point rule and the duration parser. Everything here is deterministic (fixed seeds,
hypothesis with derandomized examples)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cplscope.plans.planning import (BudgetPlan, SurveyPoint, allocate_dwell, is_hopeless,
                               noise_coefficient, parse_duration, predicted_sigma_at,
                               survey_dwell)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)

coefficients = st.lists(st.floats(1e-8, 1e2), min_size=1, max_size=30)


def objective(c, t):
    return float(np.sum(np.asarray(c) / np.asarray(t)))


# --- allocate_dwell ---------------------------------------------------------------------

@SETTINGS
@given(c=coefficients, total=st.floats(1.0, 1e5))
def test_uncapped_allocation_is_proportional_to_root_c_and_reaches_the_closed_form(c, total):
    t = allocate_dwell(c, total)
    root = np.sqrt(c)
    assert t.sum() == pytest.approx(total, rel=1e-9)
    np.testing.assert_allclose(t, total * root / root.sum(), rtol=1e-9)
    assert objective(c, t) == pytest.approx(root.sum() ** 2 / total, rel=1e-9)


@SETTINGS
@given(c=coefficients, data=st.data())
def test_bounded_allocation_beats_every_feasible_perturbation(c, data):
    n = len(c)
    lo = np.array(data.draw(st.lists(st.floats(0.01, 50.0), min_size=n, max_size=n)))
    width = np.array(data.draw(st.lists(st.floats(0.0, 200.0), min_size=n, max_size=n)))
    hi = lo + width
    total = data.draw(st.floats(float(lo.sum()) + 1e-3, float(hi.sum()) + 1.0))
    t = allocate_dwell(c, total, lo, hi)
    assert np.all(t >= lo - 1e-9) and np.all(t <= hi + 1e-9)
    assert t.sum() == pytest.approx(min(total, hi.sum()), rel=1e-9, abs=1e-9)
    best = objective(c, t)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    for _ in range(50):
        d = rng.normal(size=n)
        d -= d.mean()                       # keeps Σt
        step = 10.0 ** rng.uniform(-4, 1)
        other = np.clip(t + step * d, lo, hi)
        # clipping may change Σt: compare only with allocations that spend no more
        if other.sum() > t.sum() + 1e-9 or np.any(other <= 0):
            continue
        assert best <= objective(c, other) * (1 + 1e-9)


def test_allocation_when_bounds_bind():
    c = np.array([1.0, 4.0, 9.0])
    np.testing.assert_allclose(allocate_dwell(c, 60.0), [10, 20, 30])
    # a cap of 25 s on the noisiest point: its excess goes to the others in ratio √c
    np.testing.assert_allclose(allocate_dwell(c, 60.0, 0.0, 25.0), [35 / 3, 70 / 3, 25])
    # a lower bound that the optimum would undercut stays, and the rest shares the remainder
    np.testing.assert_allclose(allocate_dwell(c, 60.0, [0, 0, 40], 100.0), [20 / 3, 40 / 3, 40])
    np.testing.assert_allclose(allocate_dwell(c, 10.0, 5.0), [5, 5, 5])      # lower bounds win
    np.testing.assert_allclose(allocate_dwell(c, 500.0, 0.0, 50.0), [50, 50, 50])  # all capped


@pytest.mark.parametrize("args, match", [
    (([-1.0], 10.0), "coefficients"),
    (([1.0], math.inf), "total_s"),
    (([1.0, 2.0], 10.0, [0.0, 5.0], [1.0, 2.0]), "bounds"),
])
def test_allocation_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        allocate_dwell(*args)


# --- BudgetPlan -------------------------------------------------------------------------

def make_survey(rng, n, survey_s, non_emitting=0.2):
    """Survey points with log-uniform true coefficients, a survey σ with Poisson-like noise."""
    c_true = 10.0 ** rng.uniform(-7, -3, n)
    emits = rng.uniform(size=n) > non_emitting
    # The survey's σ² = c/t with a 10 % relative error (few photons in the survey).
    sigma = np.sqrt(c_true / survey_s) * rng.normal(1.0, 0.05, n)
    return [SurveyPoint(survey_s, sigma_g=float(s) if e else math.nan, emits=bool(e))
            for s, e in zip(sigma, emits)], c_true, emits


def run_scan(plan, rng, c_true, order, sloppy=False):
    """Measure the points in ``order``: the instrument spends the grant, or with ``sloppy``
    up to one frame more; the achieved σ is noisy."""
    for i in order:
        grant = plan.next_dwell(i)
        spent = grant + (rng.uniform(0, plan.frame_s) if sloppy and grant > 0 else 0.0)
        total = plan.survey[i].dwell_s + spent
        sigma = math.sqrt(c_true[i] / total) * rng.normal(1, 0.05) if plan.survey[i].emits \
            else math.nan
        plan.record(i, spent, sigma)
    return plan


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("sloppy", [False, True])
def test_budget_is_never_exceeded_by_more_than_a_frame_per_point(seed, sloppy):
    rng = np.random.default_rng(seed)
    n, frame, survey_s = int(rng.integers(5, 90)), float(rng.choice([0.05, 0.2, 1.0])), 2.0
    survey, c_true, emits = make_survey(rng, n, survey_s)
    budget = n * survey_s * float(rng.uniform(1.05, 30))
    plan = BudgetPlan(survey, budget, frame_s=frame, max_dwell_s=float(rng.uniform(10, 500)))
    run_scan(plan, rng, c_true, rng.permutation(n), sloppy)
    assert plan.used_s <= budget + (n * frame if sloppy else frame) + 1e-9   # the promise
    # Revision absorbs every earlier overrun: only the last granted point's rounding (half a
    # frame) and its own overrun (up to a frame) remain.
    assert plan.used_s <= budget + (1.5 if sloppy else 0.5) * frame + 1e-9
    rep = plan.report()
    for p in rep["points"]:
        assert p["dwell_s"] is not None
        if not p["emits"]:
            assert p["granted_s"] == 0.0
        assert p["survey_dwell_s"] + p["granted_s"] <= max(plan.max_dwell_s,
                                                           p["survey_dwell_s"]) + 1e-9
        n_frames = p["granted_s"] / frame
        assert n_frames == pytest.approx(round(n_frames), abs=1e-9)   # whole frames


@SETTINGS
@given(c=st.lists(st.one_of(st.none(), st.floats(1e-9, 1e-2)), min_size=1, max_size=40),
       survey_s=st.floats(0.0, 20.0), factor=st.floats(0.5, 50.0),
       frame=st.sampled_from([0.01, 0.2, 1.0, 7.0]), cap=st.floats(1.0, 1e4),
       min_dwell=st.floats(0.0, 10.0), seed=st.integers(0, 2**32 - 1))
def test_any_plan_stays_within_a_frame_of_its_budget(c, survey_s, factor, frame, cap,
                                                      min_dwell, seed):
    # None marks a point that does not emit; the budget may be below the survey's cost.
    survey = [SurveyPoint(survey_s, emits=x is not None, coefficient=x) for x in c]
    spent = survey_s * len(c)
    budget = max(spent * factor, 1e-3) + frame
    plan = BudgetPlan(survey, budget, frame_s=frame, max_dwell_s=cap, min_dwell_s=min_dwell)
    rng = np.random.default_rng(seed)
    for i in rng.permutation(len(c)):
        grant = plan.next_dwell(i)
        assert grant == 0.0 or grant >= min_dwell - 1e-9
        assert survey_s + grant <= max(cap, survey_s) + 1e-9
        if c[i] is None:
            assert grant == 0.0
        plan.record(i, grant)
    assert plan.used_s <= max(budget, spent) + 0.5 * frame + 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_an_uncapped_plan_spends_the_budget(seed):
    rng = np.random.default_rng(100 + seed)
    n, frame, survey_s = 40, 0.2, 2.0
    survey, c_true, emits = make_survey(rng, n, survey_s)
    budget = n * survey_s * 20
    plan = BudgetPlan(survey, budget, frame_s=frame)
    run_scan(plan, rng, c_true, range(n))
    # Only the last points can leave less than a frame (or a min dwell) each unspent.
    assert budget - 2 * frame <= plan.used_s <= budget + frame


def test_plan_is_optimal_and_non_emitting_points_get_nothing():
    rng = np.random.default_rng(7)
    survey, c_true, emits = make_survey(rng, 30, 1.0, non_emitting=0.3)
    plan = BudgetPlan(survey, 600.0, frame_s=0.1, max_dwell_s=60.0, min_dwell_s=0.0)
    extra = plan.plan()
    assert np.all(extra[~emits] == 0)
    assert extra.sum() == pytest.approx(600.0 - 30.0)
    c = np.array([plan.coefficient(i) for i in range(30)])
    total = 1.0 + extra
    assert np.all(total <= 60.0 + 1e-9)
    best = float(np.sum(c[emits] / total[emits]))
    assert plan.predicted_sum_sigma2() == pytest.approx(best)
    for _ in range(300):   # feasible moves of time between emitting points
        d = rng.normal(size=30) * emits
        d[emits] -= d[emits].mean()
        other = np.clip(extra + rng.uniform(0.01, 5) * d, 0.0, 59.0)
        if other.sum() > extra.sum() + 1e-9:
            continue
        assert best <= float(np.sum(c[emits] / (1.0 + other[emits]))) * (1 + 1e-12)


def test_plan_matches_the_closed_form_when_no_cap_binds():
    c = np.array([4e-6, 1e-6, 9e-6, 1e-6])
    survey = [SurveyPoint(0.0, coefficient=float(x)) for x in c]
    plan = BudgetPlan(survey, 120.0, frame_s=0.01, min_dwell_s=0.0, spent_s=0.0)
    assert plan.predicted_sum_sigma2() == pytest.approx(np.sqrt(c).sum() ** 2 / 120.0)
    np.testing.assert_allclose(plan.plan(), 120.0 * np.sqrt(c) / np.sqrt(c).sum())


def test_plan_is_revised_when_a_point_overspends():
    survey = [SurveyPoint(1.0, coefficient=1e-6) for _ in range(4)]
    plan = BudgetPlan(survey, 44.0, frame_s=0.5)
    assert plan.next_dwell(0) == 10.0
    plan.record(0, 16.0, 2e-4)                      # the instrument ran 6 s over
    # 44 − 4 survey − 16 = 24 s left for three equal points
    assert [plan.next_dwell(1), plan.next_dwell(2)] == [8.0, 8.0]
    plan.record(1, 8.0)
    plan.record(2, 8.0)
    assert plan.next_dwell(3) == 8.0
    plan.record(3, 8.0)
    assert plan.used_s == 44.0 and plan.remaining_s == 0.0


def test_min_dwell_drops_slivers_and_gives_the_time_to_the_others():
    # One point needs far less than the others: its optimal extra time is below min_dwell.
    survey = [SurveyPoint(1.0, coefficient=c) for c in (1e-4, 1e-4, 1e-9)]
    plan = BudgetPlan(survey, 23.0, frame_s=0.1, min_dwell_s=2.0)
    extra = plan.plan()
    assert extra[2] == 0.0
    assert extra[:2] == pytest.approx([10.0, 10.0])
    assert plan.next_dwell(2) == 0.0


def test_sunk_survey_and_rates():
    survey = [SurveyPoint(5.0, rate_cps=1e5, dark_cps=0.0),
              SurveyPoint(5.0, rate_cps=4e5, dark_cps=0.0)]
    plan = BudgetPlan(survey, 40.0, frame_s=0.1, reuse_survey=False, sigma_sqrt_m=2.4,
                      min_dwell_s=0.0)
    # c ∝ 1/rate: √c ratio 2 : 1, 30 s left, nothing carried over from the survey
    np.testing.assert_allclose(plan.plan(), [20.0, 10.0])
    assert plan.coefficient(0) == pytest.approx(noise_coefficient(1e5, 0.0, 2.4))


def test_plan_is_deterministic():
    def sequence():
        rng = np.random.default_rng(3)
        survey, c_true, _ = make_survey(rng, 50, 1.5)
        plan = BudgetPlan(survey, 2000.0, frame_s=0.2, max_dwell_s=120.0)
        return [plan.next_dwell(i) or plan.record(i, plan._pending[i]) or plan._used[i]
                for i in range(50)], plan.report()
    assert sequence() == sequence()


def test_plan_bookkeeping_errors():
    plan = BudgetPlan([SurveyPoint(1.0, coefficient=1e-6)] * 2, 10.0, frame_s=0.5)
    with pytest.raises(ValueError, match="index"):
        plan.next_dwell(2)
    plan.next_dwell(0)
    with pytest.raises(ValueError, match="record it first"):
        plan.next_dwell(0)
    plan.record(0, 1.0)
    with pytest.raises(ValueError, match="already recorded"):
        plan.record(0, 1.0)
    with pytest.raises(ValueError, match="dwell_s"):
        plan.record(1, -1.0)
    with pytest.raises(ValueError, match="needs its coefficient"):
        BudgetPlan([SurveyPoint(1.0)], 10.0, frame_s=0.5)
    with pytest.raises(ValueError, match="budget_s"):
        BudgetPlan([SurveyPoint(1.0, coefficient=1.0)], 0.0, frame_s=0.5)


def test_survey_dwell():
    assert survey_dwell(1800.0, 81, 0.2) == pytest.approx(2.2)      # 10 %: 2.22 s → 11 frames
    assert survey_dwell(10.0, 81, 0.1) == pytest.approx(0.1)        # at least one frame
    with pytest.raises(ValueError, match="cannot survey 81 points"):
        survey_dwell(1.0, 81, 0.1)


# --- hopeless points --------------------------------------------------------------------

def test_hopeless_rule_follows_photon_noise():
    # σ = 1e-3 after 3 s → 1e-4 after 300 s
    assert predicted_sigma_at(1e-3, 3.0, 300.0) == pytest.approx(1e-4)
    assert is_hopeless(1e-3, 3.0, target_sigma=0.9e-4, max_dwell_s=300.0)
    assert not is_hopeless(1e-3, 3.0, target_sigma=1.1e-4, max_dwell_s=300.0)
    assert not is_hopeless(1e-3, 3.0, target_sigma=0.9e-4, max_dwell_s=300.0, margin=1.2)
    assert not is_hopeless(math.nan, 3.0, 1e-4, 300.0)
    assert is_hopeless(2e-4, 400.0, 1e-4, 300.0)      # already past the maximum dwell
    with pytest.raises(ValueError, match="margin"):
        is_hopeless(1e-3, 3.0, 1e-4, 300.0, margin=0.5)


# --- durations --------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("30min", 1800), ("2h", 7200), ("90s", 90), ("1h30m", 5400), ("45", 45), ("2.5", 2.5),
    ("1h 30min 15s", 5415), ("1.5h", 5400), (" 10 MIN ", 600), ("2 hours", 7200), (300, 300),
    ("0.5m", 30), ("1h0m", 3600)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, match", [
    ("30 parsecs", "unknown unit 'parsecs'"), ("1m1h", "largest first"),
    ("1h1h", "once"), ("abc", "cannot read the duration 'abc'"), ("", "empty"),
    ("-5", "cannot read"), ("0", "positive"), ("1h30", "at '30'"), (math.inf, "positive"),
    (True, "a duration must be")])
def test_parse_duration_errors_name_the_text_and_the_forms(text, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_duration(text)
    if isinstance(text, str) and text:
        assert "30min" in str(err.value) or "positive" in str(err.value)
