"""σ_g per √photon at counting's default A0 against A0 = π/2, B = 16, in the same run.

    python bench/bench_retardation.py [--draws N] [--photons M] [--seed S]

For each A0, N independent points of M detected signal photons are drawn from the binned
Poisson model (μ_k = M·(w_k + v·S_k), g = 2v = 1e-3, u = 0, no dark) and fitted with
``cplscope.demod.estimate``; the empirical sd of g times √M is printed beside the Fisher
prediction of the binned model (``fisher_sigma_g``) and the measurement model's table value
for infinitely fine bins (2/sqrt(<sin²δ>)). The last row is the ratio of photons needed for
the same σ_g.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import scipy.special

from cplscope.demod import estimate
from cplscope.demod.bins import bin_layout
from cplscope.demod.retardation import fisher_sigma_g, optimal_retardation

N_BINS = 16
PHI0 = 0.3
G = 1e-3
#: σ_g·√M of the measurement model's table (infinitely fine bins).
TABLE = {"π/2": 2.477, "1.9159": 2.388}


def empirical(rng, a0: float, draws: int, photons: float) -> np.ndarray:
    lay = bin_layout(N_BINS, a0, PHI0)
    mu = photons * (lay.w + 0.5 * G * lay.s)
    counts = rng.poisson(mu, size=(draws, N_BINS))
    return np.array([estimate(c, a0, phase_offset=PHI0).g_lum for c in counts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--photons", type=float, default=1e7)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    best = optimal_retardation(N_BINS, PHI0)
    rows = [("counting default (optimal_retardation)", best, "1.9159"),
            ("analog convention π/2", math.pi / 2, "π/2")]
    rel_se = 1.0 / math.sqrt(2.0 * (args.draws - 1))
    print(f"## σ_g·√M, B = {N_BINS}, φ0 = {PHI0} rad, {args.draws} draws of M = "
          f"{args.photons:.0e} photons each, g = {G:g}, seed {args.seed}")
    print("| A0 | rad | σ_g·√M, estimate (empirical ± se) | Fisher, B = 16 | empirical / Fisher "
          "| fine bins 2/sqrt(<sin²δ>) | measurement-model table |")
    print("|---|---|---|---|---|---|---|")
    measured = {}
    for name, a0, table_key in rows:
        gs = empirical(rng, a0, args.draws, args.photons)
        k = gs.std(ddof=1) * math.sqrt(args.photons)
        fisher = fisher_sigma_g(N_BINS, a0, PHI0)
        fine = 2.0 / math.sqrt(0.5 * (1.0 - scipy.special.j0(2.0 * a0)))
        measured[name] = (k, fisher)
        print(f"| {name} | {a0:.4f} | {k:.4f} ± {k * rel_se:.4f} | {fisher:.4f} | "
              f"{k / fisher:.4f} | {fine:.4f} | {TABLE[table_key]:.3f} (A0 = {table_key}) |")
    (k1, f1), (k2, f2) = measured.values()
    ratio_se = (k1 / k2) ** 2 * 2.0 * math.sqrt(2.0) * rel_se
    print()
    print(f"photons for the same σ_g, default / π/2: empirical {(k1 / k2) ** 2:.4f} ± "
          f"{ratio_se:.4f}, Fisher {(f1 / f2) ** 2:.4f}, fine-bin table "
          f"{(TABLE['1.9159'] / TABLE['π/2']) ** 2:.4f}")


if __name__ == "__main__":
    main()
