"""The ``cplscope`` command line."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .demod import estimate
from .demod.bins import bin_layout


def _demo(args: argparse.Namespace) -> int:
    """Estimator demo on generated photon counts of a Gaussian band with constant g_lum."""
    rng = np.random.default_rng(args.seed)
    a0, phi0, n_bins = np.pi / 2, 0.3, args.bins
    lay = bin_layout(n_bins, a0, phi0)
    frame_time = 0.01                                   # s, K = 500 periods at 50 kHz
    n_frames = int(round(args.dwell / frame_time))
    print(f"# cplscope estimator demo: g_lum = {args.g:+.1e} band at 438 nm (FWHM 18 nm), "
          f"peak {args.rate:.2g} cps, dark 20 cps, B = {n_bins}, dwell {args.dwell:g} s/point")
    print(f"# {'wavelength_nm':>13} {'intensity':>12} {'g_lum':>10} {'sigma_g':>9} "
          f"{'(g-true)/σ':>10} {'chi2_red':>8}")
    for wl in np.arange(410.0, 468.0, 4.0):
        rate = args.rate * np.exp(-0.5 * ((wl - 438.0) / (18.0 / 2.3548)) ** 2)
        m = rate * frame_time
        dark = 20.0 * frame_time / n_bins
        mu = m * (lay.w + 0.5 * args.g * lay.s) + dark
        counts = rng.poisson(mu, size=(n_frames, n_bins))
        e = estimate(counts, a0, phase_offset=phi0, dark=dark)
        print(f"  {wl:13.1f} {e.intensity:12.4g} {e.g_lum:+10.2e} {e.sigma_g:9.1e} "
              f"{(e.g_lum - args.g) / e.sigma_g:+10.2f} {e.chi2_red:8.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cplscope", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the g_lum estimator on generated photon counts")
    demo.add_argument("--g", type=float, default=6e-4, help="true g_lum (default 6e-4)")
    demo.add_argument("--rate", type=float, default=2e6, help="peak count rate, cps")
    demo.add_argument("--dwell", type=float, default=300.0, help="s of counting per point")
    demo.add_argument("--bins", type=int, default=16, help="phase bins B")
    demo.add_argument("--seed", type=int, default=1, help="random seed")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
