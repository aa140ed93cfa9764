"""The whole simulated instrument through pyusb: the launcher's hub and MicroPython firmware
processes, the virtual-USB backend, cplscope.protocol on top. Commands go out as bulk OUT
transfers, frames come back as bulk IN transfers; faults, unplugging and a firmware restart
are seen as a host sees them on a real board."""
from __future__ import annotations

import errno
import math
import time

import pytest
import usb.core
import usb.util

from cplscope.protocol import usb_ids
from cplscope.protocol import Counts, Event, EventCode, Opcode, Reply, StreamDecoder, \
    encode_command
from cplscope.sim.launcher import launch
from cplscope.board.transport import claim_vendor_interface

K = 50  # PEM periods per frame: 1 ms frames at 50 kHz, 1000 frames/s of instrument time
READ = 16384


def wait_until(fn, timeout=10.0, what="a condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class UsbHost:
    """A minimal host on pyusb: finds the vendor interface, sends commands, decodes frames."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.dec = StreamDecoder()
        self.rid = 0
        self.seq = 0
        self.seen: list = []  # every message decoded
        self.attach()

    def attach(self) -> None:
        self.dev = wait_until(self.sim.find_device, what="the board on the bus")
        _, self.ep_out, self.ep_in = claim_vendor_interface(self.dev)

    def send(self, op: int, args: dict | None = None) -> int:
        self.rid += 1
        self.ep_out.write(encode_command(self.rid, op, args, self.seq), 1000)
        self.seq += 1
        return self.rid

    def read(self, timeout_ms: int = 200) -> list:
        try:
            msgs = self.dec.feed(self.ep_in.read(READ, timeout_ms))
        except usb.core.USBTimeoutError:
            return []
        self.seen += msgs
        return msgs

    def call(self, op: int, args: dict | None = None, timeout: float = 10.0) -> dict:
        rid = self.send(op, args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.read():
                if isinstance(m, Reply) and m.request_id == rid:
                    return m.raise_for_status()
        raise AssertionError(f"no reply to {Opcode(op).name}")

    def counts(self, n: int, timeout: float = 30.0) -> list[Counts]:
        out: list[Counts] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            assert time.monotonic() < deadline, f"{len(out)} of {n} COUNTS frames"
            out += [m for m in self.read() if isinstance(m, Counts)]
        return out

    def start_counting(self, bins: int = 16, periods: int = K) -> None:
        self.call(Opcode.CONFIGURE, {"mode": "counting", "bins": bins, "periods": periods})
        self.call(Opcode.START)

    def stop(self) -> None:
        self.call(Opcode.STOP)


@pytest.fixture(scope="module")
def sim():
    with launch("R-Cs4PbBr6", seed=3, speed=50.0, timeout=20) as s:
        yield s


@pytest.fixture
def host(sim):
    sim.set_faults(corrupt=0, drop=0, stall=0, disconnect_at=None, reconnect_after=None)
    sim.plug(True)
    h = UsbHost(sim)
    yield h
    sim.set_faults(corrupt=0, drop=0, stall=0, disconnect_at=None, reconnect_after=None)
    sim.plug(True)
    try:
        UsbHost(sim).call(Opcode.STOP)
    except (AssertionError, usb.core.USBError):
        pass


def test_identify_and_strings(sim, host):
    r = host.call(Opcode.IDENTIFY)
    assert r["board"] == "sim" and r["protocol_version"] == 1 and r["serial"] == sim.serial
    assert host.dev.serial_number == sim.serial
    assert usb.util.get_string(host.dev, host.dev.iProduct) == usb_ids.PRODUCT
    assert host.dec.stats.rejected == 0


def test_counting_stream_and_truth(sim, host):
    t0 = sim.instrument_time_s()
    host.start_counting()
    frames = host.counts(200)
    host.stop()
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + 200))  # no frame lost, none out of order
    ts = [f.timestamp_us for f in frames]
    assert {b - a for a, b in zip(ts, ts[1:])} == {K * 20}  # K periods of 20 µs each
    assert sim.instrument_time_s() >= t0 + 200 * K * 20e-6
    assert all(f.n_bins == 16 and f.periods == K for f in frames)
    assert sim.truth(438.0)["g_lum"] == pytest.approx(6e-4, rel=0.05)


def binomial_ok(hits: int, n: int, p: float) -> bool:
    return abs(hits - n * p) < 4 * math.sqrt(n * p * (1 - p)) + 1


def test_drop_and_corrupt_show_as_gaps_and_rejections(sim, host):
    host.start_counting()
    first = host.counts(20)[0].seq
    log0 = sim.fault_log()
    stats0 = sim.stats()
    sim.set_faults(drop=0.1, corrupt=0.1)
    got = host.counts(500)
    sim.set_faults(drop=0, corrupt=0)
    got += host.counts(30)  # clean frames after the faults: every gap is closed
    host.stop()
    stats1 = sim.stats()
    log1 = sim.fault_log()
    dropped = set(log1["dropped_seqs"]) - set(log0["dropped_seqs"])
    corrupted = set(log1["corrupted_seqs"]) - set(log0["corrupted_seqs"])
    seen = {f.seq for f in got}
    span = range(first, max(seen) + 1)
    lost = {s for s in span if s not in seen} - set(range(first, first + 20))
    assert lost == dropped | corrupted
    n = stats1["frames"] - stats0["frames"]
    assert binomial_ok(len(dropped), n, 0.1) and binomial_ok(len(corrupted), n * 0.9, 0.1)
    assert host.dec.stats.rejected >= len(corrupted) > 0
    assert host.dec.stats.missing == len(lost)


def test_disconnect_at_instrument_time_and_reconnect(sim, host):
    host.start_counting()
    host.counts(5)
    t_cut = sim.instrument_time_s() + 0.3
    sim.set_faults(disconnect_at=t_cut, reconnect_after=0.5)
    with pytest.raises(usb.core.USBError) as e:
        while True:
            host.dec.feed(host.ep_in.read(READ, 1000))
    assert e.value.errno == errno.ENODEV
    last_seq = host.dec.last_seq
    old_address = host.dev.address
    host.attach()  # waits until the cable is back
    assert sim.instrument_time_s() >= t_cut + 0.5 - 1e-6   # instrument time counts whole µs
    assert host.dev.address != old_address
    frames = host.counts(5)
    assert frames[0].seq > last_seq + 1  # frames made while unplugged are gone
    host.stop()
    assert host.dec.stats.restarts == 0  # the firmware kept running
    assert sim.stats()["unplugs"] >= 1


def test_stall_and_clear_halt_on_the_real_stream(sim, host):
    host.start_counting()
    host.counts(5)
    sim.set_faults(stall=1.0)
    with pytest.raises(usb.core.USBError) as e:
        host.read()
    assert e.value.errno == errno.EPIPE
    sim.set_faults(stall=0.0)
    host.dev.clear_halt(host.ep_in)
    more = host.counts(20)
    host.stop()
    assert host.dec.stats.missing == 0 and more  # a halt loses no data


def test_firmware_kill_and_restart(sim, host):
    host.call(Opcode.IDENTIFY)
    sim.kill_firmware()
    with pytest.raises(usb.core.USBError) as e:
        host.ep_in.read(READ, 500)
    assert e.value.errno == errno.ENODEV
    assert sim.find_device() is None
    sim.restart_firmware()
    host.attach()
    before = len(host.seen)
    assert host.call(Opcode.IDENTIFY)["serial"] == sim.serial
    assert host.dec.stats.restarts == 1
    first = host.seen[before]
    assert isinstance(first, Event) and first.code == EventCode.BOOT and first.seq == 0


def test_same_seed_same_faults():
    def lost_seqs(seed):
        with launch(seed=seed, faults={"drop": 0.3}) as s:
            h = UsbHost(s)
            # an idle board sends nothing by itself (its clock holds): stream 60 frames. The
            # START itself may be dropped on the way (faults hit both directions): send it
            # again, flagged RETRY, until frames come
            rid = h.send(Opcode.START, {"frames": 60})
            deadline = time.monotonic() + 10
            resend = time.monotonic() + 0.5
            while h.dec.last_seq is None or h.dec.last_seq < 40:
                started = any(isinstance(m, Counts) for m in h.seen)
                if not started and time.monotonic() > resend:
                    h.ep_out.write(encode_command(rid, Opcode.START, {"frames": 60}, h.seq,
                                                  retry=True), 1000)
                    h.seq += 1
                    resend = time.monotonic() + 0.5
                h.read()
                assert time.monotonic() < deadline
            return [q for q in s.fault_log()["dropped_seqs"] if q < 40]

    a, b, c = lost_seqs(7), lost_seqs(7), lost_seqs(8)
    assert a == b and a != c and len(a) > 3
