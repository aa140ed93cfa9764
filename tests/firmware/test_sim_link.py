"""Integration: `micropython firmware/main.py` with the sim board, connected to a
cplscope.sim.link.SimHub with a deterministic fake bench; commands go in as USB OUT data,
REPLY / COUNTS / ADC_BLOCK frames come back as USB IN data, decoded here with struct/zlib."""
from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import time
import zlib

import pytest

from cplscope.protocol import Status
from cplscope.sim.link import COMMAND_LATENCY_US, AdcAnswer, CounterAnswer, LinkState, SimHub
from fwpaths import FIRMWARE

PEM_HZ = 50_000.0


class FakeBench:
    """Counts 100·(k+1) per bin and period-independent… plus 10000 when light reaches the PMT
    (shutter open and HV on), scaled by K; trips the guard when asked to."""

    def __init__(self) -> None:
        self.trip = False
        self.states: list[LinkState] = []

    def counter_frame(self, state: LinkState, bins: int, periods: int) -> CounterAnswer:
        self.states.append(state)
        light = 10_000 if (state.shutter_open and state.hv_volts > 0) else 0
        counts = [(100 * (k + 1) + light) * periods % 2**32 for k in range(bins)]
        return CounterAnswer(counts=counts, periods=periods, pem_period_ps=20_000_000,
                             duration_us=int(periods * 1e6 / PEM_HZ),
                             trip_rate_cps=3.2e6 if self.trip else None)

    def adc_block(self, state: LinkState, sample_rate_hz: float, n_samples: int) -> AdcAnswer:
        samples = [(i * 37) % 4096 for i in range(n_samples)]
        return AdcAnswer(samples=samples, edges_ticks=[100, 2600, 5100], t0_ticks=10**12,
                         duration_us=int(n_samples / sample_rate_hz * 1e6))

    def pem_status(self, state: LinkState) -> tuple[bool, int]:
        return True, 20_000_000


