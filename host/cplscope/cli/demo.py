"""The simulator's sample library (``samples``) and the estimator demo (``demo``)."""
from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .options import bins, int_at_least, number, positive


def cmd_samples(args: argparse.Namespace) -> int:
    from ..sim.samples import list_samples

    for name in list_samples():
        print(name)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Estimator demo on generated photon counts of a Gaussian band with constant g_lum."""
    from ..demod import estimate
    from ..demod.bins import bin_layout

    rng = np.random.default_rng(args.seed)
    a0, phi0, n_bins = np.pi / 2, 0.3, args.bins
    lay = bin_layout(n_bins, a0, phi0)
    frame_time = 0.01
    n_frames = int(round(args.dwell / frame_time))
    print(f"# estimator demo: g_lum = {args.g:+.1e}, 438 nm band, peak {args.rate:.2g} cps, "
          f"B = {n_bins}, {args.dwell:g} s/point")
    for wl in np.arange(410.0, 468.0, 4.0):
        rate = args.rate * np.exp(-0.5 * ((wl - 438.0) / (18.0 / 2.3548)) ** 2)
        mu = rate * frame_time * (lay.w + 0.5 * args.g * lay.s) + 20.0 * frame_time / n_bins
        e = estimate(rng.poisson(mu, size=(n_frames, n_bins)), a0, phase_offset=phi0,
                     dark=20.0 * frame_time / n_bins)
        print(f"{wl:8.1f} nm  g = {e.g_lum:+.2e} ± {e.sigma_g:.1e}  χ² = {e.chi2_red:.3f}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add this module's subcommands to ``sub`` (the subparsers of ``cplscope``)."""
    p = sub.add_parser("samples", help="list the simulated samples")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("demo", help="the g_lum estimator on generated photon counts")
    p.add_argument("--g", type=number, default=6e-4)
    p.add_argument("--rate", type=positive(" cps"), default=2e6, help="peak count rate, cps")
    p.add_argument("--dwell", type=positive(" s"), default=300.0, help="s per point")
    p.add_argument("--bins", type=bins, default=16)
    p.add_argument("--seed", type=int_at_least(0), default=1)
    p.set_defaults(func=cmd_demo)
