"""A deterministic in-memory board for the core's unit tests (runs in MicroPython)."""
from board.base import Board, CounterFrame, AdcBlock, TICKS_MASK, RESET_POWER_ON
from board.gating import GateTiming


class FakeBoard(Board):
    name = "fake"
    tick_hz = 125_000_000
    max_hv_volts = 1100.0
    max_bins = 64
    max_block_samples = 4096
    max_sample_rate_hz = 250_000.0
    trigger_sources = ("internal", "external")
    max_gates = 32

    def __init__(self, home_at: int = -1234, cause: int = RESET_POWER_ON) -> None:
        self.t = 0
        self.cause = cause
        self.cf = CounterFrame(64)
        self.blk = AdcBlock(4096, 2000)
        self.counting = False
        self.adc_on = False
        self.bins = 0
        self.periods = 0
        self.frames_ready = -1  # -1: a frame at every poll; n >= 0: n more frames
        self.pem_period = 20_000_000
        self.bin_span = 0  # COUNTS bin_span the counter reports (1/65536 of the period)
        self.lost = 0  # frames or blocks "collected too late", reported by data_lost()
        self.locked = True
        self.drive = 0.0
        self.pem_cfg = None
        self.target = 0  # steps issued
        self.pos = 0  # where the motor is
        self.home_at = home_at  # board position where the home switch closes (<=)
        self.steps = []  # every step(n) call
        self.hv = 0.0
        self.shutter = False
        self.tripped = False
        self.reason = ""
        self.guard = None
        self.rx = bytearray()
        self.host_reading = True
        self.written = []  # frames the host received (bytes), when keep_written
        self.keep_written = True
        self.n_written = 0
        self.wd_timeout = None
        self.feeds = 0
        self.waits = 0
        self.gating = None  # GateTiming while gated counting is configured
        self.gate_row = 0
        self.trigger = False
        self.trigger_calls = []  # every trigger_enable(on)

    def serial(self) -> str:
        return "fa4e0001"

    def reset_cause(self) -> int:
        return self.cause

    def ticks_us(self) -> int:
        return self.t & TICKS_MASK

    def wait(self, timeout_us: int) -> None:
        self.waits += 1
        self.t += timeout_us
        self.pos = self.target

    # counter
    def counter_configure(self, bins: int, periods: int) -> None:
        self.bins = bins
        self.periods = periods
        self.cf.set_bins(bins)
        for k in range(bins):  # test data: count of bin k = 1000 + 7 k + bins
            v = 1000 + 7 * k + bins
            self.cf.buf[4 * k:4 * k + 4] = bytes((v & 255, v >> 8, 0, 0))

    def counter_start(self) -> None:
        self.counting = True
        self.gate_row = 0

    def gate_configure(self, trigger, pulse_period_ns, trigger_width_ns, gate_delay_ns,
                       gate_width_ns, gates):
        t = GateTiming(self.tick_hz, trigger, pulse_period_ns, trigger_width_ns,
                       gate_delay_ns, gate_width_ns, gates)
        self.gating = t
        self.pulse_ns = t.ns()[0]
        self.row_ns = [t.row_delay_ns(j) for j in range(gates)]
        return t.ns()

    def gate_disable(self) -> None:
        self.gating = None

    def trigger_enable(self, on: bool) -> None:
        self.trigger_calls.append(bool(on))
        self.trigger = bool(on) and self.shutter and not self.tripped

    def trigger_on(self) -> bool:
        return self.trigger

    def counter_stop(self) -> None:
        self.counting = False

    def counter_poll(self):
        if not self.counting or self.frames_ready == 0:
            return None
        if self.frames_ready > 0:
            self.frames_ready -= 1
        f = self.cf
        self.t += self.periods * 20  # 50 kHz PEM
        f.periods = self.periods
        f.pem_period_ps = self.pem_period
        f.bin_span = self.bin_span
        f.pem_locked = self.locked
        f.overload = self.tripped
        f.saturated = False
        f.ticks_us = self.t & TICKS_MASK
        t = self.gating
        if t is not None:  # gate j of each pulse in the frame's time (50 kHz PEM: 20 µs)
            j = self.gate_row
            f.gate = j
            f.pulses = self.periods * 20_000 // self.pulse_ns
            f.gate_delay_ns = self.row_ns[j]
            self.gate_row = (j + 1) % t.gates
        return f

    def data_lost(self) -> int:
        n = self.lost
        self.lost = 0
        return n

    # ADC
    def adc_configure(self, sample_rate_hz: float, block_samples: int) -> None:
        b = self.blk
        b.n_samples = block_samples
        b.samples = memoryview(b.sample_buf)[:3 * block_samples // 2]
        for i in range(len(b.samples)):
            b.sample_buf[i] = i & 255
        b.n_edges = 3
        b.edges = memoryview(b.edge_buf)[:8]
        b.edge_buf[0:8] = bytes((100, 0, 0, 0, 0xc4, 0x09, 0xc5, 0x09))
        self.rate = sample_rate_hz

    def adc_start(self) -> None:
        self.adc_on = True

    def adc_stop(self) -> None:
        self.adc_on = False

    def adc_poll(self):
        if not self.adc_on or self.frames_ready == 0:
            return None
        if self.frames_ready > 0:
            self.frames_ready -= 1
        b = self.blk
        self.t += 1000
        b.t0[0] = (b.t0[0] + 1) & 255
        b.pem_locked = self.locked
        b.overload = self.tripped
        b.clipped = False
        b.ticks_us = self.t & TICKS_MASK
        return b

    # PEM
    def pem_configure(self, source: str, frequency_hz: float) -> None:
        self.pem_cfg = (source, frequency_hz)

    def pem_set_drive(self, fraction: float) -> None:
        self.drive = fraction

    def pem_period_ps(self) -> int:
        return self.pem_period if self.locked else 0

    def pem_locked(self) -> bool:
        return self.locked

    # stepper: a move completes at the next wait()
    def step(self, n: int) -> None:
        self.steps.append(n)
        self.target += n

    def position(self) -> int:
        return self.pos

    def moving(self) -> bool:
        return self.pos != self.target

    def home_switch(self) -> bool:
        return self.pos <= self.home_at

    # HV, shutter, guard
    def hv_set(self, volts: float) -> None:
        self.hv = volts

    def hv_read(self) -> float:
        return self.hv

    def shutter_set(self, is_open: bool) -> None:
        self.shutter = is_open
        if not is_open:
            self.trigger = False

    def shutter_open(self) -> bool:
        return self.shutter

    def guard_arm(self, max_count_rate_cps: float, max_adc_level: int,
                  max_high_fraction: float = 0.5) -> None:
        self.guard = (max_count_rate_cps, max_adc_level, max_high_fraction)

    def guard_tripped(self) -> bool:
        return self.tripped

    def guard_reason(self) -> str:
        return self.reason

    def guard_reset(self) -> None:
        self.tripped = False

    def trip(self, reason: str) -> None:
        """What the hardware does on overload: HV off, shutter closed, latch."""
        self.tripped = True
        self.reason = reason
        self.hv = 0.0
        self.shutter = False
        self.trigger = False

    # USB
    def usb_read_into(self, buf) -> int:
        n = min(len(buf), len(self.rx))
        if n:
            buf[:n] = self.rx[:n]
            self.rx = self.rx[n:]
        return n

    def usb_write(self, buf) -> bool:
        if not self.host_reading:
            return False
        self.n_written += 1
        if self.keep_written:
            self.written.append(bytes(buf))
        return True

    def usb_connected(self) -> bool:
        return True

    def watchdog_start(self, timeout_ms: int) -> None:
        self.wd_timeout = timeout_ms

    def watchdog_feed(self) -> None:
        self.feeds += 1