class Host:
    """A minimal host: command frames out, frames in (own decoder)."""

    def __init__(self, hub: SimHub) -> None:
        self.hub = hub
        self.buf = b""
        self.rid = 0
        self.seq = 0

    def send(self, op: int, args: dict | None = None) -> int:
        self.rid += 1
        payload = struct.pack("<HBB", self.rid, op, 0) + (json.dumps(args).encode() if args else b"")
        head = b"\xc5\x5c" + struct.pack("<BBHHIQ", 1, 0x10, len(payload), 0, self.seq, 0)
        self.seq += 1
        body = head + payload
        self.hub.host_write(body + struct.pack("<I", zlib.crc32(body)))
        return self.rid

    def frames(self, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while len(self.buf) >= 24:
                assert self.buf[:2] == b"\xc5\x5c", self.buf[:32]
                ver, ftype, n, _r, seq, ts = struct.unpack_from("<BBHHIQ", self.buf, 2)
                if len(self.buf) < 24 + n:
                    break
                frame, self.buf = self.buf[:24 + n], self.buf[24 + n:]
                assert ver == 1
                assert struct.unpack_from("<I", frame, 20 + n)[0] == zlib.crc32(frame[:20 + n])
                yield ftype, seq, ts, frame[20:20 + n]
            if self.hub.error is not None:
                raise AssertionError(f"sim hub failed: {self.hub.error!r}")
            data = self.hub.host_read(0.2)
            if data:
                self.buf += data
        raise AssertionError("timed out waiting for frames")

    def call(self, op: int, args: dict | None = None, timeout: float = 10.0):
        status, res, _ts, _n = self.call_frame(op, args, timeout)
        return status, res

    def call_frame(self, op: int, args: dict | None = None, timeout: float = 10.0):
        """(status, result, the reply's device timestamp in µs, the reply frame's size)."""
        rid = self.send(op, args)
        for ftype, _seq, ts, p in self.frames(timeout):
            if ftype == 5 and struct.unpack_from("<H", p)[0] == rid:
                status = p[3]
                body = p[4:].decode()
                return status, (json.loads(body) if status == 0 else body), ts, 24 + len(p)
        raise AssertionError("no reply")

    def ok(self, op: int, args: dict | None = None):
        status, res = self.call(op, args)
        assert status == 0, (op, args, status, res)
        return res


@contextlib.contextmanager
def running_sim(micropython, **hub_options):
    bench = FakeBench()
    hub = SimHub(bench, "tcp:127.0.0.1:0", **hub_options).start()
    proc = subprocess.Popen([micropython, str(FIRMWARE / "main.py"), hub.address],
                            cwd=FIRMWARE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        hub.wait_connected(10)
        yield Host(hub), bench, hub, proc
    finally:
        proc.kill()
        out = proc.communicate(timeout=10)[0]
        hub.close()
        if out:
            print(out.decode(errors="replace"))


@pytest.fixture
def sim(micropython):
    with running_sim(micropython) as s:
        yield s


def counts_of(p: bytes):
    nb, flags, periods, pos, pem_ps, acq, span = struct.unpack_from("<HHIiIHH", p)
    assert span == 0  # the sim bench models bins over the whole PEM period
    return nb, flags, periods, pos, struct.unpack_from("<%dI" % nb, p, 20)


def test_boot_identify(sim):
    host, _bench, _hub, _p = sim
    ftype, seq, _ts, p = next(host.frames())
    assert (ftype, seq) == (4, 0)  # the first frame after boot: EVENT BOOT, seq 0
    assert struct.unpack_from("<HH", p) == (1, 0) and p[4:] == b"0.1.0"
    r = host.ok(1)
    assert r["implementation"] == "micropython" and r["board"] == "sim"
    assert r["protocol_version"] == 1 and r["serial"] == "51a000000001"
    # the firmware's STATUS has exactly the keys the host decoder requires
    st = Status.from_dict(host.ok(10))
    assert st.extra == {} and st.frames_late == 0 and st.frames_dropped == 0


def test_counting_stream_in_virtual_time(sim):
    host, bench, hub, _p = sim
    host.ok(8, {"volts": 600})
    host.ok(9, {"open": True})
    assert host.ok(2, {"mode": "counting", "bins": 16, "periods": 100000}) == \
        {"mode": "counting", "bins": 16, "periods": 100000}
    t_wall = time.monotonic()
    acq = host.ok(3)["acq_id"]
    got = []
    for ftype, seq, ts, p in host.frames(30):
        if ftype == 1:
            got.append((seq, ts, counts_of(p)))
            if len(got) == 60:
                break
    wall = time.monotonic() - t_wall
    host.ok(4)
    assert wall < 30
    seqs = [g[0] for g in got]
    ts = [g[1] for g in got]
    # 60 frames of 2 s each: 2 min of instrument time, contiguous, whatever the wall clock did
    assert all(b - a == 2_000_000 for a, b in zip(ts, ts[1:])), ts[:5]
    nb, flags, periods, pos, counts = got[-1][2]
    assert (nb, periods) == (16, 100000)
    assert counts == tuple((100 * (k + 1) + 10_000) * 100000 % 2**32 for k in range(16))
    assert flags & 0b101100 == 0b101100  # SHUTTER_OPEN, PEM_LOCKED, HV_ON
    st = bench.states[-1]
    assert st.hv_volts == 600.0 and st.shutter_open
    assert all(b > a for a, b in zip(seqs, seqs[1:]))


def test_home_move_and_tracking_reach_the_bench(sim):
    host, bench, hub, _p = sim
    assert host.ok(6) == {"position": 0}
    host.ok(5, {"wavelength_nm": 438})
    deadline = time.monotonic() + 30
    while (st := host.ok(10))["mono_position"] != 2380:
        assert time.monotonic() < deadline, st
        time.sleep(0.02)
    assert st["wavelength_nm"] == 438.0
    host.ok(7, {"a0_rad": 1.5708})
    host.ok(2, {"mode": "counting", "bins": 4, "periods": 50})
    host.ok(3)
    for ftype, *_ in host.frames():
        if ftype == 1:
            break
    host.ok(4)
    s = bench.states[-1]
    assert s.mech_steps == 2380  # the firmware's zero is the hub's: the switch opens at home_at
    assert abs(s.pem_drive - 1.5708 * 438 * 0.0006366) < 1e-5


def test_overload_trip_event_and_clear(sim):
    host, bench, hub, _p = sim
    host.ok(8, {"volts": 900})
    host.ok(2, {"mode": "counting", "bins": 2, "periods": 10})
    host.ok(3)
    bench.trip = True
    for ftype, _s, _t, p in host.frames():
        if ftype == 4 and struct.unpack_from("<H", p)[0] == 2:
            assert b"PMT rate 3.2e+06 cps" in p, p
            break
    st = host.ok(10)
    assert st["state"] == "fault" and st["overload"] and st["hv_volts"] == 0.0
    assert host.call(3)[0] == 5
    bench.trip = False
    assert host.ok(13) == {"state": "idle"}


def test_analog_block(sim):
    host, *_ = sim
    host.ok(2, {"mode": "analog", "sample_rate_hz": 250000, "block_samples": 1000})
    host.ok(3)
    for ftype, _s, _t, p in host.frames():
        if ftype == 2:
            break
    host.ok(4)
    t0, tick_hz, rate, pos, flags, ns, ne, acq = struct.unpack_from("<QIfiHHHH", p)
    assert (t0, tick_hz, rate, ns, ne) == (10**12, 125_000_000, 250000.0, 1000, 3)
    assert struct.unpack_from("<IHH", p, 28) == (100, 2500, 2500)
    raw = p[36:]
    assert len(raw) == 1500
    a = raw[3] | ((raw[4] & 0x0F) << 8)
    b = (raw[4] >> 4) | (raw[5] << 4)
    assert (a, b) == ((2 * 37) % 4096, (3 * 37) % 4096)


def test_garbage_and_bad_commands_keep_it_alive(sim):
    host, _bench, hub, _p = sim
    hub.host_write(b"\xc5\x5c\x01\x10garbage" * 3)
    assert host.call(99)[0] == 2
    assert host.call(2, {"mode": "counting", "bins": 99, "periods": 1})[0] == 4
    # the simulated board takes exactly what the rp2 board takes
    for bins in (3, 12, 48, 128):
        status, text = host.call(2, {"mode": "counting", "bins": bins, "periods": 1})
        assert status == 4 and text.endswith("use one of 2, 4, 8, 16, 32, 64"), text
    status, text = host.call(2, {"mode": "analog", "sample_rate_hz": 400000,
                                 "block_samples": 1024})
    assert status == 4 and "250000" in text, text
    assert host.ok(1)["board"] == "sim"


# --- virtual time: only simulated events advance it ------------------------------------------
def test_an_idle_firmware_holds_instrument_time_and_a_command_costs_a_fixed_latency(sim):
    host, _bench, hub, _p = sim
    host.ok(1)
    _st, _r, ts1, size1 = host.call_frame(10)
    time.sleep(0.3)  # wall time passes; the idle instrument's does not
    _st, _r, ts2, size2 = host.call_frame(10)
    # the first reply's bulk IN transfer (1 µs per byte at 1 MB/s), then the next command
    assert ts2 - ts1 == size1 + COMMAND_LATENCY_US
    deadline = time.monotonic() + 10
    while hub.now_us != ts2 + size2:  # the reply's transfer ends, then nothing happens
        assert hub.now_us < ts2 + size2 and time.monotonic() < deadline, hub.now_us
        time.sleep(0.001)
    time.sleep(0.2)
    assert hub.now_us == ts2 + size2


def _move_then_status(micropython, wall_pause_s: float):
    with running_sim(micropython) as (host, _bench, _hub, _p):
        host.ok(6)
        _s, _r, t_move, _n = host.call_frame(5, {"wavelength_nm": 438})
        time.sleep(wall_pause_s)
        st, res, t_status, _n = host.call_frame(10)
        assert st == 0
        return res, t_status - t_move


def test_a_status_poll_waits_for_the_move_and_lands_at_the_same_instrument_time(micropython):
    """Whether the host asks at once (mid-move in wall time) or after a pause, the poll
    reaches the firmware when the move is over, at the same instrument time."""
    now_res, now_dt = _move_then_status(micropython, 0.0)
    late_res, late_dt = _move_then_status(micropython, 0.5)
    assert now_res["moving"] is False and now_res["mono_position"] == 2380
    assert now_dt == late_dt and now_dt > 2380 / 5000 * 1e6  # after the 0.48-s move
    assert {k: v for k, v in now_res.items()} == late_res


def test_bounded_start_streams_exactly_n_frames_then_acq_done(sim):
    host, bench, hub, _p = sim
    host.ok(2, {"mode": "counting", "bins": 4, "periods": 500})
    assert host.ok(3, {"frames": 25}) == {"acq_id": 1, "frames": 25}
    got, done = [], None
    for ftype, seq, ts, p in host.frames(30):
        if ftype == 1:
            got.append((seq, ts))
        elif ftype == 4 and struct.unpack_from("<H", p)[0] == 10:
            done = (seq, p[4:].decode())
            break
    assert len(got) == 25 and len(bench.states) == 25
    assert [b[0] - a[0] for a, b in zip(got, got[1:])] == [1] * 24  # no gap
    assert all(b[1] - a[1] == 10_000 for a, b in zip(got, got[1:]))
    assert done == (got[-1][0] + 1, "acquisition 1 ended after 25 data frames (25 sent)")
    assert host.ok(10)["state"] == "idle" and len(bench.states) == 25


def _stream_unread(micropython, n, **hub_options):
    """Start a bounded stream and read nothing for 0.5 s of wall time, or (lossy hub) until
    the bench has computed every frame; then read everything: (COUNTS seqs, EVENT codes,
    frames the bench had computed before the host read)."""
    with running_sim(micropython, **hub_options) as (host, bench, hub, _p):
        host.ok(2, {"mode": "counting", "bins": 4, "periods": 50})
        host.send(3, {"frames": n})
        if hub_options.get("stall_s") is None:
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while hub_options.get("stall_s") is not None and len(bench.states) < n:
            assert time.monotonic() < deadline and hub.error is None
            time.sleep(0.01)
        computed = len(bench.states)
        seqs, codes = [], []
        for ftype, seq, _ts, p in host.frames(30):
            if ftype == 1:
                seqs.append(seq)
            elif ftype == 4:
                codes.append(struct.unpack_from("<H", p)[0])
                if codes[-1] == 10:
                    return seqs, codes, computed
    raise AssertionError("no ACQ_DONE")


def test_a_host_that_reads_late_loses_nothing_by_default(micropython):
    seqs, codes, computed = _stream_unread(micropython, 20)
    assert computed <= 2  # the instrument waited for the host instead of running on
    assert len(seqs) == 20 and seqs == list(range(seqs[0], seqs[0] + 20))
    assert 6 not in codes  # no EVENT OVERRUN


def test_lossy_back_pressure_is_opt_in(micropython):
    seqs, codes, computed = _stream_unread(micropython, 20, stall_s=0.01)
    assert computed == 20
    assert len(seqs) < 20 and 6 in codes  # frames dropped, reported by EVENT OVERRUN


def test_home_ends_when_the_host_writes_during_it(micropython):
    # Paced (speed set), host data reaches the board during HOME: the board answers it at
    # once (the main loop goes on while homing), and its waits still let instrument time
    # pass, so the stepper arrives and HOME's reply follows
    with running_sim(micropython, speed=1.0) as (host, _bench, hub, _p):
        rid = host.send(6)
        deadline = time.monotonic() + 20
        while hub.now_us < 50_000:  # homing under way (1500 steps at 5000 steps/s: 0.3 s)
            assert time.monotonic() < deadline, "HOME did not start"
            host.buf += hub.host_read(0.005) or b""  # time waits for the host to read
        host.send(10)  # a STATUS written during HOME
        replies = {}
        order = []
        for ftype, _seq, _ts, p in host.frames(timeout=20):
            if ftype == 5:
                replies[struct.unpack_from("<H", p)[0]] = p
                order.append(struct.unpack_from("<H", p)[0])
                if len(replies) == 2:
                    break
        assert order == [rid + 1, rid], "STATUS is answered before HOME ends"
        status = json.loads(replies[rid + 1][4:])
        assert status["homed"] is False and status["moving"] is True
        assert replies[rid][3] == 0 and json.loads(replies[rid][4:]) == {"position": 0}
        assert hub.now_us > 1500 / 5000 * 1e6  # the stepper's time passed
