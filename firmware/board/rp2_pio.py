"""PIO programs of the rp2 board, and the arithmetic that configures them.

The programs are written once, as `@rp2.asm_pio` functions. On the board MicroPython assembles
them; the unit tests assemble the same functions under CPython with a test-side `rp2` shim and
run them in a PIO emulator (tests/firmware/test_pio_*.py). Everything below that is not a PIO
program is plain integer arithmetic, so the tests check it too. docs/hardware.md has the pins,
the timing limits and the reasoning; times here are in PIO clock cycles (the system clock,
125 MHz on an RP2040, 150 MHz on an RP2350) unless a name says otherwise.

Photon counting (zero CPU work per PEM period)
----------------------------------------------
Three state machines of one PIO block:

* `pem_gate` waits for the PEM reference rising edge, then cuts the period into B bins of
  exactly `t_bin` cycles on two gate pins: G0 is high during even bins, G1 during odd bins.
* two copies of `photon_counter` count the photon pulses of alternate bins: copy A (in_base =
  G0) the even bins, copy B (in_base = G1) the odd ones. Each counter samples the photon input
  every 2 cycles, counts rising edges, and ends its bin after a fixed cycle budget whatever
  the photons do (no `wait` on the photon input). While one counter counts, the other one has
  a whole bin to hand its total over, so the bins are contiguous with no dead time.
* the running totals circulate through the counters: a DMA channel feeds the previous total
  of a bin into the TX FIFO, the counter decrements it once per photon (totals are stored as
  ones' complement, so decrementing counts up) and pushes it back, and a second DMA channel
  writes it back into the same ring. K periods make a frame without the CPU.

Bin k (counted by copy k % 2) takes the photon pulses whose rising edge reaches the pad in
the cycles [r + BIN0_DELAY + k·t_bin, r + BIN0_DELAY + (k+1)·t_bin), r being the cycle where
the PEM reference pad goes high. A pulse is seen if it is high for at least SAMPLE_CYCLES
cycles; after a counted edge the counter looks again only HOLDOFF_CYCLES later.
"""
import rp2

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False
if TYPE_CHECKING:
    from rp2.asm_pio import *  # noqa: F401,F403  (names of the PIO assembler DSL)

# Cycles between two photon samples of a counter, and the blind time after a counted edge
# (the sample right after an edge is spent on the count).
SAMPLE_CYCLES = 2
HOLDOFF_CYCLES = 4
# Shortest photon pulse period that is still counted pulse by pulse (a low sample between
# two high ones): the counter's maximum periodic count rate is f_clk / MIN_PULSE_PERIOD.
MIN_PULSE_PERIOD_CYCLES = 6
# From the reference pad edge to the first cycle of bin 0: 2 input-synchroniser cycles and
# 2 instructions in pem_gate, 1 output cycle, 2 synchroniser cycles and the counter's
# wake-up. A constant phase offset, absorbed by the φ0 calibration.
BIN0_DELAY_CYCLES = 7
# pem_gate spends this many cycles per period outside the bins (re-arming for the next
# reference edge), so B·t_bin must leave them free.
GATE_OVERHEAD_CYCLES = 6
# Smallest bin: a counter needs this long to hand its total over while the other one counts.
MIN_BIN_CYCLES = 21
# Words of a counter's DMA ring. The TX DMA may read up to 5 words ahead of the counter
# (4 FIFO entries and the transfer in flight); a ring of 8 or more words guarantees a word
# is written back long before it is read again, also for B = 2 and 4 (then each bin owns
# several ring words, which the CPU adds up once per frame).
MIN_RING_WORDS = 8
# Counts per bin and frame that still fit the 32-bit ones' complement total.
MAX_FRAME_COUNT = 0xFFFF_FFFE

# Period timer: word w pushed at a reference edge means a period of 2·w + 4 cycles. Started
# at its first instruction, it pushes one meaningless word at once; the next word w tells
# the first detected edge, 2·w + 3 cycles after the start: as if a previous edge had been
# seen 1 cycle before the start.
PERIOD_SCALE = 2
PERIOD_OFFSET = 4
PERIOD_START_EDGE = -1


