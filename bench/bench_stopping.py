"""Does the way a point stops bias g? Fixed dwell, adaptive dwell and a time budget.

    python bench/bench_stopping.py [--trials 4000] [--seed 1]

For each case (a signal rate R, a dark rate D, a true g and an adaptive target σ_g), many
independent points are measured on the synthetic counter of bench/synthetic.py (the binned
Poisson model; the real point loop, planner and estimator) with a known dark:

- adaptive: ``measure_point`` with the target and a 300-s maximum dwell;
- fixed dwell: ``measure_point`` with a fixed dwell equal to the adaptive points' mean dwell;
- time budget: scans of 21 identical points whose budget is 21 × that mean dwell (the
  survey's frames reused, the planner's grants), every point a trial.

Reported over the points that report a g (emission detected): the bias of g in units of its
spread, (mean ĝ − g)/SD(ĝ), with its standard error 1/√n; the relative bias of g; and the
pulls (ĝ − g)/σ̂ (mean and SD). Runs against any version of cplscope with the scan engine (the
"before" rows of docs/estimator.md come from the commit before issue 21's changes).
"""
from __future__ import annotations

import argparse
import math

import numpy as np
from synthetic import SyntheticCounter

from cplscope.plans.engine import ScanSettings, run_scan
from cplscope.plans.modes import Emission
from cplscope.plans.point import Dark, measure_point

B = 16
CASES = [  # (label, R photons/s, D counts/s, g, target σ_g, frame s)
    ("g = 0.8, dark-dominated", 20.0, 200.0, 0.8, 0.25, 1.0),
    ("g = 2, dark-dominated", 20.0, 200.0, 2.0, 0.4, 1.0),
    ("g = 6e-4 (the seed paper), bright", 2e5, 20.0, 6e-4, 4e-4, 5.0),
]


def known_dark(rate: float) -> Dark:
    return Dark(rate_cps=np.full(B, rate / B), sigma_rate_cps=np.zeros(B), dwell_s=1e9,
                frames=None)  # type: ignore[arg-type]


def points(case, trials: int, seed: int, **kw) -> tuple[np.ndarray, np.ndarray, float]:
    _, rate, dark, g, target, frame_s = case
    gs, sig, dwell = [], [], []
    for i in range(trials):
        inst = SyntheticCounter(lambda wl: (rate, g), dark, seed=seed * 1_000_003 + i,
                                frame_s=frame_s)
        inst.move_to(500.0)
        m = measure_point(inst, Emission(), dark=known_dark(dark), **kw)
        dwell.append(m.result.dwell_s)
        if math.isfinite(m.result.g_lum):
            gs.append(m.result.g_lum)
            sig.append(m.result.sigma_g)
    return np.array(gs), np.array(sig), float(np.mean(dwell))


def budget(case, trials: int, seed: int, per_point_s: float) -> tuple[np.ndarray, np.ndarray]:
    _, rate, dark, g, _, frame_s = case
    gs, sig = [], []
    for i in range(max(1, trials // 21)):
        inst = SyntheticCounter(lambda wl: (rate, g), dark, seed=seed * 1_000_003 + 7 + i,
                                frame_s=frame_s)
        spec = run_scan(inst, Emission(), ScanSettings(400, 440, 2, dark=known_dark(dark),
                                                       time_budget_s=21 * per_point_s,
                                                       max_dwell_s=300.0))
        ok = np.isfinite(spec.g_lum)
        gs.extend(spec.g_lum[ok])
        sig.extend(spec.sigma_g[ok])
    return np.array(gs), np.array(sig)


def row(label: str, strategy: str, g: float, gs: np.ndarray, sig: np.ndarray,
        dwell: float) -> str:
    n = len(gs)
    pulls = (gs - g) / sig
    return (f"| {label} | {strategy} | {dwell:.0f} | {n} | "
            f"{(gs.mean() - g) / gs.std():+.3f} ± {1 / math.sqrt(n):.3f} | "
            f"{100 * (gs.mean() / g - 1):+.2f} % | {pulls.mean():+.3f} | {pulls.std():.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print(f"## {args.trials} points per strategy and case, seed {args.seed}")
    print("| case | strategy | mean dwell (s) | points with g | bias of g / its SD | "
          "relative bias | pull mean | pull SD |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        label, g, target = case[0], case[3], case[4]
        trials = args.trials if case[1] < 1e3 else max(args.trials // 8, 100)
        gs, sig, dwell = points(case, trials, args.seed, target=target, max_dwell_s=300.0)
        print(row(label, f"adaptive to {target:g}", g, gs, sig, dwell))
        fixed = round(dwell / case[5]) * case[5]
        gs, sig, _ = points(case, trials, args.seed + 1, dwell_s=fixed)
        print(row(label, "fixed dwell", g, gs, sig, fixed))
        gs, sig = budget(case, trials, args.seed + 2, dwell)
        print(row(label, "time budget", g, gs, sig, dwell))


if __name__ == "__main__":
    main()
