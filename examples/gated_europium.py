"""Time-gated CPL of a Eu(III)-like complex on a short-lived fluorescent background, on the
simulated instrument: the same scan with continuous excitation and with pulsed excitation
and a gate after each pulse.

    python examples/gated_europium.py [--out DIR] [--figure PNG]

The sample (``Eu-background``): Eu(III) lines with a 1-ms lifetime, g_lum = +0.2 on the
5D0→7F1 band (590–596 nm), under an achiral (g = 0) fluorescence of 5 ns about ten times
brighter there. Continuous excitation measures the intensity-weighted mix; a gate from 50 µs
to 2.05 ms after each of 200 pulses a second keeps the europium light alone. Writes both
spectra's CSVs and the figure (docs/figures/gated-europium.png in the repository), and prints
the 7F1 band's g both ways against the twin's truth. Deterministic: the same seeds give the
same figure on any machine.
"""
import argparse
import math
from pathlib import Path

import numpy as np

import cplscope
from cplscope.plans.calibrate import calibrate_simulated
from cplscope.protocol.gating import Gating

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", type=Path, default=Path("gated-europium"))
parser.add_argument("--figure", type=Path, default=None,
                    help="the figure's path (default: OUT/gated-europium.png)")
args = parser.parse_args()
args.out.mkdir(parents=True, exist_ok=True)
figure = args.figure or args.out / "gated-europium.png"

GATING = Gating(pulse_rate_hz=200.0, delay_s=50e-6, width_s=2e-3)
START, STOP, STEP, DWELL = 580.0, 625.0, 1.0, 10.0
calibration = calibrate_simulated(seed=1, save=False, keep_blank=False, keep_cd=False)
runs = {}
for label, gating, seed in (("continuous", None, 30), ("gated", GATING, 31)):
    with cplscope.connect("sim", sample="Eu-background", seed=seed) as inst:
        inst.calibration = calibration
        inst.prepare(periods=10_000, mode="gated" if gating else "counting", gating=gating)
        spec = inst.scan(START, STOP, STEP, dwell_s=DWELL, sample="Eu-background",
                         output=args.out / f"{label}.csv", progress=True)
        gate = None if gating is None else (gating.period_s, gating.delay_s, gating.width_s)
        truth = np.array([inst.sim.truth(w, gate)["g_lum"] for w in spec.wavelength_nm])
    runs[label] = (spec, truth)

band = (runs["gated"][0].wavelength_nm >= 589) & (runs["gated"][0].wavelength_nm <= 597)
rows = {"continuous": ("continuous", " (the intensity-weighted mix)"),
        "gated": (f"gated, {GATING.delay_s * 1e6:g} µs – "
                  f"{(GATING.delay_s + GATING.width_s) * 1e3:g} ms after each of "
                  f"{GATING.pulse_rate_hz:g} pulses/s", "")}
# the README's table (examples/readme_tables.py checks it against this)
print("| excitation | g_lum, 7F1 band (589–597 nm, weighted mean) | the twin's truth |")
print("| --- | --- | --- |")
for label, (spec, truth) in runs.items():
    g, s = spec.g_lum[band], spec.sigma_g[band]
    w = 1 / s ** 2
    mean, sigma = float(np.sum(w * g) / w.sum()), float(1 / math.sqrt(w.sum()))
    t = float(np.sum(w * truth[band]) / w.sum())
    name, note = rows[label]
    print(f"| {name} | {mean:+.4f} ± {sigma:.4f} | {t:+.4f}{note} |")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (ax_i, ax_g) = plt.subplots(2, 1, figsize=(7.0, 5.6), sharex=True,
                                 gridspec_kw={"height_ratios": [1, 1.4]})
colors = {"continuous": "tab:gray", "gated": "tab:red"}
names = {"continuous": "continuous excitation",
         "gated": "gated: 50 µs – 2.05 ms after each pulse (200 Hz)"}
for label, (spec, truth) in runs.items():
    x = spec.wavelength_nm
    ax_i.plot(x, spec.intensity / np.nanmax(spec.intensity), color=colors[label],
              label=names[label])
    ax_g.errorbar(x, spec.g_lum, yerr=spec.sigma_g, fmt="o", ms=3, color=colors[label],
                  label=names[label])
    ax_g.plot(x, truth, "-", lw=0.8, color=colors[label], alpha=0.7)
ax_i.set_ylabel("intensity (normalised)")
ax_i.legend(fontsize=8, frameon=False)
ax_g.axhline(0, color="k", lw=0.5)
ax_g.set_ylabel("g$_{lum}$ (lines: the twin's truth)")
ax_g.set_xlabel("wavelength (nm)")
ax_g.set_ylim(-0.12, 0.3)
ax_g.legend(fontsize=8, frameon=False, loc="upper right")
fig.suptitle("Eu(III)-like complex (τ = 1 ms) on a 5-ns background: gated vs continuous",
             fontsize=10)
fig.tight_layout()
fig.savefig(figure, dpi=90)
print(f"figure -> {figure}")
