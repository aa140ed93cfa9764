"""Gated counting's efficiency against the ideal, on the simulated instrument end to end.

    PYTHONPATH=host python bench/bench_gated.py [--seed S] [--dwell 20]

The sample: one emitter of lifetime τ = 1 ms, g = +0.2, 1e5 photons/s at 590 nm under
continuous excitation (the same mean excitation power pulsed at 200 Hz). For each gate
(δ, w) after each pulse the script measures, through the firmware, the board and the point
pipeline, the intensity and σ_g of a point of `--dwell` s, and compares the share of the
photons the gate kept (gated intensity / continuous intensity) with

* the model: f = (e^(−δ/τ) − e^(−(δ+w)/τ)) / (1 − e^(−T/τ)) (earlier pulses included);
* the bound for a gate that opens at δ: everything from δ to the next pulse,
  f_max(δ) = (e^(−δ/τ) − e^(−T/τ)) / (1 − e^(−T/τ)): no gate that rejects the light before δ
  can keep more.

σ_g grows as 1/√f: a gated point needs 1/f times the continuous dwell for the same σ_g
(the last column, measured). The dark (50 counts/s on the twin) is measured in the same
gate and subtracted.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np

import cplscope
from cplscope.protocol.gating import Gating
from cplscope.settings.calibration import Calibration

TAU, RATE, G, PULSE_HZ, WAVELENGTH = 1e-3, 1e5, 0.2, 200.0, 590.0
GATES = ((1e-6, 4.99e-3), (10e-6, 4.98e-3), (50e-6, 2e-3), (50e-6, 1e-3), (200e-6, 2e-3),
         (500e-6, 1e-3), (1e-3, 4e-3))


def model(delay: float, width: float, period: float) -> float:
    return (math.exp(-delay / TAU) - math.exp(-(delay + width) / TAU)) / -math.expm1(-period / TAU)


def bound(delay: float, period: float) -> float:
    return model(delay, period - delay, period)


def measure(sample: str, seed: int, dwell: float, gating: Gating | None) -> tuple[float, float]:
    with cplscope.connect("sim", sample=sample, seed=seed) as inst:
        inst.calibration = Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.3, handedness=1,
                                       dead_time_s=18e-9, serial=inst.info()["serial"],
                                       date="2026-01-01T00:00:00+00:00", source="bench",
                                       a0_command_rad=math.pi / 2)
        inst.prepare(periods=10_000, mode="gated" if gating else "counting", gating=gating)
        inst.move_to(WAVELENGTH)
        inst.close_shutter()
        dark = inst.measure_dark(dwell)
        inst.open_shutter()
        r = inst.measure(dwell_s=dwell, dark=dark).result
    return float(r.intensity), float(r.sigma_g)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dwell", type=float, default=20.0, help="s per point")
    a = p.parse_args()
    grid = np.arange(570.0, 610.5, 1.0)
    data = {"name": "tau-1ms", "wavelength_nm": grid.tolist(), "components": [
        {"emission": np.ones_like(grid).tolist(), "g_lum": (G * np.ones_like(grid)).tolist(),
         "lifetime_s": TAU, "peak_rate_cps": RATE}]}
    with tempfile.TemporaryDirectory() as tmp:
        sample = str(Path(tmp) / "tau.json")
        Path(sample).write_text(json.dumps(data))
        i0, s0 = measure(sample, a.seed, a.dwell, None)
        print(f"continuous: intensity {i0:.4g} counts, σ_g {s0:.2e} in {a.dwell:g} s")
        print(f"{'delay':>8} {'width':>8} {'kept':>7} {'model':>7} {'bound':>7} "
              f"{'kept/bound':>10} {'σ_g':>9} {'time ×':>7}")
        for k, (d, w) in enumerate(GATES):
            g = Gating(pulse_rate_hz=PULSE_HZ, delay_s=d, width_s=w)
            i, s = measure(sample, a.seed + 1 + k, a.dwell, g)
            kept, period = i / i0, 1 / PULSE_HZ
            print(f"{d * 1e6:>6.0f}µs {w * 1e3:>6.2f}ms {kept:>7.3f} {model(d, w, period):>7.3f} "
                  f"{bound(d, period):>7.3f} {kept / bound(d, period):>10.3f} {s:>9.2e} "
                  f"{(s / s0) ** 2:>7.2f}")


if __name__ == "__main__":
    main()