@rp2.asm_pio(sideset_init=[rp2.PIO.OUT_LOW, rp2.PIO.OUT_LOW])
def pem_gate():  # type: ignore[no-untyped-def]
    # in_base = PEM reference; side-set pins: G0 (even bins), G1 (odd bins).
    # ISR = B/2 - 1 (bin pairs per period, minus 1), OSR = t_bin - 3; both preset by the CPU.
    # every instruction carries .side(): a program that leaves one out gets optional side-set
    # from MicroPython, one delay bit fewer and a different encoding
    wrap_target()
    wait(0, pin, 0).side(0)
    wait(1, pin, 0).side(0)
    mov(x, isr).side(0)
    label("pair")
    mov(y, osr).side(1)[1]
    label("even")
    jmp(y_dec, "even").side(1)
    mov(y, osr).side(2)
    label("odd")
    jmp(y_dec, "odd").side(2)
    jmp(x_dec, "pair").side(2)
    wrap()


@rp2.asm_pio()
def photon_counter():  # type: ignore[no-untyped-def]
    # in_base = own gate pin, jmp_pin = photon input. ISR and Y = budget = (t_bin - 1) / 2,
    # preset by the CPU. X = ones' complement running total of the bin being counted.
    wrap_target()
    pull(block)
    mov(x, osr)
    wait(0, pin, 0)
    wait(1, pin, 0)                 # this counter's bin starts
    jmp(pin, "high")                # a pulse already high here belongs to the bin before
    label("low")
    jmp(pin, "rise")
    jmp(y_dec, "low")
    jmp("done")
    label("rise")
    jmp(y_dec, "count")
    jmp(x_dec, "done")              # the edge came with the last sample of the bin
    label("count")
    jmp(x_dec, "counted")
    label("counted")
    jmp(y_dec, "high")
    jmp("done")
    label("high")
    jmp(pin, "stay")
    jmp(y_dec, "low")
    jmp("done")
    label("stay")
    jmp(y_dec, "high")
    label("done")                   # the budget is spent: the gate closes on time
    mov(y, isr)
    mov(isr, x)
    push(block)
    mov(isr, y)
    wrap()


@rp2.asm_pio()
def period_timer():  # type: ignore[no-untyped-def]
    # jmp_pin = PEM reference. Pushes one word per reference rising edge (noblock: a slow
    # reader loses words, never time). X counts down once per 2 cycles.
    wrap_target()
    label("edge")
    mov(isr, invert(x))
    push(noblock)
    mov(x, invert(null))
    label("high")
    jmp(x_dec, "high_chk")
    label("high_chk")
    jmp(pin, "high")
    label("low")
    jmp(pin, "edge")
    jmp(x_dec, "low")
    wrap()


@rp2.asm_pio(set_init=[rp2.PIO.OUT_LOW, rp2.PIO.OUT_LOW])
def overload_guard():  # type: ignore[no-untyped-def]
    # jmp_pin = photon input; set pins = HV enable, shutter (1 = on/open). ISR = counts
    # allowed per window, OSR = window length in 2-cycle steps; both preset by the CPU, which
    # also switches HV and shutter with exec(set(pins, ...)) while this runs.
    # More than ISR edges in one window: both pins low at once, IRQ 0 (relative) to the CPU,
    # then park until the CPU restarts the program (the latch).
    wrap_target()
    label("window")
    mov(x, isr)
    mov(y, osr)
    jmp(pin, "high")                # a pulse high at the window start was counted before
    label("low")
    jmp(pin, "rise")
    jmp(y_dec, "low")
    jmp("window")
    label("rise")
    jmp(x_dec, "high")
    set(pins, 0)                    # trip
    irq(rel(0))
    label("tripped")
    jmp("tripped")
    label("high")
    jmp(y_dec, "high_chk")
    jmp("window")
    label("high_chk")
    jmp(pin, "high")
    jmp("low")
    wrap()


@rp2.asm_pio(sideset_init=rp2.PIO.OUT_LOW, out_init=rp2.PIO.OUT_LOW,
             out_shiftdir=rp2.PIO.SHIFT_LEFT)
def stepper():  # type: ignore[no-untyped-def]
    # side-set = STEP, out pin = DIR. One TX word per move: bit 31 = direction (1 = towards
    # longer wavelengths), bits 30..0 = steps - 1. 32 cycles per step at the SM clock; a word
    # is pushed to RX when the move is done.
    wrap_target()
    pull(block).side(0)
    out(pins, 1).side(0)[7]         # direction first, then > 8 cycles of set-up
    out(x, 31).side(0)[7]
    label("step")
    nop().side(1)[15]
    jmp(x_dec, "step").side(0)[15]
    push(noblock).side(0)
    wrap()


