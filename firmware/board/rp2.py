"""Board support for the Raspberry Pi Pico / Pico 2 (rp2 port, MicroPython ≥ 1.26, see
`rp2_version`).

Implements `board.base.Board` with PIO state machines, DMA and the USB vendor interface;
docs/hardware.md has the pinout, the wiring and the timing limits. PIO programs and their
arithmetic live in `rp2_pio`, the native buffer kernels in `rp2_dma`, USB in `rp2_usb`.

Resources: PIO0 SM0 gate, SM1/SM2 photon counters (even/odd bins); PIO1 SM4 period timer,
SM5 overload guard, SM6 stepper, SM7 gate window (gated counting); on an RP2350 PIO2 SM8 the
external sync's gate start. DMA: 8 channels for counting (2 counters × TX/RX × 2 frame
buffers), 2 for the ADC, 1 for the period timer. PWM: PEM drive, PEM control voltage, PMT HV,
the trigger (gated counting), the photon line's high-time counter (slice 0, level-gated) and
the external sync's pulse counter (slice 2, rising edges of GP21).

Interrupt handlers (`_rx_irq_*`, `_adc_irq`, `_guard_irq`, `_guard_tick`) run with the heap
locked: they allocate nothing, and every value they compute stays in the 30-bit small-int
range of the 32-bit port (tests/firmware/test_rp2_irq.py checks both).
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
from board.gating import GateTiming, cycles_to_ns, pulses_in_frame, shortest_period
from board import rp2_pins as G
from board import rp2_pio as P
from board import rp2_regs as H
from board import rp2_version

# --- pins: the table in rp2_pins (docs/build.md states the same) ------------------------------
PIN_PHOTON = G.PHOTON
PIN_PEM_REF = G.PEM_REF
PIN_GATE0 = G.GATE0
PIN_PEM_DRIVE = G.PEM_DRIVE
PIN_PEM_CTRL = G.PEM_CTRL
PIN_HV_CTRL = G.HV_CTRL
PIN_HV_KEEPALIVE = G.HV_KEEPALIVE
PIN_HV_EN = G.HV_EN
PIN_SHUTTER = G.SHUTTER
PIN_STEP = G.STEP
PIN_DIR = G.DIR
PIN_HOME = G.HOME
PIN_PHOTON_LEVEL = G.PHOTON_LEVEL
PIN_TRIGGER = G.TRIGGER
PIN_GATED_PHOTON = G.GATED_PHOTON
PIN_SYNC_IN = G.SYNC_IN
PIN_GSTART = G.GSTART
ADC_PMT = G.adc_channel(G.ADC0)
ADC_HV = G.adc_channel(G.ADC1)
ADC_PEM_PICKUP = G.adc_channel(G.ADC2)

# --- scaling (edit for the actual modules) ---------------------------------------------------
HV_FULL_SCALE_V = 1250.0      # HV at 100 % control voltage
HV_MONITOR_V_PER_V = 1250.0 / 3.3
PWM_CARRIER_HZ = 100_000      # control-voltage PWMs, RC-filtered (τ ≥ 1 ms)
STEP_RATE_HZ = 2000
# HV models (HV_CONFIG, cpl.hvmodel): what the HV enable and control outputs drive
HV_SUPPLY = "supply"            # an HV supply: 0 … full scale by control voltage, monitored
HV_COUNTING_HEAD = "counting_head"  # a counting head (H10682-class): power only, no HV control

# --- chip registers --------------------------------------------------------------------------
_PIO_BASE = (0x5020_0000, 0x5030_0000)
_TXF = 0x10
_RXF = 0x20
_PIO_CTRL = 0x00
_DMA_BASE = 0x5000_0000  # outside interrupt handlers only (a long int on the 32-bit port)
_DMA_STRIDE = 0x40
_DMA_TRANS_COUNT = 0x08
_ATOMIC_SET = 0x2000     # register alias: writing 1 bits sets them
_IS_RP2350 = "RP2350" in sys.implementation._machine  # type: ignore[attr-defined]
_ADC_BASE = 0x400A_0000 if _IS_RP2350 else 0x4004_C000
_PWM_BASE = 0x400A_8000 if _IS_RP2350 else 0x4005_0000
_PWM_STRIDE = 0x14
_PWM_CSR = 0x00          # bit 0 EN, bit 2 A_INV, bit 3 B_INV
_PWM_DIV = 0x04          # 8.4 fixed-point clock divider
_PWM_CTR = 0x08
_PWM_CC = 0x0C           # A in bits 15:0, B in bits 31:16
_PWM_TOP = 0x10
_PWM_EN_B_INV = 1 | (1 << 3)
_PWM_LEVEL_GATED = 1 << 4  # CSR DIVMODE 1: the divider, so the counter, runs while input B is high
_PWM_RISING = 2 << 4     # CSR DIVMODE 2: the counter advances at each rising edge of input B
_GATE_SM = 7             # gate_window on PIO1 (docs/hardware.md, "Gated counting")
_SYNC_SM = 8             # sync_delay on PIO2 (an RP2350's third block): external sync
_SMALL_MAX = 0x3FFF_FFFF  # the largest small int of the 32-bit port
_SYNC_MASK = 0x3FFF_FFFF  # the sync pulse total runs modulo 2**30
_DREQ_ADC = 48 if _IS_RP2350 else 36
_ADC_CS = 0x00
_ADC_FCS = 0x08
_ADC_FIFO = 0x0C
_ADC_DIV = 0x10
_ADC_CLOCK_HZ = 48_000_000
_CS_EN = 1
_CS_START_MANY = 1 << 3
_CS_READY = 1 << 8
_FCS_CONFIG = 1 | (1 << 3) | (1 << 24)  # FIFO on, DREQ on, DREQ at 1 entry
_FCS_EMPTY = 1 << 8
_FCS_UNDER = 1 << 10     # write 1 to clear
_FCS_OVER = 1 << 11      # write 1 to clear
_ADC_FIFO_DEPTH = 8      # ≥ the FIFO depth of both chips

_SET_PINS_OFF = 0xE000  # set(pins, 0): HV enable low, shutter closed
_SET_PINS = 0xE000      # | value (bit 0 HV enable, bit 1 shutter)

_COUNTER_SM = (1, 2)
_PERIOD_WORDS = 16       # period-timer ring for lock and mean period (64 B, aligned)
_EDGE_RING_WORDS = 2048  # period-timer ring in analog mode: ≥ the edges of 2 blocks
_EDGE_RING_SPARE = 128   # edge-ring words an ADC ring's span leaves free (the CPU's delay)
# Period-timer DMA transfer count: 28 bits, because on an RP2350 bits 31:28 of TRANS_COUNT
# are the MODE field (0 = normal); 2**28 - 1 edges last 89 min at 50 kHz.
_PERIOD_COUNT = 0x0FFF_FFFF
_PERIOD_RESTART = 0x0800_0000  # outside analog mode the timer restarts after this many
# Analog mode: the ADC DMA writes one aligned ring endlessly, two channels chained to each
# other taking turns of _ADC_TURN samples (a multiple of every ring length, so each turn
# starts at the ring's start by the ring wrap alone: no address is ever re-armed, and a late
# CPU can only lose samples of the ring, never write outside it).
_ADC_TURN = 1 << 27
_MAX_BLOCK_EDGES = 1024  # reference edges one ADC block carries
_ADC_MARGIN = 256        # samples kept between the DMA and the oldest sample still read
_GUARD_WINDOW_S = 200e-6
_MAX_ADC_LEVEL = 4094    # a level check `sample > level` can never trip at full scale 4095
_HEARTBEAT_MS = 20       # the ADC level guard silent this long in analog mode: a fault
_WATCHDOG_BASE = 0x400D_8000 if _IS_RP2350 else 0x4005_8000
_WATCHDOG_SCRATCH4 = 0x1C
_WDT_MAGIC_HI = 0x6AB7   # scratch4 = 0x6AB73121 while machine.WDT runs (the SDK's
_WDT_MAGIC_LO = 0x3121   # watchdog_enable); machine.reset() writes 0 there
# The guard's timer (a hard IRQ, from boot to shutdown): in every mode the photon line's high
# time per window (trip within two windows), in analog mode also the ADC level (within one
# window + one check); its heartbeat is checked by guard_fault()
_GUARD_TIMER_HZ = 2000
# High-time trip: GP17's PWM slice counts at _HIGH_COUNT_HZ (or just below) while the photon
# line is high; a window is judged once it lasts _HIGH_MIN_US (a check right after another
# is added to the next one) and only if it lasts at most _HIGH_MAX_US, well inside the 65.5 ms
# the 16-bit counter takes to wrap at 1 MHz (a longer one is counted and reported as a
# guard fault instead). Fractions in 1/_HIGH_Q.
_HIGH_COUNT_HZ = 1_000_000
_HIGH_MIN_US = 250
_HIGH_MAX_US = 60_000
_HIGH_Q = 1024
_HIGH_FRACTION_RANGE = (0.01, 0.99)  # at 1.0 the trip could never come: no window is > 100 %
_LOCK_TOLERANCE = 0.005  # relative period spread that still counts as locked


def _pwm_slice_base(gpio: int) -> int:
    """The registers of the PWM slice of GPIO 0 … 31: slice (gpio >> 1) & 7 on both chips
    (an RP2350's slices 8 … 11 serve only GPIO 32 and up)."""
    return _PWM_BASE + ((gpio >> 1) & 7) * _PWM_STRIDE


def _b_input_counter(gpio: int, mode: int, div16: int) -> int:
    """The PWM slice of `gpio` (a channel-B pin) set up, still stopped, as a counter of its
    input in DIVMODE `mode` with divider `div16`/16, wrapping at 2**16; returns the slice's
    register base. The pin is an input with its pull-down first (on an RP2350 this lifts the
    pad's isolation), and the slice is in its input mode before the pin gets the PWM
    function, so the pin never drives its line as a B output."""
    machine.Pin(gpio, machine.Pin.IN, machine.Pin.PULL_DOWN)
    base = _pwm_slice_base(gpio)
    mem = machine.mem32
    mem[base + _PWM_CSR] = mode
    mem[base + _PWM_DIV] = div16
    mem[base + _PWM_TOP] = 0xFFFF
    mem[base + _PWM_CC] = 0
    mem[base + _PWM_CTR] = 0
    machine.PWM(machine.Pin(gpio))  # the pin's function: its input to slice B
    return base


def _aligned(words: int, typecode: str = "I") -> tuple:
    """A zeroed array with a sub-view whose address is aligned to its own size in bytes
    (DMA rings wrap on a power-of-two boundary). Returns (array, first index)."""
    size = words * 4 if typecode == "I" else words * 2
    per = 4 if typecode == "I" else 2
    buf = array(typecode, bytes(2 * size))
    addr = uctypes.addressof(buf)
    first = ((-addr) % size) // per
    return buf, first


def _two_rings(adc_samples: int, edge_words: int) -> tuple:
    """One zeroed bytearray (made in place: an array from bytes() would need twice the
    memory for a moment) holding an ADC ring of `adc_samples` (a power of two) aligned
    to its size in bytes, and an edge ring of `edge_words` uint32 (a power of two, at most
    half the ADC ring's bytes) aligned to its size: twice the ADC ring's bytes suffice for
    both, since its alignment leaves a gap before or after it of at least the edge ring's
    size, on that size's boundary. Returns (buffer, first ADC index, first edge index in
    uint32 words)."""
    size = adc_samples * 2
    buf = bytearray(2 * size)
    base = uctypes.addressof(buf)
    start = base + (-base) % size
    edge_bytes = edge_words * 4
    edge = start - edge_bytes if start - edge_bytes >= base else start + size
    return buf, (start - base) // 2, (edge - base) // 4


def _adc_ring_len(block_samples: int, rate_hz: float = 0.0, pem_hz: float = 0.0,
                  most: int = 0) -> int:
    """Samples in the ADC ring (a power of two): at least the block being read, the next one,
    and the margin. With a sample rate, PEM frequency and the allocated ring (`most`
    samples), as many more as fit while the ring spans no more reference edges than the edge
    ring holds: a CPU that collects blocks late then has the most time, and when it is later
    still it loses whole blocks (counted as late), never the edge times (a fault)."""
    ring_len = 2
    while ring_len < block_samples + block_samples // 2 + _ADC_MARGIN:
        ring_len <<= 1
    while (2 * ring_len <= most and base.edges_per_block(2 * ring_len, rate_hz, pem_hz)
           <= _EDGE_RING_WORDS - _EDGE_RING_SPARE):
        ring_len <<= 1
    return ring_len


def _addr(buf, index: int, itemsize: int) -> int:
    return uctypes.addressof(buf) + index * itemsize


def _channel(dma) -> int:
    """The channel number of an rp2.DMA (an attribute the stubs do not declare)."""
    return dma.channel


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
    # gated counting: the board's own trigger, and on an RP2350 an external laser's sync
    # (sync_delay on the third PIO block, which an RP2040 lacks). Several gates (time bins,
    # the protocol's most: 64) with the board's own trigger only: the frame-completion IRQ
    # moves the gate start between frames, a transition frame (not sent) between two gates
    # (docs/hardware.md, "Several gates")
    trigger_sources = ("internal", "external") if _IS_RP2350 else ("internal",)
    max_gates = 64

    def __init__(self, usb: bool = True) -> None:
        # interrupted half way (a Ctrl-C, an error), what was started is stopped again
        try:
            self._init(usb)
        except BaseException:
            self.shutdown()
            raise

    def _init(self, usb: bool) -> None:
        # HV enable and shutter low before anything else, whatever a previous run left
        self._safe_pins()
        # a port older than the declared minimum lacks APIs used below: say so at once
        # (REPL) and keep the reason for STATUS / SELF_TEST (`boot_fault`)
        self.boot_fault = rp2_version.check(sys.implementation.version)
        if self.boot_fault:
            print("cplscope:", self.boot_fault)
        self._crc_table = array("I", bytes(1024))
        K.crc32_table(self._crc_table)
        self.clock_hz = machine.freq()
        self.tick_hz = self.clock_hz
        self._reset_cause = self._read_reset_cause()
        # inputs the PIO reads (on an RP2350 this also lifts the pads' reset isolation), with
        # pull-downs: an unplugged cable reads low, not a floating input the guard counts
        machine.Pin(PIN_PHOTON, machine.Pin.IN, machine.Pin.PULL_DOWN)
        machine.Pin(PIN_PEM_REF, machine.Pin.IN, machine.Pin.PULL_DOWN)
        self._keepalive = machine.Pin(PIN_HV_KEEPALIVE, machine.Pin.OUT, value=0)
        self._kbd_flag = False  # a Ctrl-C caught by a hard IRQ handler, for the main loop
        # PWM outputs
        self._pem_drive = machine.PWM(machine.Pin(PIN_PEM_DRIVE))
        self._pem_drive.duty_u16(0)
        self._pem_p16 = 0  # drive PWM period · divider, in 1/16 cycles
        self._pem_drive_on = False  # its pin function and slice are set up (by PWM.freq)
        self._pem_ctrl = machine.PWM(machine.Pin(PIN_PEM_CTRL))
        self._pem_ctrl.freq(PWM_CARRIER_HZ)
        self._pem_ctrl.duty_u16(0)
        self._hv = machine.PWM(machine.Pin(PIN_HV_CTRL))
        self._hv.freq(PWM_CARRIER_HZ)
        self._hv.duty_u16(0)
        self._hv_set = 0.0
        self._home = machine.Pin(PIN_HOME, machine.Pin.IN, machine.Pin.PULL_UP)
        # machine.ADC(Pin) switches the pad to analog (digital input and pulls off);
        # machine.ADC(channel) would leave the pull-down loading the divider
        machine.ADC(machine.Pin(G.ADC0))
        self._adc_hv = machine.ADC(machine.Pin(G.ADC1))
        self._adc_pickup = machine.ADC(machine.Pin(G.ADC2))
        self._hv_kind = HV_SUPPLY
        self._hv_vpc = HV_FULL_SCALE_V / 3.3   # HV per volt of control input
        self._hv_min = 0.0
        self._hv_monitor = True
        self._hv_settle_ms = 0
        self._hv_on_ms = time.ticks_ms()  # when HV enable last came on
        self._head_power = False
        self._guard_beat = array("i", [0])   # ADC level checks done (hard IRQ)
        self._beat_seen = 0
        self._beat_ms = time.ticks_ms()
        self._hv_cached = 0.0
        # PIO1: period timer, guard, stepper
        self._pem_source = base.PEM_EXTERNAL
        self._pem_freq = 50_000.0
        self._drive = 0.0
        self._period_ring, self._period_first = _aligned(_PERIOD_WORDS)
        self._period_view = memoryview(self._period_ring)[self._period_first:]
        self._period_dma = rp2.DMA()
        self._period_stats = array("i", [0, 0, 0])
        self._period_seen = 0
        self._period_ps = 0
        self._edge_us = time.ticks_us()  # when the last new period word was seen
        self._set_pem_freq(self._pem_freq)
        self._locked = False
        self._lock_lost = False
        self._start_period_timer()
        self._guard_tripped = False
        self._guard_reason = ""
        self._guard_rate = 0.0
        self._guard_level = _MAX_ADC_LEVEL  # guard_reset() re-arms with it: a valid level
        self._guard_trip_count = 0
        self._start_high_counter()
        self._high_fraction = 0.5
        self._set_high_limit(self._high_fraction)
        self._high_trip = 0       # the window that tripped: counts high, its length in µs
        self._high_trip_us = 0
        self._high_late = 0       # windows too long to judge (the counter may have wrapped)
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
        self._rx_count_addr: list = [[0, 0], [0, 0]]  # [buffer][counter] RX TRANS_COUNT
        self._snap = array("I", [0, 0])
        self.frames_misaligned = 0  # frames dropped because the counters were out of step
        self._frame_next = 0
        self.frames_lost = 0  # counter frames and ADC blocks collected too late (dropped)
        self._lost_pending = 0  # of those, not yet reported by data_lost()
        self._frame = base.CounterFrame(self.max_bins)
        self._frame_ticks = array("i", [0, 0])
        self._t_bin = 0
        self._gating: "GateTiming | None" = None  # gated counting's timing, None: continuous
        self._gate_sm: "rp2.StateMachine | None" = None
        self._trigger = False
        self._pulses = 0          # pulses per frame in gated counting (from the periods)
        # external sync: the pulse counter's slice CTR, and in _sync (hard IRQs write it):
        # [0] sync edges so far (mod 2**30), [1] the CTR they were counted up to, [2] and
        # [3] the total when frame buffer 0 / 1 completed; _sync_prev: the total at the end
        # of the last frame collected
        self._sync_sm: "rp2.StateMachine | None" = None
        self._sync_on = False
        self._sync = array("i", [0, 0, 0, 0])
        self._sync_prev = 0
        self._sync_ctr_addr = _pwm_slice_base(PIN_SYNC_IN) + _PWM_CTR
        self._sync_us = time.ticks_us()
        self._sync_max_us = _HIGH_MAX_US
        self._sync_late = 0       # reads too far apart: the 16-bit counter may have wrapped
        self._sync_used = False
        self._gate_delay_ns = 0
        # time bins (several gates, internal trigger): the gates' PWM compares cc_b[j] and
        # reported delays; the IRQ's side (_tb_gate: the gate last written, _tb_park: the
        # running frame counts a gate, so its end parks it) and the collecting side
        # (_tb_next: the gate of the next data frame, _tb_transition: the next frame to
        # collect is a transition frame, never sent); _cc_a_now/_cc_b_now: the slice's CC
        # as last written, so that the trigger's and the gate's writes keep each other's half
        self._tb_n = 0            # gates of the running acquisition (0/1: no time bins)
        self._tb_cc: list = []
        self._tb_delay_ns: list = []
        self._tb_gate = 0
        self._tb_park = False
        self._tb_next = 0
        self._tb_transition = False
        self._tb_first = 0        # the gate the next START begins with
        self.frames_transition = 0  # transition frames collected and not sent (time bins)
        self._cc_a_now = 0
        self._cc_b_now = 0
        self._pwm_cc_addr = _pwm_slice_base(PIN_TRIGGER) + _PWM_CC
        self._live16 = 0          # 16·B·t_bin: the gated cycles of 16 periods
        self._saturation = 0      # a bin above this many counts per frame is saturated
        self._start_period = 2500  # period (cycles) t_bin was computed from at START
        self._adc_rate = 100_000.0
        self._adc_block = 1024
        self._adc_div = 479
        self._analog = False
        self._adc_dma: list = []
        # The ADC ring (see _ADC_TURN): _adc_turns[0] counts finished DMA turns (IRQ); block k,
        # the next one due, starts _adc_blk_off samples into turn _adc_blk_turn, at ring index
        # _adc_idx.
        # The analog rings are made at boot, once, in one allocation while the heap is still
        # whole: made at START (48 KB with their alignment) they failed with MemoryError on
        # the RP2040's fragmented heap. The ADC ring fits the largest block and is aligned to
        # its size, so a smaller block's ring starts there as well.
        self._adc_ring_len = self._adc_ring_max = _adc_ring_len(self.max_block_samples)
        ring, first, edge_first = _two_rings(self._adc_ring_len, _EDGE_RING_WORDS)
        self._adc_ring = ring
        self._adc_first = first
        self._adc_view = memoryview(ring)[2 * first:2 * (first + self._adc_ring_len)]
        self._adc_ring_addr = _addr(ring, first, 2)
        self._adc_turns = array("i", [0])
        self._adc_blk_turn = 0
        self._adc_blk_off = 0
        self._adc_idx = 0
        self._adc_blocks = 0
        self._block = base.AdcBlock(self.max_block_samples, _MAX_BLOCK_EDGES)
        self._edge_ring = ring  # the edge ring's words, in the same buffer
        self._edge_first = edge_first
        self._edge_view = memoryview(ring)[4 * edge_first:4 * (edge_first + _EDGE_RING_WORDS)]
        self._edge_state = array("i", [0, 0])
        self._edge_read = 1
        self._edge_views: dict = {}  # n_edges → view of edge_buf, made once per length
        # Time kept in small ints (long ints would allocate): t0 of the next block due is
        # _t0_hi·2**30 + _t0_lo ticks; a block lasts _blk_q ticks plus _blk_r/_blk_d, the
        # fraction carried in _blk_rem; _edge_rel is the last consumed edge's time relative to
        # that t0.
        self._t0_hi = self._t0_lo = 0
        self._blk_q, self._blk_r, self._blk_d, self._blk_rem = 0, 0, 1, 0
        self._edge_rel = 0
        self._guard_seen = False
        self._guard_adc_level = 0
        self._guard_pos = 0  # ring index up to which the ADC level guard has looked
        # last: its handler reads what is set up above. Not on a port older than the
        # declared minimum (boot_fault), whose Timer may refuse hard=: the board then comes
        # up to report it, and starts no acquisition
        self._guard_timer: "machine.Timer | None" = None
        if not self.boot_fault:
            self._guard_timer = machine.Timer(-1, mode=machine.Timer.PERIODIC,
                                              freq=_GUARD_TIMER_HZ,
                                              callback=self._guard_tick, hard=True)
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
        """The port reports WDT_RESET after a machine.reset() too (it reboots through the
        watchdog): only a timeout of the watchdog that machine.WDT started, which leaves the
        SDK's magic in scratch register 4, is a watchdog reset."""
        cause = machine.reset_cause()
        if cause == machine.WDT_RESET:
            s4 = machine.mem32[_WATCHDOG_BASE + _WATCHDOG_SCRATCH4]
            if (s4 >> 16) & 0xFFFF == _WDT_MAGIC_HI and s4 & 0xFFFF == _WDT_MAGIC_LO:
                return base.RESET_WATCHDOG
            return base.RESET_OTHER
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
        if self._analog and self._adc_ahead() >= self._adc_block:
            return True
        return self._usb is not None and self._usb.readable() > 0

    # PEM reference: period timer ---------------------------------------------------------------
    def _ref_pin(self) -> int:
        return PIN_PEM_DRIVE if self._pem_source == base.PEM_INTERNAL else PIN_PEM_REF

    def _start_period_timer(self, ring=None, first: int = 0, words: int = _PERIOD_WORDS,
                            enable: bool = True) -> None:
        """(Re)start the period timer at its first instruction, its words going by DMA into an
        aligned ring (word 0 is the start-up word, see rp2_pio). Returns with it running, or
        with everything armed but the state machine if not `enable`."""
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
                                count=_PERIOD_COUNT, ctrl=ctrl, trigger=True)
        self._period_sm = sm
        self._period_count0 = _PERIOD_COUNT
        self._period_seen = 0
        if enable:
            sm.active(1)

    def _period_words_done(self) -> int:
        return self._period_count0 - self._period_dma.count  # type: ignore[attr-defined]

    def _set_pem_freq(self, frequency_hz: float) -> None:
        """The nominal PEM frequency, and the integer thresholds _service() uses for it (so
        that it does no float maths: it runs on every wait())."""
        self._pem_freq = frequency_hz
        self._nominal16 = int(16 * self.clock_hz / frequency_hz)  # cycles of 16 periods
        # no new period word for 4 nominal periods + 2 ms: the reference is gone
        self._edge_timeout_us = int(4_000_000 / frequency_hz) + 2000
        # ps of the mean period from a 16-period sum in cycles: total·_ps_a/_ps_b
        a = 1_000_000_000_000
        b = 16 * self.clock_hz
        g = _gcd(a, b)
        self._ps_a = a // g
        self._ps_b = b // g

    def _service(self) -> None:
        """Lock detection, mean period, resonance tracking; cheap (no allocation, small ints
        only), runs from wait(). Locked while a new reference edge came within
        _edge_timeout_us, the last 16 periods agree within 0.5 % (+2 cycles) and their mean
        is within 5 % of the nominal one; in counting and in analog mode alike."""
        done = self._period_words_done()
        now = time.ticks_us()
        if done != self._period_seen:
            self._period_seen = done
            self._edge_us = now
        if not self._analog and done > _PERIOD_RESTART:
            self._start_period_timer()
            done = 0
        locked = False
        if (done >= _PERIOD_WORDS + 2
                and time.ticks_diff(now, self._edge_us) <= self._edge_timeout_us):
            if self._analog:
                ring = self._edge_view
                ring_len = _EDGE_RING_WORDS
            else:
                ring = self._period_view
                ring_len = _PERIOD_WORDS
            st = self._period_stats
            K.period_stats(ring, ring_len, (done - _PERIOD_WORDS) % ring_len, _PERIOD_WORDS,
                           P.PERIOD_SCALE, P.PERIOD_OFFSET, st)
            total = st[0]
            nominal = self._nominal16
            if self._pem_source == base.PEM_INTERNAL:
                # the reference is the board's own drive, so only a found resonance says
                # that the PEM moves; its periods are not checked for spread (a tracking
                # step rewrites the PWM divider mid-period: one period a few % off)
                locked = self._resonance.found and 20 * abs(total - nominal) <= nominal
            else:
                locked = (st[2] - st[1] - 2 <= total // 3200          # 0.5 % of the mean
                          and 20 * abs(total - nominal) <= nominal)   # 5 % of nominal
            if locked:
                b = self._ps_b
                self._period_ps = (total // b) * self._ps_a + (total % b) * self._ps_a // b
        if not locked:
            self._period_ps = 0
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
        self._set_pem_freq(frequency_hz)
        if source == base.PEM_INTERNAL:
            self._pem_ctrl.duty_u16(0)
            self._resonance.search(frequency_hz)
        else:
            self._resonance.stop()
            self._pem_drive.duty_u16(0)
        self._apply_drive()
        if changed:
            self._start_period_timer()

    def pem_set_drive(self, fraction: float) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("PEM drive must be a fraction 0 … 1, got %r" % fraction)
        was = self._drive
        self._drive = fraction
        self._apply_drive()
        if self._pem_source == base.PEM_INTERNAL and was == 0.0 and fraction > 0.0:
            self._resonance.search_again()

    def _apply_drive(self) -> None:
        if self._pem_source == base.PEM_INTERNAL:
            # square wave: its fundamental is ∝ sin(π·duty), so duty = asin(drive)/π
            duty = math.asin(self._drive) / math.pi
            self._pem_drive.duty_u16(int(duty * 65535))
        else:
            self._pem_ctrl.duty_u16(int(self._drive * 65535))

    def _pem_drive_freq(self, f: float, direction: int = 0) -> float:
        """Set the PEM drive PWM (GP6) as close to f as its 8.4 fixed-point divider and
        16-bit TOP allow, and return the frequency reached; with direction ±1, to the
        nearest setting above (+1) or below (-1) the present one if the closest one is the
        present one. machine.PWM.freq() would keep the divider at 1 at PEM frequencies:
        20 Hz steps at 50 kHz, coarser than a PEM's resonance (about 5 Hz wide at Q ≈ 1e4).
        With the divider's fraction (1 … 8, so TOP ≥ 300 keeps the duty fine) the steps
        are about f²/(16·f_clk): mostly 1.25 Hz at 50 kHz (0.2 Hz at 20 kHz); the grid
        of TOP·divider products is irregular, with gaps of up to 4 of those steps."""
        # integers only in the loops (a float is a heap object on the port: the search made
        # about 10 kB of garbage per tracking step); the period in 1/16 system-clock cycles
        ticks16 = int(16 * self.clock_hz / f + 0.5)
        cur = self._pem_p16
        best_d, best_t, best_err = 16, 2, -1
        for d in range(16, 129):               # divider 1 … 8 in steps of 1/16
            t = (ticks16 + d // 2) // d
            if 2 <= t <= 65536:
                err = abs(t * d - ticks16)
                if best_err < 0 or err < best_err:
                    best_d, best_t, best_err = d, t, err
        if direction and best_t * best_d == cur:
            best_err = -1
            for d in range(16, 129):
                t = (cur - 1) // d if direction > 0 else cur // d + 1
                if 2 <= t <= 65536:
                    err = abs(t * d - cur)
                    if best_err < 0 or err < best_err:
                        best_d, best_t, best_err = d, t, err
        if not self._pem_drive_on:
            self._pem_drive.freq(int(f))       # pin function and slice enable, as the port does
            self._pem_drive_on = True          # (once: it rewrites DIV and TOP on its own)
        base = _pwm_slice_base(PIN_PEM_DRIVE)
        machine.mem32[base + _PWM_DIV] = best_d
        machine.mem32[base + _PWM_TOP] = best_t - 1
        self._pem_p16 = best_t * best_d
        return 16 * self.clock_hz / self._pem_p16

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
        if self.boot_fault:
            raise RuntimeError(self.boot_fault)
        period = self._period_cycles()
        margin = int(period * _LOCK_TOLERANCE) + 2
        self._t_bin, budget, pairs = P.counter_timing(period, self._bins, margin)
        self._start_period = period
        self._live16 = 16 * self._bins * self._t_bin
        # a bin counting more than half of the pulses the sampler can resolve is saturated;
        # worked out here, not per frame: at 1 kHz, 2 bins and 100000 periods the product is
        # above 2**30 at 150 MHz (RP2350), a long int (an allocation) on the 32-bit port
        half = self._periods * (self._t_bin // P.MIN_PULSE_PERIOD_CYCLES + 1) // 2
        self._saturation = half if half < _SMALL_MAX else _SMALL_MAX
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
        # gated: the counters count the gated-photon pin that gate_window drives
        photon = PIN_GATED_PHOTON if self._gating is not None else PIN_PHOTON
        for c, sm_id in enumerate(_COUNTER_SM):
            sm = rp2.StateMachine(sm_id, P.photon_counter, freq=self.clock_hz,
                                  in_base=machine.Pin(PIN_GATE0 + c),
                                  jmp_pin=machine.Pin(photon))
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
            for b in (0, 1):
                self._rx_count_addr[b][c] = (_DMA_BASE + _channel(chans[2 + b]) * _DMA_STRIDE
                                             + _DMA_TRANS_COUNT)
        self._counters = counters
        self._gate = gate
        self._lock_lost = not self._locked
        self._guard_seen = self._guard_tripped
        if self._gating is not None:
            self._start_gating(self._gating)
        for sm in counters:
            sm.active(1)
        gate.active(1)
        self._counting = True

    # gated counting -----------------------------------------------------------------------
    def gate_configure(self, trigger: str, pulse_period_ns: int, trigger_width_ns: int,
                       gate_delay_ns: int, gate_width_ns: int, gates: int) -> tuple:
        if self._counting:
            raise ValueError("stop counting before reconfiguring the gates")
        if trigger not in self.trigger_sources:
            raise ValueError(self.trigger_unsupported(trigger)
                             or "trigger must be one of %s, got %r"
                             % (", ".join(self.trigger_sources), trigger))
        if not 1 <= gates <= self.max_gates:
            raise ValueError("gates must be 1 … %d, got %d" % (self.max_gates, gates))
        if gates > 1 and trigger != "internal":
            raise ValueError("time bins (several gates) need the board's own trigger: the "
                             "gate start is moved between frames on its PWM slice, and an "
                             "external laser's gate start comes from a PIO program")
        t = GateTiming(self.clock_hz, trigger, pulse_period_ns, trigger_width_ns,
                       gate_delay_ns, gate_width_ns, gates)
        for j in range(gates):
            # each gate runs alone for its frames, so the law applies gate by gate; the last
            # gate, the latest, needs the longest period
            need = shortest_period(t.row_delay(j), t.width)
            if t.period < need:
                raise ValueError("a gate of %d ns from %d ns needs a pulse period of at least "
                                 "%d ns (gate_window re-arms 3 cycles after its gate, and the "
                                 "gate must end before the next pulse)"
                                 % (t.ns()[3], t.row_delay_ns(j),
                                    cycles_to_ns(need, self.clock_hz)))
        self._gating = t
        self._tb_first = 0
        return t.ns()

    def trigger_unsupported(self, trigger: str) -> str:
        if trigger == "external" and trigger not in self.trigger_sources:
            return ("this board runs only its own trigger: following an external laser's "
                    "sync needs an RP2350's third PIO block, and this is an RP2040 (a Pico "
                    "2 can)")
        return ""

    def gate_disable(self) -> None:
        if not self._counting:
            self._gating = None

    def _pwm_slice_base(self) -> int:
        return _pwm_slice_base(PIN_TRIGGER)

    def _start_gating(self, t: GateTiming) -> None:
        """The gate start and gate_window, started at START. Internal trigger: the
        trigger's PWM slice (trigger off: channel A's compare 0, so only the gate start
        runs, for the dark as for the light). External: sync_delay on PIO2 drives the gate
        start from the sync input, whose edges a PWM slice counts; the trigger pin stays a
        low output."""
        base = self._pwm_slice_base()
        self._trigger = False
        self._tb_n = 0
        if t.trigger == "external":
            self._start_sync(t)
        else:
            machine.PWM(machine.Pin(PIN_TRIGGER))      # both pins to the PWM function
            machine.PWM(machine.Pin(PIN_GSTART))
            machine.mem32[base + _PWM_CSR] = 0
            machine.mem32[base + _PWM_DIV] = t.div << 4
            machine.mem32[base + _PWM_TOP] = t.top
            machine.mem32[base + _PWM_CTR] = 0
            self._start_time_bins(t)
            # the slice is stopped: the write takes effect at once, not at a wrap
            H.store_halves(self._pwm_cc_addr, self._cc_b_now, 0)
        sm = rp2.StateMachine(_GATE_SM, P.gate_window, freq=self.clock_hz,
                              in_base=machine.Pin(PIN_PHOTON),
                              out_base=machine.Pin(PIN_GATED_PHOTON))
        sm.active(0)
        sm.restart()
        sm.put(P.window_word(t.width))
        sm.exec("pull()")
        sm.active(1)
        self._gate_sm = sm
        frame_cycles = self._periods * self._start_period
        if self._tb_n > 1:
            # a data frame begins with the gate parked up to the first wrap after the IRQ
            # that set its gate: half a period on average
            frame_cycles -= t.period // 2
        self._pulses = pulses_in_frame(frame_cycles, t.period)
        self._gate_delay_ns = t.ns()[2]
        if t.trigger == "external":
            self._sync_sm.active(1)                   # type: ignore[union-attr]
        else:
            machine.mem32[base + _PWM_CSR] = _PWM_EN_B_INV

    def _start_sync(self, t: GateTiming) -> None:
        """External sync (RP2350): GP21's slice counts the sync's rising edges (channel B
        in DIVMODE 2, set before the pin gets the PWM function, so that the pin is never a
        B output driving the laser's line), and sync_delay on PIO2 drives GSTART `delay`
        cycles after each edge (armed here, started last by _start_gating). The count is
        read by the guard's timer often enough that the 16-bit counter cannot wrap unseen,
        and at every frame's completion (the frame's pulses)."""
        base = _b_input_counter(PIN_SYNC_IN, _PWM_RISING, 16)  # DIV 1.0: every edge counts
        mem = machine.mem32
        self._sync_used = True
        sm = rp2.StateMachine(_SYNC_SM, P.sync_delay, freq=self.clock_hz,
                              in_base=machine.Pin(PIN_SYNC_IN),
                              set_base=machine.Pin(PIN_GSTART))
        sm.active(0)
        sm.restart()
        sm.put(t.sync_delay_word(0))
        sm.exec("pull()")
        sm.exec("mov(isr, osr)")
        self._sync_sm = sm
        # half the counter's wrap at the declared pulse period: a laser up to twice as fast
        # still cannot wrap it between two reads that came on time
        wrap_us = 0x10000 * t.period // (2 * (self.clock_hz // 1_000_000))
        self._sync_max_us = wrap_us if wrap_us < _HIGH_MAX_US else _HIGH_MAX_US
        state = machine.disable_irq()
        self._sync[0] = self._sync[1] = self._sync[2] = self._sync[3] = 0
        self._sync_prev = 0
        self._sync_late = 0
        self._sync_us = time.ticks_us()
        self._sync_on = True
        mem[base + _PWM_CSR] = _PWM_RISING | 1
        machine.enable_irq(state)

    def _sync_count(self) -> None:
        # hard IRQ (the guard's timer, and a frame's completion, which may preempt the
        # timer: its update runs with interrupts off): the sync edges since the last read,
        # from the 16-bit counter, into the running total
        state = machine.disable_irq()
        now = time.ticks_us()
        if time.ticks_diff(now, self._sync_us) > self._sync_max_us:
            self._sync_late += 1
        self._sync_us = now
        s = self._sync
        ctr = H.load1(self._sync_ctr_addr)
        s[0] = (s[0] + ((ctr - s[1]) & 0xFFFF)) & _SYNC_MASK
        s[1] = ctr
        machine.enable_irq(state)

    def _stop_gating(self) -> None:
        # the trigger first: no excitation pulse without its gate (between two bytecodes
        # MicroPython may run scheduled work, USB callbacks, for hundreds of µs)
        machine.mem32[self._pwm_slice_base() + _PWM_CSR] = 0
        machine.Pin(PIN_TRIGGER, machine.Pin.OUT, value=0)
        self._trigger = False
        self._tb_n = 0                       # no gate steps from a late completion IRQ
        if self._gate_sm is not None:
            self._gate_sm.active(0)
            self._gate_sm = None
        if self._sync_sm is not None:
            self._sync_sm.active(0)
            self._sync_sm = None
        self._sync_on = False
        if self._sync_used:
            # stopped, B still an input (never a B output driving the laser's sync line)
            machine.mem32[_pwm_slice_base(PIN_SYNC_IN) + _PWM_CSR] = _PWM_RISING

    def trigger_enable(self, on: bool) -> None:
        """The board's own trigger pulses (internal trigger only: with an external laser the
        trigger pin stays a low output) while the shutter is open and the guard not
        tripped."""
        t = self._gating
        if t is None or t.trigger != "internal" or self._gate_sm is None:
            self._trigger = False
            return
        on = bool(on) and self.shutter_open() and not self._guard_tripped
        state = machine.disable_irq()   # the gate's half as the frame IRQ last wrote it
        self._cc_a_now = t.cc_a if on else 0
        H.store_halves(self._pwm_cc_addr, self._cc_b_now, self._cc_a_now)
        machine.enable_irq(state)
        self._trigger = on

    def _start_time_bins(self, t: GateTiming) -> None:
        """The gate sequence of a START (internal trigger): the first data frame counts gate
        _tb_first, whose compare goes into the slice before it runs."""
        n = t.gates
        self._tb_n = n
        self._tb_cc = t.cc_b
        self._tb_delay_ns = [t.row_delay_ns(j) for j in range(n)]
        j = self._tb_first if self._tb_first < n else 0
        self._tb_gate = self._tb_next = j
        self._tb_park = n > 1
        self._tb_transition = False
        self._cc_a_now = 0
        self._cc_b_now = t.cc_b[j]

    def _gate_step(self) -> None:
        """Hard IRQ, at a frame's completion (time bins only). A frame of gate j ended:
        park the gate start (channel B's compare 0: the inverted output stays high, so it
        never rises and gate_window opens no gate), so the next frame, which may hold gate
        j's photons from its first partial period, is a transition frame; a transition frame
        ended: gate j + 1's compare. Either write takes effect at the slice's next wrap, the
        start of a pulse period (CC is double-buffered), so a data frame counts its own gate
        only, and this handler has a whole frame to run before its write would be late."""
        if self._tb_park:
            cc = 0
        else:
            j = self._tb_gate + 1
            if j == self._tb_n:
                j = 0
            self._tb_gate = j
            cc = self._tb_cc[j]
        self._tb_park = not self._tb_park
        self._cc_b_now = cc
        H.store_halves(self._pwm_cc_addr, cc, self._cc_a_now)

    def trigger_on(self) -> bool:
        return self._trigger and not self._guard_tripped

    def _rx_irq_0(self, dma) -> None:
        self._frame_done[0] += 1
        if self._frame_done[0] == 2:
            if self._sync_on:
                self._sync_count()               # the frame's end: its pulse count
                self._sync[2] = self._sync[0]
            if self._tb_n > 1:
                self._gate_step()

    def _rx_irq_1(self, dma) -> None:
        self._frame_done[1] += 1
        if self._frame_done[1] == 2:
            if self._sync_on:
                self._sync_count()
                self._sync[3] = self._sync[0]
            if self._tb_n > 1:
                self._gate_step()

    def _stop_counter_dma(self) -> None:
        for chans in self._counter_dma:
            _dma_stop(chans)
        self._counter_dma = []

    def counter_stop(self) -> None:
        if not self._counting:
            return
        if self._gate_sm is not None:
            self._stop_gating()
        self._gate.active(0)
        for sm in self._counters:
            sm.active(0)
        self._stop_counter_dma()
        for rings in self._rings:
            for ring in rings:
                K.fill_u32(ring.view, ring.words, -1)
        self._counting = False

    def _counter_late(self, b: int) -> bool:
        """True if the DMA has come round to buffer b again (or may have): its TX channels
        were triggered by the other buffer's, or a buffer completed more often than once.
        The channels of a collected buffer are idle with a transfer count of 0 until the
        other buffer's TX channels finish and chain into them."""
        done = self._frame_done
        if done[b] != 2 or done[1 - b] >= 2:
            return True
        for chans in self._counter_dma:
            tx = chans[b]
            if tx.active() or tx.count:
                return True
        return False

    def counter_poll(self):
        b = self._frame_next
        if not self._counting:
            return None
        if self._frame_done[b] < 2:
            if self._frame_done[1 - b] >= 2:
                # the other buffer finished first: a completion of this one was not counted
                # (an interrupt lost while interrupts were off for a whole frame)
                self._drop_late_frames()
            return None
        if self._counter_late(b):
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
        # Nothing to re-arm: a trigger reloads the transfer count, and the ring wrap brings
        # the read and write addresses of both channels to the same ring word, whose bin is
        # unchanged (a frame is K·B/2 transfers, a multiple of B/2; the ring is a multiple of
        # B/2 words). Writing an address of a channel the chain may already have started
        # would shift the bins, so none is written.
        if self._counter_late(b):
            # the other buffer finished while this one was read: it may hold counts of the
            # next frame, and the ring reset above may have come too late for it
            self._drop_late_frames()
            return None
        if not self._counters_in_step(1 - b):
            self._drop_misaligned()
            return None
        self._frame_done[b] = 0
        self._frame_next = 1 - b
        if self._tb_transition:
            # time bins: the frame after a gate change may hold the old gate's photons (its
            # first partial pulse period): never sent, and neither lost nor late. Its flags
            # (overload, lock lost) stay for the next data frame
            self._tb_transition = False
            self.frames_transition += 1
            return None
        frame.saturated = biggest < 0 or biggest > self._saturation
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
        if self._gate_sm is not None:
            # internal trigger: the frame's time over the pulse period (±1 of the frame's
            # true count; time bins: less the parked first partial period, half a period on
            # average); external: the sync edges counted up to the frame's end
            frame.gate = 0
            frame.pulses = self._pulses
            frame.gate_delay_ns = self._gate_delay_ns
            if self._tb_n > 1:
                j = self._tb_next
                frame.gate = j
                frame.gate_delay_ns = self._tb_delay_ns[j]
                j += 1
                self._tb_next = j if j < self._tb_n else 0
                self._tb_transition = True
            if self._sync_on:
                end = self._sync[2 + b]
                frame.pulses = (end - self._sync_prev) & _SYNC_MASK
                self._sync_prev = end
                if self._sync_late:
                    # the counter was read too late to rule out a wrap: the frame's pulses,
                    # so its live time, are not known; dropped as lost, never sent wrong
                    self._sync_late = 0
                    self.frames_lost += 1
                    self._lost_pending += 1
                    return None
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
        self._restart_counter()

    def _counters_in_step(self, b: int) -> bool:
        """Integrity check of the bin-to-ring mapping. The counters take turns, bin by bin,
        so at any moment counter 0 has handed over as many of the running frame's bins as
        counter 1, or one more. A counter that missed a gate edge would be one transfer off
        for good, every later frame with its bins shifted; then this snapshot of the two
        running RX channels' transfer counts (two loads a few cycles apart, counter 0 first,
        so at most one hand-over falls between them) is outside that range during half of
        each period: the check catches such a slip within a few frames."""
        addr = self._rx_count_addr[b]
        H.load2(addr[0], addr[1], self._snap)
        lead = self._snap[1] - self._snap[0]  # counter 0's hand-overs minus counter 1's
        return 0 <= lead <= 1

    def _drop_misaligned(self) -> None:
        """The counters are out of step: drop the frame, restart the counter from clean
        rings (rare, so it may allocate)."""
        self.frames_misaligned += 1
        self.frames_lost += 1
        self._lost_pending += 1
        self._restart_counter()

    def _restart_counter(self) -> None:
        """Stop and start the counter from clean rings after dropped frames. An overload not
        yet flagged still goes on a frame; time bins go on with the gate of the next data
        frame the host has not had (lost frames may count as lost transitions too: the
        host tells them by their gates)."""
        guard_seen = self._guard_seen
        self._tb_first = self._tb_next
        self.counter_stop()
        self.counter_start()
        self._tb_first = 0
        self._guard_seen = guard_seen

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
        self._check_block_edges(block_samples, sample_rate_hz)
        # ADC period = (1 + INT + FRAC/256) cycles of 48 MHz, at least 96
        div = _ADC_CLOCK_HZ / sample_rate_hz - 1
        self._adc_div = int(div * 256 + 0.5)
        self._adc_rate = _ADC_CLOCK_HZ / (1 + self._adc_div / 256)
        self._adc_block = block_samples

    def _check_block_edges(self, block_samples: int, sample_rate_hz: float) -> None:
        """A block must hold its reference edges (a 5 % faster PEM included): with more, the
        edges did not fit and the block went out with none."""
        edges = base.edges_per_block(block_samples, sample_rate_hz, self._pem_freq)
        if edges > _MAX_BLOCK_EDGES:
            most = int((_MAX_BLOCK_EDGES - 2) / (self._pem_freq * base.PEM_FREQ_TOLERANCE)
                       * sample_rate_hz) & ~1
            raise ValueError("block_samples=%d at %g S/s spans about %d periods of the %g Hz "
                             "PEM, more than the %d edges a block carries: use at most %d "
                             "samples" % (block_samples, sample_rate_hz, edges,
                                          self._pem_freq, _MAX_BLOCK_EDGES, most))

    def adc_start(self) -> None:
        if self._analog:
            return
        if self.boot_fault:
            raise RuntimeError(self.boot_fault)
        self._check_block_edges(self._adc_block, self._adc_rate)  # the PEM may have changed
        self.counter_stop()
        self._hv_cached = self._read_hv_now()
        self._beat_seen = self._guard_beat[0]
        self._beat_ms = time.ticks_ms()
        n = self._adc_block
        ring_len = _adc_ring_len(n, self._adc_rate, self._pem_freq, self._adc_ring_max)
        if ring_len != self._adc_ring_len:
            self._adc_ring_len = ring_len
            first = self._adc_first
            self._adc_view = memoryview(self._adc_ring)[2 * first:2 * (first + ring_len)]
        self._adc_turns[0] = 0
        self._adc_blk_turn = 0
        self._adc_blk_off = 0
        self._adc_idx = 0
        self._adc_blocks = 0
        self._guard_pos = 0
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
        mem = machine.mem32
        mem[adc + _ADC_CS] = _CS_EN                    # enabled, AINSEL = 0, not converting
        for _ in range(1000):                          # a conversion in flight ends (2 µs)
            if mem[adc + _ADC_CS] & _CS_READY:
                break
        mem[adc + _ADC_DIV] = self._adc_div
        mem[adc + _ADC_FCS] = _FCS_CONFIG
        self._adc_drain()
        ring_bits = _log2(2 * self._adc_ring_len)
        chans = [rp2.DMA(), rp2.DMA()]
        for b in (0, 1):
            ch = chans[b]
            ch.config(read=adc + _ADC_FIFO, write=self._adc_ring_addr, count=_ADC_TURN,
                      ctrl=ch.pack_ctrl(size=1, inc_read=False, inc_write=True,
                                        ring_size=ring_bits, ring_sel=True,
                                        treq_sel=_DREQ_ADC, chain_to=_channel(chans[1 - b]),
                                        irq_quiet=False))
            ch.irq(self._adc_irq, hard=True)
        self._adc_dma = chans
        chans[0].active(1)
        # the period timer into the big ring, armed but stopped; then the timer's state
        # machine and the free-running ADC start in two consecutive stores with interrupts
        # off, so that sample 0 and the timer's count start a fixed few cycles apart (in φ0)
        self._start_period_timer(self._edge_ring, self._edge_first, _EDGE_RING_WORDS,
                                 enable=False)
        self._analog = True
        state = machine.disable_irq()
        H.store2(_PIO_BASE[1] + _ATOMIC_SET + _PIO_CTRL, 1 << (4 - 4),  # SM4 = PIO1 SM0
                 adc + _ADC_CS, _CS_EN | _CS_START_MANY)
        machine.enable_irq(state)

    def _adc_drain(self) -> None:
        """Empty the ADC FIFO and clear its OVER/UNDER flags, the ADC not converting: a
        leftover sample would shift every sample of the run against t0."""
        mem = machine.mem32
        fcs = _ADC_BASE + _ADC_FCS
        for _ in range(_ADC_FIFO_DEPTH):
            if mem[fcs] & _FCS_EMPTY:
                break
            mem[_ADC_BASE + _ADC_FIFO]
        mem[fcs] = _FCS_CONFIG | _FCS_OVER | _FCS_UNDER
        if not mem[fcs] & _FCS_EMPTY:
            raise RuntimeError("the ADC FIFO does not drain: the ADC is still converting")

    def _adc_irq(self, dma) -> None:
        # a DMA turn of _ADC_TURN samples ended (every 9 min at 250 kS/s) and chained into
        # the other channel, which starts at the ring's start by the ring wrap
        self._adc_turns[0] += 1

    def _adc_ahead(self) -> int:
        """Samples the DMA has written since the start of block k, the next one due. Right
        after a turn ends and before its IRQ this lags by the few samples of the new turn
        (never leads), which _ADC_MARGIN covers."""
        w = self._adc_turns[0]
        left = self._adc_dma[w & 1].count  # type: ignore[attr-defined]
        return ((w - self._adc_blk_turn) * _ADC_TURN + (_ADC_TURN - left)
                - self._adc_blk_off)

    def _adc_next(self) -> None:
        """Block k is done with (sent or dropped): block k + 1 is due."""
        n = self._adc_block
        self._adc_blocks += 1
        self._adc_idx = (self._adc_idx + n) & (self._adc_ring_len - 1)
        self._adc_blk_off += n
        if self._adc_blk_off >= _ADC_TURN:
            self._adc_blk_off -= _ADC_TURN
            self._adc_blk_turn += 1

    def adc_stop(self) -> None:
        if not self._analog:
            return
        self._analog = False
        machine.mem32[_ADC_BASE + _ADC_CS] = _CS_EN  # stop converting
        _dma_stop(self._adc_dma)
        machine.mem32[_ADC_BASE + _ADC_FCS] = 0
        self._adc_dma = []
        self._start_period_timer()

    def adc_poll(self):
        if not self._analog:
            return None
        n = self._adc_block
        limit = self._adc_ring_len - _ADC_MARGIN
        ahead = self._adc_ahead()
        if ahead < n:
            return None
        if ahead > limit:
            # the DMA has come round to block k's samples
            self._adc_resync(ahead)
            return None
        blk = self._block
        blk.n_samples = n
        clipped = K.pack12_ring(self._adc_view, self._adc_idx, n, self._adc_ring_len,
                                blk.sample_buf)
        ahead = self._adc_ahead()
        if ahead > limit:
            self._adc_resync(ahead)  # ... while the block was being packed
            return None
        self._adc_next()
        _put_u64(blk.t0, self._t0_hi, self._t0_lo)
        t_len = self._next_block_ticks()
        # edges: period-timer words since the last block whose time falls in this one
        n = self._block_edges(t_len, blk.edge_buf)
        self._advance_t0(t_len)
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
        # t0 = hi·2**30 + lo with lo < 2**30: compared before adding, so that no value
        # reaches 2**30 (a long int on the 32-bit port)
        lo = self._t0_lo
        if lo > base.TICKS_MASK - t_len:
            self._t0_lo = lo - base.TICKS_MASK - 1 + t_len
            self._t0_hi += 1
        else:
            self._t0_lo = lo + t_len
        self._edge_rel -= t_len

    def _adc_resync(self, ahead: int) -> None:
        """The CPU collected ADC blocks too late: the DMA has come round to the samples of
        the next one due. Drop every completed block and go on with the one being written;
        its t0 shows the host the gap, and the edges of the dropped blocks are skipped."""
        lost = ahead // self._adc_block
        self.frames_lost += lost
        self._lost_pending += lost
        for _ in range(lost):
            t_len = self._next_block_ticks()
            self._block_edges(t_len, self._block.edge_buf)
            self._advance_t0(t_len)
            self._adc_next()

    def _block_edges(self, t_len: int, dst) -> int:
        """_edges of the block due, all of them consumed: their number, or 0 if there were
        more than a block carries (a PEM far above its nominal frequency), so that the next
        block's edges are its own."""
        n = self._edges(t_len, dst)
        if n < 0:
            while self._edges(t_len, dst) < 0:
                pass
            n = 0
        return n

    def _edges(self, t_len: int, dst) -> int:
        """Consume the period-timer words of the edges before t_len (ticks after the t0 of
        the block due) into dst in ADC_BLOCK layout: their number, or -1 if not all fitted
        (or a delta exceeds 65535 ticks; see rp2_dma.edges_block)."""
        done = self._period_words_done()
        if done > _PERIOD_COUNT - _EDGE_RING_WORDS:
            raise RuntimeError("analog acquisition longer than %d reference periods: STOP and "
                               "START again" % (_PERIOD_COUNT - _EDGE_RING_WORDS))
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
    def hv_configure(self, kind: str, volts_per_control_v: float, min_volts: float,
                     max_volts: float, monitor: bool, settle_ms: int, power: bool) -> None:
        """The detector's HV model (checked by the caller, cpl.hvmodel). A counting head is
        powered by HV enable alone, at once if `power` (unless the guard is tripped)."""
        self.hv_set(0.0)
        self._hv_kind = kind
        self._hv_vpc = volts_per_control_v
        self._hv_min = min_volts
        self.max_hv_volts = max_volts
        self._hv_monitor = monitor
        self._hv_settle_ms = settle_ms
        self._head_power = power and kind == HV_COUNTING_HEAD
        if self._head_power and not self._guard_tripped:
            self._switch_on()

    def hv_set(self, volts: float) -> None:
        if not 0.0 <= volts <= self.max_hv_volts:
            raise ValueError("HV must be 0 … %g V, got %r" % (self.max_hv_volts, volts))
        if volts > 0 and self._hv_kind == HV_COUNTING_HEAD:
            raise ValueError("a counting head has no HV control: HV_CONFIG power=true powers "
                             "it; SET_HV takes only 0 (power off)")
        if 0 < volts < self._hv_min:
            raise ValueError("this HV module works from %g V: set 0 (off) or %g … %g V"
                             % (self._hv_min, self._hv_min, self.max_hv_volts))
        if volts > 0 and self._guard_tripped:
            raise ValueError("the overload guard is tripped: clear it before raising the HV")
        self._hv_set = volts
        duty = int(volts / self._hv_vpc / 3.3 * 65535)
        self._hv.duty_u16(duty if duty < 65535 else 65535)
        if volts > 0:
            self._switch_on()
        else:
            self._set_outputs(hv_on=False)

    def _switch_on(self) -> None:
        if not self._outputs & 1:
            self._hv_on_ms = time.ticks_ms()
        self._set_outputs(hv_on=True)

    def hv_on(self) -> bool:
        """HV enable is on: the supply or module set above 0, or a counting head powered."""
        return bool(self._outputs & 1)

    def hv_settled(self) -> bool:
        """HV enable is on and past the detector's settling time (HV_CONFIG settle_ms)."""
        return (bool(self._outputs & 1) and time.ticks_diff(time.ticks_ms(), self._hv_on_ms)
                >= self._hv_settle_ms)

    def hv_has_monitor(self) -> bool:
        return self._hv_monitor

    def _read_hv_now(self) -> float:
        if not self._hv_monitor:  # no monitor: the value set, while on
            return self._hv_set if self._outputs & 1 else 0.0
        return self._adc_hv.read_u16() / 65535 * 3.3 * HV_MONITOR_V_PER_V

    def hv_read(self) -> float:
        # the ADC belongs to the PMT stream in analog mode: report the value read at its start
        return self._hv_cached if self._analog else self._read_hv_now()

    def shutter_set(self, is_open: bool) -> None:
        if is_open and self._guard_tripped:
            raise ValueError("the overload guard is tripped: clear it before opening the "
                             "shutter")
        if not is_open and self._trigger:
            self.trigger_enable(False)  # no pulses behind a closed shutter
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
    def guard_arm(self, max_count_rate_cps: float, max_adc_level: int,
                  max_high_fraction: float = 0.5) -> None:
        if not 0 <= max_adc_level <= _MAX_ADC_LEVEL:
            raise ValueError("max_adc_level must be 0 … %d (a sample above it trips; full "
                             "scale is %d), got %r" % (_MAX_ADC_LEVEL, _MAX_ADC_LEVEL + 1,
                                                     max_adc_level))
        low, high = _HIGH_FRACTION_RANGE
        if not low <= max_high_fraction <= high:
            raise ValueError("max_high_fraction must be %g … %g (the photon input's high time "
                             "per window that trips), got %r" % (low, high, max_high_fraction))
        self._set_high_limit(max_high_fraction)
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

    def _start_high_counter(self) -> None:
        """GP17's PWM slice (channel B, the photon line through a jumper from GP2) as a
        level-gated counter: it advances at _high_rate counts/s while the line is high and
        wraps at 2**16. The slice is in DIVMODE 1 before the pin gets the PWM function, so
        that the pin is never a B output driving the photon line (the chip disables B's
        output in the input modes)."""
        div16 = (16 * self.clock_hz + _HIGH_COUNT_HZ - 1) // _HIGH_COUNT_HZ
        if div16 > 0xFFF:
            div16 = 0xFFF                   # the 8.4 divider's largest: above 256 MHz
        self._high_rate = 16 * self.clock_hz / div16   # counts/s while high, ≤ 1 MHz
        base = _b_input_counter(PIN_PHOTON_LEVEL, _PWM_LEVEL_GATED, div16)
        machine.mem32[base + _PWM_CSR] = _PWM_LEVEL_GATED | 1
        self._high_ctr_addr = base + _PWM_CTR
        self._high_ctr = 0
        self._high_us = time.ticks_us()

    def _set_high_limit(self, fraction: float) -> None:
        """The high-time trip at `fraction` of a window; a new window starts now."""
        k = int(fraction * self._high_rate / 1e6 * _HIGH_Q + 0.5)
        state = machine.disable_irq()
        self._high_fraction = fraction
        self._high_k = k
        self._high_ctr = machine.mem32[self._high_ctr_addr] & 0xFFFF
        self._high_us = time.ticks_us()
        machine.enable_irq(state)

    def _guard_irq(self, sm) -> None:
        # hard IRQ: the PIO has already driven HV enable and shutter low
        try:
            self._trip()
            self._guard_trip_count += 1
        except KeyboardInterrupt:
            self._kbd_flag = True

    def _trip(self) -> None:
        self._guard.exec(_SET_PINS_OFF)
        self._hv.duty_u16(0)
        self._outputs = 0
        self._guard_tripped = True

    def _guard_tick(self, timer) -> None:
        # hard IRQ every 0.5 ms, from boot to shutdown: the photon line's high time, and in
        # analog mode the ADC level. A Ctrl-C on the REPL is raised at the next branch of
        # whatever bytecode runs, which may be this handler: it would stop the guard for good
        # and never reach main.py's `finally`, so it is handed on to the main program (found
        # on the emulated Pico)
        try:
            self._guard_beat[0] += 1
            if self._sync_on:
                self._sync_count()          # the pulse count, tripped or not
            if self._guard_tripped:
                return
            self._check_high()
            if self._analog:
                self._check_adc()
        except KeyboardInterrupt:
            self._kbd_flag = True

    def _check_high(self) -> None:
        # the level-gated counter's advance since the last window (mod 2**16: a window
        # shorter than _HIGH_MAX_US cannot hide a wrap) against the window's length in µs
        now = time.ticks_us()
        us = time.ticks_diff(now, self._high_us)
        if us < _HIGH_MIN_US:
            return
        ctr = H.load1(self._high_ctr_addr)
        high = (ctr - self._high_ctr) & 0xFFFF
        self._high_ctr = ctr
        self._high_us = now
        if us > _HIGH_MAX_US:
            self._high_late += 1
        elif high * _HIGH_Q > self._high_k * us:
            self._high_trip = high
            self._high_trip_us = us
            self._trip()

    def _check_adc(self) -> None:
        # any sample written since the last check above the level, wherever the DMA is in
        # its ring (the write address of SRAM is a small int); the largest one is found only
        # for the trip's reason
        ch = self._adc_dma[self._adc_turns[0] & 1]
        pos = ((ch.write - self._adc_ring_addr) >> 1) & (self._adc_ring_len - 1)
        start = self._guard_pos
        self._guard_pos = pos
        if K.above_u16(self._adc_view, start, pos, self._adc_ring_len, self._guard_level):
            self._trip()
            self._guard_adc_level = K.max_u16(self._adc_view, start, pos, self._adc_ring_len)

    def guard_tripped(self) -> bool:
        return self._guard_tripped

    def guard_reason(self) -> str:
        if not self._guard_tripped:
            return ""
        level = self._guard_adc_level
        if level:
            return "PMT ADC level %d > limit %d" % (level, self._guard_level)
        if self._high_trip_us:
            pct = 100e6 * self._high_trip / (self._high_trip_us * self._high_rate)
            return ("photon input high for %.0f %% of a %d us window (limit %.0f %%): stuck "
                    "or paralyzed input (a retriggerable pulse stretcher under pile-up?)"
                    % (pct, self._high_trip_us, 100 * self._high_fraction))
        return "PMT rate > limit %.3g cps (PIO window %.0f us)" % (self._guard_rate,
                                                                  _GUARD_WINDOW_S * 1e6)

    def guard_reset(self) -> None:
        self._guard_tripped = False
        self._guard_adc_level = 0
        self._high_trip = self._high_trip_us = 0
        self._outputs = 0
        self.guard_arm(self._guard_rate or 1e7, self._guard_level, self._high_fraction)
        if self._head_power:
            self._switch_on()

    def guard_fault(self) -> str:
        """Why a guard no longer guards, or "": the guard timer (the high-time and the ADC
        level checks, a hard IRQ, which an exception would stop for good) must have run
        within the last _HEARTBEAT_MS and judged every window; the PIO guards must run
        unless tripped."""
        if not self._guard_tripped and not self._guard.active():
            return "the PIO overload guard stopped"
        if self._high_late:
            late = self._high_late
            self._high_late = 0
            return ("the photon high-time guard skipped %d window(s) longer than %d ms (its "
                    "timer interrupt ran late; the 16-bit counter may have wrapped)"
                    % (late, _HIGH_MAX_US // 1000))
        if self._guard_timer is None:
            return ""          # an unsupported port: boot_fault says so
        beat = self._guard_beat[0]
        now = time.ticks_ms()
        if beat != self._beat_seen:
            self._beat_seen = beat
            self._beat_ms = now
        elif time.ticks_diff(now, self._beat_ms) > _HEARTBEAT_MS:
            return ("the guard timer stopped (high-time and ADC level guard): no check for %d ms"
                    % time.ticks_diff(now, self._beat_ms))
        return ""

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
        if self._kbd_flag:  # a Ctrl-C that a hard IRQ handler caught: the main program's
            self._kbd_flag = False
            raise KeyboardInterrupt
        if self._wdt is not None:
            self._wdt.feed()
        # the HV keep-alive: a pass of the main loop toggles it; the circuit (docs/build.md)
        # drops HV enable when it stops toggling, whatever the pins hold
        self._keepalive.toggle()

    # shutdown ----------------------------------------------------------------------------------
    def _safe_pins(self) -> None:
        """HV enable, shutter and the excitation trigger as plain outputs, low; the
        keep-alive still."""
        for pin in (PIN_HV_EN, PIN_SHUTTER, PIN_HV_KEEPALIVE, PIN_TRIGGER):
            machine.Pin(pin, machine.Pin.OUT, value=0)

    def shutdown(self) -> None:
        """Leave the board safe when the firmware stops (Ctrl-C, soft reset, an error; main.py
        calls this from its `finally`): HV enable, shutter and keep-alive low, HV and PEM
        control voltages 0, the guards stopped, the ADC stopped, and every DMA channel of the
        board stopped (EN bit cleared, then aborted, IRQ off) and freed, so that nothing
        writes into buffers that the next program's heap will reuse. Works on a board whose
        set-up was interrupted part way; safe to call more than once."""
        for name in ("_guard", "_gate", "_period_sm", "_stepper", "_gate_sm", "_sync_sm"):
            sm = getattr(self, name, None)
            if sm is not None:
                sm.active(0)
        for name in ("_counters",):
            for sm in getattr(self, name, ()):
                sm.active(0)
        self._safe_pins()
        for name in ("_hv", "_pem_ctrl", "_pem_drive"):
            pwm = getattr(self, name, None)
            if pwm is not None:
                pwm.duty_u16(0)
        timer = getattr(self, "_guard_timer", None)
        if timer is not None:
            timer.deinit()
            self._guard_timer = None
        base = _pwm_slice_base(PIN_PHOTON_LEVEL)
        machine.mem32[base + _PWM_CSR] = _PWM_LEVEL_GATED  # stopped, B still an input
        self._sync_on = False
        if getattr(self, "_sync_used", False):
            machine.mem32[_pwm_slice_base(PIN_SYNC_IN) + _PWM_CSR] = _PWM_RISING
        machine.mem32[_ADC_BASE + _ADC_CS] = 0
        machine.mem32[_ADC_BASE + _ADC_FCS] = 0
        self._analog = False
        self._counting = False
        chans = list(getattr(self, "_adc_dma", ()))
        for group in getattr(self, "_counter_dma", ()):
            chans.extend(group)
        period = getattr(self, "_period_dma", None)
        if period is not None and not getattr(self, "_period_freed", False):
            chans.append(period)
            self._period_freed = True
        _dma_stop(chans)
        self._adc_dma = []
        self._counter_dma = []
        self._outputs = 0

    def reboot_to_maintenance(self) -> None:
        """Restart the chip into maintenance mode (main.py then starts neither the firmware,
        nor the watchdog, nor the vendor USB interface: the REPL is free for mpremote)."""
        from board import rp2_boot
        # the host's mpremote may already be knocking (a Ctrl-C): nothing may cut this short,
        # and the flag is written first, so that even an interrupted shutdown ends there
        micropython.kbd_intr(-1)
        rp2_boot.write_flag()
        self.shutdown()
        rp2_boot.request_maintenance()

    # self test -------------------------------------------------------------------------------------------
    def self_test(self) -> dict:
        self._service()
        return {
            "pem_reference": self._locked,
            # no monitor (a counting head, most analog modules): nothing to read back
            "hv_readback": (not self._hv_monitor
                            or abs(self.hv_read() - self._hv_set) <= 0.05 * HV_FULL_SCALE_V),
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
    # a resonance is found when the sweep's peak lies inside it (not at either end), stands
    # CONTRAST times above its weakest step and above FLOOR (ADC2, u16): a PEM driven within
    # ±1 % of its resonance (Q ≈ 1e4: 5 Hz wide at 50 kHz) gives hundreds
    CONTRAST = 4
    FLOOR = 1000

    def __init__(self, board: Rp2Board) -> None:
        self._board = board
        self.freq = 0.0
        self.found = False  # the last search found the resonance; tracking keeps it
        self._nominal = 0.0
        self._mode = 0  # 0 off, 1 search, 2 track
        self._i = 0
        self._t = time.ticks_ms()
        self._best = -1
        self._best_i = 0
        self._worst = 0
        self._best_f = 0.0
        self._last = -1
        self._dir = 1.0

    def search(self, nominal_hz: float) -> None:
        self._nominal = nominal_hz
        self.found = False
        self._mode, self._i, self._best, self._worst = 1, 0, -1, 0x10000
        self._set(self._sweep_f(0))

    def search_again(self) -> None:
        """A new search around the last nominal frequency (the drive came on after one that
        ran undriven)."""
        if self._mode and not self.found:
            self.search(self._nominal)

    def stop(self) -> None:
        self._mode = 0
        self.found = False

    def _sweep_f(self, i: int) -> float:
        return self._nominal * (1 - self.SPAN + 2 * self.SPAN * i / (self.STEPS - 1))

    def _set(self, f: float, direction: int = 0) -> None:
        b = self._board
        self.freq = b._pem_drive_freq(f, direction)  # the frequency reached, not the one asked
        b._set_pem_freq(self.freq)
        b._apply_drive()                       # the duty again, for the new TOP
        self._t = time.ticks_ms()

    def service(self) -> None:
        if not self._mode or time.ticks_diff(time.ticks_ms(), self._t) < self.SETTLE_MS:
            return
        if self._board._analog:
            # the ADC streams ADC0: reading the pickup would switch its input (AINSEL) for
            # good. Tracking holds the frequency until the acquisition stops.
            return
        amp = self._board._adc_pickup.read_u16()
        if self._mode == 1:
            if amp > self._best:
                self._best, self._best_f, self._best_i = amp, self.freq, self._i
            if amp < self._worst:
                self._worst = amp
            self._i += 1
            if self._i < self.STEPS:
                self._set(self._sweep_f(self._i))
            else:
                self._mode, self._last = 2, -1
                self.found = (0 < self._best_i < self.STEPS - 1 and self._best >= self.FLOOR
                              and self._best >= self.CONTRAST * self._worst)
                self._set(self._best_f)
        else:
            if self._last >= 0 and amp < self._last:
                self._dir = -self._dir
            self._last = amp
            # TRACK_STEP, or at least one step of the PWM's grid
            self._set(self.freq + self._dir * self.TRACK_STEP, 1 if self._dir > 0 else -1)


def _dma_stop(chans) -> None:
    """Stop and free DMA channels that may chain to each other: every channel's EN bit is
    cleared first, so that no chain can trigger one again (RP2350-E5: an abort does not
    stop a channel that a chain re-triggers meanwhile), then each is aborted, its IRQ
    disabled and it is closed (on MicroPython before v1.27 close() did not abort)."""
    for ch in chans:
        ch.ctrl = ch.ctrl & ~1
    for ch in chans:
        ch.active(0)
        ch.irq(None)
        ch.close()


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
