"""The analog path: ADC blocks -> phase-binned frames -> g_lum (host lock-in)."""
import math

import numpy as np
import pytest

import cplscope
from cplscope.analog import AnalogCollector
from cplscope.calibration import Calibration
from cplscope.protocol import AdcBlock, Flags

FS, F_PEM, TICK = 249_674.90625, 50_000.0, 125_000_000
OK = Flags.PEM_LOCKED | Flags.HV_ON | Flags.SHUTTER_OPEN


def blocks(n_blocks, n=2048, g=0.5, a0=math.pi / 2, phi0=0.3, noise=2.0, seed=0, start=0):
    """Contiguous ADC blocks of light with g_lum = g (level 1000 ADC counts)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n_blocks):
        i0 = start + b * n
        t = (i0 + np.arange(n)) / FS
        theta = 2 * np.pi * ((t * F_PEM) % 1.0)
        delta = a0 * np.sin(theta - phi0)
        x = 1000 * (1 + 0.5 * g * np.sin(delta)) + 100 + noise * rng.standard_normal(n)
        k0, k1 = math.ceil(t[0] * F_PEM), math.ceil((t[0] + n / FS) * F_PEM)
        edges = np.round((np.arange(k0, k1) / F_PEM - t[0]) * TICK).astype(np.int64)
        out.append(AdcBlock(t0_ticks=round(t[0] * TICK), tick_hz=TICK, sample_rate_hz=FS,
                            mono_position=0, flags=OK, acq_id=1,
                            samples=np.clip(np.rint(x), 0, 4095).astype(np.uint16),
                            edges_ticks=edges))
    return out


def test_contiguous_blocks_give_frames_that_recover_g():
    c = AnalogCollector(16, 500)
    for blk in blocks(120):
        c.feed(blk)
    frames = c.frames()
    assert c.breaks == 0 and frames.n_frames >= 20 and frames.complete.all()
    e = cplscope.demod.estimate(frames.means, math.pi / 2, phase_offset=0.3, dark=100.0,
                                noise="gaussian")
    assert abs(e.g_lum - 0.5) < 5 * e.sigma_g and e.intensity == pytest.approx(1000, rel=1e-3)


def test_a_gap_or_an_unusable_block_restarts_binning_without_spanning_it():
    bl = blocks(60)
    c = AnalogCollector(16, 100)
    for blk in bl[:30] + bl[31:]:           # a lost frame
        c.feed(blk)
    assert c.breaks == 1
    bad = blocks(60)
    bad[20].flags = OK | Flags.SATURATED
    c2 = AnalogCollector(16, 100)
    for blk in bad:
        c2.feed(blk)
    assert c2.excluded_blocks == 1
    # every frame covers whole periods of one unbroken stretch: 100 periods ≈ 499 samples
    for col in (c.frames(), c2.frames()):
        assert np.all(np.abs(col.n.sum(axis=1) - 100 * FS / F_PEM) <= 1)


def test_a_rate_locked_to_the_pem_leaves_bins_empty_and_says_so():
    c = AnalogCollector(16, 100)
    t = np.arange(20 * 2048) / 250_000
    edges = np.round(np.arange(0, int(t[-1] * F_PEM)) / F_PEM * TICK).astype(np.int64)
    c.feed(AdcBlock(0, TICK, 250_000.0, 0, OK, 1, np.full(t.size, 500, np.uint16), edges))
    with pytest.raises(ValueError, match="locked to the PEM"):
        c.frames().check()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path))


@pytest.mark.parametrize("sample,g_true", [("circular-polarizer-L", 2.0),
                                           ("linear-polarizer-45", 0.0)])
def test_analog_point_on_the_simulated_instrument(home, sample, g_true):
    with cplscope.connect("sim", sample=sample, seed=2) as inst:
        cal = Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.3, handedness=1,
                          dead_time_s=0.0, serial=inst.info()["serial"],
                          date="2026-01-01T00:00:00+00:00", source="test")
        inst.calibration = cal
        inst.configure_analog()
        inst.set_hv(800)
        inst.set_retardation(math.pi / 2)
        inst.move_to(500)
        dark = inst.measure_dark(1.0)
        inst.open_shutter()
        point = inst.measure(dwell_s=2.0, dark=dark)
    r = point.result
    assert point.estimate.noise == "gaussian" and r.n_frames >= 19
    assert abs(r.g_lum - g_true) < 5 * r.sigma_g
    if g_true == 0.0:
        assert r.linear == pytest.approx(1.0, abs=0.02)


def test_acquire_gives_up_when_no_frame_is_usable(home):
    """A PEM that never locks: frames keep coming but none may enter an estimate."""
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=3) as inst:
        inst.configure_pem(source="internal", frequency_hz=30_000.0)   # far off resonance
        inst.configure_counting(bins=16, periods=1000)
        with pytest.raises(cplscope.instrument.AcquisitionError, match="none was usable"):
            inst.acquire(duration_s=10.0, timeout=1.0)
