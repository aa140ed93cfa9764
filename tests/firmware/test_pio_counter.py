"""The photon counter (pem_gate + two interleaved photon_counter state machines + DMA rings)
run cycle by cycle in the pioemu emulator, against counts computed independently from the
same synthetic PEM reference and photon pulse trains."""
import bisect
import importlib.util
import random
from collections import deque
from pathlib import Path

import pytest

pioemu = pytest.importorskip("pioemu")
from pioemu import State, emulate  # noqa: E402
from pioemu.shift_register import ShiftRegister  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "cplscope_test_pio_asm", Path(__file__).with_name("test_pio_asm.py"))
_asm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_asm)
PIO = _asm.load_rp2_pio()

SYNC = 2  # GPIO input synchroniser: an SM sees the pad as it was 2 cycles earlier
# Test wiring (absolute GPIO numbers)
PHOT, REF, G0, G1 = 0, 1, 2, 3


class Signal:
    """A pad driven from outside: high on the cycles of the given (start, width) pulses."""

    def __init__(self, horizon: int, pulses) -> None:
        self.level = bytearray(horizon + 64)
        for start, width in pulses:
            for t in range(max(start, 0), min(start + width, len(self.level))):
                self.level[t] = 1

    def __call__(self, t: int) -> int:
        return self.level[t] if 0 <= t < len(self.level) else 0

    @classmethod
    def random_edges(cls, rng, first: int, n: int, gap: tuple[int, int], width: tuple[int, int],
                     tail: int):
        """n + 1 pulses from cycle ``first``, gaps and widths drawn uniformly from the given
        (low, high) cycles: (signal, rising edges, horizon = last edge + ``tail``)."""
        edges = [first]
        for _ in range(n):
            edges.append(edges[-1] + rng.randint(*gap))
        horizon = edges[-1] + tail
        return cls(horizon, [(e, rng.randint(*width)) for e in edges]), edges, horizon


class DrivenPins:
    """Pads driven by a state machine: an instruction executed at cycle t sets the pad from
    t + 1 on."""

    def __init__(self) -> None:
        self.history: dict[int, int] = {}
        self.last_t = -1
        self.value = 0
        self.events: list[tuple[int, int]] = []
        self.times: list[int] = []

    def set(self, t: int, value: int) -> None:
        if value != self.value:
            self.events.append((t + 1, value))
            self.times.append(t + 1)
        self.value = value
        self.last_t = t

    def at(self, t: int) -> int:
        i = bisect.bisect_right(self.times, t)
        return self.events[i - 1][1] if i else 0


class Sm:
    """One state machine in pioemu, with its own input mapping (in_base rotation)."""

    def __init__(self, prog, pads, *, in_base=0, jmp_pin=0, sideset_base=0, set_base=0,
                 set_count=0, state=None, out_pins=None, out_mask=0, shift_osr_right=True,
                 out_base=0, out_count=1) -> None:
        self.prog = prog
        self.in_base = in_base
        self.pads = pads
        self.out_pins = out_pins
        self.out_mask = out_mask
        self.sideset_base = sideset_base
        self.set_base = set_base
        self.out_base = out_base
        self.stopped_at = None

        def inputs(st: State) -> int:
            v = self.pads(st.clock - SYNC)
            return ((v >> in_base) | (v << (32 - in_base))) & 0xFFFF_FFFF

        self.gen = emulate(
            prog.words, stop_when=self._stop, initial_state=state or State(),
            input_source=inputs, jmp_pin=(jmp_pin - in_base) % 32,
            side_set_base=(sideset_base - in_base) % 32,
            side_set_count=prog.sideset_count,
            set_base=(set_base - in_base) % 32, set_count=set_count,
            out_base=(out_base - in_base) % 32, out_count=out_count,
            shift_osr_right=shift_osr_right,
            wrap_target=prog.wrap_target, wrap_top=prog.wrap)
        self.state = state or State()
        self.pushes: list[int] = []

    @staticmethod
    def _stop(opcode: int, state: State) -> bool:
        return (opcode >> 13) == 0b110  # IRQ: pioemu does not emulate it; stop there

    def step(self) -> bool:
        """Execute one instruction; False once the program reached an IRQ instruction."""
        t = self.state.clock
        rx_before = len(self.state.receive_fifo)
        try:
            _, self.state = next(self.gen)
        except StopIteration:
            self.stopped_at = t
            return False
        if len(self.state.receive_fifo) > rx_before:
            self.pushes.append(t)
        if self.out_pins is not None:
            v = (self.state.pin_values << self.in_base | self.state.pin_values
                 >> (32 - self.in_base)) & 0xFFFF_FFFF
            self.out_pins.set(t, v & self.out_mask)
        return True


