"""State machine, COUNTS/ADC_BLOCK frames, flags, overrun, allocation-free streaming."""
import gc
import struct

from cpl import protocol as P
from helpers import make, ok, cmd, frames, events, run, counts_frames

CONFIGURE, START, STOP, MOVE, HOME, SET_HV, SHUTTER, STATUS = 2, 3, 4, 5, 6, 8, 9, 10


def start_counting(bins=16, periods=500, **kw):
    inst, b = make(**kw)
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": bins, "periods": periods})
    ok(inst, b, START)
    return inst, b


def start_analog(block_samples, start=None):
    """An analog acquisition at 200 kS/s started, and its first pass run after START's reply."""
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "analog", "sample_rate_hz": 200000,
                            "block_samples": block_samples})
    ok(inst, b, START, start)
    b.written.clear()
    run(inst, 1)
    return inst, b


def test_counts_frames_carry_board_counts_and_header():
    inst, b = start_counting(16, 500)
    b.written.clear()
    run(inst, 3)
    fs = counts_frames(b)
    assert len(fs) == 3 * 4  # FRAMES_PER_LOOP per pass while frames are ready
    for f in fs:
        assert f["bins"] == 16 and f["periods"] == 500 and f["acq_id"] == 1
        assert f["counts"] == tuple(1000 + 7 * k + 16 for k in range(16)), f["counts"]
        assert f["pem_period_ps"] == 20_000_000
        assert f["flags"] & P.F_PEM_LOCKED
    seqs = [f["seq"] for f in fs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    ts = [f["ts"] for f in fs]
    assert all(ts[i + 1] - ts[i] == 500 * 20 for i in range(len(ts) - 1)), ts


def test_counts_carry_the_boards_bin_span_frame_by_frame():
    inst, b = start_counting(64, 100)
    b.written.clear()
    b.frames_ready = 2
    b.bin_span = 62076  # rp2: 64 bins of 37 cycles in a 2500-cycle period
    run(inst, 1)
    b.frames_ready = 1
    b.bin_span = 0  # the whole period
    run(inst, 1)
    assert [f["bin_span"] for f in counts_frames(b)] == [62076, 62076, 0]


def test_no_frames_when_idle_and_stop_ends_stream():
    inst, b = make()
    run(inst, 3)
    assert counts_frames(b) == []
    ok(inst, b, START)
    ok(inst, b, STOP)
    b.written.clear()
    run(inst, 3)
    assert counts_frames(b) == []


def test_flags_follow_shutter_hv_and_mono():
    inst, b = make()
    ok(inst, b, HOME)
    ok(inst, b, SET_HV, {"volts": 500})
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 2, "periods": 10})
    ok(inst, b, START)
    b.written.clear()
    run(inst, 1)
    f = counts_frames(b)[-1]
    assert f["flags"] == P.F_SHUTTER_OPEN | P.F_HV_ON | P.F_PEM_LOCKED, f["flags"]
    b.written.clear()
    ok(inst, b, SHUTTER, {"open": False})
    f = counts_frames(b)[0]
    assert not f["flags"] & P.F_SHUTTER_OPEN
    b.locked = False
    b.written.clear()
    ok(inst, b, MOVE, {"wavelength_nm": 400})
    fs = counts_frames(b)
    assert fs[0]["flags"] & P.F_MONO_MOVING
    assert not fs[0]["flags"] & P.F_PEM_LOCKED
    assert any(e[0] == P.EV_PEM_UNLOCK for e in events(b))
    b.frames_ready = 0
    run(inst, 20)  # the move finishes while no frame completes
    b.frames_ready = 2
    b.written.clear()
    run(inst, 1)
    fs = counts_frames(b)
    assert fs[0]["flags"] & P.F_MONO_MOVING  # moved during this frame
    assert not fs[1]["flags"] & P.F_MONO_MOVING
    assert fs[1]["position"] == 2000


