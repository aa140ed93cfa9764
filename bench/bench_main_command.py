"""The README's main scan on the simulated instrument: instrument time and quality before and
after the counting optimizations (issue: spend the photons where they count).

Runs, on the deterministic twin with the same seed, R-Cs4PbBr6 over 400–560 nm in 2-nm steps:

1. *before*: adaptive dwell to σ_g = 2e-4 at A0 = π/2, at most 300 s per point (the old main
   command);
2. *after, same command*: the same at counting's default A0 (the Fisher optimum, 1.907 rad);
3. *after, skip hopeless*: 2. with ``skip_hopeless`` (points that cannot reach the target in
   300 s stop as soon as that is clear);
4. *time budget at equal quality*: a time-budget scan whose budget is chosen so that its plan
   predicts the Σσ_g² of run 1 over the emitting points (the survey gives c_i = σ_i²·t_i, and
   the uncapped plan gives Σσ² = (Σ√c_i)²/T), with the per-point cap lifted to 3600 s; then
   once more with the budget scaled by the Σσ² it actually reached (Σσ² ∝ 1/T) on the points
   that emit in both runs.

For each it prints the counting time (s and h), the points that show emission, Σσ_g² over
them, the worst σ_g there, the points that reached σ_g ≤ 2e-4, and Σσ_g² over the points that
show emission in every run (the fair comparison: a run that calls a faint wing point
``no_emission`` drops its σ from its own sum).

    PYTHONPATH=host python bench/bench_main_command.py
"""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np

import cplscope
from cplscope.plans.calibrate import calibrate_simulated

START, STOP, STEP, TARGET, MAX_DWELL = 400.0, 560.0, 2.0, 2e-4, 300.0
SEED = 0


def quality(spec) -> tuple:
    emit = ~spec.has_flag("no_emission")
    s = spec.sigma_g[emit]
    return (float(spec.dwell_s.sum()), float(np.sum(s ** 2)), float(np.max(s)),
            int(np.sum(s <= TARGET * (1 + 1e-9))), int(emit.sum()), spec.sigma_g)


def run(a0: float | None, **scan) -> tuple:
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=SEED) as inst:
        inst.prepare(bins=16, periods=10000, hv_volts=800.0, a0_rad=a0)
        spec = inst.scan(START, STOP, STEP, **scan)
    return quality(spec), spec


def main() -> None:
    os.environ.setdefault("CPLSCOPE_HOME", tempfile.mkdtemp(prefix="cplscope-bench-"))
    calibrate_simulated(seed=SEED)
    rows = []
    before, _ = run(math.pi / 2, target_sigma=TARGET, max_dwell_s=MAX_DWELL)
    rows.append(("before: adaptive, A0 = π/2", before))
    rows.append(("after: adaptive, default A0", run(None, target_sigma=TARGET,
                                                    max_dwell_s=MAX_DWELL)[0]))
    rows.append(("after: adaptive, default A0, skip hopeless",
                 run(None, target_sigma=TARGET, max_dwell_s=MAX_DWELL, skip_hopeless=True)[0]))
    # the budget the plan needs for run 1's Σσ², from a survey of the same points
    surveys = []
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=SEED) as inst:
        inst.prepare(bins=16, periods=10000, hv_volts=800.0)
        inst.scan(START, STOP, STEP, time_budget_s=800.0, max_dwell_s=3600.0,
                  sinks=[lambda n, d: surveys.append(d) if n == "survey" else None])
    plan_c = [p.noise_coefficient() for p in surveys[0].planner_points() if p.emits]
    budget = float(sum(math.sqrt(c) for c in plan_c) ** 2 / before[1])
    first, spec = run(None, time_budget_s=budget, max_dwell_s=3600.0)
    rows.append((f"time budget {budget:.0f} s, default A0 (plan: equal Σσ²)", first))
    # one correction: Σσ² ∝ 1/T, matched on the points that emit in both runs
    common = np.isfinite(before[5]) & np.isfinite(first[5])
    ratio = float(np.sum(first[5][common] ** 2) / np.sum(before[5][common] ** 2))
    rows.append((f"time budget {budget * ratio:.0f} s, default A0 (measured: equal Σσ²)",
                 run(None, time_budget_s=budget * ratio, max_dwell_s=3600.0)[0]))
    print(f"R-Cs4PbBr6 {START:g}–{STOP:g} nm, {STEP:g}-nm steps, target σ_g {TARGET:g}, "
          f"seed {SEED}")
    common = np.all([np.isfinite(r[1][5]) for r in rows], axis=0)
    print(f"{'strategy':58s} {'time (s)':>9s} {'(h)':>6s} {'emit':>4s} {'Σσ_g²':>9s} "
          f"{'worst σ_g':>9s} {'≤ target':>8s} {'Σσ_g² common':>12s}")
    for name, (t, s2, worst, ok, n_emit, sig) in rows:
        print(f"{name:58s} {t:9.0f} {t / 3600:6.2f} {n_emit:4d} {s2:9.3e} {worst:9.2e} "
              f"{ok:8d} {np.sum(sig[common] ** 2):12.3e}")
    print(f"(Σσ_g² common: over the {int(common.sum())} points that show emission in every run)")


if __name__ == "__main__":
    main()