STEPPER_CYCLES_PER_STEP = 32


# Gated counting (pulsed excitation; firmware/board/gating.py has the timing arithmetic).
# GSTART (the gate-start line) rises where the gate of each pulse opens: PWM channel B of the
# trigger's slice (internal trigger) or `sync_delay` (an external laser's sync). `gate_window`
# then copies the photon input onto the gated-photon pin for the gate's width, and the photon
# counters count that pin instead of the photon input: no CPU work per pulse or photon.
#
# Instruction memory: PIO0 holds pem_gate + photon_counter (29 of 32 words), PIO1
# period_timer + overload_guard + stepper (27): gate_window (5) fits PIO1 exactly;
# sync_delay (6) fits neither, so an external sync needs an RP2350's PIO2.
#
# GSTART's pad is this many GPIOs above the photon input: `gate_window` waits on it as an
# input relative to in_base = photon input (a literal in the program: MicroPython assembles
# it without the module's names). rp2_pins.GSTART − rp2_pins.PHOTON must equal it.
GSTART_ABOVE_PHOTON = 17
# A photon whose rising edge reaches the pad in [GSTART + GATE_OPEN_LAG_CYCLES,
# GSTART + GATE_OPEN_LAG_CYCLES + width) cycles, GSTART being the cycle its pad rises, is
# passed (to within one 2-cycle sample at either end); the copy reaches the gated pad a fixed
# few cycles later (2 synchroniser cycles, the `wait`, the `mov`).
GATE_OPEN_LAG_CYCLES = 1
# sync_delay: from the sync's rising edge at its pad to GSTART's rising edge at its pad is
# SYNC_FIXED_CYCLES + the ISR preset.
SYNC_FIXED_CYCLES = 6


@rp2.asm_pio(out_init=rp2.PIO.OUT_LOW)
def gate_window():  # type: ignore[no-untyped-def]
    # in_base = photon input, out pin = gated photon (1 pin); GSTART is input 17 above
    # in_base. OSR = width/2 − 1, preset by the CPU. Each pass: the gate of one pulse.
    wrap_target()
    wait(0, pin, 17)                # GSTART low: the pulse came (or the gate start is ahead)
    wait(1, pin, 17)                # GSTART rises: the gate opens
    mov(x, osr)
    label("copy")
    mov(pins, pins)                 # the photon input, sampled now, onto the gated pin
    jmp(x_dec, "copy")
    # the gate closes: no more copies. The pin keeps the last sample (a photon high there
    # stays high until the next gate's first copy: one rising edge, counted once). Five
    # instructions: with period_timer, overload_guard and stepper it fills PIO1's 32.
    wrap()


@rp2.asm_pio(set_init=rp2.PIO.OUT_LOW)
def sync_delay():  # type: ignore[no-untyped-def]
    # in_base = external sync input, set pin = GSTART. ISR = delay − SYNC_FIXED_CYCLES − 1
    # (≥ 0), preset by the CPU. GSTART falls at each sync edge and rises `delay` later.
    wrap_target()
    wait(0, pin, 0)
    wait(1, pin, 0)                 # the laser's sync
    set(pins, 0)
    mov(x, isr)
    label("delay")
    jmp(x_dec, "delay")
    set(pins, 1)
    wrap()


# --- configuration arithmetic ----------------------------------------------------------------

def is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def counter_timing(period_cycles: int, bins: int, margin_cycles: int = 0) -> tuple:
    """Bin length and counter budget for a PEM period of `period_cycles` cycles.

    Returns (t_bin, budget, pairs): t_bin = odd bin length in cycles (the counters sample on
    a 2-cycle grid whose last sample is the next bin's first), budget = (t_bin - 1) // 2 to
    preset in the counters, pairs = bins // 2 bin pairs per period. B·t_bin leaves
    GATE_OVERHEAD_CYCLES + margin_cycles free for the period's end, so the gate is armed
    before the next reference edge even when the period shortens by `margin_cycles`.
    """
    if bins < 2 or not is_power_of_two(bins):
        raise ValueError("bins must be a power of two from 2 to 64 (the DMA rings wrap on "
                         "powers of two), got %d" % bins)
    usable = period_cycles - GATE_OVERHEAD_CYCLES - margin_cycles
    t_bin = usable // bins
    if t_bin % 2 == 0:
        t_bin -= 1
    if t_bin < MIN_BIN_CYCLES:
        raise ValueError("a PEM period of %d cycles is too short for %d bins: a bin needs "
                         "at least %d cycles; use fewer bins" % (period_cycles, bins,
                                                               MIN_BIN_CYCLES))
    return t_bin, (t_bin - 1) // 2, bins // 2


