"""GATED_COUNTS (protocol revision 3): encode, decode, refuse malformed payloads, and stack
into a GatedFrameSet that keeps each frame's gate."""
import struct

import numpy as np
import pytest

from cplscope.protocol import (FrameType, GatedCounts, MalformedPayload, Status,
                               decode_gated_counts, encode_gated_counts)
from cplscope.science.frames import FrameSet, GatedFrameSet

KW = dict(flags=0b101100, periods=500, gate=2, n_gates=4, pulses=2000,
          pulse_period_ns=5_000_000, gate_delay_ns=850_000, gate_width_ns=400_000,
          mono_position=-12, pem_period_ps=20_000_000, acq_id=3)


def test_round_trip_keeps_every_field():
    counts = np.arange(16, dtype=np.uint32) * 7 + 1
    p = encode_gated_counts(counts, **KW)
    assert len(p) == 40 + 4 * 16
    f = decode_gated_counts(p)
    assert isinstance(f, GatedCounts) and f.TYPE == FrameType.GATED_COUNTS
    assert list(f.counts) == list(counts)
    for k, v in KW.items():
        got = getattr(f, k)
        assert (int(got) if k == "flags" else got) == v, k
    assert f.live_time_s == pytest.approx(2000 * 400e-6)
    assert f.gate_delay_s == pytest.approx(850e-6)
    assert decode_gated_counts(f.to_payload()).gate == 2


@pytest.mark.parametrize("mutate, words", [
    (lambda p: p[:30], "shorter"),
    (lambda p: p[:-4], "requires 40"),
    (lambda p: p[:20] + struct.pack("<HH", 4, 4) + p[24:], "gate 4 of n_gates = 4"),
    (lambda p: p[:20] + struct.pack("<HH", 0, 0) + p[24:], "n_gates = 0"),
    (lambda p: p[:36] + b"\0\0\0\0" + p[40:], "gate_width_ns is 0"),
    (lambda p: struct.pack("<H", 3) + p[2:], "n_bins"),
])
def test_malformed_payloads_are_refused_with_the_reason(mutate, words):
    p = encode_gated_counts(np.ones(8, dtype=np.uint32), **KW)
    with pytest.raises(MalformedPayload, match=words):
        decode_gated_counts(mutate(p))


def test_encoder_refuses_impossible_gates():
    with pytest.raises(ValueError, match="gate"):
        encode_gated_counts(np.ones(8, dtype=np.uint32), **{**KW, "gate": 4})
    with pytest.raises(ValueError, match="n_gates"):
        encode_gated_counts(np.ones(8, dtype=np.uint32), **{**KW, "n_gates": 65, "gate": 0})


def _frame(gate, n_gates=3, counts=10, pulses=100):
    return decode_gated_counts(encode_gated_counts(
        np.full(4, counts, dtype=np.uint32), **{**KW, "gate": gate, "n_gates": n_gates,
                                                "pulses": pulses}))


def test_gated_frames_stack_into_a_gated_frame_set_and_select_by_gate():
    frames = [_frame(j % 3) for j in range(9)]
    fs = FrameSet.from_frames(frames)
    assert isinstance(fs, GatedFrameSet) and fs.n_gates == 3 and fs.n_frames == 9
    assert list(fs.gate) == [0, 1, 2] * 3
    g1 = fs.rows(1)
    assert isinstance(g1, GatedFrameSet) and g1.n_frames == 3 and set(g1.gate) == {1}
    assert fs.live_fraction == pytest.approx(100 * 400e-6 / (500 * 20e-6))
    joined = fs.extend(FrameSet.from_frames([_frame(0)]))
    assert isinstance(joined, GatedFrameSet) and joined.n_frames == 10
    with pytest.raises(ValueError, match="gates"):
        fs.extend(FrameSet.from_frames([_frame(0, n_gates=2)]))


def test_gated_and_continuous_frames_do_not_mix():
    from cplscope.protocol import decode_counts, encode_counts
    plain = decode_counts(encode_counts(np.ones(4, dtype=np.uint32), flags=0, periods=500))
    with pytest.raises(ValueError, match="gated and continuous"):
        FrameSet.from_frames([_frame(0)]).extend(FrameSet.from_frames([plain]))


