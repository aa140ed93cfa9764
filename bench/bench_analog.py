"""The analog (ADC) demodulation path against two software lock-ins, on one synthetic signal.

    python bench/bench_analog.py [--seconds 4] [--fs 250000] [--g 2e-3] [--repeats 3]

Two tables: the PEM slightly off 50 kHz (the sampling phase drifts through the period), and
exactly 50 kHz, where 250 kS/s samples the same 5 phases in every period and 11 of 16 bins
stay empty (a DAQ user's natural choice).

Signal (measurement model §2): ADC codes ∝ 1 + u·cos δ(θ) + v·sin δ(θ), v = g/2,
δ = A0·sin(θ − φ0), θ from 0 at each 50 kHz PEM reference rising edge (edges jittered by
2 ns rms, PEM slightly off 50 kHz so the sampling phase drifts), plus Gaussian noise, int16.

Methods, each reporting g ± σ and its run time (best of --repeats):
- cplscope: phase_bin (16 bins, frames of K periods) + demod.estimate(noise="gaussian"),
  which fits the bin integrals of the modulation;
- cplscope demodulate: the one-call entry point, which also records the phases actually
  sampled in each bin and fits those (phase_bin(..., sampled_phases=True));
- numpy lock-in (§5): θ of every sample from the edges, 1f = 2·mean(s·sin(θ − φ0)),
  DC = mean(s), g = 1f_peak / (J1(A0)·DC); σ from the scatter of per-frame g;
- ulia (PyPI, a published software lock-in): sinusoidal reference sin(θ − φ0) from the
  edges, its PLL + mixer + Butterworth low pass; 1f peak = 2·X (ulia reports peak/2),
  g = 2X/(J1·DC) over the settled output; σ from the scatter of per-frame means of X.
"""
from __future__ import annotations

import argparse

import numpy as np
import scipy.special

from _timing import best_of

from cplscope.demod import demodulate, estimate
from cplscope.demod.phase_binning import phase_bin

A0 = np.pi / 2
PHI0 = 0.7           # rad, reference edge to zero crossing of δ
F_PEM = 50_012.3     # Hz
N_BINS = 16
LEVEL = 2000.0       # ADC codes at the mean signal
NOISE = 0.05         # Gaussian noise per sample, relative to LEVEL
U = 0.0              # the §5 formula assumes negligible linear polarization


def synthesize(seconds: float, fs: float, g: float, rng: np.random.Generator,
               f_pem: float = F_PEM):
    n = int(seconds * fs)
    n_edges = int(seconds * f_pem) + 1
    edges = 1.7e-6 + np.arange(n_edges) / f_pem + rng.normal(0.0, 2e-9, n_edges)
    theta = reference_phase(n, fs, edges)
    delta = A0 * np.sin(theta - PHI0)
    clean = LEVEL * (1.0 + U * np.cos(delta) + 0.5 * g * np.sin(delta))
    noisy = clean + rng.normal(0.0, NOISE * LEVEL, n)
    noisy[np.isnan(noisy)] = LEVEL     # samples outside the edges, which are not binned
    return np.round(noisy).astype(np.int16), edges


def reference_phase(n: int, fs: float, edges: np.ndarray) -> np.ndarray:
    """θ (rad) of each sample, linear between edges; NaN outside the edges."""
    t = np.arange(n) / fs
    j = np.searchsorted(edges, t, side="right") - 1
    inside = (j >= 0) & (j < edges.size - 1)
    jj = np.clip(j, 0, edges.size - 2)
    theta = 2 * np.pi * (t - edges[jj]) / (edges[jj + 1] - edges[jj])
    return np.where(inside, theta, np.nan)


def with_cplscope(samples, fs, edges, frame_periods):
    sums, n = phase_bin(samples, fs, edges, N_BINS, frame_periods=frame_periods)
    with np.errstate(invalid="ignore"):
        means = sums / n              # NaN in bins that got no sample
    est = estimate(means, A0, phase_offset=PHI0, noise="gaussian")
    return est.g_lum, est.sigma_g


