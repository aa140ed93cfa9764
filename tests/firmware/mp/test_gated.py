"""Gated counting (pulsed excitation): CONFIGURE mode "gated" validated and answered, one
GATED_COUNTS frame per gate in turn, and the excitation trigger off whenever the shutter is
closed, the acquisition stops or a fault is active."""
import gc
import struct

from cpl import protocol as P
from helpers import make, ok, cmd, frames, events, run

CONFIGURE, START, STOP, SET_HV, SHUTTER, STATUS, CLEAR_FAULT = 2, 3, 4, 8, 9, 10, 13


def gated(**over):
    a = {"mode": "gated", "bins": 16, "periods": 500, "trigger": "internal",
         "pulse_period_ns": 5_000_000, "trigger_width_ns": 10_000, "gate_delay_ns": 50_000,
         "gate_width_ns": 2_000_000, "gates": 1}
    a.update(over)
    return {k: v for k, v in a.items() if v is not None}


def gated_frames(b):
    out = []
    for ftype, seq, ts, p in frames(b, P.GATED_COUNTS):
        nb, flags, periods, pos, pem_ps, acq, span = struct.unpack_from("<HHIiIHH", p, 0)
        gate, n_gates, pulses, period_ns, delay_ns, width_ns = struct.unpack_from(
            "<HHIIII", p, 20)
        assert len(p) == 40 + 4 * nb, (len(p), nb)
        out.append({"seq": seq, "bins": nb, "flags": flags, "periods": periods,
                    "acq_id": acq, "gate": gate, "n_gates": n_gates, "pulses": pulses,
                    "pulse_period_ns": period_ns, "gate_delay_ns": delay_ns,
                    "gate_width_ns": width_ns, "counts": struct.unpack_from("<%dI" % nb, p, 40)})
    return out


def test_configure_gated_answers_the_values_quantised_to_the_clock():
    inst, b = make()
    r = ok(inst, b, CONFIGURE, gated(gate_delay_ns=50_003, gate_width_ns=1_000_001))
    # 125 MHz: the gate in 2-cycle (16 ns) steps, the delay in PWM counts of `div` cycles
    assert r["mode"] == "gated" and r["trigger"] == "internal" and r["gates"] == 1, r
    assert r["gate_width_ns"] % 16 == 0 and abs(r["gate_width_ns"] - 1_000_001) <= 8, r
    assert abs(r["gate_delay_ns"] - 50_003) <= 80 and abs(r["pulse_period_ns"] - 5e6) <= 80, r
    st = ok(inst, b, STATUS)
    assert st["mode"] == "gated" and st["trigger_on"] is False


def test_configure_gated_refuses_what_it_cannot_do_and_says_why():
    inst, b = make()
    cases = (
        (gated(gate_delay_ns=1_000_000, gate_width_ns=2_000_000, gates=3), P.ST_OUT_OF_RANGE,
         "after the next pulse"),
        (gated(gate_width_ns=6_000_000), P.ST_OUT_OF_RANGE, "gate_width_ns"),
        (gated(trigger="laser"), P.ST_OUT_OF_RANGE, "trigger"),
        (gated(trigger=None), P.ST_BAD_ARGS, "needs key 'trigger'"),
        (gated(gate_delay_ns=None), P.ST_BAD_ARGS, "gate_delay_ns"),
        (gated(trigger="external"), P.ST_BAD_ARGS, "trigger_width_ns"),
        (gated(gates=0), P.ST_OUT_OF_RANGE, "gates"),
        (gated(gates=33), P.ST_OUT_OF_RANGE, "gates"),
        (gated(pulse_period_ns=50), P.ST_OUT_OF_RANGE, "pulse_period_ns"),
        (gated(pulse_period_ns=2_000_000_000), P.ST_OUT_OF_RANGE, "pulse_period_ns"),
        (gated(trigger_width_ns=5_000_000), P.ST_OUT_OF_RANGE, "trigger_width_ns"),
        (gated(gate_width_ns="2ms"), P.ST_BAD_ARGS, "gate_width_ns"),
        (gated(bins=5), P.ST_OUT_OF_RANGE, "bins"),
        # 125 MHz / 255 / 65536: the PWM cannot make periods longer than ~134 ms
        (gated(pulse_period_ns=500_000_000, gate_width_ns=100_000_000), P.ST_OUT_OF_RANGE,
         "raise the pulse rate"),
    )
    for args, status, word in cases:
        st, text = cmd(inst, b, CONFIGURE, args)
        assert st == status and word in text, (args, st, text)
    # nothing of a refused configuration stays behind
    assert ok(inst, b, STATUS)["mode"] == "counting"


