"""CPython side of the sim link: the socket between the firmware's simulated board
(`firmware/board/sim.py`, MicroPython unix port) and the sim hub. Wire format and time model:
docs/sim-link.md.

`SimHub` accepts the firmware's connection, owns the instrument clock (virtual time, µs),
answers the board's counter/ADC requests from a bench object, and exposes the host side of the
virtual USB as `host_write` (bulk OUT) and `host_read` (bulk IN).
"""
from __future__ import annotations

import json
import os
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

__all__ = ["LinkState", "CounterAnswer", "GatedAnswer", "AdcAnswer", "LinkBench", "SimHub",
           "pack_message", "ENV_ADDRESS"]

ENV_ADDRESS = "CPLSCOPE_SIM_LINK"
LINK_VERSION = 3
#: Instrument time a host command costs to reach an idle firmware (µs): the bulk OUT transfer
#: and the firmware's reaction, fixed so that the wall clock never enters instrument time.
COMMAND_LATENCY_US = 100
WAIT_IDLE = 1  # WAIT flags: nothing to do until the host writes
WAIT_RX = 2  # waiting for the rest of a host frame: deliver host data during the wait
_KEEPALIVE_S = 0.5  # an idle firmware is answered (without advancing time) this often

HELLO, USB_IN, WAIT, STATE, COUNTER_REQ, ADC_REQ = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
GATED_REQ, GATED_DATA = 0x07, 0x87
WELCOME, USB_OUT, IN_ACK, TIME, COUNTER_DATA, ADC_DATA = 0x81, 0x82, 0x83, 0x84, 0x85, 0x86

_HDR = struct.Struct("<BI")
_STATE = struct.Struct("<fffiBBBBff")
_READBACK = struct.Struct("<QIBBHf")
_COUNTER_REQ = struct.Struct("<HHI")
_ADC_REQ = struct.Struct("<fHH")
_COUNTER_HDR = struct.Struct("<IIBBH")
_GATED_REQ = struct.Struct("<HHIIII")
_GATED_HDR = struct.Struct("<IIBBHI")
GATED_EXTERNAL = 1
_ADC_HDR = struct.Struct("<QHHBBH")
RB_PEM_LOCKED, RB_TRIP, RB_USB, RB_TRIP_ADC = 1, 2, 4, 8
MAX_MESSAGE = 1 << 20


def pack_message(tag: int, payload: bytes = b"") -> bytes:
    """One link message: u8 tag, u32 little-endian payload length, payload."""
    return _HDR.pack(tag, len(payload)) + payload


@dataclass(frozen=True)
class LinkState:
    """The instrument state the board reports with every request.

    hv_volts PMT HV in V; pem_drive fraction 0…1; pem_frequency_hz Hz; mech_steps stepper
    position in steps above the home-switch edge (the bench's own calibration turns it into
    nm); wavelength_nm that conversion done by the hub; shutter_open; pem_internal (reference
    source); moving (stepper); guard_max_rate_cps counts/s; guard_max_adc_level 0…4095;
    time_us instrument time at the start of the frame; trigger_on: the board's excitation
    trigger output is pulsing.
    """

    hv_volts: float
    pem_drive: float
    pem_frequency_hz: float
    mech_steps: int
    wavelength_nm: float
    shutter_open: bool
    pem_internal: bool
    moving: bool
    guard_max_rate_cps: float
    guard_max_adc_level: float
    time_us: int
    trigger_on: bool = False


@dataclass
class CounterAnswer:
    """counts: B counts per phase bin; periods K; pem_period_ps mean PEM period (ps);
    duration_us instrument time the frame took; trip_rate_cps the rate that tripped the guard
    (None if it did not)."""

    counts: Sequence[int]
    periods: int
    pem_period_ps: int
    duration_us: int
    saturated: bool = False
    trip_rate_cps: float | None = None


@dataclass
class GatedAnswer(CounterAnswer):
    """A gated counting frame: a :class:`CounterAnswer` whose counts are those inside the gate,
    and the pulses whose gate the frame counted."""

    pulses: int = 0


@dataclass
class AdcAnswer:
    """samples: n 12-bit values; edges_ticks: reference rising edges in ticks after t0;
    t0_ticks board ticks (125 MHz) at sample 0; duration_us instrument time of the block."""

    samples: Sequence[int]
    edges_ticks: Sequence[int]
    t0_ticks: int
    duration_us: int
    clipped: bool = False
    trip_level: int | None = None