def test_host_not_reading_drops_data_flags_overrun_and_keeps_replies():
    inst, b = start_counting(4, 10)
    b.host_reading = False
    run(inst, 5)
    assert inst.tx.frames_dropped == 20
    b.rx += __import__("helpers").command_frame(5, STATUS)
    run(inst, 1)
    assert inst.tx.queued() == 1  # the reply waits for the host
    b.host_reading = True
    b.written.clear()
    run(inst, 1)
    fr = frames(b)
    assert fr[0][0] == 5  # the queued reply goes first
    fs = counts_frames(b)
    assert fs[0]["flags"] & P.F_OVERRUN
    assert not fs[1]["flags"] & P.F_OVERRUN
    ev = [e for e in events(b) if e[0] == P.EV_OVERRUN]
    assert ev and ev[0][2].startswith("2"), ev  # dropped count includes the reply's pass


def _status(inst, b):
    import json
    from helpers import cmd
    st, r = cmd(inst, b, STATUS)
    assert st == 0
    return r


def test_frames_the_board_collected_too_late_flag_overrun_and_count_as_late():
    inst, b = start_counting(8, 10)
    b.written.clear()
    run(inst, 1)
    b.lost = 3  # the board found 3 overwritten frames at the next poll
    run(inst, 1)
    fs = counts_frames(b)
    assert len(fs) == 8
    flagged = [i for i, f in enumerate(fs) if f["flags"] & P.F_OVERRUN]
    assert flagged == [4], flagged  # the first frame after the loss, and only that one
    seqs = [f[1] for f in frames(b)]  # COUNTS and the EVENT
    assert seqs == list(range(seqs[0], seqs[0] + 9))  # late frames were never sealed: no gap
    ev = [e for e in events(b) if e[0] == P.EV_OVERRUN]
    assert len(ev) == 1 and ev[0][1] == P.SEV_WARNING, ev
    assert ev[0][2].startswith("3 data frames dropped") and "3 collected from the board too late" in ev[0][2], ev
    r = _status(inst, b)
    assert (r["frames_late"], r["frames_dropped"]) == (3, 0), r


def test_a_loss_found_with_no_frame_after_it_is_reported_at_stop():
    inst, b = start_counting(8, 10)
    b.frames_ready = 0
    b.lost = 2  # found while no frame was ready (rp2: the overrun restarts the counter)
    run(inst, 2)
    assert inst.tx.frames_late == 2 and inst.tx.overrun()
    b.written.clear()
    ok(inst, b, STOP)
    ev = [e for e in events(b) if e[0] == P.EV_OVERRUN]
    assert len(ev) == 1 and ev[0][2].startswith("2 data frames dropped"), ev
    assert not inst.tx.overrun()
    b.frames_ready = -1
    ok(inst, b, START)  # a new acquisition does not inherit the old loss
    b.written.clear()
    run(inst, 1)
    assert not any(f["flags"] & P.F_OVERRUN for f in counts_frames(b))
    assert _status(inst, b)["frames_late"] == 2


def test_analog_blocks():
    inst, b = start_analog(1000)
    blocks = frames(b, 2)
    assert len(blocks) == 4
    for (_, _, _, p) in blocks:
        t0, tick_hz, rate, pos, flags, ns, ne, acq = struct.unpack_from("<QIfiHHHH", p, 0)
        assert (tick_hz, rate, ns, ne, acq) == (125_000_000, 200000.0, 1000, 3, 1)
        edge0, d1, d2 = struct.unpack_from("<IHH", p, 28)
        assert (edge0, d1, d2) == (100, 2500, 2501)
        samples = p[36:]
        assert len(samples) == 1500
        assert samples == bytes(i & 255 for i in range(1500))
    t0s = [struct.unpack_from("<Q", p, 0)[0] for (_, _, _, p) in blocks]
    assert [t - t0s[0] for t in t0s] == [0, 1, 2, 3]