def test_an_external_sync_needs_no_trigger_width_and_never_drives_the_trigger():
    inst, b = make()
    r = ok(inst, b, CONFIGURE, gated(trigger="external", trigger_width_ns=None))
    assert "trigger_width_ns" not in r and r["trigger"] == "external", r
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, START)
    run(inst, 2)
    assert b.trigger is False and gated_frames(b)


def test_gates_are_counted_in_turn_one_frame_each():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated(gate_delay_ns=100_000, gate_width_ns=400_000, gates=5))
    ok(inst, b, START)  # leaves the frames of its own loop passes in b.written
    run(inst, 3)
    fs = gated_frames(b)
    assert len(fs) >= 12 and not frames(b, P.COUNTS), (len(fs), [f[0] for f in frames(b)])
    assert [f["gate"] for f in fs] == [k % 5 for k in range(len(fs))]
    for f in fs:
        assert f["n_gates"] == 5 and f["bins"] == 16 and f["acq_id"] == 1
        assert f["counts"] == tuple(1000 + 7 * k + 16 for k in range(16))
        assert abs(f["gate_delay_ns"] - (100_000 + f["gate"] * 400_000)) <= 80, f
        assert abs(f["gate_width_ns"] - 400_000) <= 8
        assert f["pulses"] == 500 * 20_000 // f["pulse_period_ns"]  # 10 ms of 5 ms pulses


def test_counting_after_gated_counts_every_photon_again():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated())
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 16, "periods": 500})
    ok(inst, b, START)
    run(inst, 1)
    assert b.gating is None and frames(b, P.COUNTS) and not frames(b, P.GATED_COUNTS)


def test_trigger_runs_only_while_running_with_the_shutter_open():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated())
    ok(inst, b, START)
    assert b.trigger is False  # shutter closed
    ok(inst, b, SHUTTER, {"open": True})
    assert b.trigger is True and ok(inst, b, STATUS)["trigger_on"] is True
    ok(inst, b, SHUTTER, {"open": False})
    assert b.trigger is False
    ok(inst, b, SHUTTER, {"open": True})
    assert b.trigger is True
    ok(inst, b, STOP)
    assert b.trigger is False and ok(inst, b, STATUS)["trigger_on"] is False


def test_a_bounded_acquisition_stops_the_trigger_when_it_ends():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated())
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, START, {"frames": 40})
    assert b.trigger is True
    run(inst, 12)
    assert inst.state == "idle" and b.trigger is False, (inst.state, b.trigger)
    assert [e for e in events(b) if e[0] == P.EV_ACQ_DONE], events(b)


def test_an_overload_stops_the_trigger_and_it_stays_off_until_cleared_and_started():
    inst, b = make()
    ok(inst, b, SET_HV, {"volts": 900})
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, CONFIGURE, gated())
    ok(inst, b, START)
    assert b.trigger is True
    b.written.clear()
    b.trip("PMT rate 3.2e6 cps > limit 2.0e6 cps")
    run(inst, 1)
    assert inst.state == "fault" and b.trigger is False
    assert [e for e in events(b) if e[0] == P.EV_OVERLOAD]
    fs = gated_frames(b)
    assert fs and fs[0]["flags"] & P.F_OVERLOAD  # the guard's frame is flagged
    st, text = cmd(inst, b, SHUTTER, {"open": True})
    assert st == P.ST_BAD_STATE and b.trigger is False
    ok(inst, b, CLEAR_FAULT)
    assert b.trigger is False  # clearing does not restart it
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, START)
    assert b.trigger is True


def test_a_fault_in_the_main_loop_stops_the_trigger():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated())
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, START)
    assert b.trigger is True

    def broken():
        raise OSError("counter DMA stalled")
    b.counter_poll = broken
    run(inst, 1)
    assert inst.state == "fault" and b.trigger is False and b.trigger_calls[-1] is False


def test_configure_is_refused_while_running():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated())
    ok(inst, b, START)
    st, text = cmd(inst, b, CONFIGURE, gated(gates=2))
    assert st == P.ST_BAD_STATE and "STOP first" in text


def test_gated_stream_does_not_allocate():
    inst, b = make()
    ok(inst, b, CONFIGURE, gated(gate_width_ns=400_000, gates=8))
    ok(inst, b, START)
    b.keep_written = False
    inst.step()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(10):
        inst.step()
    small = gc.mem_alloc() - a
    a = gc.mem_alloc()
    for _ in range(200):
        inst.step()
    large = gc.mem_alloc() - a
    gc.enable()
    assert b.n_written > 800
    assert large <= small + 64, (small, large)
    assert large < 200, large
