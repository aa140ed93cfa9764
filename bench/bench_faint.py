"""Faint emitters: fixed dwell, adaptive dwell and a time budget at equal instrument time.

    python bench/bench_faint.py [--seeds 8] [--target 0.3] [--max-dwell 300]

Four held-out faint samples (bench/samples/faint-*.json, written for this comparison and
not used to tune anything): a flat 4 photons/s emitter (the audit's), a weak band
(12 photons/s, g = +0.05), two narrow lines of large g (10 and 6 photons/s, g = −0.8 and
+0.4) and a bright band (2000 photons/s) with a 3 photons/s shoulder band. Each is scanned
over 400–440 nm in 2-nm steps (21 points) on a 20 counts/s dark, with the real scan engine
(dark, survey, planner, point loop, flags) on the synthetic counter of bench/synthetic.py
(frames drawn from the binned Poisson model; no firmware or optics).

Per sample and seed, the adaptive scan (target σ_g, maximum dwell) runs first; its counting
time T (or --time) is then given to a fixed dwell of T/21 per point and to a time budget T
(same maximum dwell). The dark is measured as the scan needs unless --dark-dwell is given. Reported, over
all seeds: the share of the truly emitting points called ``no_emission`` (all of them, and
those at or above the run's signal that matters), the share detected (g reported), Σσ_g²
over the points every strategy detected, and the dark's dwell.

Runs against any version of cplscope that has the scan engine (the "before" column of
docs/performance.md came from the commit before issue 21's changes).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from synthetic import SyntheticCounter, from_sample

from cplscope.plans.engine import ScanSettings, run_scan
from cplscope.plans.modes import Emission
from cplscope.sim.samples import load_sample

SAMPLES = ("faint-flat", "faint-band", "faint-lanthanide", "faint-shoulder")
DARK_CPS = 20.0
FRAME_S = 0.2
GRID = (400.0, 440.0, 2.0)


def scan(sample, seed: int, settings: dict) -> tuple:
    truth = from_sample(sample)
    inst = SyntheticCounter(truth, DARK_CPS, seed=seed, frame_s=FRAME_S)
    darks = []
    spec = run_scan(inst, Emission(), ScanSettings(*GRID, **settings),
                    sinks=[lambda n, d: darks.append(d.dark) if n == "dark" else None])
    rates = np.array([truth(w)[0] for w in spec.wavelength_nm])
    matter = (spec.metadata.get("sensitivity") or {}).get("matter_cps", math.nan)
    return spec, rates, matter, darks[0].dwell_s


def strategies(sample, seed: int, args) -> dict:
    dark = {} if args.dark_dwell is None else {"dark_dwell_s": args.dark_dwell}
    adaptive = scan(sample, seed, dict(target=args.target, max_dwell_s=args.max_dwell, **dark))
    total = float(adaptive[0].dwell_s.sum()) if args.time is None else args.time
    per_point = max(1, math.floor(total / 21 / FRAME_S + 1e-9)) * FRAME_S
    return {
        "fixed dwell": scan(sample, seed, dict(dwell_s=per_point, **dark)),
        "adaptive": adaptive,
        "time budget": scan(sample, seed, dict(time_budget_s=total, max_dwell_s=args.max_dwell,
                                                **dark)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--target", type=float, default=0.3, help="adaptive σ_g target")
    ap.add_argument("--max-dwell", type=float, default=300.0, help="s")
    ap.add_argument("--dark-dwell", type=float, default=None, help="s (default: auto)")
    ap.add_argument("--time", type=float, default=None,
                    help="counting time of the fixed-dwell and budget scans, s (default: what "
                         "the adaptive scan took)")
    args = ap.parse_args()
    here = Path(__file__).parent / "samples"
    print(f"## {len(SAMPLES)} faint samples × {args.seeds} seeds, 21 points each, dark "
          f"{DARK_CPS:g} counts/s; adaptive target σ_g {args.target:g}, max dwell "
          f"{args.max_dwell:g} s; fixed dwell and budget get "
          + ("the adaptive scan's counting time" if args.time is None else f"{args.time:g} s"))
    print("| sample | strategy | counting time (s) | emitters called no_emission | "
          "… of those that matter | detected (g reported) | Σσ_g² common | dark (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in SAMPLES:
        sample = load_sample(here / f"{name}.json")
        rows: dict[str, dict] = {}
        for seed in range(args.seeds):
            runs = strategies(sample, 1000 + seed, args)
            common = np.logical_and.reduce([np.isfinite(r[0].g_lum) for r in runs.values()])
            for strat, (spec, rates, matter, dark_s) in runs.items():
                row = rows.setdefault(strat, dict(t=0.0, emit=0, lost=0, matter=0,
                                                  lost_matter=0, found=0, s2=0.0, dark=[]))
                emits = rates > 0
                lost = spec.has_flag("no_emission") & emits
                matters = emits & (rates >= matter) if math.isfinite(matter) else emits
                row["t"] += float(spec.dwell_s.sum())
                row["emit"] += int(emits.sum())
                row["lost"] += int(lost.sum())
                row["matter"] += int(matters.sum())
                row["lost_matter"] += int((lost & matters).sum())
                row["found"] += int((np.isfinite(spec.g_lum) & emits).sum())
                row["s2"] += float(np.sum(spec.sigma_g[common] ** 2))
                row["dark"].append(dark_s)
        for strat, r in rows.items():
            n = args.seeds
            print(f"| {name} | {strat} | {r['t'] / n:,.0f} | "
                  f"{r['lost']}/{r['emit']} ({100 * r['lost'] / max(r['emit'], 1):.1f} %) | "
                  f"{r['lost_matter']}/{r['matter']} | "
                  f"{100 * r['found'] / max(r['emit'], 1):.1f} % | {r['s2'] / n:.3g} | "
                  f"{np.mean(r['dark']):.0f} |")


if __name__ == "__main__":
    main()
