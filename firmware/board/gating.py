"""Gated counting: the timing arithmetic the rp2 board and the simulated one share.

Plain integer arithmetic (no `rp2`, no `machine`), so the unit tests and the unix-port board
run it too. docs/hardware.md ("Gated counting") has the scheme; in short, on an rp2 board:

* the pulse train is a PWM slice: channel A is the excitation trigger (high for the first
  `cc_a` counts of each period), channel B, inverted, is the gate start GSTART (low from the
  pulse, high from count `cc_b` on). The slice counts system-clock cycles divided by an
  integer `div` (1 … 255), `top + 1` counts per period (≤ 65536): a period of (top + 1)·div
  cycles, trigger width and delay in steps of `div` cycles;
* with an external laser, a PIO state machine drives GSTART instead: low at the sync's rising
  edge, high `delay` cycles later (1-cycle steps);
* the `gate_window` state machine opens at GSTART's rising edge and copies the photon input
  to the gated-photon pin for `width` cycles (2-cycle steps), which the photon counters count
  instead of the raw input.

Gate j of a configuration with several gates (time bins) opens at δ + j·w; the board counts
them in turn, one frame each. Times are in clock cycles unless a name says ns.
"""

PWM_TOP_MAX = 65535
PWM_DIV_MAX = 255
# the gate_window loop: one copy of the photon input every 2 cycles
WINDOW_STEP_CYCLES = 2
# sync_delay (rp2_pio): from the sync's edge at its pad to GSTART's at its pad is
# SYNC_DELAY_FIXED_CYCLES + 1 + the state machine's ISR preset (≥ 0): the synchroniser, the
# `wait`, `set`, `mov` and the loop's exit (rp2_pio.SYNC_FIXED_CYCLES, the same number,
# checked cycle by cycle in pioemu)
SYNC_DELAY_FIXED_CYCLES = 6
SYNC_DELAY_MIN_CYCLES = SYNC_DELAY_FIXED_CYCLES + 1
# gate_window is back at its `wait` this many cycles after its gate's last sample, and needs
# GSTART still low then to see the next pulse (pioemu, tests/firmware/test_pio_gate_rate.py)
WINDOW_REARM_CYCLES = 3


def ns_to_cycles(ns: int, clock_hz: int) -> int:
    """Nearest whole clock cycles to `ns` nanoseconds (integers; may make a long int:
    CONFIGURE only, never the streaming path)."""
    return (ns * clock_hz + 500_000_000) // 1_000_000_000


