"""Gated counting's PIO programs in the pioemu emulator: `gate_window` passes exactly the
photons of each gate, `sync_delay` puts the gate start a fixed, jitter-free delay after an
external sync, and the whole chain (gate start → gate_window → pem_gate and the two
photon counters with their DMA rings) counts photons per PEM phase bin and per time gate."""
import importlib.util
import random

import pytest

pioemu = pytest.importorskip("pioemu")
from pioemu import State  # noqa: E402
from pioemu.shift_register import ShiftRegister  # noqa: E402
import test_pio_counter as _counter  # noqa: E402  (the PIO model and its helpers)

PIO, Sm, Signal, DrivenPins = _counter.PIO, _counter.Sm, _counter.Signal, _counter.DrivenPins
RingDma = _counter.RingDma

# test wiring (absolute GPIOs): the photon input, the PEM reference, the gate monitors, the
# gated-photon pin, the sync input, and GSTART at its fixed place above the photon input
PHOT, REF, G0, G1, GPH, SYNC_IN = 0, 1, 2, 3, 5, 6
GSTART = PHOT + PIO.GSTART_ABOVE_PHOTON


def gstart_train(pulses, delay, horizon):
    """GSTART as the PWM's inverted channel B drives it: low from each pulse until `delay`
    cycles after it, high otherwise. Returns (signal, the rising edges)."""
    highs, rises = [], []
    for k, p in enumerate(pulses):
        end = pulses[k + 1] if k + 1 < len(pulses) else horizon
        highs.append((p + delay, end - p - delay))
        rises.append(p + delay)
    return Signal(horizon, highs), rises


def photon_train(rng, horizon, n, width=(3, 6), spacing=10):
    """n pulses (rising edge, width) at random times, low for at least 3 cycles between
    two (the discriminator's pulses are non-retriggerable: a 2-cycle sampler sees each)."""
    times = sorted(rng.sample(range(20, horizon - 20, spacing), n))
    return [(t + rng.randint(0, spacing - width[1] - 3), rng.randint(*width)) for t in times]


class WindowSm(Sm):
    """gate_window in pioemu. pioemu merges the inputs into `pin_values` before every
    instruction and writes `mov pins` to all 32 pins from in_base, where an RP2040 drives
    the OUT pins (RP2040 datasheet, MOV: "PINS uses the same pin mapping as OUT") and holds
    them until the next write. So the gated pad is kept here: bit 0 of the source (out_count
    = 1), taken right after each `mov pins` the program executes."""

    def __init__(self, pads, width, gated):
        super().__init__(PIO.gate_window, pads, in_base=PHOT,
                         state=State(output_shift_register=ShiftRegister(
                             PIO.window_word(width), 0)))
        self.gated = gated

    def step(self):
        t, pc = self.state.clock, self.state.program_counter
        if not super().step():
            return False
        word = PIO.gate_window.words[pc]
        if word >> 13 == 0b101 and (word >> 5) & 7 == 0:  # MOV to PINS
            self.gated.set(t, (self.state.pin_values & 1) << GPH)
        return True


def window_sm(pads, width, gated):
    return WindowSm(pads, width, gated)


def run(sm, horizon):
    while sm.state.clock < horizon and sm.step():
        pass


def rises_of(pins, bit):
    out, prev = [], 0
    for t, v in pins.events:
        level = v >> bit & 1
        if level and not prev:
            out.append(t)
        prev = level
    return out


def test_gate_window_opens_and_closes_to_the_cycle():
    """One photon at each offset from the gate start: those in [lag, lag + width) pass,
    the others do not (photons 2 cycles wide, as short as the counters take)."""
    width, delay, period = 40, 50, 200
    lag = PIO.GATE_OPEN_LAG_CYCLES + 1  # (the expressions below count from lag − 1)
    passed = {}
    for offset in range(-6, width + 6):
        pulses = [10, 10 + period]
        horizon = 10 + 2 * period
        gs, rises = gstart_train(pulses, delay, horizon)
        phot = Signal(horizon, [(rises[0] + offset, 2)])
        gated = DrivenPins()
        sm = window_sm(lambda t: phot(t) << PHOT | gs(t) << GSTART, width, gated)
        run(sm, horizon)
        passed[offset] = len(rises_of(gated, GPH))
    inside = [o for o, n in passed.items() if n]
    assert all(n in (0, 1) for n in passed.values())
    # sampled every 2 cycles: a 2-cycle pulse is seen by the sample that falls in it
    assert inside == list(range(lag - 1, lag - 1 + width)), inside


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gate_window_passes_every_photon_of_each_gate_and_nothing_else(seed):
    rng = random.Random(seed)
    period, delay, width = rng.randint(150, 260), rng.randint(10, 60), 2 * rng.randint(8, 40)
    pulses = [30 + k * period + rng.randint(0, 3) for k in range(12)]
    horizon = pulses[-1] + period
    gs, rises = gstart_train(pulses, delay, horizon)
    photons = photon_train(rng, horizon, 180)
    phot = Signal(horizon, photons)
    gated = DrivenPins()
    sm = window_sm(lambda t: phot(t) << PHOT | gs(t) << GSTART, width, gated)
    run(sm, horizon)
    lag = PIO.GATE_OPEN_LAG_CYCLES + 1  # (the expressions below count from lag − 1)
    edges = rises_of(gated, GPH)

    def gate_of(t):
        for j, g in enumerate(rises):
            if g + lag - 1 <= t < g + lag - 1 + width:
                return j
        return None

    # photons clear of the gate's edges (a pulse straddling one may or may not pass)
    def clear(t, w):
        return all(not (g + lag - 1 - w - 2 <= t <= g + lag + 1)
                   and not (g + lag - 1 + width - w - 2 <= t <= g + lag + width + 1)
                   for g in rises)

    expected = [t for t, w in photons if gate_of(t) is not None and clear(t, w)]
    outside = [t for t, w in photons if gate_of(t) is None and clear(t, w)]
    assert expected and outside
    # each photon inside shows up on the gated pin within a fixed latency, once
    for t in expected:
        near = [e for e in edges if 0 < e - t <= 6]
        assert len(near) == 1, (t, near)
    for t in outside:
        assert not [e for e in edges if 0 < e - t <= 6], t
    # nothing else passes: the gated pin never rises outside a gate
    for e in edges:
        assert gate_of(e - 4) is not None or gate_of(e - 3) is not None, e


