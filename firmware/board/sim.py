"""Simulated board for the MicroPython unix port: one socket to the CPython sim hub
(host/cplscope/sim/link.py), which owns the instrument clock, the optical bench and the host
side of the virtual USB. Message formats: docs/sim-link.md."""
import json
import os
import select
import socket
import struct
import sys
import time

from board.base import (AdcBlock, Board as BaseBoard, CounterFrame, RESET_POWER_ON,
                        RESET_WATCHDOG, TICKS_MASK)
from board.gating import GateTiming

ENV_ADDRESS = "CPLSCOPE_SIM_LINK"
LINK_VERSION = 3

# board → hub
HELLO = 0x01
USB_IN = 0x02
WAIT = 0x03
STATE = 0x04
COUNTER_REQ = 0x05
ADC_REQ = 0x06
GATED_REQ = 0x07
# hub → board
WELCOME = 0x81
USB_OUT = 0x82
IN_ACK = 0x83
TIME = 0x84
COUNTER_DATA = 0x85
ADC_DATA = 0x86
GATED_DATA = 0x87

STATE_FMT = "<fffiBBBBff"  # hv_volts, pem_drive, pem_hz, mech_steps, shutter, internal,
STATE_SIZE = 28            # moving, trigger on, guard rate (cps), guard ADC level
READBACK_FMT = "<QIBBHf"   # now_us, pem_period_ps, flags, reserved, reserved, trip_value
READBACK_SIZE = 20
RB_PEM_LOCKED = 1
RB_TRIP = 2
RB_USB = 4
RB_TRIP_ADC = 8
COUNTER_HDR = "<IIBBH"  # periods, pem_period_ps, saturated, reserved, reserved
GATED_HDR = "<IIBBHI"  # periods, pem_period_ps, saturated, reserved, reserved, pulses
GATED_REQ_FMT = "<HHIIII"  # bins, flags, periods, pulse period, gate delay, gate width (ns)
GATED_EXTERNAL = 1  # GATED_REQ flag: an external laser pulses (not the board's trigger)
CLOCK_HZ = 125_000_000  # the clock the sim board quantises gate timing to (an RP2040's)
ADC_HDR = "<8sHHBBH"  # t0_ticks (u64 LE), n_samples, n_edges, clipped, reserved, reserved
WAIT_IDLE = 1  # WAIT flags: nothing to do until the host writes (the hub may hold the clock)
WAIT_RX = 2  # waiting for the rest of a host frame: deliver host data during the wait
IN_FLIGHT_MAX = 2  # double-buffered bulk IN, as on the Pico
WATCHDOG_EXIT = 75


def parse_address(text: str):
    """'tcp:HOST:PORT', 'HOST:PORT', 'unix:PATH' or a PATH → (family, sockaddr)."""
    if text.startswith("unix:") or text.startswith("/"):
        path = text[5:] if text.startswith("unix:") else text
        af_unix = getattr(socket, "AF_UNIX", 1)  # the unix port has it; rp2's stubs do not
        return af_unix, struct.pack("H", af_unix) + path.encode() + b"\0"
    if text.startswith("tcp:"):
        text = text[4:]
    host, port = text.rsplit(":", 1)
    return socket.AF_INET, socket.getaddrinfo(host, int(port))[0][-1]