class LinkBench(Protocol):
    def counter_frame(self, state: LinkState, bins: int, periods: int) -> CounterAnswer: ...

    def gated_frame(self, state: LinkState, bins: int, periods: int, pulse_period_ns: int,
                    gate_delay_ns: int, gate_width_ns: int, external: bool) -> GatedAnswer:
        """K PEM periods of pulsed excitation: the photons of one gate after each pulse."""
        ...

    def adc_block(self, state: LinkState, sample_rate_hz: float, n_samples: int) -> AdcAnswer: ...

    def pem_status(self, state: LinkState) -> tuple[bool, int]:
        """(locked, period in ps) of the PEM reference."""
        ...


def pack12(samples: Sequence[int]) -> bytes:
    """12-bit samples packed in pairs (docs/protocol.md, ADC_BLOCK)."""
    if len(samples) % 2:
        raise ValueError("the number of samples must be even, got %d" % len(samples))
    out = bytearray(3 * len(samples) // 2)
    for i in range(0, len(samples), 2):
        a, b = samples[i], samples[i + 1]
        j = 3 * i // 2
        out[j] = a & 0xFF
        out[j + 1] = (a >> 8) | ((b & 0x0F) << 4)
        out[j + 2] = b >> 4
    return bytes(out)


class SimHub:
    """Accepts one firmware connection and serves it from a background thread.

    Instrument time advances only by simulated events, never by the wall clock
    (docs/sim-link.md, "Virtual time"): a data request by its frame's duration, a timed WAIT
    by its timeout, a host command reaching an idle firmware by `COMMAND_LATENCY_US`, an idle
    firmware with IN buffers in flight to the end of their transfer. So the same bench seed and
    the same host commands give the same frames, however loaded the machine is.

    address: 'tcp:127.0.0.1:0' (a free port) or 'unix:PATH' (None: a unix socket in a
    temporary directory). speed: None (default) runs everything as fast as it can be computed
    and holds host data while the stepper moves, so that polls during a move change nothing;
    a number paces timed work (moves, homing) at `speed` µs of instrument time per µs of wall
    time and delivers host data during it, for interactive use and tests that must talk to the
    board mid-move (then polls are not reproducible). stall_s: None (default) is lossless
    back-pressure: while the cable is plugged, instrument time does not pass an IN buffer's
    acknowledgement until the host has read it, however long (wall) that takes; a number is
    the old lossy behaviour: give up waiting after `stall_s` s of wall time per request, so a
    host that stops reading makes the board drop data (OVERRUN).
    usb_bytes_per_s: bulk IN throughput (full speed ≈ 1.0e6 B/s). home_at: the board
    step count at which the home switch opens going up (closed below it; the board starts at
    0): the firmware zeroes there (HOME), and there the bench is at `home_nm`. steps_per_nm, home_nm:
    the hub's monochromator calibration for `LinkState.wavelength_nm`.

    accept_restarts: when the firmware closes the link (killed, crashed, watchdog exit), wait
    for it to connect again instead of ending; instrument time carries on. on_link(connected)
    is called when a firmware says HELLO (True) and when its link closes (False); on_time(now_us)
    after instrument time advances. Both run on the hub's threads and must not block.
    """

    def __init__(self, bench: LinkBench, address: str | None = None, *,
                 speed: float | None = None,
                 usb_bytes_per_s: float = 1.0e6, serial: str = "51a000000001",
                 home_at: int = -1500, step_rate_hz: float = 5000.0,
                 steps_per_nm: float = 10.0, home_nm: float = 200.0,
                 start_time_us: int = 0, stall_s: float | None = None,
                 accept_restarts: bool = False,
                 on_link: Callable[[bool], None] | None = None,
                 on_time: Callable[[int], None] | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be None or > 0 (instrument µs per wall µs), got "
                             f"{speed}")
        if stall_s is not None and not stall_s >= 0:
            raise ValueError(f"stall_s must be None (lossless) or ≥ 0 s, got {stall_s}")
        if usb_bytes_per_s <= 0:
            raise ValueError(f"usb_bytes_per_s must be > 0, got {usb_bytes_per_s}")
        self.bench = bench
        self.speed = speed
        self.usb_bytes_per_s = usb_bytes_per_s
        self.serial = serial
        self.home_at = home_at
        self.step_rate_hz = step_rate_hz
        self.steps_per_nm = steps_per_nm
        self.home_nm = home_nm
        self.now_us = start_time_us
        self.stall_s = stall_s
        self.usb_connected = True
        self.accept_restarts = accept_restarts
        self.on_link = on_link
        self.on_time = on_time
        self.connections = 0  # HELLOs received so far
        self.last_state: LinkState | None = None
        self.error: BaseException | None = None
        self._tmpdir: str | None = None
        if address is None:
            self._tmpdir = tempfile.mkdtemp(prefix="cplsim-")
            address = "unix:" + os.path.join(self._tmpdir, "link.sock")
        self._listener, self.address = self._listen(address)
        self._conn: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._cv = threading.Condition()
        self._in: deque[bytes] = deque()  # IN buffers the host has not read yet
        # end of transfer (instrument µs) of every IN buffer not yet acknowledged, oldest
        # first; the first len(_due) - len(_in) of them have been read by the host
        self._due: deque[int] = deque()
        self._last_due = start_time_us
        self._out: list[bytes] = []  # host data not yet delivered to the board
        self._freed = 0  # IN buffers freed by a bus reset, acknowledged at the next answer
        self._stuck = 0  # IN buffers the board submitted while the USB was disconnected
        #: instrument time (µs) of a scheduled cable event (a replug), or None: while the
        #: cable is out and one is scheduled, an idle firmware's time runs to it
        self.wake_at_us: int | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="sim-hub", daemon=True)
        self._connected = threading.Event()

    @staticmethod
    def _listen(address: str) -> tuple[socket.socket, str]:
        if address.startswith("unix:"):
            path = address[5:]
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            return s, address
        text = address[4:] if address.startswith("tcp:") else address
        host, port = text.rsplit(":", 1)
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the sim link listens on 127.0.0.1 only, got {host!r}")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port)))
        s.listen(1)
        return s, "tcp:127.0.0.1:%d" % s.getsockname()[1]

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> "SimHub":
        self._thread.start()
        return self

    def wait_connected(self, timeout: float, count: int = 1) -> None:
        """Wait until `count` firmware connections have said HELLO (s of wall time)."""
        deadline = time.monotonic() + timeout
        while not (self._connected.is_set() and self.connections >= count):
            if time.monotonic() >= deadline or (self._stop and self._thread.is_alive() is False):
                raise TimeoutError(f"the firmware did not connect to {self.address} in "
                                   f"{timeout} s")
            self._connected.wait(0.005)
            if self._connected.is_set() and self.connections < count:
                time.sleep(0.005)

    def set_usb_connected(self, connected: bool) -> None:
        """Plug (True) or unplug (False) the USB cable, as the board sees it.

        Unplugged: the readback's USB bit clears, IN buffers the host has not read stay stuck
        in the board's two slots (so its `usb_write` soon refuses data frames: OVERRUN), and
        data requests no longer wait for the host. Plugging in again is a bus reset: the
        board's stuck IN buffers are freed."""
        with self._cv:
            if connected == self.usb_connected:
                return
            self.usb_connected = connected
            if not connected:
                for _ in range(len(self._in)):  # the unread buffers are the newest
                    self._due.pop()
                self._stuck += len(self._in)
                self._in.clear()
            else:
                self._freed += self._stuck  # acknowledged with the board's next answer
                self._stuck = 0
            self._cv.notify_all()

    def close(self) -> None:
        self._stop = True
        with self._cv:
            self._cv.notify_all()
        for s in (self._conn, self._listener):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._tmpdir:
            try:
                os.unlink(os.path.join(self._tmpdir, "link.sock"))
                os.rmdir(self._tmpdir)
            except OSError:
                pass

    def __enter__(self) -> "SimHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # host side of the virtual USB -------------------------------------------------------------
    def host_write(self, data: bytes) -> None:
        """Bulk OUT: queue `data` for the board. It reaches the firmware with the hub's next
        answer to it (at once while it streams or idles; while the stepper moves only with a
        `speed` set); an idle firmware gets it `COMMAND_LATENCY_US` of instrument time later."""
        with self._cv:
            if self._conn is None:
                raise ConnectionError("the firmware is not connected")
            self._out.append(bytes(data))
            self._cv.notify_all()

    def host_read(self, timeout: float) -> bytes | None:
        """Bulk IN: the next buffer the board submitted, or None after `timeout` s (wall).
        Reading never moves instrument time: the buffer is acknowledged to the board when
        instrument time reaches the end of its transfer."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self._in:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop:
                    return None
                self._cv.wait(left)
            data = self._in.popleft()
            self._cv.notify_all()
        return data

    # serving ----------------------------------------------------------------------------------
    def _send(self, msg: bytes) -> None:
        if self._conn is None:
            raise ConnectionError("the firmware is not connected")
        with self._send_lock:
            self._conn.sendall(msg)

    def _acks_due(self) -> int:
        """With the lock held: how many IN buffers to acknowledge now, i.e. those whose
        transfer has ended by `now_us`. Lossless (stall_s None): wait, however long, until
        the host has read each of them; lossy: at most `stall_s` s of wall time."""
        n = 0
        deadline = None if self.stall_s is None else time.monotonic() + self.stall_s
        while self._due and self._due[0] <= self.now_us and not self._stop:
            if len(self._due) > len(self._in):  # the oldest one has been read
                self._due.popleft()
                n += 1
                continue
            left = _KEEPALIVE_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            self._cv.wait(min(left, _KEEPALIVE_S))
        n += self._freed
        self._freed = 0
        return n

    def _finish(self, deliver: bool) -> None:
        """Before an answer to the board: scheduled faults at the new time, the IN
        acknowledgements that fell due and (if `deliver`) the host data waiting."""
        if self.on_time is not None:
            self.on_time(self.now_us)  # outside the lock: it may plug or unplug the cable
        with self._cv:
            n = self._acks_due()
            out, self._out = (self._out, []) if deliver else ([], self._out)
        if n:
            self._send(pack_message(IN_ACK, struct.pack("<H", n)))
        for data in out:
            self._send(pack_message(USB_OUT, data))

    def _recv_exact(self, n: int) -> bytes:
        assert self._conn is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the firmware closed the link")
            buf += chunk
        return bytes(buf)

    def _serve(self) -> None:
        try:
            while not self._stop:
                conn, _ = self._listener.accept()
                if conn.family == socket.AF_INET:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._conn = conn
                try:
                    while not self._stop:
                        tag, n = _HDR.unpack(self._recv_exact(_HDR.size))
                        if n > MAX_MESSAGE:
                            raise ValueError(f"link message 0x{tag:02x} of {n} bytes is too long")
                        self._handle(tag, self._recv_exact(n))
                except (OSError, ConnectionError):
                    if self._stop or not self.accept_restarts:
                        raise
                    self._link_lost()
        except (OSError, ConnectionError) as e:
            if not self._stop:
                self.error = e
        except BaseException as e:  # a bench error must surface in the test, not vanish
            self.error = e
        finally:
            self._stop = True
            with self._cv:
                self._cv.notify_all()

    def _link_lost(self) -> None:
        """The firmware went away: forget its buffers and wait for the next one."""
        with self._cv:
            self._connected.clear()
            conn, self._conn = self._conn, None
            self._in.clear()
            self._due.clear()
            self._last_due = self.now_us
            self._out.clear()
            self._freed = 0
            self._stuck = 0
            self._cv.notify_all()
        if conn is not None:
            conn.close()
        if self.on_link is not None:
            self.on_link(False)

    def _send_counts(self, tag: int, a: CounterAnswer, bins: int, header: bytes) -> None:
        """Answer a counter request: the frame's instrument time passes, then its readback,
        ``header`` and the bins' counts go to the firmware."""
        if len(a.counts) != bins:
            raise ValueError(f"bench returned {len(a.counts)} counts for {bins} bins")
        self.now_us += int(a.duration_us)
        self._finish(deliver=True)
        self._send(pack_message(tag, self._readback(a.trip_rate_cps) + header
                                + struct.pack("<%dI" % bins, *a.counts)))

    def _state(self, payload: bytes) -> LinkState:
        hv, drive, hz, steps, shutter, internal, moving, trigger, rate, level = \
            _STATE.unpack_from(payload, 0)
        st = LinkState(hv, drive, hz, steps, self.home_nm + steps / self.steps_per_nm,
                       bool(shutter), bool(internal), bool(moving), rate, level, self.now_us,
                       bool(trigger))
        self.last_state = st
        return st

    def _readback(self, trip: float | None = None, adc_trip: bool = False) -> bytes:
        locked, period_ps = (False, 0)
        if self.last_state is not None:
            locked, period_ps = self.bench.pem_status(self.last_state)
        flags = (RB_PEM_LOCKED if locked else 0) | (RB_USB if self.usb_connected else 0)
        if trip is not None:
            flags |= RB_TRIP | (RB_TRIP_ADC if adc_trip else 0)
        return _READBACK.pack(self.now_us, period_ps, flags, 0, 0, trip or 0.0)

    def _handle(self, tag: int, p: bytes) -> None:
        if tag == HELLO:
            hello = json.loads(p)
            if hello.get("link") != LINK_VERSION:
                raise ValueError(f"firmware speaks sim link {hello.get('link')}, "
                                 f"hub speaks {LINK_VERSION}")
            welcome = {"serial": self.serial, "time_us": self.now_us, "home_at": self.home_at,
                       "step_rate_hz": self.step_rate_hz}
            self._send(pack_message(WELCOME, json.dumps(welcome).encode()))
            self.connections += 1
            self._connected.set()
            if self.on_link is not None:
                self.on_link(True)
        elif tag == USB_IN:
            with self._cv:
                if self.usb_connected:
                    self._in.append(p)
                    # bulk IN transfers one buffer after the other at usb_bytes_per_s
                    due = (max(self.now_us, self._last_due)
                           + int(len(p) * 1e6 / self.usb_bytes_per_s))
                    self._due.append(due)
                    self._last_due = due
                else:
                    self._stuck += 1  # nobody takes it until the next bus reset
                self._cv.notify_all()
        elif tag == STATE:
            self._state(p)
        elif tag == WAIT:
            self._wait(*struct.unpack("<II", p))
        elif tag == COUNTER_REQ:
            st = self._state(p)
            bins, _r, periods = _COUNTER_REQ.unpack_from(p, _STATE.size)
            a = self.bench.counter_frame(st, bins, periods)
            self._send_counts(COUNTER_DATA, a, bins, _COUNTER_HDR.pack(
                a.periods, a.pem_period_ps, int(a.saturated), 0, 0))
        elif tag == GATED_REQ:
            st = self._state(p)
            bins, flags, periods, period_ns, delay_ns, width_ns = _GATED_REQ.unpack_from(
                p, _STATE.size)
            g = self.bench.gated_frame(st, bins, periods, period_ns, delay_ns, width_ns,
                                       bool(flags & GATED_EXTERNAL))
            self._send_counts(GATED_DATA, g, bins, _GATED_HDR.pack(
                g.periods, g.pem_period_ps, int(g.saturated), 0, 0, g.pulses))
        elif tag == ADC_REQ:
            st = self._state(p)
            rate, n, _r = _ADC_REQ.unpack_from(p, _STATE.size)
            b = self.bench.adc_block(st, rate, n)
            if len(b.samples) != n:
                raise ValueError(f"bench returned {len(b.samples)} samples for {n}")
            e = list(b.edges_ticks)
            edges = b""
            if e:
                edges = struct.pack("<I", e[0]) + struct.pack(
                    "<%dH" % (len(e) - 1), *(e[i + 1] - e[i] for i in range(len(e) - 1)))
            self.now_us += int(b.duration_us)
            self._finish(deliver=True)
            body = (self._readback(b.trip_level, adc_trip=True)
                    if b.trip_level is not None else self._readback())
            body += _ADC_HDR.pack(b.t0_ticks, n, len(e), int(b.clipped), 0, 0) + edges
            body += pack12(b.samples)
            self._send(pack_message(ADC_DATA, body))
        else:
            raise ValueError(f"unknown link message 0x{tag:02x} from the board")

    def _wait(self, timeout_us: int, flags: int) -> None:
        """A WAIT: instrument time passes by simulated events only (docs/sim-link.md).

        Timed work (flags without WAIT_IDLE: the stepper moves, an acquisition runs, a host
        frame is incomplete): advance the whole timeout at once, paced by `speed` if set.
        Idle (WAIT_IDLE): advance to the end of the oldest IN transfer in flight, else deliver
        host data `COMMAND_LATENCY_US` later, else, while the cable is out and a replug is
        scheduled, advance the timeout; otherwise hold (wall time) without advancing."""
        if flags & WAIT_IDLE:
            deliver = self._idle(timeout_us)
        else:
            if self.speed is not None:
                time.sleep(timeout_us / self.speed / 1e6)
            self.now_us += timeout_us
            deliver = bool(flags & WAIT_RX) or self.speed is not None
        self._finish(deliver)
        self._send(pack_message(TIME, self._readback()))

    def _idle(self, timeout_us: int) -> bool:
        """Advance time for an idle firmware; True if the host data is to be delivered."""
        t0 = time.monotonic()
        with self._cv:
            while not self._stop:
                if self._freed:
                    return False
                if self._due:  # IN buffers in flight: their transfer ends
                    self.now_us = max(self.now_us, self._due[0])
                    return False
                if self._out:
                    self.now_us += COMMAND_LATENCY_US
                    return True
                if not self.usb_connected and self.wake_at_us is not None:
                    self.now_us += max(1, min(timeout_us, self.wake_at_us - self.now_us))
                    return False
                left = _KEEPALIVE_S - (time.monotonic() - t0)
                if left <= 0:
                    return False  # a keep-alive answer: the firmware's loop runs again
                self._cv.wait(left)
        return False