def test_sync_delay_puts_the_gate_start_a_fixed_delay_after_each_sync():
    sync, syncs, horizon = Signal.random_edges(random.Random(7), 40, 20, gap=(120, 400),
                                               width=(3, 30), tail=200)
    for delay in (PIO.SYNC_FIXED_CYCLES + 1, 37, 100):
        gstart = DrivenPins()
        sm = Sm(PIO.sync_delay, lambda t: sync(t) << SYNC_IN, in_base=SYNC_IN,
                set_base=GSTART, set_count=1, out_pins=gstart, out_mask=1 << GSTART,
                state=State(input_shift_register=ShiftRegister(PIO.sync_delay_word(delay),
                                                               0)))
        run(sm, horizon)
        rises = rises_of(gstart, GSTART)
        # the pad sees each sync edge; GSTART rises `delay` cycles later, every time
        # (no jitter: the state machine waits on the synchronised edge, cycle by cycle)
        assert [r - s for r, s in zip(rises, syncs)] == [delay] * len(syncs), delay
    with pytest.raises(ValueError, match="at least"):
        PIO.sync_delay_word(PIO.SYNC_FIXED_CYCLES)


def test_window_word_refuses_odd_or_empty_gates():
    assert PIO.window_word(2) == 0 and PIO.window_word(400) == 199
    for bad in (0, 1, 7):
        with pytest.raises(ValueError):
            PIO.window_word(bad)