def with_demodulate(samples, fs, edges, frame_periods):
    est = demodulate(samples, fs, edges_s=edges, retardation=A0, phase_offset=PHI0,
                     n_bins=N_BINS, frame_periods=frame_periods)
    return est.g_lum, est.sigma_g


def with_numpy(samples, fs, edges, frame_periods):
    theta = reference_phase(samples.size, fs, edges)
    period = np.floor(np.searchsorted(edges, np.arange(samples.size) / fs, side="right") - 1)
    frame = (period // frame_periods).astype(np.int64)
    n_frames = (edges.size - 1) // frame_periods
    ok = np.isfinite(theta) & (frame < n_frames)
    s, f = samples[ok].astype(np.float64), frame[ok]
    cnt = np.bincount(f, minlength=n_frames)
    dc = np.bincount(f, weights=s, minlength=n_frames) / cnt
    one_f = 2 * np.bincount(f, weights=s * np.sin(theta[ok] - PHI0), minlength=n_frames) / cnt
    j1 = scipy.special.j1(A0)
    g = one_f.mean() / (j1 * dc.mean())
    per_frame = one_f / (j1 * dc)
    return g, per_frame.std(ddof=1) / np.sqrt(n_frames)


def with_ulia(samples, fs, edges, frame_periods, integration_time=1e-3, f_pem=F_PEM):
    import ulia

    theta = reference_phase(samples.size, fs, edges)
    ok = np.isfinite(theta)
    first, last = np.flatnonzero(ok)[[0, -1]]
    s = samples[first:last + 1].astype(np.float64)
    lia = ulia.ULIA(s.size, fs, integration_time, 2, bandwidth=0.2)
    lia.load_data(np.sin(theta[first:last + 1] - PHI0), s)
    lia.execute()
    settle = int(20 * integration_time * fs)        # PLL lock and filter transient
    block = int(frame_periods * fs / f_pem)
    n_blocks = (s.size - settle) // block
    x = lia.x[settle:settle + n_blocks * block].reshape(n_blocks, block).mean(axis=1)
    dc = s[settle:settle + n_blocks * block].reshape(n_blocks, block).mean(axis=1)
    j1 = scipy.special.j1(A0)
    g = 2 * x.mean() / (j1 * dc.mean())
    per_block = 2 * x / (j1 * dc)
    return g, per_block.std(ddof=1) / np.sqrt(n_blocks)


def table(samples, fs, edges, k, g, repeats, f_pem):
    rows = [("cplscope phase_bin+estimate", with_cplscope),
            ("cplscope demodulate", with_demodulate),
            ("numpy lock-in", with_numpy),
            ("ulia", lambda *a: with_ulia(*a, f_pem=f_pem))]
    header = (f"{'method':<28} {'time (ms)':>10} {'× cplscope':>11} {'g':>12} {'σ_g':>10} "
              f"{'(g−true)/σ':>11}")
    print(header)
    print("-" * len(header))
    base = None
    for name, fn in rows:
        t, (g_est, sigma) = best_of(lambda: fn(samples, fs, edges, k), repeats)
        base = base or t
        print(f"{name:<28} {t * 1e3:>10.1f} {t / base:>11.1f} {g_est:>12.4e} {sigma:>10.2e} "
              f"{(g_est - g) / sigma:>11.2f}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--fs", type=float, default=250_000.0)
    ap.add_argument("--g", type=float, default=2e-3)
    ap.add_argument("--frame-periods", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    k = args.frame_periods
    for f_pem in (F_PEM, 50_000.0):
        rng = np.random.default_rng(2024)
        samples, edges = synthesize(args.seconds, args.fs, args.g, rng, f_pem)
        print(f"analog path: {samples.size / 1e6:g} M int16 samples at {args.fs / 1e3:g} kHz, "
              f"PEM {f_pem / 1e3:g} kHz, A0 = π/2, φ0 = {PHI0} rad, g = {args.g:g}, "
              f"noise {NOISE:.0%} of level per sample, frames of {k} periods")
        with_ulia(samples[: int(0.05 * args.fs)], args.fs, edges, 10, f_pem=f_pem)  # compile
        table(samples, args.fs, edges, k, args.g, args.repeats, f_pem)


if __name__ == "__main__":
    main()