class RingDma:
    """The two DMA channels of one counter: TX reads the ring into the TX FIFO (paced by its
    DREQ, up to 4 words ahead), RX writes the RX FIFO back into the ring; both wrap on the
    ring and stop after `transfers` words. `latency` cycles from read to FIFO / FIFO to
    memory, like the bus does."""

    def __init__(self, ring_words: int, transfers: int, latency: int = 2) -> None:
        self.ring = [0xFFFF_FFFF] * ring_words
        self.tx_left = self.rx_left = transfers
        self.rd = self.wr = 0
        self.latency = latency
        self.in_flight: deque = deque()
        self.writes: deque = deque()

    def service(self, t: int, sm: Sm) -> None:
        tx = sm.state.transmit_fifo
        while self.in_flight and self.in_flight[0][0] <= t:
            tx.append(self.in_flight.popleft()[1])
        if self.tx_left and len(tx) + len(self.in_flight) < 4:
            self.in_flight.append((t + self.latency, self.ring[self.rd]))
            self.rd = (self.rd + 1) % len(self.ring)
            self.tx_left -= 1
        while self.writes and self.writes[0][0] <= t:
            _, index, word = self.writes.popleft()
            self.ring[index] = word
        rx = sm.state.receive_fifo
        if rx and self.rx_left:
            self.writes.append((t + self.latency, self.wr, rx.popleft()))
            self.wr = (self.wr + 1) % len(self.ring)
            self.rx_left -= 1

    def done(self) -> bool:
        return self.rx_left == 0 and not self.writes


def run_counter(bins: int, periods: int, ref_edges: list, photons: list, horizon: int,
                t_bin: int, budget: int, pairs: int):
    """Run gate + 2 counters + DMA over the trains; return (counts per bin, sms, gate pins)."""
    ref = Signal(horizon, [(r, 40) for r in ref_edges])
    phot = Signal(horizon, photons)
    gates = DrivenPins()

    def pads(t: int) -> int:
        return phot(t) << PHOT | ref(t) << REF | gates.at(t)

    gate = Sm(PIO.pem_gate, pads, in_base=REF, sideset_base=G0, out_pins=gates,
              out_mask=(1 << G0) | (1 << G1),
              state=State(input_shift_register=ShiftRegister(pairs - 1, 0),
                          output_shift_register=ShiftRegister(PIO.gate_delay_word(t_bin), 0)))
    counters = [
        Sm(PIO.photon_counter, pads, in_base=g, jmp_pin=PHOT,
           state=State(input_shift_register=ShiftRegister(budget, 0), y_register=budget))
        for g in (G0, G1)]
    ring = PIO.ring_words(bins)
    dmas = [RingDma(ring, pairs * periods) for _ in counters]
    sms = [gate] + counters
    for t in range(horizon):
        for dma, sm in zip(dmas, counters):
            dma.service(t, sm)
        for sm in sms:
            while sm.state.clock <= t:
                sm.step()
        # gate output must reflect instructions up to t before counters read pads later
        if all(d.done() for d in dmas):
            break
    else:
        raise AssertionError("the frame did not complete within %d cycles" % horizon)
    counts = [0] * bins
    for c, dma in enumerate(dmas):
        for j, word in enumerate(dma.ring):
            counts[2 * (j % pairs) + c] += PIO.total_from_word(word)
    return counts, sms, gates, t


# --- independent references ----------------------------------------------------------------

def bin_starts(ref_edges, bins, t_bin):
    """Pad cycle where each bin of each period starts (periods in order)."""
    return [[r + PIO.BIN0_DELAY_CYCLES + k * t_bin for k in range(bins)] for r in ref_edges]


def histogram_of_rises(ref_edges, bins, t_bin, photons):
    """Counts of well-separated pulses: bin k of period p takes the pulses that rise in
    [start_k, start_k + t_bin)."""
    counts = [0] * bins
    for starts in bin_starts(ref_edges, bins, t_bin):
        for start, _ in photons:
            for k, s in enumerate(starts):
                if s <= start < s + t_bin:
                    counts[k] += 1
    return counts


