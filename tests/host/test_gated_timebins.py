"""Time bins: g(t) and I(t) of one point from N contiguous gates, and the decay fit that
gives each component's lifetime and g_lum with σ, on the twin through the firmware."""
import json
import math

import numpy as np
import pytest

import cplscope
from cplscope.protocol.gating import Gating
from cplscope.science.frames import GatedFrameSet
from cplscope.science.timebins import fit_decay, time_bins
from cplscope.settings.calibration import Calibration

SLOW = dict(tau=1e-3, g=0.2, rate=4e4)
FAST = dict(tau=100e-6, g=-0.1, rate=4e4)
GATING = Gating(pulse_rate_hz=200.0, delay_s=10e-6, width_s=250e-6, gates=16)
WAVELENGTH = 590.0


@pytest.fixture(scope="module")
def point(tmp_path_factory):
    grid = np.arange(560.0, 620.5, 1.0)
    flat = np.ones_like(grid)
    comps = [{"emission": flat.tolist(), "g_lum": (c["g"] * flat).tolist(),
              "lifetime_s": c["tau"], "peak_rate_cps": c["rate"]} for c in (SLOW, FAST)]
    path = tmp_path_factory.mktemp("tb") / "two.json"
    path.write_text(json.dumps({"name": "two-lifetimes", "wavelength_nm": grid.tolist(),
                                "components": comps}))
    with cplscope.connect("sim", sample=str(path), seed=77) as inst:
        inst.calibration = Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.3, handedness=1,
                                       dead_time_s=18e-9, serial=inst.info()["serial"],
                                       date="2026-01-01T00:00:00+00:00", source="test",
                                       a0_command_rad=math.pi / 2)
        inst.prepare(periods=2500, mode="gated", gating=GATING)
        inst.move_to(WAVELENGTH)
        inst.close_shutter()
        dark = inst.measure_dark(8.0)
        inst.open_shutter()
        m = inst.measure(dwell_s=40.0, dark=dark)
        g = inst.gating
        truth = [inst.sim.truth(WAVELENGTH, (g.period_s, d, g.width_s))
                 for d in g.gate_delays_s()]
    return m, truth


def test_g_and_i_per_gate_follow_the_decays(point):
    m, truth = point
    assert isinstance(m.frames, GatedFrameSet) and m.frames.n_gates == 16
    tb = time_bins(m.frames, m.context)
    assert len(tb.rows()) == 16 and tb.period_s == pytest.approx(5e-3)
    g_true = np.array([t["g_lum"] for t in truth])
    z = (tb.g_lum - g_true) / tb.sigma_g
    assert np.all(np.abs(z) < 4), z
    assert abs(z.mean()) < 3.5 / 4  # 16 gates: the mean pull's σ is 1/4
    # g(t) rises from the mix towards the slow component's +0.2
    assert tb.g_lum[0] < 0.06 and tb.g_lum[-1] > 0.15
    # I(t) decays: the last gate well below the first, every gate's rate positive
    assert np.all(tb.rate_cps > 0) and tb.rate_cps[-1] < 0.1 * tb.rate_cps[0]
    # the gate rates follow the detected truth's shape (emission ∝ what each gate keeps)
    shape = np.array([t["emission"] for t in truth]) / GATING.live_fraction
    ratio = tb.rate_cps / shape
    assert np.std(ratio) / np.mean(ratio) < 0.05
    # and their scale: photons per second of open gate, as the twin emits them in the gate
    # (each gate counted 40 s / 16 of the point's time)
    assert abs(np.mean(ratio) - 1) < 0.05, np.mean(ratio)


def test_the_decay_fit_recovers_each_components_lifetime_and_g(point):
    m, _ = point
    tb = time_bins(m.frames, m.context)
    comps, chi2 = fit_decay(tb, components=2)
    fast, slow = comps
    for fit, true in ((fast, FAST), (slow, SLOW)):
        assert abs(fit.lifetime_s - true["tau"]) < 4 * fit.sigma_lifetime_s, fit
        assert abs(fit.g_lum - true["g"]) < 4 * fit.sigma_g, fit
        assert fit.sigma_lifetime_s < 0.2 * true["tau"] and fit.sigma_g < 0.05
    assert 0.3 < chi2 < 2.5
    one, chi2_one = fit_decay(tb, components=1)
    assert chi2_one > 3 * chi2   # one exponential does not describe two


def test_a_decay_fit_needs_enough_gates(point):
    m, _ = point
    tb = time_bins(m.frames.rows([0, 1]), m.context)
    with pytest.raises(ValueError, match="gates"):
        fit_decay(tb, components=2)
    with pytest.raises(ValueError, match="1 or 2"):
        fit_decay(tb, components=3)


def test_cli_time_bins_write_g_of_t_and_the_decay_fit(cli_home, tmp_path):
    from cplscope.cli.main import main
    from cplscope.data.spectrum import Spectrum

    out = tmp_path / "eu.csv"
    assert main(["-q", "scan", "--sim", "--seed", "9", "--sample", "Eu-background", "--start",
                 "590", "--stop", "592", "--step", "2", "--dwell", "16", "--dark-dwell", "8",
                 "--pulse-rate", "200", "--gate", "50e-6:4e-3", "--time-bins", "8",
                 "--output", str(out)]) == 0
    spec = Spectrum.read_csv(out)
    assert spec.metadata["settings"]["gating"]["gates"] == 8
    assert spec.metadata["settings"]["gating"]["width_s"] == pytest.approx(0.5e-3, rel=1e-4)
    assert np.all(np.abs(spec.g_lum - 0.2) < 4 * spec.sigma_g)   # the whole gate's g
    # fitted on whole turns through the gates: one model fits them
    assert not any("misfit" in f for f in spec.flags), spec.flags
    assert np.all(spec.column("chi2_red") < 2)
    bins = _table(tmp_path / "eu.timebins.csv")
    assert len(bins["gate"]) == 16 and sorted(set(bins["gate"])) == list(range(8))
    assert np.all(np.abs(bins["g_lum"] - 0.2) < 4.5 * bins["sigma_g"])
    fit = _table(tmp_path / "eu.timebins.decay.csv")
    assert len(fit["lifetime_s"]) == 2
    assert np.all(np.abs(fit["lifetime_s"] - 1e-3) < 4 * fit["sigma_lifetime_s"]), fit
    assert np.all(np.abs(fit["g_lum"] - 0.2) < 4 * fit["sigma_g"]), fit


def _table(path):
    """A CSV of cplscope's (# comment lines, a header) as columns of floats where they are."""
    import csv

    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.DictReader(lines))
    out = {}
    for key in rows[0]:
        try:
            out[key] = np.array([float(r[key]) for r in rows])
        except ValueError:
            out[key] = [r[key] for r in rows]
    return out


def test_time_bins_are_measured_with_a_fixed_dwell(cli_home):
    with cplscope.connect("sim", sample="Eu-background", seed=3) as inst:
        inst.prepare(periods=2500, mode="gated", gating=GATING)
        with pytest.raises(ValueError, match="fixed dwell"):
            inst.scan(589, 591, 2, target_sigma=0.01, dark=False)
        inst.move_to(590)
        with pytest.raises(ValueError, match="fixed dwell"):
            inst.measure(target_sigma=0.01)
