"""Throughput of cplscope.demod.phase_bin against the memory-bound floor.

    python bench/bench_phase_bin.py [--samples 20000000] [--repeats 7]

20 M int16 samples, 16 bins. Per row: phase_bin (the Cython kernel), np.sum(samples,
dtype=np.int64) on the same array (reading it once: the floor), their ratio (the goal of
≤ 3 is for the first row), and a plain-NumPy reference that classifies every sample
(searchsorted + bincount). Best of --repeats, measured side by side.

The rows are PEM reference streams of increasing difficulty for the kernel's run mode,
which needs consecutive periods to put their samples in the same bins (docs/performance.md):
a 50 kHz PEM at 250 kHz and 2 MHz (edges with 2 ns rms jitter), a PEM 123 Hz off a
multiple of the sample period (its samples drift through the bins), the same with edges on
the 8 ns tick grid of the rp2's edge capture, with 50 ns rms jitter, and a PEM at 5.3
samples per period, whose bins change every period; and a 50 kHz PEM (edges on ticks) at
cplscope's default analog rate, 48 MHz / 192.25 = 249.675 kHz, chosen so that the samples walk
through every phase of the period (its bins change every ~10 periods).
"""
from __future__ import annotations

import argparse

import numpy as np

from _timing import best_time

from cplscope.demod.phase_binning import SUBSAMPLE_BITS, edge_positions, phase_bin

N_BINS = 16


def numpy_reference(samples: np.ndarray, fs: float, edges: np.ndarray, n_bins: int):
    """Classify every sample: period by searchsorted on the period starts, bin by the exact
    integer rule k = floor(B·(i·2**bits − X_j) / ΔX_j)."""
    x = edge_positions(edges, fs)
    starts = -((-x) >> SUBSAMPLE_BITS)
    i = np.arange(max(starts[0], 0), min(starts[-1], samples.size), dtype=np.int64)
    j = np.searchsorted(starts, i, side="right") - 1
    k = (n_bins * ((i << SUBSAMPLE_BITS) - x[j])) // (x[j + 1] - x[j])
    sums = np.bincount(k, weights=samples[i], minlength=n_bins)
    return sums, np.bincount(k, minlength=n_bins)


ROWS = [  # label, fs (Hz), PEM (Hz), edge jitter (s rms), edge tick (Hz) or None
    ("50 kHz PEM", 250e3, 50e3, 2e-9, None),
    ("50 kHz PEM", 2e6, 50e3, 2e-9, None),
    ("drifting PEM", 250e3, 50.0123e3, 2e-9, None),
    ("on 8 ns ticks", 250e3, 50.0123e3, 0.0, 125e6),
    ("50 ns jitter", 250e3, 50.0123e3, 50e-9, None),
    ("5.3 samp/period", 250e3, 250e3 / 5.3, 2e-9, None),
    ("default rate", 48e6 / 192.25, 50e3, 0.0, 125e6),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 4096, args.samples).astype(np.int16)

    print(f"phase_bin: {args.samples / 1e6:g} M int16 samples, B = {N_BINS}, "
          f"best of {args.repeats}")
    header = (f"{'stream':>16} {'fs (Hz)':>9} {'samp/period':>11} {'phase_bin (ms)':>15} "
              f"{'Msamp/s':>8} {'np.sum (ms)':>12} {'ratio':>6} {'numpy ref (ms)':>15}")
    print(header)
    print("-" * len(header))
    for label, fs, f_pem, jitter, tick in ROWS:
        duration = args.samples / fs
        n_edges = int(duration * f_pem) + 1
        edges = 1.3e-6 + np.arange(n_edges) / f_pem + rng.normal(0.0, jitter, n_edges)
        if tick:
            edges = np.round(edges * tick) / tick
        result = phase_bin(samples, fs, edges, N_BINS)
        ref = numpy_reference(samples, fs, edges, N_BINS)
        assert np.array_equal(result[0], ref[0]) and np.array_equal(result[1], ref[1])
        t_bin = best_time(lambda: phase_bin(samples, fs, edges, N_BINS), args.repeats)
        t_sum = best_time(lambda: np.sum(samples, dtype=np.int64), args.repeats)
        t_ref = best_time(lambda: numpy_reference(samples, fs, edges, N_BINS),
                          max(1, args.repeats // 3))
        print(f"{label:>16} {fs:>9.0f} {fs / f_pem:>11.2f} {t_bin * 1e3:>15.1f} "
              f"{args.samples / t_bin / 1e6:>8.0f} {t_sum * 1e3:>12.1f} "
              f"{t_bin / t_sum:>6.2f} {t_ref * 1e3:>15.0f}")


if __name__ == "__main__":
    main()