def sampled_counts(ref_edges, bins, t_bin, photons, horizon):
    """Counts by the sampling rule the docs state: within a bin the input is sampled every
    SAMPLE_CYCLES; a sample that is high after a low one counts, and the sample after a
    count is skipped (HOLDOFF_CYCLES to the next look); a bin's state starts from the pad
    one cycle before its first sample, and a pulse already high there is not counted."""
    pad = Signal(horizon, photons)
    counts = [0] * bins
    n_samples = (t_bin - 1) // 2 + 1
    for starts in bin_starts(ref_edges, bins, t_bin):
        for k, s0 in enumerate(starts):
            samples = [s0 + PIO.SAMPLE_CYCLES * i for i in range(n_samples)]
            high = bool(pad(s0 - 1))
            j = 0
            while j < len(samples):
                level = bool(pad(samples[j]))
                if not high and level:
                    counts[k] += 1
                    j += PIO.HOLDOFF_CYCLES // PIO.SAMPLE_CYCLES
                    high = True
                else:
                    high = level
                    j += 1
    return counts


def ref_train(n, period, jitter, seed, first=30):
    rng = random.Random(seed)
    edges = [first]
    for _ in range(n):
        edges.append(edges[-1] + period + rng.randint(0, jitter))
    return edges


# --- tests -----------------------------------------------------------------------------------

def setup(bins, period, margin=0):
    return PIO.counter_timing(period, bins, margin)


@pytest.mark.parametrize("bins", [2, 8])
def test_gates_follow_reference_and_cut_equal_bins(bins):
    period = 260 if bins == 8 else 120
    t_bin, budget, pairs = setup(bins, period, margin=4)
    edges = ref_train(3, period, 4, seed=1)
    _, _, gates, _ = run_counter(bins, 2, edges, [], edges[-1] + period, t_bin, budget, pairs)
    rises = {G0: [], G1: []}
    previous = 0
    for t, v in gates.events:
        for g in (G0, G1):
            if v & (1 << g) and not previous & (1 << g):
                rises[g].append(t)
        previous = v
    for p in range(2):
        assert rises[G0][p * pairs] == edges[p] + PIO.BIN0_DELAY_CYCLES - SYNC
    starts = sorted(rises[G0] + rises[G1])
    assert len(starts) == 2 * bins
    per_period = [starts[i:i + bins] for i in range(0, len(starts), bins)]
    for p in per_period:
        assert [b - a for a, b in zip(p, p[1:])] == [t_bin] * (bins - 1)
    # the gates are high for B·t_bin cycles per period: the live part that bin_span reports
    high = {G0: 0, G1: 0}
    rose = {}
    previous = 0
    for t, v in gates.events:
        for g in (G0, G1):
            if v & (1 << g) and not previous & (1 << g):
                rose[g] = t
            elif previous & (1 << g) and not v & (1 << g):
                high[g] += t - rose.pop(g)
        previous = v
    live = (high[G0] + high[G1]) / 2  # two periods were gated
    assert live == bins * t_bin
    assert PIO.bin_span(bins * t_bin, period) == round(65536 * live / period)


def test_empty_frame_completes_on_time():
    """No photon at all: every gate still closes after its budget and the frame completes
    right after the last bin (a wait-based counter would hang here)."""
    bins, periods, period = 8, 3, 260
    t_bin, budget, pairs = setup(bins, period, margin=4)
    edges = ref_train(periods + 1, period, 3, seed=2)
    counts, sms, _, t_done = run_counter(bins, periods, edges, [], edges[-1] + 2 * period,
                                         t_bin, budget, pairs)
    assert counts == [0] * bins
    last_bin_end = edges[periods - 1] + PIO.BIN0_DELAY_CYCLES + bins * t_bin
    assert t_done <= last_bin_end + SYNC + 12
    # each counter pushed once per own bin, each push within a few cycles of its bin's end
    ends = [s + t_bin for starts in bin_starts(edges[:periods], bins, t_bin) for s in starts]
    pushes = sorted(sms[1].pushes + sms[2].pushes)
    assert len(pushes) == bins * periods
    for end, push in zip(ends, pushes):
        assert 0 <= push - end - SYNC <= 6