def test_status_trigger_on_is_optional_and_typed():
    base = dict(state="running", mode="gated", bins=16, periods=500, pem_locked=True,
                pem_period_ps=20_000_000, a0_rad=1.6, wavelength_nm=590.0, mono_position=0,
                moving=False, homed=True, hv_volts=800.0, hv_set_volts=800.0,
                shutter_open=True, overload=False, frames_sent=1, frames_dropped=0,
                frames_late=0, uptime_us=5)
    assert Status.from_dict(base).trigger_on is None
    assert Status.from_dict({**base, "trigger_on": True}).trigger_on is True
    with pytest.raises(MalformedPayload, match="trigger_on"):
        Status.from_dict({**base, "trigger_on": 1})


def test_whole_turns_through_the_gates_add_up_and_incomplete_ones_are_left_out():
    gates = [1, 2, 0, 1, 2, 0, 1, 2, 0, 2, 0, 1]   # a turn, then one broken by a lost frame
    fs = FrameSet.from_frames([_frame(j, counts=10 + j, pulses=100 + j) for j in gates])
    whole = fs.rotations()
    assert whole.n_frames == 2 and whole.n_gates == 1
    assert list(whole.counts[0]) == [10 + 11 + 12] * 4
    assert list(whole.pulses) == [303, 303] and list(whole.periods) == [1500, 1500]
    assert whole.live_fraction == pytest.approx(303 * 400e-6 / (1500 * 20e-6))
    one = FrameSet.from_frames([_frame(0, n_gates=1)] * 3)
    assert one.rotations() is one
    assert FrameSet.from_frames([_frame(1), _frame(2)]).rotations().n_frames == 0


def test_time_bins_are_summed_per_turn_each_corrected_for_dead_time_at_its_own_rate():
    from cplscope.demod.deadtime import apply_dead_time, dead_time_ratio

    rates = {0: 600, 1: 200, 2: 50}       # counts per phase bin: a decay
    # 2 pulses (400 µs gates) in each 10-ms frame
    fs = FrameSet.from_frames([_frame(j, counts=rates[j], pulses=2) for j in [0, 1, 2] * 2])
    # without dead time: the bins' counts added up, as counts
    late = fs.rotations(range(1, 3))
    assert late.counts.dtype == np.uint32 and late.counts.tolist() == [[250] * 4] * 2
    assert list(late.pulses) == [4, 4] and list(late.periods) == [1000, 1000]
    tau = 50e-9
    bin_live = 2 * 400e-6 / 4                    # pulses × gate width / B, s
    early = fs.rotations(range(0, 2), dead_time_s=tau)
    expected = sum(c / (1 - c * tau / bin_live) for c in (600, 200))
    # the pipeline's correction at the summed gate's in-gate rate gives back the sum of the
    # per-bin corrections
    ratio = dead_time_ratio(tau, early.frame_time_s * early.live_fraction, 4, early.span)
    np.testing.assert_allclose(apply_dead_time(early.counts, ratio), expected, rtol=1e-12)
    # summing first and correcting at the mean rate would under-correct the bright bin
    assert apply_dead_time(np.array([800.0]), ratio)[0] < 0.98 * expected
    # one gate's frames come back unchanged, whatever the dead time
    whole = fs.rotations(range(0, 1), dead_time_s=tau)
    np.testing.assert_allclose(
        apply_dead_time(whole.counts, dead_time_ratio(tau, whole.frame_time_s
                                                      * whole.live_fraction, 4, whole.span)),
        600 / (1 - 600 * tau / bin_live), rtol=1e-12)
    for wrong in (range(2, 4), range(1, 1), range(0, 3, 2)):
        with pytest.raises(ValueError, match="contiguous gates"):
            fs.rotations(wrong)
    with pytest.raises(ValueError, match="dead-time limit"):
        fs.rotations(dead_time_s=1e-6)