def test_adc_blocks_the_board_collected_too_late_flag_overrun_and_count_as_late():
    inst, b = start_analog(10)
    b.lost = 2  # rp2: the DMA had started to overwrite the next block due
    run(inst, 1)
    flags = [struct.unpack_from("<H", p, 20)[0] for (_, _, _, p) in frames(b, 2)]
    flagged = [i for i, f in enumerate(flags) if f & P.F_OVERRUN]
    assert flagged == [4], flags
    ev = [e for e in events(b) if e[0] == P.EV_OVERRUN]
    assert len(ev) == 1 and ev[0][2].startswith("2 data frames dropped"), ev
    b.lost = 1  # found at the last poll before STOP: reported at STOP
    b.frames_ready = 0
    run(inst, 1)
    b.written.clear()
    ok(inst, b, STOP)
    ev = [e for e in events(b) if e[0] == P.EV_OVERRUN]
    assert len(ev) == 1 and ev[0][2].startswith("1 data frames dropped"), ev
    assert _status(inst, b)["frames_late"] == 3


def test_adc_block_without_edges_has_zero_edge0():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "analog", "sample_rate_hz": 200000, "block_samples": 10})
    b.blk.n_edges = 0
    ok(inst, b, START)
    b.blk.n_edges = 0
    b.blk.edges = memoryview(b.blk.edge_buf)[:0]
    b.written.clear()
    run(inst, 1)
    p = frames(b, 2)[0][3]
    assert struct.unpack_from("<HI", p, 24)[0] == 0 and struct.unpack_from("<I", p, 28)[0] == 0
    assert len(p) == 32 + 15


def _alloc_for(inst, n_loops):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(n_loops):
        inst.step()
    used = gc.mem_alloc() - a
    gc.enable()
    return used


def _streaming_alloc(inst, b):
    b.keep_written = False
    inst.step()  # warm-up: per-length views are cached on first use
    small = _alloc_for(inst, 10)
    large = _alloc_for(inst, 200)
    return small, large


def test_counting_stream_does_not_allocate():
    inst, b = start_counting(32, 500)
    small, large = _streaming_alloc(inst, b)
    assert b.n_written > 800
    assert large <= small + 64, (small, large)
    assert large < 200, large  # not per frame: 800 frames streamed


def test_analog_stream_does_not_allocate():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "analog", "sample_rate_hz": 250000, "block_samples": 2048})
    ok(inst, b, START)
    small, large = _streaming_alloc(inst, b)
    assert large <= small + 64, (small, large)
    assert large < 200, large


def test_data_frames_are_sealed_with_the_boards_native_crc():
    from array import array
    from board import rp2_dma as K
    from fakeboard import FakeBoard
    from cpl.instrument import Instrument

    class NativeCrcBoard(FakeBoard):
        native_crc32 = True

        def __init__(self):
            super().__init__()
            self.table = array("I", bytes(1024))
            K.crc32_table(self.table)
            self.crc_calls = 0

        def crc32_into(self, buf, n):
            self.crc_calls += 1
            K.crc32_seal(self.table, buf, n)

    b = NativeCrcBoard()
    inst = Instrument(b)
    inst.boot()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 64, "periods": 10})
    ok(inst, b, START)
    b.written.clear()
    calls = b.crc_calls
    run(inst, 10)
    fs = counts_frames(b)  # decoding checks every CRC with binascii.crc32
    assert len(fs) == 40 and b.crc_calls - calls == 40
    small, large = _streaming_alloc(inst, b)
    assert large <= small + 64, (small, large)


def test_idle_status_once_per_second_of_device_time():
    inst, b = make()
    b.written.clear()
    t0 = b.t
    while b.t - t0 < 5_000_000:
        inst.step()
    sts = frames(b, 3)
    assert len(sts) in (4, 5, 6), len(sts)
    import json
    st = json.loads(sts[0][3])
    assert st["state"] == "idle"


def test_watchdog_started_and_fed_every_pass():
    inst, b = make()
    assert b.wd_timeout == 5000
    f0 = b.feeds
    run(inst, 17)
    assert b.feeds - f0 == 17