def bin_span(live_cycles: int, period_cycles: int) -> int:
    """COUNTS `bin_span` (docs/protocol.md): the fraction live/period of the PEM period that
    the bins cover, in units of 1/65536, rounded to nearest; 0 if that is the whole period.

    live_cycles = B·t_bin and period_cycles may both be scaled by the same factor (e.g. sums
    over 16 periods, for resolution). Both must be below 2**22, so that every intermediate
    stays a small int on a 32-bit port (no allocation). Bins longer than the period (it shrank
    below them: periods are skipped, docs/hardware.md) give the largest value, 65535.
    """
    if period_cycles <= 0:
        return 0
    if live_cycles >= period_cycles:
        return 0xFFFF
    # 16 fractional bits in two 8-bit long-division steps
    a = live_cycles << 8
    q1 = a // period_cycles
    b = (a - q1 * period_cycles) << 8
    q2 = b // period_cycles
    r = b - q2 * period_cycles
    span = (q1 << 8) | q2
    if 2 * r >= period_cycles:
        span += 1
    return 0 if span >= 0x10000 else span


def gate_delay_word(t_bin: int) -> int:
    """The OSR preset of `pem_gate` for bins of t_bin cycles."""
    return t_bin - 3


def ring_words(bins: int) -> int:
    """Words of one counter's DMA ring for B bins (a power of two, ≥ MIN_RING_WORDS)."""
    per_counter = bins // 2
    return per_counter if per_counter > MIN_RING_WORDS else MIN_RING_WORDS


def total_from_word(word: int) -> int:
    """Counts held by a ring word (ones' complement running total)."""
    return (~word) & 0xFFFF_FFFF


def period_cycles_from_word(word: int) -> int:
    """Reference period in cycles from a `period_timer` word (±1 cycle: the edges are
    sampled every 2 cycles; the sum of consecutive words is exact to ±1 cycle)."""
    return PERIOD_SCALE * word + PERIOD_OFFSET


def first_edge_cycles_from_word(word: int) -> int:
    """Cycles from the timer's start to its first detected edge (second word after start)."""
    return PERIOD_START_EDGE + period_cycles_from_word(word)


def guard_window(window_cycles: int) -> int:
    """OSR preset of `overload_guard` for a window of about window_cycles cycles."""
    if window_cycles < 8:
        raise ValueError("guard window must be at least 8 cycles, got %d" % window_cycles)
    return window_cycles // 2 - 2


def guard_limit(max_rate_cps: float, window_cycles: int, clock_hz: int) -> int:
    """ISR preset of `overload_guard`: the counts allowed in one window at max_rate_cps."""
    if max_rate_cps <= 0:
        raise ValueError("max_count_rate_cps must be > 0, got %r" % max_rate_cps)
    n = int(max_rate_cps * window_cycles / clock_hz)
    return n if n > 0 else 1


def window_word(width_cycles: int) -> int:
    """OSR preset of `gate_window` for a gate of `width_cycles` (even, ≥ 2) cycles."""
    if width_cycles < 2 or width_cycles % 2:
        raise ValueError("a gate is an even number ≥ 2 of cycles, got %d" % width_cycles)
    return width_cycles // 2 - 1


def sync_delay_word(delay_cycles: int) -> int:
    """ISR preset of `sync_delay` for GSTART `delay_cycles` after the sync's edge."""
    word = delay_cycles - SYNC_FIXED_CYCLES - 1
    if word < 0:
        raise ValueError("after an external sync the gate opens at least %d cycles later, "
                         "got %d" % (SYNC_FIXED_CYCLES + 1, delay_cycles))
    return word


def stepper_word(steps: int) -> int:
    """TX word of `stepper` for a signed move of `steps` (≠ 0) steps."""
    if steps == 0 or abs(steps) > 0x7FFF_FFFF:
        raise ValueError("a move needs 1 … 2^31-1 steps, got %d" % steps)
    if steps > 0:
        return 0x8000_0000 | (steps - 1)
    return -steps - 1