def cycles_to_ns(cycles: int, clock_hz: int) -> int:
    """Nearest whole ns of `cycles` clock cycles."""
    return (cycles * 1_000_000_000 + clock_hz // 2) // clock_hz


def shortest_period(delay: int, width: int) -> int:
    """The shortest pulse period (cycles) at which gate_window opens every gate and passes
    exactly its own pulse's photons, for a gate start `delay` cycles after the pulse and a
    gate of `width` cycles: the gate (a photon passes from GSTART + 1 on) ends inside the
    period, δ + 1 + w ≤ T, and GSTART is still low when the window re-arms, w + 3 ≤ T."""
    return width + max(delay + 1, WINDOW_REARM_CYCLES)


def pwm_period(period_cycles: int) -> tuple:
    """(div, top) of the PWM slice for a pulse period of about `period_cycles`: the smallest
    integer divider whose count fits 16 bits. Raises ValueError beyond the slice's range."""
    if period_cycles < 4:
        raise ValueError("a pulse period of %d cycles is too short (at least 4)"
                         % period_cycles)
    div = (period_cycles + PWM_TOP_MAX) // (PWM_TOP_MAX + 1)
    if div > PWM_DIV_MAX:
        raise ValueError("a pulse period of %d cycles is longer than the trigger's PWM can "
                         "make (%d cycles); raise the pulse rate"
                         % (period_cycles, (PWM_TOP_MAX + 1) * PWM_DIV_MAX))
    counts = (period_cycles + div // 2) // div
    return div, counts - 1


class GateTiming:
    """A gated configuration quantised to a board's clock (see the module doc).

    Attributes (cycles): period, trig (the trigger's width), delay (gate 0's opening after
    the pulse), width (each gate's), and, for the internal trigger, div, top, cc_a and
    cc_b[j] of the PWM slice (cc_b[j] · div = gate j's delay); the *_ns values as the
    protocol reports them."""

    def __init__(self, clock_hz: int, trigger: str, period_ns: int, trigger_width_ns: int,
                 delay_ns: int, width_ns: int, gates: int) -> None:
        self.clock_hz = clock_hz
        self.trigger = trigger
        self.gates = gates
        width = ns_to_cycles(width_ns, clock_hz)
        steps = (width + WINDOW_STEP_CYCLES // 2) // WINDOW_STEP_CYCLES
        if steps < 1:
            steps = 1
        self.width = steps * WINDOW_STEP_CYCLES
        delay = ns_to_cycles(delay_ns, clock_hz)
        if trigger == "internal":
            div, top = pwm_period(ns_to_cycles(period_ns, clock_hz))
            self.div, self.top = div, top
            self.period = (top + 1) * div
            cc_a = (ns_to_cycles(trigger_width_ns, clock_hz) + div // 2) // div
            self.cc_a = cc_a if cc_a > 0 else 1
            if self.cc_a > top:
                raise ValueError("the trigger pulse (%d ns) fills the whole period"
                                 % trigger_width_ns)
            self.trig = self.cc_a * div
            self.cc_b = []
            for j in range(gates):
                cc = (delay + j * self.width + div // 2) // div
                if cc < 1:
                    cc = 1  # the gate start needs an edge: at least one PWM count after
                if cc > top:
                    raise ValueError("gate %d would open %d cycles after the pulse, at or "
                                     "after the next one" % (j, cc * div))
                self.cc_b.append(cc)
            self.delay = self.cc_b[0] * div
        else:
            self.div = self.top = self.cc_a = 0
            self.cc_b = []
            self.period = ns_to_cycles(period_ns, clock_hz)
            self.trig = 0
            if delay < SYNC_DELAY_MIN_CYCLES:
                delay = SYNC_DELAY_MIN_CYCLES   # the gate opens no sooner after a sync
            self.delay = delay
        last = self.row_delay(gates - 1) + self.width
        if last > self.period:  # ending with the next pulse is fine: its gate opens later
            raise ValueError("the last gate ends %d cycles after the pulse, after the next "
                             "pulse (%d cycles)" % (last, self.period))

    def row_delay(self, j: int) -> int:
        """Cycles from the pulse to gate j's opening."""
        if self.cc_b:
            return self.cc_b[j] * self.div
        return self.delay + j * self.width

    def sync_delay_word(self, j: int) -> int:
        """External trigger: the ISR preset of the sync-delay state machine for gate j."""
        return self.row_delay(j) - SYNC_DELAY_MIN_CYCLES

    def window_word(self) -> int:
        """The OSR preset of `gate_window`: loop iterations − 1."""
        return self.width // WINDOW_STEP_CYCLES - 1

    def ns(self) -> tuple:
        """(pulse_period_ns, trigger_width_ns, gate_delay_ns, gate_width_ns) as reported."""
        c = self.clock_hz
        return (cycles_to_ns(self.period, c), cycles_to_ns(self.trig, c),
                cycles_to_ns(self.delay, c), cycles_to_ns(self.width, c))

    def row_delay_ns(self, j: int) -> int:
        return cycles_to_ns(self.row_delay(j), self.clock_hz)


def pulses_in_frame(frame_cycles: int, period_cycles: int) -> int:
    """Pulses a frame of `frame_cycles` holds on average, rounded (small ints only)."""
    if period_cycles <= 0:
        return 0
    return (frame_cycles + period_cycles // 2) // period_cycles