def test_boot_events():
    from fakeboard import FakeBoard
    from cpl.instrument import Instrument
    b = FakeBoard(cause=1)
    Instrument(b).boot()
    evs = events(b)
    assert evs[0][0] == P.EV_BOOT and evs[0][2] == "0.1.0"
    assert evs[1][0] == P.EV_WATCHDOG
    assert b.hv == 0.0 and b.shutter is False and b.guard == (2e6, 4000, 0.5)


def test_board_exception_in_loop_faults_and_stays_alive():
    inst, b = start_counting(4, 10)
    def broken():
        raise OSError(5)
    b.counter_poll = broken
    b.hv = 900.0
    b.written.clear()
    run(inst, 1)
    assert inst.state == "fault"
    assert any(e[0] == P.EV_FAULT and "OSError" in e[2] for e in events(b))
    assert b.hv == 0.0 and not b.counting
    st, text = cmd(inst, b, START)
    assert st == P.ST_BAD_STATE and "CLEAR_FAULT" in text


def test_status_goes_out_once_per_second_in_fault_too_and_stop_changes_nothing():
    import json
    inst, b = start_counting(4, 10)
    b.trip("PMT rate 3e6 cps > limit 2e6 cps")
    run(inst, 1)
    assert inst.state == "fault"
    r = ok(inst, b, STOP)
    assert inst.state == "fault" and "frames_sent" in r
    b.written.clear()
    t0 = b.t
    while b.t - t0 < 3_000_000:
        inst.step()
    sts = [json.loads(f[3]) for f in frames(b, 3)]
    assert len(sts) in (2, 3, 4), len(sts)
    assert all(s["state"] == "fault" and s["overload"] for s in sts)


# bounded acquisitions: START {"frames": N} -------------------------------------------------
def _acq_done(b):
    return [e for e in events(b) if e[0] == P.EV_ACQ_DONE]


def test_bounded_start_stops_by_itself_after_n_frames_and_says_so():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10})
    r = ok(inst, b, START, {"frames": 10})
    assert r == {"acq_id": 1, "frames": 10}, r
    run(inst, 10)
    assert inst.state == "idle" and not b.counting
    fs = counts_frames(b)
    assert len(fs) == 10, len(fs)  # 4 per pass: 2 full passes, then 2 frames, then stop
    done = _acq_done(b)
    assert len(done) == 1 and done[0][1] == P.SEV_INFO, done
    assert done[0][2] == "acquisition 1 ended after 10 data frames (10 sent)", done
    # the event comes after the last data frame of the acquisition
    order = [(f[1], f[0]) for f in frames(b)]
    last_data = max(seq for seq, t in order if t == P.COUNTS)
    done_seq = [seq for seq, t in order if t == P.EVENT][-1]
    assert done_seq == last_data + 1, order
    assert ok(inst, b, STOP) == {"frames_sent": 10}  # STOP after the end changes nothing
    st = _status(inst, b)
    assert st["state"] == "idle" and st["frames_sent"] == 10


def test_frames_the_host_did_not_read_count_toward_the_bound():
    inst, b = start_counting(4, 10)
    ok(inst, b, STOP)
    b.host_reading = False
    ok_rid = __import__("helpers").command_frame(9, START, {"frames": 6})
    b.rx += ok_rid
    run(inst, 4)
    assert inst.state == "idle" and inst.tx.frames_dropped == 6
    b.host_reading = True
    b.written.clear()
    run(inst, 2)
    ev = events(b)
    codes = [e[0] for e in ev]
    assert P.EV_OVERRUN in codes and codes[-1] == P.EV_ACQ_DONE, ev  # losses reported first
    assert ev[-1][2] == "acquisition 2 ended after 6 data frames (0 sent)", ev
    assert counts_frames(b) == []


