"""Board support for the Raspberry Pi Pico / Pico 2 (rp2 port, MicroPython ≥ 1.23).

Implements `board.base.Board` with PIO state machines, DMA and the USB vendor interface;
docs/hardware.md has the pinout, the wiring and the timing limits. PIO programs and their
arithmetic live in `rp2_pio`, the native buffer kernels in `rp2_dma`, USB in `rp2_usb`.

Resources: PIO0 SM0 gate, SM1/SM2 photon counters (even/odd bins); PIO1 SM4 period timer,
SM5 overload guard, SM6 stepper. DMA: 8 channels for counting (2 counters × TX/RX × 2 frame
buffers), 2 for the ADC, 1 for the period timer. PWM: PEM drive, PEM control voltage, PMT HV.
"""
import math
import sys
import time
from array import array

import machine
import micropython
import rp2
import uctypes

from board import base
from board import rp2_dma as K
from board import rp2_pio as P

# --- pins (GPIO numbers, docs/hardware.md) ----------------------------------------------------
PIN_PHOTON = 2      # discriminator TTL, pulse-stretched to ≥ 20 ns
PIN_PEM_REF = 3     # PEM controller 1f reference TTL (external mode)
PIN_GATE0 = 4       # gate monitor outputs (PIO0), test points only
PIN_GATE1 = 5
PIN_PEM_DRIVE = 6   # PWM square wave at resonance (internal mode); also the reference then
PIN_PEM_CTRL = 8    # PWM → RC filter: PEM controller retardation input (external mode)
PIN_HV_CTRL = 10    # PWM → RC filter: PMT HV module control input
PIN_HV_EN = 12      # PMT HV module enable (1 = on); guard SM owns it
PIN_SHUTTER = 13    # excitation shutter (1 = open); guard SM owns it, must follow HV_EN
PIN_STEP = 14
PIN_DIR = 15
PIN_HOME = 16       # home switch to GND, closed at/below home
ADC_PMT = 0         # GP26: analog PMT signal (transimpedance amplifier)
ADC_HV = 1          # GP27: HV monitor, divided to 0 … 3.3 V
ADC_PEM_PICKUP = 2  # GP28: rectified PEM pickup amplitude (internal mode resonance search)

# --- scaling (edit for the actual modules) ---------------------------------------------------
HV_FULL_SCALE_V = 1250.0      # HV at 100 % control voltage
HV_MONITOR_V_PER_V = 1250.0 / 3.3
PWM_CARRIER_HZ = 100_000      # control-voltage PWMs, RC-filtered (τ ≥ 1 ms)
STEP_RATE_HZ = 2000

# --- chip registers --------------------------------------------------------------------------
_PIO_BASE = (0x5020_0000, 0x5030_0000)
_TXF = 0x10
_RXF = 0x20
_DMA_BASE = 0x5000_0000
_DMA_STRIDE = 0x40
_DMA_WRITE_ADDR = 0x04
_IS_RP2350 = "RP2350" in sys.implementation._machine  # type: ignore[attr-defined]
_ADC_BASE = 0x400A_0000 if _IS_RP2350 else 0x4004_C000
_DREQ_ADC = 48 if _IS_RP2350 else 36
_ADC_CS = 0x00
_ADC_FCS = 0x08
_ADC_FIFO = 0x0C
_ADC_DIV = 0x10
_ADC_CLOCK_HZ = 48_000_000

_SET_PINS_OFF = 0xE000  # set(pins, 0): HV enable low, shutter closed
_SET_PINS = 0xE000      # | value (bit 0 HV enable, bit 1 shutter)

_COUNTER_SM = (1, 2)
_PERIOD_WORDS = 16       # period-timer ring for lock and mean period (64 B, aligned)
_EDGE_RING_WORDS = 2048  # period-timer ring in analog mode: ≥ the edges of 2 blocks
_GUARD_WINDOW_S = 200e-6
_ADC_GUARD_HZ = 2000     # ADC level checks per second (trip within 0.5 ms + one check)
_LOCK_TOLERANCE = 0.005  # relative period spread that still counts as locked


def _aligned(words: int, typecode: str = "I") -> tuple:
    """A zeroed array with a sub-view whose address is aligned to its own size in bytes
    (DMA rings wrap on a power-of-two boundary). Returns (array, first index)."""
    size = words * 4 if typecode == "I" else words * 2
    per = 4 if typecode == "I" else 2
    buf = array(typecode, bytes(2 * size))
    addr = uctypes.addressof(buf)
    first = ((-addr) % size) // per
    return buf, first


def _addr(buf, index: int, itemsize: int) -> int:
    return uctypes.addressof(buf) + index * itemsize


def _channel(dma) -> int:
    """The channel number of an rp2.DMA (an attribute the stubs do not declare)."""
    return dma.channel


def _dma_write_addr(ch: int) -> int:
    return machine.mem32[_DMA_BASE + ch * _DMA_STRIDE + _DMA_WRITE_ADDR]


class _Ring:
    """One counter frame buffer: an aligned ring of ring_words uint32."""

    def __init__(self, ring_words: int) -> None:
        self.buf, self.first = _aligned(ring_words)
        self.words = ring_words
        self.addr = _addr(self.buf, self.first, 4)
        self.view = memoryview(self.buf)[self.first:self.first + ring_words]
        K.fill_u32(self.view, ring_words, -1)


