"""BenchAdapter: the link's bench interface on top of the optical bench (units, ticks, PEM
lock, overload guard, ground truth)."""
import numpy as np
import pytest

from cplscope.sim.adapter import TICK_HZ, BenchAdapter
from cplscope.sim.bench import Bench
from cplscope.sim.link import LinkState


class Recorder(Bench):
    """A Bench that remembers the states it was asked for."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen = []

    def counts_frame(self, state, n_bins, periods):
        self.seen.append(state)
        return super().counts_frame(state, n_bins, periods)

    def adc_block(self, state, n_samples, sample_rate_hz, t0_s=None):
        self.seen.append((state, t0_s))
        return super().adc_block(state, n_samples, sample_rate_hz, t0_s)


def link_state(*, drive=0.5 * 438 / 500, hz=50_000.0, internal=False, rate=1e9, level=4095.0,
               t_us=0, hv=800.0, shutter=True):
    return LinkState(hv_volts=hv, pem_drive=drive, pem_frequency_hz=hz, mech_steps=2380,
                     wavelength_nm=438.0, shutter_open=shutter, pem_internal=internal,
                     moving=False, guard_max_rate_cps=rate, guard_max_adc_level=level,
                     time_us=t_us)


@pytest.fixture
def adapter():
    return BenchAdapter(Recorder("R-Cs4PbBr6", seed=2, flicker_rms=0.0, drift_rel=0.0))


def test_pem_lock_external_and_internal(adapter):
    period_ps = 20_000_000
    assert adapter.pem_status(link_state()) == (True, period_ps)
    assert adapter.pem_status(link_state(hz=10_000.0)) == (True, period_ps)  # controller's ref
    assert adapter.pem_status(link_state(internal=True, hz=50_400.0)) == (True, period_ps)
    assert adapter.pem_status(link_state(internal=True, hz=50_600.0)) == (False, round(1e12 / 50_600))
    assert adapter.pem_status(link_state(internal=True, drive=0.0))[0] is False


def test_counter_frame_time_units_and_guard(adapter):
    st = link_state(t_us=2_500_000)
    a = adapter.counter_frame(st, 16, 1000)
    seen = adapter.bench.seen[-1]
    assert seen.time_s == 2.5 and seen.wavelength_nm == 438.0 and seen.pem_drive == st.pem_drive
    assert (len(a.counts), a.periods, a.pem_period_ps, a.duration_us) == (16, 1000, 20_000_000,
                                                                          20_000)
    assert a.trip_rate_cps is None
    rate = sum(adapter.bench.expected_counts(seen, 16, 1000, dead_time=False)) / 0.02
    tripped = adapter.counter_frame(link_state(rate=0.5 * rate), 16, 1000)
    assert tripped.trip_rate_cps == pytest.approx(rate, rel=1e-9)


def test_unlocked_pem_does_not_modulate(adapter):
    st = link_state(internal=True, hz=40_000.0)
    a = adapter.counter_frame(st, 16, 100)
    assert adapter.bench.seen[-1].pem_drive == 0.0
    assert a.pem_period_ps == 25_000_000 and a.duration_us == 2500
    blk = adapter.adc_block(st, 250_000.0, 512)
    assert blk.edges_ticks == []


def test_adc_block_ticks_and_level_guard(adapter):
    st = link_state(t_us=1_000_005)
    a = adapter.adc_block(st, 250_000.0, 1000)
    state, t0 = adapter.bench.seen[-1]
    assert t0 == pytest.approx(1.000005) and state.time_s == pytest.approx(1.000005)
    assert a.t0_ticks == 125_000_625 and a.duration_us == 4000
    # reference edges at whole PEM periods: the first 15 µs after t0, then every 20 µs
    assert a.edges_ticks[0] == 15 * TICK_HZ // 1_000_000
    assert set(np.diff(a.edges_ticks)) == {2500} and len(a.edges_ticks) == 200
    assert a.trip_level is None
    top = max(a.samples)
    assert adapter.adc_block(link_state(level=top - 50), 250_000.0, 1000).trip_level > top - 50


def test_truth(adapter):
    t = adapter.truth(438)
    assert t["g_lum"] == pytest.approx(6e-4, rel=0.05) and t["linear"] == 0.0
    assert t["bandpass_nm"] == 2.0 and t["emission"] > 0.9
    assert abs(adapter.truth(504.0)["g_lum"]) < 1e-4  # the 504 nm band has g = 0
    with pytest.raises(ValueError, match="wavelength_nm"):
        adapter.truth(-5)


def test_adc_blocks_are_flagged_clipped_only_at_full_scale_as_on_the_board():
    # the rp2 board flags a block when a sample reads 4095; a front end biased to 0 V in the
    # dark reads 0 there, which is in range and must not cost the block
    low = BenchAdapter(Bench("blank", seed=16, adc_offset=0.0, flicker_rms=0.0, drift_rel=0.0))
    a = low.adc_block(link_state(), 250_000.0, 4096)
    assert min(a.samples) == 0 and not a.clipped
    bright = BenchAdapter(Bench("R-Cs4PbBr6", seed=16, flicker_rms=0.0, drift_rel=0.0))
    b = bright.adc_block(link_state(hv=1000.0), 250_000.0, 4096)
    assert max(b.samples) == 4095 and b.clipped