def test_frames_the_board_collected_too_late_count_toward_the_bound():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 8, "periods": 10})
    b.lost = 3  # found at the first poll
    ok(inst, b, START, {"frames": 5})
    run(inst, 3)
    assert inst.state == "idle"
    assert len(counts_frames(b)) == 2
    assert _acq_done(b)[0][2] == "acquisition 1 ended after 5 data frames (2 sent)"


def test_bounded_analog_acquisition_counts_blocks():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "analog", "sample_rate_hz": 200000, "block_samples": 10})
    ok(inst, b, START, {"frames": 3})
    run(inst, 3)
    assert inst.state == "idle" and not b.adc_on
    assert len(frames(b, P.ADC_BLOCK)) == 3
    assert _acq_done(b)[0][2] == "acquisition 1 ended after 3 data frames (3 sent)"


def test_start_without_a_count_runs_until_stop():
    inst, b = start_counting(4, 10)
    run(inst, 10)
    assert inst.state == "running" and len(counts_frames(b)) >= 40
    assert _acq_done(b) == []
    ok(inst, b, STOP)
    assert _acq_done(b) == []  # only a bounded acquisition ends with ACQ_DONE


def test_start_frame_count_is_validated_and_a_refused_start_changes_nothing():
    inst, b = make()
    for args, status in (({"frames": 0}, P.ST_OUT_OF_RANGE), ({"frames": -3}, P.ST_OUT_OF_RANGE),
                         ({"frames": 1_000_000_001}, P.ST_OUT_OF_RANGE),
                         ({"frames": 2.5}, P.ST_BAD_ARGS), ({"frames": "10"}, P.ST_BAD_ARGS),
                         ({"frames": True}, P.ST_BAD_ARGS), ({"count": 10}, P.ST_BAD_ARGS)):
        st, text = cmd(inst, b, START, args)
        assert st == status, (args, st, text)
        assert "frames" in text or "count" in text, text
        assert inst.state == "idle" and not b.counting
    st, text = cmd(inst, b, START, {"frames": 0})
    assert "1..1000000000" in text, text
    assert ok(inst, b, START, {"frames": 1_000_000_000})["frames"] == 1_000_000_000


def test_bounded_stream_does_not_allocate():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 32, "periods": 500})
    ok(inst, b, START, {"frames": 100_000})
    small, large = _streaming_alloc(inst, b)
    assert inst.state == "running" and b.n_written > 800
    assert large <= small + 64, (small, large)


class _WaitLog:
    """Records which kind of wait the core asks for."""

    def __init__(self, b):
        self.kinds = []
        wait = b.wait

        def timed(t):
            self.kinds.append(("wait", t))
            wait(t)

        def idle(t):
            self.kinds.append(("idle", t))
            wait(t)

        b.wait = timed
        b.idle = idle


def test_core_waits_idle_only_when_nothing_runs_moves_or_is_half_received():
    inst, b = make()
    log = _WaitLog(b)
    run(inst, 2)
    assert log.kinds == [("idle", 20_000)] * 2, log.kinds  # nothing to do: may hold the clock
    log.kinds.clear()
    b.rx += __import__("helpers").command_frame(5, STATUS)[:10]  # half a frame
    run(inst, 2)
    assert log.kinds == [("wait", 20_000)] * 2, log.kinds  # the 200-ms staleness must run
    log.kinds.clear()
    b.rx += __import__("helpers").command_frame(5, STATUS)[10:]
    run(inst, 1)
    assert frames(b, P.REPLY)  # the completed frame is answered
    ok(inst, b, HOME)
    log.kinds.clear()
    b.rx += __import__("helpers").command_frame(6, MOVE, {"wavelength_nm": 400})
    run(inst, 1)  # takes the MOVE; the stepper now moves until the next wait
    run(inst, 1)
    assert log.kinds == [("wait", 1000)], log.kinds  # a move in progress is timed work
    log.kinds.clear()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10})
    ok(inst, b, START, {"frames": 2})
    run(inst, 3)
    assert inst.state == "idle"
    assert log.kinds and log.kinds[-1][0] == "idle", log.kinds