def boundary_photons(edges, bins, t_bin, rng, skip_bins):
    photons = []
    for starts in bin_starts(edges, bins, t_bin):
        for k, s in enumerate(starts):
            if k in skip_bins:
                continue
            choice = rng.randrange(4)
            offset = [0, t_bin - 1, 1, t_bin // 2][choice]
            photons.append((s + offset, rng.randint(2, 4)))
    photons.sort()
    # keep them separate pulses: a low gap that a sample must see, and no edge in a hold-off
    kept = [photons[0]]
    for start, width in photons[1:]:
        if start >= kept[-1][0] + 2 * PIO.HOLDOFF_CYCLES and start >= sum(kept[-1]) + 3:
            kept.append((start, width))
    return kept


@pytest.mark.parametrize("bins,period", [(8, 270), (32, 760)])
def test_sparse_counts_exact_with_empty_bins_and_edges_on_bin_boundaries(bins, period):
    rng = random.Random(10 + bins)
    periods = 3
    t_bin, budget, pairs = setup(bins, period, margin=4)
    edges = ref_train(periods + 1, period, 3, seed=bins)
    skip = {1, 2, bins - 1}  # bins that stay empty in every period
    photons = boundary_photons(edges[:periods], bins, t_bin, rng, skip)
    counts, _, _, _ = run_counter(bins, periods, edges, photons, edges[-1] + 2 * period,
                                  t_bin, budget, pairs)
    expected = histogram_of_rises(edges[:periods], bins, t_bin, photons)
    assert counts == expected
    assert all(counts[k] == 0 for k in skip)
    assert sum(counts) == len(photons)


def dense_train(t0, t1, rng, min_width=2, max_width=3, min_gap=1, max_gap=4):
    photons, t = [], t0
    while t < t1:
        w = rng.randint(min_width, max_width)
        photons.append((t, w))
        t += w + rng.randint(min_gap, max_gap)
    return photons


@pytest.mark.parametrize("bins,period", [(2, 140), (4, 200), (16, 400)])
def test_dense_counts_near_saturation_match_sampling_rule(bins, period):
    rng = random.Random(bins)
    periods = 3
    t_bin, budget, pairs = setup(bins, period, margin=4)
    edges = ref_train(periods + 1, period, 2, seed=100 + bins)
    horizon = edges[-1] + 2 * period
    photons = dense_train(0, horizon, rng)
    counts, _, _, _ = run_counter(bins, periods, edges, photons, horizon, t_bin, budget, pairs)
    assert counts == sampled_counts(edges[:periods], bins, t_bin, photons, horizon)


def test_periodic_pulses_at_the_maximum_rate_are_all_counted():
    bins, periods, period = 4, 2, 200
    t_bin, budget, pairs = setup(bins, period, margin=4)
    edges = ref_train(periods + 1, period, 0, seed=5)
    horizon = edges[-1] + 2 * period
    step = PIO.MIN_PULSE_PERIOD_CYCLES
    photons = [(t, 2) for t in range(1, horizon, step)]
    counts, _, _, _ = run_counter(bins, periods, edges, photons, horizon, t_bin, budget, pairs)
    assert counts == histogram_of_rises(edges[:periods], bins, t_bin, photons)
    # a bin of t_bin cycles holds t_bin / step pulses, ± 1
    for c in counts:
        assert abs(c - periods * t_bin / step) <= periods


def test_bin_span_is_the_live_fraction_in_65536ths_rounded():
    from fractions import Fraction
    rng = random.Random(7)
    cases = [(64 * 37, 2500), (32 * 77, 2500), (2 * 1239, 2500), (1, 3), (2, 3), (1, 131072),
             (2_000_000, 2_000_001), (65535, 65536), (4_000_000, 4_194_303)]
    cases += [(rng.randrange(1, p), p) for p in (rng.randrange(2, 1 << 22) for _ in range(2000))]
    for live, period in cases:
        exact = Fraction(65536 * live, period)
        want = int(exact + Fraction(1, 2))  # round half up
        want = 0 if want >= 65536 else want
        assert PIO.bin_span(live, period) == want, (live, period)
        assert PIO.bin_span(16 * live, 16 * period) == want  # sums over 16 periods: same value
    assert PIO.bin_span(2500, 2500) == PIO.bin_span(2600, 2500) == 0xFFFF
    assert PIO.bin_span(100, 0) == 0
    # the table in docs/hardware.md: B = 32 and 64 at 50 kHz, 125 MHz
    assert round(PIO.bin_span(32 * 77, 2500) / 65536, 3) == 0.986
    assert round(PIO.bin_span(64 * 37, 2500) / 65536, 3) == 0.947


def test_timing_arithmetic_rejects_what_the_hardware_cannot_do():
    with pytest.raises(ValueError, match="power of two"):
        PIO.counter_timing(2500, 12)
    with pytest.raises(ValueError, match="too short"):
        PIO.counter_timing(1000, 64)
    t_bin, budget, pairs = PIO.counter_timing(2500, 64)  # 50 kHz PEM at 125 MHz
    assert t_bin % 2 == 1 and 64 * t_bin + PIO.GATE_OVERHEAD_CYCLES <= 2500
    assert budget == (t_bin - 1) // 2 and pairs == 32
    assert PIO.ring_words(2) == PIO.ring_words(16) == 8 and PIO.ring_words(64) == 32
