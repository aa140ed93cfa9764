"""Held-out-style evidence for time-gated CPL on the twin: a long-lived component of
g = +0.2 under a ten times brighter short-lived one of g = 0. The gate recovers +0.2 within
its σ; continuous excitation gives the intensity-weighted mix; the pulls (g − truth)/σ of
repeated draws are unbiased and have unit scatter, with tolerances from their expected
scatter (fixed seed)."""
import json
import math

import numpy as np
import pytest
from scipy import stats

import cplscope
from cplscope.protocol.gating import Gating
from cplscope.settings.calibration import Calibration

G_LONG, TAU_LONG, RATE_LONG = 0.2, 1e-3, 2.0e4
TAU_SHORT, RATE_SHORT = 5e-9, 2.0e5            # ten times brighter, g = 0
GATING = Gating(pulse_rate_hz=200.0, delay_s=50e-6, width_s=2e-3)
WAVELENGTH = 590.0
DRAWS = 40


@pytest.fixture(scope="module")
def twin_sample(tmp_path_factory):
    grid = np.arange(560.0, 620.5, 1.0)
    flat = np.ones_like(grid)
    data = {"name": "long-under-short", "wavelength_nm": grid.tolist(), "components": [
        {"emission": flat.tolist(), "g_lum": (G_LONG * flat).tolist(), "lifetime_s": TAU_LONG,
         "peak_rate_cps": RATE_LONG, "name": "long"},
        {"emission": flat.tolist(), "g_lum": (0 * flat).tolist(), "lifetime_s": TAU_SHORT,
         "peak_rate_cps": RATE_SHORT, "name": "short"}]}
    path = tmp_path_factory.mktemp("gated") / "long-under-short.json"
    path.write_text(json.dumps(data))
    return str(path)


def _draws(sample, gating, seed):
    """DRAWS independent 1-s points at WAVELENGTH (a measured dark), and the truth."""
    with cplscope.connect("sim", sample=sample, seed=seed) as inst:
        inst.calibration = Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.3, handedness=1,
                                       dead_time_s=18e-9, serial=inst.info()["serial"],
                                       date="2026-01-01T00:00:00+00:00", source="test",
                                       a0_command_rad=math.pi / 2)
        inst.prepare(bins=16, periods=10000, hv_volts=800,
                     mode="gated" if gating else "counting", gating=gating)
        inst.move_to(WAVELENGTH)
        inst.close_shutter()
        dark = inst.measure_dark(10.0)
        inst.open_shutter()
        points = [inst.measure(dwell_s=1.0, dark=dark) for _ in range(DRAWS)]
        truth = inst.sim.truth(WAVELENGTH, None if gating is None else
                               (gating.period_s, gating.delay_s, gating.width_s))["g_lum"]
    g = np.array([p.result.g_lum for p in points])
    s = np.array([p.result.sigma_g for p in points])
    return g, s, truth


def _calibrated_pulls(g, s, truth):
    """Pulls unbiased (|mean| within 3.5 standard errors) with unit scatter (their
    variance inside the χ² interval of DRAWS − 1 degrees of freedom at 99.9 %)."""
    z = (g - truth) / s
    n = len(z)
    assert abs(z.mean()) < 3.5 / math.sqrt(n), (z.mean(), z)
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n - 1) / (n - 1)
    assert lo < z.var(ddof=1) < hi, (z.var(ddof=1), lo, hi)
    return z


def test_the_gate_recovers_the_long_components_g_within_its_sigma(twin_sample):
    g, s, truth = _draws(twin_sample, GATING, seed=240)
    assert truth == pytest.approx(G_LONG, abs=1e-4)  # the gate keeps only the long one
    _calibrated_pulls(g, s, truth)
    # every draw: +0.2 inside ±4σ; their weighted mean within 3.5 of its own σ
    assert np.all(np.abs(g - G_LONG) < 4 * s)
    w = 1 / s ** 2
    mean, sigma = float(np.sum(w * g) / w.sum()), float(1 / math.sqrt(w.sum()))
    assert abs(mean - G_LONG) < 3.5 * sigma, (mean, sigma)


def test_continuous_excitation_gives_the_intensity_weighted_mix(twin_sample):
    g, s, truth = _draws(twin_sample, None, seed=241)
    # the mix as the bench detects the components: R_L·g_L / (R_L + R_S)
    expected = G_LONG * RATE_LONG / (RATE_LONG + RATE_SHORT)
    assert truth == pytest.approx(expected, rel=0.02)
    _calibrated_pulls(g, s, truth)
    w = 1 / s ** 2
    mean, sigma = float(np.sum(w * g) / w.sum()), float(1 / math.sqrt(w.sum()))
    assert abs(mean - truth) < 3.5 * sigma and abs(mean - G_LONG) > 50 * sigma


def test_dead_time_is_corrected_at_the_rate_inside_the_gate():
    """A bright long-lived emitter counted in a short gate: its photons come at T_p/w times
    their average rate, and the head loses them at that rate. The pipeline's correction with
    the frames' live fraction (pulses × w / frame time) gives back the true intensity; the
    same correction at the frame's average rate (live fraction 1) leaves most of the loss."""
    from cplscope.science.pipeline import PointContext, estimate_frames
    from cplscope.sim.bench import Bench, Gate, InstrumentState
    from cplscope.sim.samples import Component, mix_components

    grid = np.arange(560.0, 620.5, 1.0)
    flat = np.ones_like(grid)
    sample = mix_components("bright-long", grid, (
        Component(flat, G_LONG * flat, 0 * flat, TAU_LONG, 3.0e6, "long"),))
    bench = Bench(sample, seed=1, dark_rate_cps=0.0)
    drive = math.pi / 2 * bench.pem_drive_per_rad_nm * WAVELENGTH
    state = InstrumentState(WAVELENGTH, drive, True, bench.hv_nominal_volts, 0.0)
    gate = Gate(period_s=5e-3, delay_s=50e-6, width_s=100e-6)   # w ≪ τ: a flat rate inside
    frame_s, n_bins = 0.2, 16
    pulses = round(frame_s / gate.period_s)
    lost = bench.expected_gated_counts(state, n_bins, pulses, gate)
    true = bench.expected_gated_counts(state, n_bins, pulses, gate, dead_time=False)
    counts = np.tile(lost, (4, 1))
    live = pulses * gate.width_s / frame_s
    loss = 1 - lost.sum() / true.sum()
    assert loss > 0.05   # the head loses > 5 % inside the gate (< 0.3 % at the mean rate)

    def intensity(live_fraction):
        ctx = PointContext(wavelength_nm=WAVELENGTH, a0_rad=math.pi / 2, phase_offset_rad=0.3,
                           dead_time_s=bench.dead_time_s, live_fraction=live_fraction)
        return estimate_frames(counts, frame_s, 1.0, ctx).intensity

    total = 4 * true.sum()   # the intensity is the point's counts (4 frames)
    assert intensity(live) == pytest.approx(total, rel=2e-3)
    assert intensity(1.0) < total * (1 - 0.9 * loss)