class Rp2Board(base.Board):
    name = "rp2"
    max_bins = 64
    counter_bins = (2, 4, 8, 16, 32, 64)  # powers of two: the DMA rings wrap on them
    max_block_samples = 4096
    max_sample_rate_hz = 250_000.0
    max_hv_volts = HV_FULL_SCALE_V
    native_crc32 = True

    def __init__(self, usb: bool = True) -> None:
        self._crc_table = array("I", bytes(1024))
        K.crc32_table(self._crc_table)
        self.clock_hz = machine.freq()
        self.tick_hz = self.clock_hz
        self._reset_cause = self._read_reset_cause()
        # inputs the PIO reads (on an RP2350 this also lifts the pads' reset isolation)
        machine.Pin(PIN_PHOTON, machine.Pin.IN)
        machine.Pin(PIN_PEM_REF, machine.Pin.IN)
        # PWM outputs
        self._pem_drive = machine.PWM(machine.Pin(PIN_PEM_DRIVE))
        self._pem_drive.duty_u16(0)
        self._pem_ctrl = machine.PWM(machine.Pin(PIN_PEM_CTRL))
        self._pem_ctrl.freq(PWM_CARRIER_HZ)
        self._pem_ctrl.duty_u16(0)
        self._hv = machine.PWM(machine.Pin(PIN_HV_CTRL))
        self._hv.freq(PWM_CARRIER_HZ)
        self._hv.duty_u16(0)
        self._hv_set = 0.0
        self._home = machine.Pin(PIN_HOME, machine.Pin.IN, machine.Pin.PULL_UP)
        self._adc_hv = machine.ADC(ADC_HV)
        self._adc_pickup = machine.ADC(ADC_PEM_PICKUP)
        self._hv_cached = 0.0
        # PIO1: period timer, guard, stepper
        self._pem_source = base.PEM_EXTERNAL
        self._pem_freq = 50_000.0
        self._drive = 0.0
        self._period_ring, self._period_first = _aligned(_PERIOD_WORDS)
        self._period_dma = rp2.DMA()
        self._period_stats = array("i", [0, 0, 0])
        self._period_seen = 0
        self._period_ps = 0
        self._locked = False
        self._lock_lost = False
        self._start_period_timer()
        self._guard_tripped = False
        self._guard_reason = ""
        self._guard_rate = 0.0
        self._guard_level = 4095
        self._guard_trip_count = 0
        self._guard_level_seen = 0
        self._outputs = 0  # bit 0 HV enable, bit 1 shutter
        self._guard = rp2.StateMachine(5, P.overload_guard, freq=self.clock_hz,
                                       jmp_pin=machine.Pin(PIN_PHOTON),
                                       set_base=machine.Pin(PIN_HV_EN))
        self._guard.irq(self._guard_irq, hard=True)
        self._guard.exec(_SET_PINS_OFF)
        self._stepper = rp2.StateMachine(6, P.stepper,
                                         freq=STEP_RATE_HZ * P.STEPPER_CYCLES_PER_STEP,
                                         sideset_base=machine.Pin(PIN_STEP),
                                         out_base=machine.Pin(PIN_DIR))
        self._stepper.active(1)
        self._position = 0
        self._moves_pending = 0
        # counter (PIO0) and ADC: configured on demand
        self._bins = 8
        self._periods = 1000
        self._counting = False
        self._counter_dma: list = []
        self._rings: list = []
        self._frame_done = array("i", [0, 0])   # completed RX channels per buffer
        self._frame_next = 0
        self.frames_lost = 0  # counter frames and ADC blocks collected too late (dropped)
        self._lost_pending = 0  # of those, not yet reported by data_lost()
        self._frame = base.CounterFrame(self.max_bins)
        self._frame_ticks = array("i", [0, 0])
        self._t_bin = 0
        self._live16 = 0          # 16·B·t_bin: the gated cycles of 16 periods
        self._start_period = 2500  # period (cycles) t_bin was computed from at START
        self._adc_rate = 100_000.0
        self._adc_block = 1024
        self._adc_div = 479
        self._analog = False
        self._adc_dma: list = []
        self._adc_raw: list = []
        # ADC blocks alternate between the two DMA buffers: block k goes to buffer k & 1.
        # _adc_completed[0] counts completed blocks (DMA IRQ), _adc_blocks those collected
        # or dropped; the DMA is writing block _adc_completed[0].
        self._adc_completed = array("i", [0])
        self._adc_blocks = 0
        self._block = base.AdcBlock(self.max_block_samples, 1024)
        self._edge_ring = array("I")
        self._edge_first = 0
        self._edge_view = memoryview(b"")
        self._edge_state = array("i", [0, 0])
        self._edge_read = 1
        self._edge_views: dict = {}  # n_edges → view of edge_buf, made once per length
        # Time kept in small ints (long ints would allocate): t0 of the next block due is
        # _t0_hi·2**30 + _t0_lo ticks; a block lasts _blk_q ticks plus _blk_r/_blk_d, the
        # fraction carried in _blk_rem; _edge_rel is the last consumed edge's time relative to
        # that t0.
        self._t0_hi = 0
        self._t0_lo = 0
        self._blk_q = 0
        self._blk_r = 0
        self._blk_d = 1
        self._blk_rem = 0
        self._edge_rel = 0
        self._guard_seen = False
        self._guard_adc_level = 0
        self._adc_timer: "machine.Timer | None" = None
        self._resonance = _Resonance(self)
        self._wdt: "machine.WDT | None" = None
        self._usb = None
        if usb:
            from board import rp2_usb
            self._usb = rp2_usb.start(self.serial())

    # identity --------------------------------------------------------------------------------
    def serial(self) -> str:
        return "".join("%02x" % b for b in machine.unique_id())

    @staticmethod
    def _read_reset_cause() -> int:
        cause = machine.reset_cause()
        if cause == machine.WDT_RESET:
            return base.RESET_WATCHDOG
        if cause == machine.PWRON_RESET:
            return base.RESET_POWER_ON
        return base.RESET_OTHER

    def reset_cause(self) -> int:
        return self._reset_cause

    # clock -----------------------------------------------------------------------------------
    def ticks_us(self) -> int:
        # MicroPython's ticks_us already wraps at 2**30 = TICKS_PERIOD
        return time.ticks_us()  # type: ignore[return-value]

    def wait(self, timeout_us: int) -> None:
        t0 = time.ticks_us()
        self._service()
        while time.ticks_diff(time.ticks_us(), t0) < timeout_us:
            if self._ready():
                return
            machine.idle()  # wakes on any interrupt, at the latest the 1 ms tick

    def _ready(self) -> bool:
        if self._counting and self._frame_done[self._frame_next] >= 2:
            return True
        if self._analog and self._adc_completed[0] > self._adc_blocks:
            return True
        return self._usb is not None and self._usb.readable() > 0

    # PEM reference: period timer ---------------------------------------------------------------
    def _ref_pin(self) -> int:
        return PIN_PEM_DRIVE if self._pem_source == base.PEM_INTERNAL else PIN_PEM_REF

    def _start_period_timer(self, ring=None, first: int = 0, words: int = _PERIOD_WORDS) -> None:
        """(Re)start the period timer at its first instruction, its words going by DMA into an
        aligned ring (word 0 is the start-up word, see rp2_pio). Returns with it running."""
        sm = rp2.StateMachine(4, P.period_timer, freq=self.clock_hz,
                              jmp_pin=machine.Pin(self._ref_pin()))
        sm.active(0)
        sm.restart()
        if ring is None:
            ring, first = self._period_ring, self._period_first
        self._period_dma.active(0)
        ctrl = self._period_dma.pack_ctrl(size=2, inc_read=False, inc_write=True,
                                          ring_size=_log2(words * 4), ring_sel=True,
                                          treq_sel=12, irq_quiet=True)  # PIO1 RX0 (SM4)
        self._period_dma.config(read=_PIO_BASE[1] + _RXF, write=_addr(ring, first, 4),
                                count=0x3FFF_FFFF, ctrl=ctrl, trigger=True)
        self._period_sm = sm
        self._period_count0 = 0x3FFF_FFFF
        sm.active(1)

    def _period_words_done(self) -> int:
        return self._period_count0 - self._period_dma.count  # type: ignore[attr-defined]

    def _service(self) -> None:
        """Lock detection, mean period, resonance tracking; cheap, runs from wait()."""
        done = self._period_words_done()
        fresh = done - self._period_seen
        self._period_seen = done
        if done > 0x3000_0000:
            self._start_period_timer()
            self._period_seen = 0
        if not self._analog and done >= _PERIOD_WORDS + 2:
            ring = memoryview(self._period_ring)[self._period_first:]
            K.period_stats(ring, _PERIOD_WORDS, P.PERIOD_SCALE, P.PERIOD_OFFSET,
                           self._period_stats)
            total, lo, hi = self._period_stats
            mean = total / _PERIOD_WORDS
            nominal = self.clock_hz / self._pem_freq
            locked = (fresh > 0 and hi - lo <= 2 + _LOCK_TOLERANCE * mean
                      and abs(mean - nominal) <= 0.05 * nominal)
            self._period_ps = int(mean * 1e12 / self.clock_hz) if locked else 0
        else:
            locked = self._analog and fresh > 0 and self._locked
        if self._locked and not locked:
            self._lock_lost = True
        self._locked = locked
        self._resonance.service()

    def pem_configure(self, source: str, frequency_hz: float) -> None:
        if source not in (base.PEM_INTERNAL, base.PEM_EXTERNAL):
            raise ValueError("PEM source must be 'internal' or 'external', got %r" % source)
        if not 1000.0 <= frequency_hz <= 200_000.0:
            raise ValueError("PEM frequency must be 1 kHz … 200 kHz, got %r Hz" % frequency_hz)
        changed = source != self._pem_source
        self._pem_source = source
        self._pem_freq = frequency_hz
        if source == base.PEM_INTERNAL:
            self._pem_ctrl.duty_u16(0)
            self._pem_drive.freq(int(frequency_hz))
            self._resonance.search(frequency_hz)
        else:
            self._resonance.stop()
            self._pem_drive.duty_u16(0)
        self._apply_drive()
        if changed:
            self._start_period_timer()
            self._period_seen = 0

    def pem_set_drive(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("PEM drive must be a fraction 0 … 1, got %r" % fraction)
        self._drive = fraction
        self._apply_drive()

    def _apply_drive(self) -> None:
        if self._pem_source == base.PEM_INTERNAL:
            # square wave: its fundamental is ∝ sin(π·duty), so duty = asin(drive)/π
            duty = math.asin(self._drive) / math.pi
            self._pem_drive.duty_u16(int(duty * 65535))
        else:
            self._pem_ctrl.duty_u16(int(self._drive * 65535))

    def pem_period_ps(self) -> int:
        return self._period_ps

    def pem_locked(self) -> bool:
        return self._locked

    def pem_resonance_hz(self) -> float:
        """Internal mode: the drive frequency the resonance search/tracking settled on."""
        return self._resonance.freq

    # photon counter ----------------------------------------------------------------------------
    def counter_configure(self, bins: int, periods: int) -> None:
        if self._counting:
            raise ValueError("stop counting before reconfiguring the counter")
        if bins not in self.counter_bins:
            raise ValueError("bins must be a power of two from 2 to %d (PIO/DMA ring layout), "
                             "got %d" % (self.max_bins, bins))
        if not 1 <= periods <= 100_000:
            raise ValueError("periods must be 1 … 100000, got %d" % periods)
        self._bins = bins
        self._periods = periods
        self._frame.set_bins(bins)

    def _period_cycles(self) -> int:
        if self._period_ps:
            return int(self._period_ps * self.clock_hz / 1e12)
        return int(self.clock_hz / self._pem_freq)

    def counter_start(self) -> None:
        if self._counting:
            return
        period = self._period_cycles()
        margin = int(period * _LOCK_TOLERANCE) + 2
        self._t_bin, budget, pairs = P.counter_timing(period, self._bins, margin)
        self._start_period = period
        self._live16 = 16 * self._bins * self._t_bin
        ring_words = P.ring_words(self._bins)
        if not self._rings or self._rings[0][0].words != ring_words:
            self._rings = [[_Ring(ring_words), _Ring(ring_words)] for _ in _COUNTER_SM]
        transfers = pairs * self._periods
        ref = machine.Pin(self._ref_pin())
        gate = rp2.StateMachine(0, P.pem_gate, freq=self.clock_hz, in_base=ref,
                                sideset_base=machine.Pin(PIN_GATE0))
        gate.active(0)
        gate.restart()
        gate.put(pairs - 1)
        gate.exec("pull()")
        gate.exec("mov(isr, osr)")
        gate.put(P.gate_delay_word(self._t_bin))
        gate.exec("pull()")
        counters = []
        for c, sm_id in enumerate(_COUNTER_SM):
            sm = rp2.StateMachine(sm_id, P.photon_counter, freq=self.clock_hz,
                                  in_base=machine.Pin(PIN_GATE0 + c),
                                  jmp_pin=machine.Pin(PIN_PHOTON))
            sm.active(0)
            sm.restart()
            sm.put(budget)
            sm.exec("pull()")
            sm.exec("mov(isr, osr)")
            sm.exec("mov(y, osr)")
            counters.append(sm)
        self._stop_counter_dma()
        self._counter_dma = []
        self._frame_done[0] = self._frame_done[1] = 0
        self._frame_next = 0
        for c, sm_id in enumerate(_COUNTER_SM):
            rings = self._rings[c]
            chans = [rp2.DMA() for _ in range(4)]  # tx0, tx1, rx0, rx1
            ring_bits = _log2(ring_words * 4)
            for b in (0, 1):
                tx, rx = chans[b], chans[2 + b]
                tx.config(read=rings[b].addr, write=_PIO_BASE[0] + _TXF + 4 * sm_id,
                          count=transfers,
                          ctrl=tx.pack_ctrl(size=2, inc_read=True, inc_write=False,
                                            ring_size=ring_bits, ring_sel=False,
                                            treq_sel=sm_id, chain_to=_channel(chans[1 - b]),
                                            irq_quiet=True))
                rx.config(read=_PIO_BASE[0] + _RXF + 4 * sm_id, write=rings[b].addr,
                          count=transfers,
                          ctrl=rx.pack_ctrl(size=2, inc_read=False, inc_write=True,
                                            ring_size=ring_bits, ring_sel=True,
                                            treq_sel=4 + sm_id,
                                            chain_to=_channel(chans[3 - b]), irq_quiet=False))
                rx.irq(self._rx_irq_0 if b == 0 else self._rx_irq_1, hard=True)
            chans[0].active(1)
            chans[2].active(1)
            self._counter_dma.append(chans)
        self._counters = counters
        self._gate = gate
        self._lock_lost = not self._locked
        self._guard_seen = self._guard_tripped
        for sm in counters:
            sm.active(1)
        gate.active(1)
        self._counting = True

    def _rx_irq_0(self, dma) -> None:
        self._frame_done[0] += 1

    def _rx_irq_1(self, dma) -> None:
        self._frame_done[1] += 1

    def _stop_counter_dma(self) -> None:
        for chans in self._counter_dma:
            for ch in chans:
                ch.irq(None)
                ch.active(0)
                ch.close()
        self._counter_dma = []

    def counter_stop(self) -> None:
        if not self._counting:
            return
        self._gate.active(0)
        for sm in self._counters:
            sm.active(0)
        self._stop_counter_dma()
        for rings in self._rings:
            for ring in rings:
                K.fill_u32(ring.view, ring.words, -1)
        self._counting = False

    def counter_poll(self):
        b = self._frame_next
        if not self._counting or self._frame_done[b] < 2:
            return None
        if self._frame_done[b] > 2:
            self._drop_late_frames()
            return None
        frame = self._frame
        K.fill_u32(frame.buf, self._bins, 0)
        pairs = self._bins // 2
        biggest = 0
        for c in (0, 1):
            ring = self._rings[c][b]
            top = K.ring_collect(ring.view, ring.words, pairs, c, frame.buf)
            if top > biggest:
                biggest = top
            # re-arm this buffer's channels; the other buffer's channels chain into them
            chans = self._counter_dma[c]
            chans[b].read = ring.addr
            chans[b].count = pairs * self._periods
            chans[2 + b].write = ring.addr
            chans[2 + b].count = pairs * self._periods
        self._frame_done[b] = 0
        self._frame_next = 1 - b
        # a bin counting more than half of the pulses the sampler can resolve is saturated
        resolvable = self._periods * (self._t_bin // P.MIN_PULSE_PERIOD_CYCLES + 1)
        frame.saturated = biggest < 0 or biggest > resolvable // 2
        frame.periods = self._periods
        frame.pem_period_ps = self._period_ps
        # the bins' share of this frame's period: the 16-period sum behind pem_period_ps
        # while locked, else the period t_bin was cut from (docs/protocol.md, COUNTS)
        p16 = self._period_stats[0] if self._period_ps else 16 * self._start_period
        frame.bin_span = P.bin_span(self._live16, p16)
        frame.pem_locked = self._locked and not self._lock_lost
        frame.overload = self._guard_tripped and not self._guard_seen
        self._guard_seen = self._guard_tripped
        self._lock_lost = not self._locked
        frame.ticks_us = self.ticks_us()
        return frame

    def _drop_late_frames(self) -> None:
        """The DMA came round to the next buffer again before the CPU collected it: that buffer
        holds two or more frames merged, possibly with a pass still running, and the
        completion counts no longer tell the buffers' state. Drop what both buffers hold
        (every completed frame counts as lost) and restart the counter from a clean state.
        Rare, so it may allocate (DMA and state machine objects)."""
        lost = self._frame_done[0] // 2 + self._frame_done[1] // 2
        self.frames_lost += lost
        self._lost_pending += lost
        guard_seen = self._guard_seen
        self.counter_stop()
        self.counter_start()
        self._guard_seen = guard_seen  # an overload not yet flagged still goes on a frame

    def data_lost(self) -> int:
        n = self._lost_pending
        self._lost_pending = 0
        return n

    # ADC -----------------------------------------------------------------------------------------
    def adc_configure(self, sample_rate_hz: float, block_samples: int) -> None:
        if self._analog:
            raise ValueError("stop the ADC before reconfiguring it")
        if not 1000.0 <= sample_rate_hz <= self.max_sample_rate_hz:
            raise ValueError("sample_rate_hz must be 1000 … %d, got %r"
                             % (self.max_sample_rate_hz, sample_rate_hz))
        if block_samples < 2 or block_samples % 2 or block_samples > self.max_block_samples:
            raise ValueError("block_samples must be even, 2 … %d, got %r"
                             % (self.max_block_samples, block_samples))
        # ADC period = (1 + INT + FRAC/256) cycles of 48 MHz, at least 96
        div = _ADC_CLOCK_HZ / sample_rate_hz - 1
        self._adc_div = int(div * 256 + 0.5)
        self._adc_rate = _ADC_CLOCK_HZ / (1 + self._adc_div / 256)
        self._adc_block = block_samples

    def adc_start(self) -> None:
        if self._analog:
            return
        self.counter_stop()
        self._hv_cached = self._read_hv_now()
        n = self._adc_block
        self._adc_raw = [array("H", bytes(2 * n)) for _ in (0, 1)]
        self._adc_completed[0] = 0
        self._adc_blocks = 0
        if not self._edge_view:
            ring, first = _aligned(_EDGE_RING_WORDS)
            self._edge_ring, self._edge_first = ring, first
            self._edge_view = memoryview(ring)[first:]
        self._edge_read = 1  # word 0 is the timer's start-up word
        self._edge_rel = P.PERIOD_START_EDGE
        self._t0_hi = self._t0_lo = 0
        # block length in ticks: n samples of (256 + DIV)/256 cycles of 48 MHz, in system
        # clock ticks (both clocks come from the same crystal), as a reduced fraction
        a = n * (256 + self._adc_div) * self.clock_hz
        d = 256 * _ADC_CLOCK_HZ
        g = _gcd(a, d)
        a //= g
        d //= g
        self._blk_q, self._blk_r, self._blk_d, self._blk_rem = a // d, a % d, d, 0
        self._block.samples = memoryview(self._block.sample_buf)[: 3 * n // 2]
        machine.ADC(ADC_PMT)  # GPIO 26 to analog input
        adc = _ADC_BASE
        machine.mem32[adc + _ADC_CS] = 1                       # enable, AINSEL = 0
        machine.mem32[adc + _ADC_DIV] = self._adc_div
        machine.mem32[adc + _ADC_FCS] = 1 | (1 << 3) | (1 << 24)  # FIFO, DREQ at 1 entry
        chans = [rp2.DMA(), rp2.DMA()]
        for b in (0, 1):
            ch = chans[b]
            ch.config(read=adc + _ADC_FIFO, write=self._adc_raw[b], count=n,
                      ctrl=ch.pack_ctrl(size=1, inc_read=False, inc_write=True,
                                        treq_sel=_DREQ_ADC, chain_to=_channel(chans[1 - b]),
                                        irq_quiet=False))
            ch.irq(self._adc_irq, hard=True)
        self._adc_dma = chans
        chans[0].active(1)
        # period timer into the big ring, then free-running ADC, back to back so that
        # sample 0 and the timer's count start together (fixed offset, in the φ0 calibration)
        self._start_period_timer(self._edge_ring, self._edge_first, _EDGE_RING_WORDS)
        machine.mem32[adc + _ADC_CS] = 1 | (1 << 3)            # START_MANY
        self._analog = True
        self._adc_timer = machine.Timer(-1, freq=_ADC_GUARD_HZ, callback=self._adc_guard,
                                        hard=True)

    def _adc_irq(self, dma) -> None:
        # The channel that completed has chained to the other one. The DMA reloads a
        # channel's count on each trigger but not its write address, which now points past
        # the buffer: point it back at the start for the channel's next turn.
        dma.write = self._adc_raw[0] if dma is self._adc_dma[0] else self._adc_raw[1]
        self._adc_completed[0] += 1

    def adc_stop(self) -> None:
        if not self._analog:
            return
        if self._adc_timer is not None:
            self._adc_timer.deinit()
        machine.mem32[_ADC_BASE + _ADC_CS] = 1
        machine.mem32[_ADC_BASE + _ADC_FCS] = 1 << 0  # drain below
        for ch in self._adc_dma:
            ch.irq(None)
            ch.active(0)
            ch.close()
        machine.mem32[_ADC_BASE + _ADC_FCS] = 0
        self._adc_dma = []
        self._analog = False
        self._start_period_timer()
        self._period_seen = 0

    def adc_poll(self):
        k = self._adc_blocks
        if not self._analog or self._adc_completed[0] <= k:
            return None
        if self._adc_completed[0] > k + 1:
            # block k + 1 is complete too, so the DMA is writing block k's buffer again
            self._adc_resync()
            return None
        n = self._adc_block
        blk = self._block
        blk.n_samples = n
        clipped = K.pack12(self._adc_raw[k & 1], n, blk.sample_buf)
        if self._adc_completed[0] > k + 1:
            self._adc_resync()  # ... and it started while the block was being packed
            return None
        self._adc_blocks = k + 1
        _put_u64(blk.t0, self._t0_hi, self._t0_lo)
        t_len = self._next_block_ticks()
        # edges: period-timer words since the last block whose time falls in this one
        n = self._edges(t_len, blk.edge_buf)
        self._advance_t0(t_len)
        if n <= 0:
            n = 0
        blk.n_edges = n
        view = self._edge_views.get(n)
        if view is None:
            view = self._edge_views[n] = memoryview(blk.edge_buf)[: 4 + 2 * (n - 1) if n else 0]
        blk.edges = view
        blk.clipped = clipped > 0
        blk.overload = self._guard_tripped and not self._guard_seen
        self._guard_seen = self._guard_tripped
        blk.pem_locked = self._locked
        blk.ticks_us = self.ticks_us()
        return blk

    def _next_block_ticks(self) -> int:
        """Length in ticks of the block due: floor((k + 1)·a/d) − floor(k·a/d)."""
        t = self._blk_q
        self._blk_rem += self._blk_r
        if self._blk_rem >= self._blk_d:
            self._blk_rem -= self._blk_d
            t += 1
        return t

    def _advance_t0(self, t_len: int) -> None:
        self._t0_lo += t_len
        if self._t0_lo >= 1 << 30:
            self._t0_lo -= 1 << 30
            self._t0_hi += 1
        self._edge_rel -= t_len

    def _adc_resync(self) -> None:
        """The CPU collected ADC blocks too late: the DMA has started to overwrite the next
        one due. Drop every block completed so far and go on with the one being written;
        its t0 shows the host the gap, and the edges of the dropped blocks are skipped."""
        c = self._adc_completed[0]
        lost = c - self._adc_blocks
        self.frames_lost += lost
        self._lost_pending += lost
        for _ in range(lost):
            t_len = self._next_block_ticks()
            while self._edges(t_len, self._block.edge_buf) < 0:
                pass  # more edges than a block holds: consume the rest
            self._advance_t0(t_len)
        self._adc_blocks = c

    def _edges(self, t_len: int, dst) -> int:
        """Consume the period-timer words of the edges before t_len (ticks after the t0 of
        the block due) into dst in ADC_BLOCK layout: their number, or -1 if not all fitted
        (or a delta exceeds 65535 ticks; see rp2_dma.edges_block)."""
        done = self._period_words_done()
        available = done - self._edge_read
        if available > _EDGE_RING_WORDS:
            raise RuntimeError("the reference edge ring was overwritten (the CPU fell over "
                               "%d ms behind): edge times are lost; CLEAR_FAULT and START again"
                               % (_EDGE_RING_WORDS * 1000 // max(int(self._pem_freq), 1)))
        n = K.edges_block(self._edge_view, _EDGE_RING_WORDS,
                          self._edge_read % _EDGE_RING_WORDS, available, self._edge_rel,
                          t_len, P.PERIOD_SCALE, P.PERIOD_OFFSET, dst,
                          (len(dst) - 4) // 2 + 1, self._edge_state)
        consumed = self._edge_state[0]   # ≥ 1 whenever n is -1
        self._edge_read += consumed
        if consumed:
            self._edge_rel = self._edge_state[1]
        return n

    # monochromator stepper -----------------------------------------------------------------------
    def step(self, n: int) -> None:
        if n == 0:
            return
        self._stepper.put(P.stepper_word(n))
        self._moves_pending += 1
        self._position += n

    def position(self) -> int:
        return self._position

    def moving(self) -> bool:
        while self._stepper.rx_fifo():
            self._stepper.get()
            self._moves_pending -= 1
        return self._moves_pending > 0

    def home_switch(self) -> bool:
        return self._home.value() == 0

    # PMT high voltage and shutter ------------------------------------------------------------------
    def hv_set(self, volts: float) -> None:
        if not 0.0 <= volts <= self.max_hv_volts:
            raise ValueError("HV must be 0 … %g V, got %r" % (self.max_hv_volts, volts))
        if volts > 0 and self._guard_tripped:
            raise ValueError("the overload guard is tripped: clear it before raising the HV")
        self._hv_set = volts
        self._hv.duty_u16(int(volts / HV_FULL_SCALE_V * 65535))
        self._set_outputs(hv_on=volts > 0)

    def _read_hv_now(self) -> float:
        return self._adc_hv.read_u16() / 65535 * 3.3 * HV_MONITOR_V_PER_V

    def hv_read(self) -> float:
        # the ADC belongs to the PMT stream in analog mode: report the value read at its start
        return self._hv_cached if self._analog else self._read_hv_now()

    def shutter_set(self, is_open: bool) -> None:
        if is_open and self._guard_tripped:
            raise ValueError("the overload guard is tripped: clear it before opening the "
                             "shutter")
        self._set_outputs(shutter=is_open)

    def shutter_open(self) -> bool:
        return machine.Pin(PIN_SHUTTER).value() == 1

    def _set_outputs(self, hv_on=None, shutter=None) -> None:
        state = machine.disable_irq()
        try:
            if self._guard_tripped:
                self._outputs = 0
            else:
                if hv_on is not None:
                    self._outputs = (self._outputs & 2) | (1 if hv_on else 0)
                if shutter is not None:
                    self._outputs = (self._outputs & 1) | (2 if shutter else 0)
            self._guard.exec(_SET_PINS | self._outputs)
        finally:
            machine.enable_irq(state)

    # overload guard -------------------------------------------------------------------------------
    def guard_arm(self, max_count_rate_cps: float, max_adc_level: int) -> None:
        if not 0 <= max_adc_level <= 4095:
            raise ValueError("max_adc_level must be 0 … 4095, got %r" % max_adc_level)
        window = int(_GUARD_WINDOW_S * self.clock_hz)
        limit = P.guard_limit(max_count_rate_cps, window, self.clock_hz)
        self._guard_rate = max_count_rate_cps
        self._guard_level = max_adc_level
        sm = self._guard
        sm.active(0)
        sm.restart()
        sm.put(limit)
        sm.exec("pull()")
        sm.exec("mov(isr, osr)")
        sm.put(P.guard_window(window))
        sm.exec("pull()")
        sm.exec(_SET_PINS | (0 if self._guard_tripped else self._outputs))
        sm.active(0 if self._guard_tripped else 1)

    def _guard_irq(self, sm) -> None:
        # hard IRQ: the PIO has already driven HV enable and shutter low
        self._trip()
        self._guard_trip_count += 1

    def _trip(self) -> None:
        self._guard.exec(_SET_PINS_OFF)
        self._hv.duty_u16(0)
        self._outputs = 0
        self._guard_tripped = True

    def _adc_guard(self, timer) -> None:
        # hard IRQ every 0.5 ms in analog mode: the largest sample since the last check
        if not self._analog or self._guard_tripped:
            return
        b = self._adc_completed[0] & 1  # the buffer the DMA is writing
        ch = self._adc_dma[b]
        start = uctypes.addressof(self._adc_raw[b])
        pos = (_dma_write_addr(_channel(ch)) - start) // 2
        if pos <= 0 or pos > self._adc_block:
            return
        lo = self._guard_level_seen if self._guard_level_seen < pos else 0
        level = K.max_u16(self._adc_raw[b], lo, pos, self._adc_block)
        self._guard_level_seen = pos
        if level > self._guard_level:
            self._trip()
            self._guard_adc_level = level

    def guard_tripped(self) -> bool:
        return self._guard_tripped

    def guard_reason(self) -> str:
        if not self._guard_tripped:
            return ""
        level = self._guard_adc_level
        if level:
            return "PMT ADC level %d > limit %d" % (level, self._guard_level)
        return "PMT rate > limit %.3g cps (PIO window %.0f us)" % (self._guard_rate,
                                                                  _GUARD_WINDOW_S * 1e6)

    def guard_reset(self) -> None:
        self._guard_tripped = False
        self._guard_adc_level = 0
        self._outputs = 0
        self.guard_arm(self._guard_rate or 1e7, self._guard_level)

    # USB vendor interface ----------------------------------------------------------------------------
    def usb_read_into(self, buf: memoryview) -> int:
        return self._usb.read_into(buf) if self._usb is not None else 0

    def usb_write(self, buf: memoryview) -> bool:
        return self._usb.write(buf) if self._usb is not None else False

    def usb_connected(self) -> bool:
        return self._usb is not None and self._usb.is_open()

    # frame CRC: a viper table CRC-32 (binascii.crc32 would make a long int per frame) ------------------
    def crc32_into(self, buf: bytearray, n: int) -> None:
        K.crc32_seal(self._crc_table, buf, n)

    # watchdog -------------------------------------------------------------------------------------------
    def watchdog_start(self, timeout_ms: int) -> None:
        if not 1 <= timeout_ms <= 8388:
            raise ValueError("watchdog timeout must be 1 … 8388 ms, got %r" % timeout_ms)
        self._wdt = machine.WDT(timeout=timeout_ms)

    def watchdog_feed(self) -> None:
        if self._wdt is not None:
            self._wdt.feed()

    # self test -------------------------------------------------------------------------------------------
    def self_test(self) -> dict:
        self._service()
        return {
            "pem_reference": self._locked,
            "hv_readback": abs(self.hv_read() - self._hv_set) <= 0.05 * HV_FULL_SCALE_V,
            "shutter_readback": self.shutter_open() == bool(self._outputs & 2),
            "guard_pio": self._guard.active() or self._guard_tripped,
        }


class _Resonance:
    """Internal PEM drive: sweep the drive frequency around the nominal one, take the peak of
    the pickup amplitude (ADC2), then track it by small steps towards the larger amplitude.
    Advanced from `Board.wait()`; each frequency is held `settle_ms` (a PEM of Q ≈ 1e4 at
    50 kHz rings down in ≈ 60 ms)."""

    SPAN = 0.01      # search ±1 % of the nominal frequency
    STEPS = 41
    SETTLE_MS = 80
    TRACK_STEP = 0.5  # Hz

    def __init__(self, board: Rp2Board) -> None:
        self._board = board
        self.freq = 0.0
        self._mode = 0  # 0 off, 1 search, 2 track
        self._i = 0
        self._t = time.ticks_ms()
        self._best = -1
        self._best_f = 0.0
        self._last = -1
        self._dir = 1.0

    def search(self, nominal_hz: float) -> None:
        self._nominal = nominal_hz
        self._mode, self._i, self._best = 1, 0, -1
        self._set(self._sweep_f(0))

    def stop(self) -> None:
        self._mode = 0

    def _sweep_f(self, i: int) -> float:
        return self._nominal * (1 - self.SPAN + 2 * self.SPAN * i / (self.STEPS - 1))

    def _set(self, f: float) -> None:
        self.freq = f
        self._board._pem_drive.freq(int(f))
        self._board._pem_freq = f
        self._board._apply_drive()
        self._t = time.ticks_ms()

    def service(self) -> None:
        if not self._mode or time.ticks_diff(time.ticks_ms(), self._t) < self.SETTLE_MS:
            return
        amp = self._board._adc_pickup.read_u16()
        if self._mode == 1:
            if amp > self._best:
                self._best, self._best_f = amp, self.freq
            self._i += 1
            if self._i < self.STEPS:
                self._set(self._sweep_f(self._i))
            else:
                self._mode, self._last = 2, -1
                self._set(self._best_f)
        else:
            if self._last >= 0 and amp < self._last:
                self._dir = -self._dir
            self._last = amp
            self._set(self.freq + self._dir * self.TRACK_STEP)


def _log2(n: int) -> int:
    k = 0
    while (1 << k) < n:
        k += 1
    return k


def _put_u64(mv: memoryview, hi: int, lo: int) -> None:
    """Write hi·2**30 + lo (0 ≤ lo < 2**30) little-endian into mv[0:8], in small ints."""
    mv[0] = lo & 0xFF
    mv[1] = (lo >> 8) & 0xFF
    mv[2] = (lo >> 16) & 0xFF
    mv[3] = (lo >> 24) | (hi & 3) << 6
    hi >>= 2
    for i in range(4, 8):
        mv[i] = hi & 0xFF
        hi >>= 8


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


Board = Rp2Board