class Board(BaseBoard):
    name = "sim"
    tick_hz = 125_000_000
    max_hv_volts = 1250.0
    max_bins = 64
    counter_bins = (2, 4, 8, 16, 32, 64)  # exactly the rp2 board's set
    max_block_samples = 4096
    max_sample_rate_hz = 250_000.0  # as on the rp2 board
    trigger_sources = ("internal", "external")  # as on the rp2 board
    max_gates = 32

    @classmethod
    def from_argv(cls, argv) -> "Board":
        addr = argv[1] if len(argv) > 1 else os.getenv(ENV_ADDRESS)
        if not addr:
            raise ValueError("sim board: give the hub address as the first argument or in $%s "
                             "(tcp:127.0.0.1:PORT or unix:/path)" % ENV_ADDRESS)
        return cls(addr)

    def __init__(self, address: str) -> None:
        fam, sa = parse_address(address)
        self._sock = socket.socket(fam, socket.SOCK_STREAM)
        self._sock.connect(sa)
        if fam == socket.AF_INET:
            self._sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: no Nagle stalls
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)
        self._hdr = bytearray(5)
        self._hdr_mv = memoryview(self._hdr)
        self._msg = bytearray(16 + 8192 + 6144 + 64)
        self._msg_mv = memoryview(self._msg)
        self._rb = bytearray(READBACK_SIZE)
        self._req = bytearray(5 + STATE_SIZE + 20)
        self._req8 = memoryview(self._req)[:5 + STATE_SIZE + 8]
        # GateTiming of the next counter_start, None: continuous counting
        self._gating: "GateTiming | None" = None
        self._gate_ns = (0, 0, 0, 0)
        self._row_ns = [0]
        self._gate_row = 0
        self._trigger = False
        self._wait_msg = memoryview(self._req)[:13]
        self._rx = bytearray(32768)  # USB OUT bytes not yet read by the core
        self._rx_mv = memoryview(self._rx)
        self._rx_n = 0
        self._rx_early = False  # a wait returned at once for host data not read since
        self._in_flight = 0
        self._now = 0
        self._pem_period = 0
        self._pem_locked = False
        self._usb = True
        self.cf = CounterFrame(self.max_bins)
        self.blk = AdcBlock(self.max_block_samples, 4096)
        self._bins = 16
        self._periods = 500
        self._counting = False
        self._rate = 250000.0
        self._block = 1024
        self._adc = False
        self._hv = 0.0
        self._shutter = False
        self._pem_source = 0
        self._pem_hz = 50000.0
        self._drive = 0.0
        self._guard_rate = 1e9
        self._guard_level = 4095
        self._tripped = False
        self._reason = ""
        self._mv_from = 0
        self._mv_target = 0
        self._mv_t0 = 0
        self._wd_ms = 0
        self._wd_fed = time.ticks_ms()
        self._send(HELLO, json.dumps({"link": LINK_VERSION, "board": self.name}).encode())
        tag, n = self._read_msg()
        if tag != WELCOME:
            raise OSError("sim hub answered HELLO with message 0x%02x" % tag)
        w = json.loads(bytes(self._msg_mv[:n]))
        self._serial = w["serial"]
        self._now = w["time_us"]
        self._home_at = w["home_at"]
        self._step_rate = float(w["step_rate_hz"])
        self._cause = RESET_WATCHDOG if w.get("reset_cause") == "watchdog" else RESET_POWER_ON

    # link plumbing ------------------------------------------------------------------------
    def _send(self, tag: int, payload) -> None:
        struct.pack_into("<BI", self._hdr, 0, tag, len(payload))
        self._sock.write(self._hdr)
        if len(payload):
            self._sock.write(payload)

    def _read_exact(self, mv) -> None:
        got = 0
        n = len(mv)
        while got < n:
            k = self._sock.readinto(mv[got:])
            if not k:
                raise OSError("sim hub closed the link")
            got += k

    def _read_msg(self):
        """Read one message into self._msg; handle the asynchronous ones. → (tag, length)."""
        self._read_exact(self._hdr_mv)
        tag, n = struct.unpack_from("<BI", self._hdr, 0)
        if tag == USB_OUT:
            if self._rx_n + n > len(self._rx):
                # On a board the host controller holds OUT data the device NAKs until the
                # core reads it; the sim board holds it here instead (only a host that
                # floods the board gets here, never the streaming path).
                grown = bytearray(max(2 * len(self._rx), self._rx_n + n))
                grown[:self._rx_n] = self._rx_mv[:self._rx_n]
                self._rx = grown
                self._rx_mv = memoryview(grown)
            self._read_exact(self._rx_mv[self._rx_n:self._rx_n + n])
            self._rx_n += n
        else:
            self._read_exact(self._msg_mv[:n])
            if tag == IN_ACK:
                self._in_flight -= struct.unpack_from("<H", self._msg, 0)[0]
        return tag, n

    def _pump(self) -> None:
        while self._poll.poll(0):
            self._read_msg()

    def _await(self, want: int) -> int:
        t0 = time.ticks_ms()
        while True:
            tag, n = self._read_msg()
            if tag == want:
                self._readback()
                # Time the hub held this board (waiting for the host to write or to read,
                # docs/sim-link.md) is not time the interpreter hung: the watchdog skips it.
                held = time.ticks_diff(time.ticks_ms(), t0)
                if held > 50:
                    self._wd_fed = time.ticks_add(self._wd_fed, held)
                return n

    def _readback(self) -> None:
        now, pem_ps, flags, _r1, _r2, value = struct.unpack_from(READBACK_FMT, self._msg, 0)
        self._now = now
        self._pem_period = pem_ps
        self._pem_locked = bool(flags & RB_PEM_LOCKED)
        self._usb = bool(flags & RB_USB)
        if flags & RB_TRIP and not self._tripped:
            self._tripped = True
            if flags & RB_TRIP_ADC:
                self._reason = "ADC level %d > limit %d" % (value, self._guard_level)
            else:
                self._reason = "PMT rate %.3g cps > limit %.3g cps" % (value, self._guard_rate)
            self._hv = 0.0  # what the hardware guard does, here at once
            self._shutter = False
            self._trigger = False

    def _state_into(self, buf, tag: int, extra: int) -> None:
        struct.pack_into("<BI", buf, 0, tag, STATE_SIZE + extra)
        struct.pack_into(STATE_FMT, buf, 5, self._hv, self._drive, self._pem_hz,
                         self._here() - self._home_at, self._shutter, self._pem_source,
                         self.moving(), self._trigger, self._guard_rate, self._guard_level)

    def _send_state(self) -> None:
        self._state_into(self._req, STATE, 0)
        self._sock.write(memoryview(self._req)[:5 + STATE_SIZE])

    # identity, clock ----------------------------------------------------------------------
    def serial(self) -> str:
        return self._serial

    def reset_cause(self) -> int:
        return self._cause

    def ticks_us(self) -> int:
        return self._now & TICKS_MASK

    def wait(self, timeout_us: int) -> None:
        # A timed wait with the stepper idle and no acquisition running is the core waiting
        # for the rest of a host frame: the hub delivers host data during it.
        busy = self.moving() or self._counting or self._adc
        self._wait(timeout_us, 0 if busy else WAIT_RX)

    def idle(self, timeout_us: int) -> None:
        self._wait(timeout_us, WAIT_IDLE)

    def _wait(self, timeout_us: int, flags: int) -> None:
        self._check_watchdog()
        self._pump()
        if self._rx_n and not self._rx_early:
            # host data waits: return at once, once, for the core to read it. A core that
            # waits again without reading it is busy in a command (HOME): time must pass,
            # or its wait for the stepper would never end.
            self._rx_early = True
            return
        struct.pack_into("<BIII", self._req, 0, WAIT, 8, timeout_us, flags)
        self._sock.write(self._wait_msg)
        self._await(TIME)

    # counter ------------------------------------------------------------------------------
    def counter_configure(self, bins: int, periods: int) -> None:
        if bins not in self.counter_bins:
            raise ValueError("bins must be one of %s (as on the rp2 board), got %d"
                             % (", ".join(str(n) for n in self.counter_bins), bins))
        self._bins = bins
        self._periods = periods
        self.cf.set_bins(bins)

    def counter_start(self) -> None:
        self._counting = True
        self._gate_row = 0

    def counter_stop(self) -> None:
        self._counting = False

    # gated counting ---------------------------------------------------------------------
    def gate_configure(self, trigger: str, pulse_period_ns: int, trigger_width_ns: int,
                       gate_delay_ns: int, gate_width_ns: int, gates: int) -> tuple:
        if trigger not in self.trigger_sources:
            raise ValueError("trigger must be internal or external, got %r" % trigger)
        t = GateTiming(CLOCK_HZ, trigger, pulse_period_ns, trigger_width_ns, gate_delay_ns,
                       gate_width_ns, gates)
        self._gating = t
        self._gate_ns = t.ns()
        self._row_ns = [t.row_delay_ns(j) for j in range(gates)]
        return self._gate_ns

    def gate_disable(self) -> None:
        self._gating = None

    def trigger_enable(self, on: bool) -> None:
        self._trigger = bool(on) and self._shutter
        self._send_state()

    def trigger_on(self) -> bool:
        return self._trigger

    def _gated_poll(self):
        t = self._gating
        j = self._gate_row
        req = self._req
        self._state_into(req, GATED_REQ, 20)
        q = self._gate_ns
        struct.pack_into(GATED_REQ_FMT, req, 5 + STATE_SIZE, self._bins,
                         GATED_EXTERNAL if t.trigger == "external" else 0, self._periods,
                         q[0], self._row_ns[j], q[3])
        self._sock.write(req)
        self._await(GATED_DATA)
        f = self.cf
        periods, pem_ps, sat, _a, _b, pulses = struct.unpack_from(GATED_HDR, self._msg,
                                                                  READBACK_SIZE)
        off = READBACK_SIZE + 16
        f.counts[:] = self._msg_mv[off:off + 4 * self._bins]
        f.periods = periods
        f.pem_period_ps = pem_ps
        f.bin_span = 0
        f.saturated = bool(sat)
        f.overload = self._tripped
        f.pem_locked = self._pem_locked
        f.ticks_us = self._now & TICKS_MASK
        f.gate = j
        f.pulses = pulses
        f.gate_delay_ns = self._row_ns[j]
        self._gate_row = j + 1 if j + 1 < t.gates else 0
        return f

    def counter_poll(self):
        if not self._counting:
            return None
        if self._gating is not None:
            return self._gated_poll()
        req = self._req
        self._state_into(req, COUNTER_REQ, 8)
        struct.pack_into("<HHI", req, 5 + STATE_SIZE, self._bins, 0, self._periods)
        self._sock.write(self._req8)
        self._await(COUNTER_DATA)
        f = self.cf
        periods, pem_ps, sat, _a, _b = struct.unpack_from(COUNTER_HDR, self._msg, READBACK_SIZE)
        off = READBACK_SIZE + 12
        f.counts[:] = self._msg_mv[off:off + 4 * self._bins]
        f.periods = periods
        f.pem_period_ps = pem_ps
        f.bin_span = 0  # the bench models bins over the whole PEM period
        f.saturated = bool(sat)
        f.overload = self._tripped
        f.pem_locked = self._pem_locked
        f.ticks_us = self._now & TICKS_MASK
        return f

    def data_lost(self) -> int:
        return 0  # the hub holds the board instead of overwriting: never late

    # ADC ----------------------------------------------------------------------------------
    def adc_configure(self, sample_rate_hz: float, block_samples: int) -> None:
        self._rate = sample_rate_hz
        self._block = block_samples

    def adc_start(self) -> None:
        self._adc = True

    def adc_stop(self) -> None:
        self._adc = False

    def adc_poll(self):
        if not self._adc:
            return None
        req = self._req
        self._state_into(req, ADC_REQ, 8)
        struct.pack_into("<fHH", req, 5 + STATE_SIZE, self._rate, self._block, 0)
        self._sock.write(self._req8)
        n = self._await(ADC_DATA)
        b = self.blk
        m = self._msg_mv
        o = READBACK_SIZE
        b.t0[:] = m[o:o + 8]
        _t0, ns, ne, clipped, _r, _r2 = struct.unpack_from(ADC_HDR, self._msg, o)
        o += 16
        ebytes = 4 + 2 * (ne - 1) if ne else 0
        b.edge_buf[:ebytes] = m[o:o + ebytes]
        b.edges = memoryview(b.edge_buf)[:ebytes]
        o += ebytes
        sbytes = 3 * ns // 2
        if o + sbytes != n:
            raise OSError("sim hub sent a malformed ADC block")
        b.sample_buf[:sbytes] = m[o:o + sbytes]
        b.samples = memoryview(b.sample_buf)[:sbytes]
        b.n_samples = ns
        b.n_edges = ne
        b.clipped = bool(clipped)
        b.overload = self._tripped
        b.pem_locked = self._pem_locked
        b.ticks_us = self._now & TICKS_MASK
        return b

    # PEM ----------------------------------------------------------------------------------
    def pem_configure(self, source: str, frequency_hz: float) -> None:
        self._pem_source = 1 if source == "internal" else 0
        self._pem_hz = frequency_hz
        self._send_state()

    def pem_set_drive(self, fraction: float) -> None:
        self._drive = fraction
        self._send_state()

    def pem_period_ps(self) -> int:
        return self._pem_period

    def pem_locked(self) -> bool:
        self._pump()
        return self._pem_locked

    # stepper: moves at step_rate_hz in instrument time ------------------------------------
    def _here(self) -> int:
        d = self._mv_target - self._mv_from
        done = int((self._now - self._mv_t0) * self._step_rate / 1_000_000)
        if done >= abs(d):
            return self._mv_target
        return self._mv_from + (done if d > 0 else -done)

    def step(self, n: int) -> None:
        self._mv_from = self._here()
        self._mv_t0 = self._now
        self._mv_target += n
        self._send_state()

    def position(self) -> int:
        return self._here()

    def moving(self) -> bool:
        return self._here() != self._mv_target

    def home_switch(self) -> bool:
        # open from `home_at` up: the firmware zeroes where the switch opens going up
        # (cpl.mono), so that step is mechanical step 0, the hub's home_nm
        return self._here() < self._home_at

    # HV, shutter, guard -------------------------------------------------------------------
    def hv_set(self, volts: float) -> None:
        self._hv = volts
        self._send_state()

    def hv_read(self) -> float:
        return self._hv

    def shutter_set(self, is_open: bool) -> None:
        self._shutter = is_open
        if not is_open:
            self._trigger = False  # the trigger never pulses behind a closed shutter
        self._send_state()

    def shutter_open(self) -> bool:
        return self._shutter

    def guard_arm(self, max_count_rate_cps: float, max_adc_level: int,
                  max_high_fraction: float = 0.5) -> None:
        # the simulated bench has counts, not a photon line with a level: no high-time trip
        self._guard_rate = max_count_rate_cps
        self._guard_level = max_adc_level
        self._send_state()

    def guard_tripped(self) -> bool:
        return self._tripped

    def guard_reason(self) -> str:
        return self._reason

    def guard_reset(self) -> None:
        self._tripped = False
        self._reason = ""

    # USB ----------------------------------------------------------------------------------
    def usb_read_into(self, buf) -> int:
        self._rx_early = False
        self._pump()
        n = min(len(buf), self._rx_n)
        if n:
            buf[:n] = self._rx_mv[:n]
            rest = self._rx_n - n
            self._rx[:rest] = self._rx_mv[n:self._rx_n]
            self._rx_n = rest
        return n

    def usb_write(self, buf) -> bool:
        if self._in_flight >= IN_FLIGHT_MAX:
            self._pump()
            if self._in_flight >= IN_FLIGHT_MAX:
                return False
        self._in_flight += 1
        self._send(USB_IN, buf)
        return True

    def usb_connected(self) -> bool:
        return self._usb

    # watchdog: wall clock, since it guards the interpreter, not the optics ------------------
    def watchdog_start(self, timeout_ms: int) -> None:
        self._wd_ms = timeout_ms
        self._wd_fed = time.ticks_ms()

    def watchdog_feed(self) -> None:
        self._check_watchdog()
        self._wd_fed = time.ticks_ms()

    def _check_watchdog(self) -> None:
        if self._wd_ms and time.ticks_diff(time.ticks_ms(), self._wd_fed) > self._wd_ms:
            print("sim board: watchdog reset (not fed for %d ms)" % self._wd_ms)
            sys.exit(WATCHDOG_EXIT)

    def self_test(self) -> dict:
        return {"sim_link": True}
