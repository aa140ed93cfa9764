"""Stream integrity at the highest sustained counting rate: B = 16 bins, K = 10 PEM periods
per frame (5000 frames/s at 50 kHz, the fastest rate bench/bench_sim.py finds without drops),
for 20 s of instrument time, 100 000 frames (60 min with --soak): every frame arrives, in
sequence, intact."""
from __future__ import annotations

import pytest

import math
import time

from cplscope.protocol import Counts, Event, EventCode, Flags, Opcode

BINS, PERIODS = 16, 10


@pytest.mark.timing("5000 frames/s for 20 s of instrument time is 4 min of emulation, and "
                    "the emulated core (flash without wait states) is no measure of the chip's "
                    "capacity")
def test_highest_rate_stream_has_no_gaps_and_no_rejections(open_raw, hil) -> None:
    seconds = 3600.0 if hil.soak else 20.0
    link = open_raw()
    link.call(Opcode.CONFIGURE, {"mode": "counting", "bins": BINS, "periods": PERIODS})
    link.call(Opcode.HOME, timeout_s=120.0)
    link.call(Opcode.SET_RETARDATION, {"a0_rad": math.pi / 2})
    target = link.call(Opcode.MOVE, {"wavelength_nm": 438.0})["position"]
    deadline = time.monotonic() + 60
    while link.call(Opcode.STATUS)["moving"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert link.call(Opcode.STATUS)["mono_position"] == target
    link.call(Opcode.SET_HV, {"volts": 800.0})
    link.call(Opcode.SHUTTER, {"open": True})
    link.drain(max_s=0.5)
    stats0 = link.decoder.stats
    rejected0, missing0, restarts0 = stats0.rejected, stats0.missing, stats0.restarts
    acq = link.call(Opcode.START)["acq_id"]

    n = 0
    started = False
    first_seq = last_seq = first_t = last_t = 0
    bad_flags = bad_shape = not_ours = 0
    steps: set[int] = set()
    events: list[Event] = []
    frame_us = 0.0
    wall0 = time.monotonic()
    while True:
        for msg in link.read(timeout_ms=1000):
            if isinstance(msg, Counts):
                if msg.acq_id != acq:
                    not_ours += 1
                    continue
                if not started:
                    started = True
                    first_seq, first_t = msg.seq, msg.timestamp_us
                    frame_us = PERIODS * msg.pem_period_ps / 1e6
                else:
                    assert msg.seq == last_seq + 1, f"sequence jumps {last_seq} -> {msg.seq}"
                    steps.add(msg.timestamp_us - last_t)
                last_seq, last_t = msg.seq, msg.timestamp_us
                n += 1
                if msg.flags & (Flags.OVERRUN | Flags.SATURATED | Flags.OVERLOAD
                                | Flags.MONO_MOVING) or not msg.usable:
                    bad_flags += 1
                if msg.n_bins != BINS or msg.periods != PERIODS:
                    bad_shape += 1
            elif isinstance(msg, Event):
                events.append(msg)
        if started and (last_t - first_t) / 1e6 >= seconds:
            break
        assert time.monotonic() - wall0 < 20 * seconds + 60, "the stream stalled"
    wall = time.monotonic() - wall0
    stop = link.call(Opcode.STOP)
    tail = link.drain(max_s=1.0)
    events += [m for m in tail if isinstance(m, Event)]
    status = link.call(Opcode.STATUS)
    st = link.decoder.stats
    print(f"\n{n} frames, {(last_t - first_t) / 1e6:.1f} s of instrument time in {wall:.1f} s "
          f"wall ({n / wall:.0f} frames/s wall)")
    assert st.rejected - rejected0 == 0
    assert st.missing - missing0 == 0
    assert st.restarts - restarts0 == 0
    assert n == last_seq - first_seq + 1
    assert (bad_flags, bad_shape, not_ours) == (0, 0, 0)
    # frames are back to back in device time: K PEM periods apart (±1 µs of rounding)
    assert frame_us > 0 and max(steps) - min(steps) <= 2
    assert abs(sum(steps) / len(steps) - frame_us) <= 1
    assert not [e for e in events if e.code == EventCode.OVERRUN], events
    assert status["frames_dropped"] == 0 and status["frames_late"] == 0
    assert stop["frames_sent"] >= n