def test_gstart_sits_where_the_gate_window_program_looks_for_it():
    from fwpaths import FIRMWARE

    spec = importlib.util.spec_from_file_location("cplscope_fw_pins",
                                                  FIRMWARE / "board" / "rp2_pins.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.GSTART - table.PHOTON == PIO.GSTART_ABOVE_PHOTON
    # the trigger and GSTART are channels A and B of one PWM slice
    assert table.TRIGGER % 2 == 0 and table.GSTART == table.TRIGGER + 1
    # the program itself waits on input 17 above in_base (wait 0/1 pin 17)
    words = PIO.gate_window.words
    assert words[0] == 0x2000 | (1 << 5) | PIO.GSTART_ABOVE_PHOTON
    assert words[1] == 0x2000 | (1 << 7) | (1 << 5) | PIO.GSTART_ABOVE_PHOTON


class Chain:
    """What one run of the whole chain gave: `counts` per phase bin (from the DMA rings),
    `gated` (the gated pad), `opens` (the cycles at which gate_window opened a gate, its
    `mov x, osr`), `pin_pulses` ((rise, width) of the gated pad), `t_bin`, and `end` (the
    cycle the frame completed at: the run stops there)."""

    def __init__(self, counts, gated, opens, pin_pulses, t_bin, end):
        self.counts, self.gated, self.opens = counts, gated, opens
        self.pin_pulses, self.t_bin, self.end = pin_pulses, t_bin, end


def run_chain(gs, phot, refs, pem, width, bins, periods, horizon):
    """The whole chain: GSTART (`gs`, a Signal) → gate_window → pem_gate + two
    photon_counters (jmp pin = the gated pin) with their DMA rings, over `periods` PEM periods
    of the reference edges `refs` (nominal period `pem` cycles) and the photon pad `phot` (a
    Signal)."""
    t_bin, budget, pairs = PIO.counter_timing(pem, bins, 4)
    ref = Signal(horizon, [(r, 40) for r in refs])
    gated, monitors = DrivenPins(), DrivenPins()

    def pads(t):
        return (phot(t) << PHOT | ref(t) << REF | gs(t) << GSTART | gated.at(t)
                | monitors.at(t))

    window = window_sm(pads, width, gated)
    gate = Sm(PIO.pem_gate, pads, in_base=REF, sideset_base=G0, out_pins=monitors,
              out_mask=(1 << G0) | (1 << G1),
              state=State(input_shift_register=ShiftRegister(pairs - 1, 0),
                          output_shift_register=ShiftRegister(PIO.gate_delay_word(t_bin), 0)))
    counters = [Sm(PIO.photon_counter, pads, in_base=g, jmp_pin=GPH,
                   state=State(input_shift_register=ShiftRegister(budget, 0),
                               y_register=budget)) for g in (G0, G1)]
    dmas = [RingDma(PIO.ring_words(bins), pairs * periods) for _ in counters]
    opens = []
    for t in range(horizon):
        for dma, sm in zip(dmas, counters):
            dma.service(t, sm)
        while window.state.clock <= t:
            if window.state.program_counter == WINDOW_OPEN_PC:
                opens.append(window.state.clock)
            window.step()
        for sm in [gate] + counters:
            while sm.state.clock <= t:
                sm.step()
        if all(d.done() for d in dmas):
            break
    else:
        raise AssertionError("the frame did not complete")
    counts = [0] * bins
    for c, dma in enumerate(dmas):
        for j, word in enumerate(dma.ring):
            counts[2 * (j % pairs) + c] += PIO.total_from_word(word)
    pin_pulses, rise = [], None
    for t, v in gated.events:
        if v and rise is None:
            rise = t
        elif not v and rise is not None:
            pin_pulses.append((rise, t - rise))
            rise = None
    if rise is not None:
        pin_pulses.append((rise, horizon - rise))
    return Chain(counts, gated, opens, pin_pulses, t_bin, t)


# gate_window's `mov x, osr`: the state machine is there once per gate it opens, this many
# cycles after GSTART's pad rose (the synchroniser's 2 and the `wait`)
WINDOW_OPEN_PC = 2
OPEN_AFTER_GSTART = 3


def test_photons_are_counted_per_phase_bin_inside_the_gate_only():
    """The whole chain against the photons inside the gates binned by PEM phase
    independently."""
    rng = random.Random(11)
    bins, periods, pem = 4, 6, 160
    refs = _counter.ref_train(periods + 1, pem, 2, seed=5)
    horizon = refs[-1] + 2 * pem
    pulse_period, delay, width = 97, 20, 34  # incommensurate with the PEM period
    pulses = list(range(5, horizon, pulse_period))
    gs, rises = gstart_train(pulses, delay, horizon)
    photons = photon_train(rng, horizon, 150, width=(3, 4), spacing=9)
    chain = run_chain(gs, Signal(horizon, photons), refs, pem, width, bins, periods,
                      horizon)
    counts, t_bin = chain.counts, chain.t_bin
    # the counters count the gated pad exactly as they count the photon input (the
    # sampling rule of test_pio_counter), and the gated pad holds only the gates' photons
    expected = _counter.sampled_counts(refs[:periods], bins, t_bin, chain.pin_pulses, horizon)
    assert counts == expected, (counts, expected)
    ungated = _counter.sampled_counts(refs[:periods], bins, t_bin, photons, horizon)
    lag = PIO.GATE_OPEN_LAG_CYCLES + 1  # (the expressions below count from lag − 1)
    inside = [t for t, w in photons if any(g + lag <= t < g + lag - 2 + width for g in rises)]
    assert 20 < sum(counts) <= len(inside) + 8 and sum(counts) < 0.6 * sum(ungated), \
        (counts, len(inside), ungated)
    # one gate opened per pulse, a fixed few cycles after its gate start (until the frame
    # completed)
    assert [o - g for o, g in zip(chain.opens, rises)] == [OPEN_AFTER_GSTART] * len(chain.opens)
    assert len(chain.opens) == len([g for g in rises if g + OPEN_AFTER_GSTART <= chain.end])


def test_gate_timing_keeps_to_what_sync_delay_can_do():
    """The board's gating arithmetic (board/gating.py, GateTiming) and the sync_delay
    program agree: a gate asked to open sooner after the sync than the program can (0 ns)
    opens at the program's shortest delay, and the ISR word of every delay is the program's
    (GateTiming clamped to 5 cycles with a stale constant, which sync_delay_word refuses:
    an external CONFIGURE with gate_delay_ns = 0 failed at START)."""
    from fwpaths import FIRMWARE

    spec = importlib.util.spec_from_file_location("cplscope_fw_gating",
                                                  FIRMWARE / "board" / "gating.py")
    gating = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gating)
    for clock in (125_000_000, 150_000_000):
        for delay_ns in (0, 10, 40, 47, 100, 50_000):
            t = gating.GateTiming(clock, "external", 5_000_000, 0, delay_ns, 2_000_000, 1)
            assert t.delay == max(PIO.SYNC_FIXED_CYCLES + 1,
                                  gating.ns_to_cycles(delay_ns, clock)), (clock, delay_ns)
            assert t.sync_delay_word(0) == PIO.sync_delay_word(t.delay)
    assert gating.SYNC_DELAY_MIN_CYCLES == PIO.SYNC_FIXED_CYCLES + 1
