"""Gated counting on the emulated Pico, watched cycle by cycle: the timing limits of issue #24
measured on the rp2 board code itself (firmware/board/rp2.py: the trigger's PWM slice,
gate_window on PIO1, the photon counters on the gated pin).

The bridge's gate probe (``EmulatedPico.gate_probe``) records the trigger (GP18), the gate
start GSTART (GP19) and the gated photons (GP20) at every change, in 8-ns cycles, and puts
2-cycle photons on GP2 at chosen offsets after each rising edge of the trigger; the bench's own
photons are off. What is measured: the pulse period, the trigger's width and the gate's delay
(to the cycle, and their spread over thousands of pulses), the offsets whose photons pass (the
gate's position and width, at every pulse), that GATED_COUNTS frames count those and only
those, and the shortest pulse period the protocol allows with a gate near the limit measured
in pioemu (tests/firmware/gate_rate.py)."""
from __future__ import annotations

import bisect
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from cplscope.protocol import Event, EventCode, GatedCounts, Opcode
from cplscope.protocol.commands import CommandError

pytestmark = pytest.mark.emulated_only("watches the gated-counting pins cycle by cycle")

CYCLE_NS = 8
# rp2040js passes a photon whose pad rises [δ, δ + w) cycles after the trigger; pioemu, which
# models the GPIO input synchroniser, [δ + 1, δ + 1 + w) (docs/hardware.md)
OPEN_LAG_CYCLES = 0
# a passed photon's copy reaches GP20 within this many cycles
PASS_LATENCY_MAX = 6


@pytest.fixture
def dark_bench(pico: Any):
    """No photons but the probe's, HV on and the shutter open; the bench restored after."""
    before = pico.bench()
    pico.bench(light_cps=0.0, dark_cps=0.0)
    yield pico
    pico.gate_probe(stop=True)
    pico.bench(**before)


def within(sorted_cycles: list[int], start: int, span: int) -> bool:
    """Whether one of `sorted_cycles` lies in [start, start + span]."""
    i = bisect.bisect_left(sorted_cycles, start)
    return i < len(sorted_cycles) and sorted_cycles[i] <= start + span


@dataclass
class Pins:
    """What the probe saw: rising and falling cycles of the trigger, GSTART and the gated
    pin; the photons put on GP2 as (cycle, its pulse's rising cycle)."""

    changes: list = field(default_factory=list)
    photons: list = field(default_factory=list)

    def edges(self, bit: int, rising: bool = True) -> list[int]:
        out, prev = [], None
        for cycle, levels in self.changes:
            level = levels >> bit & 1
            if prev is not None and level != prev and level == rising:
                out.append(cycle)
            prev = level
        return out

    def timing(self) -> dict[str, set[int]]:
        """For every trigger pulse but the last: the sets of its period, its width, GSTART's
        rise and fall after it (cycles): one value each when nothing jitters."""
        rises, falls = self.edges(0), self.edges(0, False)
        g_rises, g_falls = self.edges(1), self.edges(1, False)

        def after(edges: list[int], t: int) -> int:
            return edges[bisect.bisect_left(edges, t)] - t

        pulses = rises[:-1]
        return {"period": {b - a for a, b in zip(rises, rises[1:])},
                "trigger_width": {after(falls, t) for t in pulses},
                "gate_delay": {after(g_rises, t) for t in pulses},
                "gstart_fall": {after(g_falls, t) for t in pulses}}

    def fates(self) -> dict[int, set[bool]]:
        """For each photon offset after its pulse: whether it passed to GP20 (a set: one
        value when every pulse treated it alike). Photons of the last pulse recorded are
        left out: the probe may have stopped before their copy was due."""
        gated = self.edges(2)
        last = self.edges(0)[-1]
        out: dict[int, set[bool]] = defaultdict(set)
        for at, pulse in self.photons:
            if pulse < last:
                out[at - pulse].add(within(gated, at, PASS_LATENCY_MAX))
        return dict(out)

    def unexplained(self) -> list[int]:
        """GP20 rises no photon explains."""
        starts = sorted(at for at, _ in self.photons)
        return [r for r in self.edges(2) if not within(starts, r - PASS_LATENCY_MAX,
                                                         PASS_LATENCY_MAX)]


def gated_config(period_ns: int, trigger_ns: int, delay_ns: int, width_ns: int,
                 periods: int = 1000) -> dict[str, Any]:
    return {"mode": "gated", "bins": 16, "periods": periods, "trigger": "internal",
            "pulse_period_ns": period_ns, "trigger_width_ns": trigger_ns,
            "gate_delay_ns": delay_ns, "gate_width_ns": width_ns, "gates": 1}


def watch(pico: Any, link: Any, offsets: list[list[int]], *, frames: int = 0,
          limit: int = 0, timeout_s: float = 300.0) -> tuple[Pins, list[GatedCounts]]:
    """START gated counting with the probe on: a bounded acquisition of `frames`
    GATED_COUNTS frames, watched to its end (ACQ_DONE: the pulses after the last frame, up
    to the trigger's stop, are in the record too), or until the probe's `limit` pulses are
    done (then STOP)."""
    pins = Pins()
    got: list[Any] = []
    pico.gate_probe(offsets=offsets, limit=limit)
    link.call(Opcode.START, {"frames": max(frames, 1)})
    deadline = time.monotonic() + timeout_s
    while True:
        got.extend(link.read())
        seen = pico.gate_probe()
        assert not seen["overflow"], "the probe dropped changes: read it more often"
        pins.changes += seen["changes"]
        pins.photons += seen["photons"]
        counted = [m for m in got if isinstance(m, GatedCounts)]
        done = any(isinstance(m, Event) and m.code == EventCode.ACQ_DONE for m in got)
        if (frames and done) or (not frames and not seen["on"]):
            break
        assert time.monotonic() < deadline, "the gated acquisition did not finish"
    seen = pico.gate_probe(stop=True)
    pins.changes += seen["changes"]
    pins.photons += seen["photons"]
    if not frames:
        link.call(Opcode.STOP)
    link.drain()
    return pins, counted


def light_on(link: Any) -> None:
    link.call(Opcode.SET_HV, {"volts": 500.0})
    link.call(Opcode.SHUTTER, {"open": True})


# 251 cycles: incommensurate with the 2500-cycle PEM period, so the pulses' photons fall at
# every PEM phase (and in the counters' dead gaps in proportion)
SLOW = gated_config(2008, 200, 400, 800)


def test_gate_delay_width_and_jitter_to_the_cycle(open_raw, dark_bench) -> None:
    pico = dark_bench
    link = open_raw()
    light_on(link)
    q = link.call(Opcode.CONFIGURE, SLOW)
    assert (q["pulse_period_ns"], q["trigger_width_ns"], q["gate_delay_ns"],
            q["gate_width_ns"]) == (2008, 200, 400, 800), q
    delay, width = q["gate_delay_ns"] // CYCLE_NS, q["gate_width_ns"] // CYCLE_NS
    # one photon per pulse: across both edges of the gate, inside it and far outside
    sweep = (list(range(delay - 8, delay + 8)) + list(range(delay + width - 8,
                                                            delay + width + 8))
             + [5, delay + width // 2, 240])
    pins, frames = watch(pico, link, [[o] for o in sweep], frames=3)
    t = pins.timing()
    print(f"\n{len(pins.edges(0))} pulses: {t}")
    # the PWM slice's timing, to the cycle, the same at every pulse (no jitter: trigger and
    # gate start are two compares of one counter)
    assert t == {"period": {251}, "trigger_width": {25}, "gate_delay": {delay},
                 "gstart_fall": {0}}, t
    assert len(pins.edges(0)) >= 3 * 9900
    # the gate: every pulse passes the same offsets, exactly `width` cycles of them
    fates = pins.fates()
    assert all(len(f) == 1 for f in fates.values()), {o: f for o, f in fates.items()
                                                       if len(f) > 1}
    passed = sorted(o for o, f in fates.items() if True in f)
    opens = delay + OPEN_LAG_CYCLES
    assert passed == [o for o in sorted(fates) if opens <= o < opens + width], passed
    assert opens - 1 not in passed and opens + width not in passed
    assert pins.unexplained() == []
    # the frames count the photons inside the gate: one per pulse for `inside` of the
    # sweep's offsets, in the counters' live part of each PEM period
    inside = len([o for o in sweep if opens <= o < opens + width]) / len(sweep)
    # the first frame's gates open from START on, its trigger pulses only once the main loop
    # turns the trigger on: the frame's `pulses` (its time over the period) counts both
    dark = bisect.bisect_left(pins.edges(1), pins.edges(0)[0])
    print(f"{dark} gates opened before the first trigger pulse")
    assert dark < 0.1 * frames[0].pulses
    for k, f in enumerate(frames):
        assert (f.pulse_period_ns, f.gate_delay_ns, f.gate_width_ns, f.n_gates) == (
            2008, 400, 800, 1)
        expected = (f.pulses - (dark if k == 0 else 0)) * inside * f.bin_span
        print(f"frame {f.seq}: {int(f.counts.sum())} counts, {expected:.0f} expected "
              f"({f.pulses} pulses)")
        assert abs(f.counts.sum() - expected) < 0.01 * expected + 5, (f.counts.sum(), expected)


def test_photons_outside_the_gate_are_not_counted(open_raw, dark_bench) -> None:
    pico = dark_bench
    link = open_raw()
    light_on(link)
    q = link.call(Opcode.CONFIGURE, SLOW)
    delay, width = q["gate_delay_ns"] // CYCLE_NS, q["gate_width_ns"] // CYCLE_NS
    opens = delay + OPEN_LAG_CYCLES
    outside = [5, opens - 2, opens - 1, opens + width, opens + width + 1, 240]
    pins, frames = watch(pico, link, [[o] for o in outside], frames=2)
    assert len(pins.photons) >= 2 * 9900
    assert pins.edges(2) == []
    assert len(frames) == 2 and all(int(f.counts.sum()) == 0 for f in frames), [
        int(f.counts.sum()) for f in frames]


def test_the_highest_pulse_rate_the_protocol_allows(open_raw, dark_bench) -> None:
    """104 ns (13 cycles; the protocol's shortest period, 100 ns, rounds to it), 9.6 MHz:
    with a gate of 10 cycles from δ = 2 (pioemu's limit w + max(δ + 1, 3) = 13) every gate
    opens and passes its photons, at every pulse. A 12-cycle gate from δ = 1 ends with the
    period, but needs 15 cycles (GSTART is low for one cycle only, while gate_window is still
    in the previous gate: run, it passed nothing): CONFIGURE refuses it, with the period it
    needs."""
    pico = dark_bench
    link = open_raw()
    light_on(link)
    q = link.call(Opcode.CONFIGURE, gated_config(104, 8, 16, 80))
    assert (q["pulse_period_ns"], q["gate_delay_ns"], q["gate_width_ns"]) == (104, 16, 80), q
    # a photon every 8th pulse (1.2 M/s, below the PMT guard's 2 M/s), at each offset in turn
    offsets: list[list[int]] = []
    for o in range(13):
        offsets += [[o]] + [[]] * 7
    pins, _ = watch(pico, link, offsets, limit=20 * len(offsets))
    t = pins.timing()
    assert t == {"period": {13}, "trigger_width": {1}, "gate_delay": {2},
                 "gstart_fall": {0}}, t
    fates = pins.fates()
    passed = sorted(o for o, f in fates.items() if True in f)
    print(f"\ngate 16:80 ns at 104 ns: {len(pins.edges(0))} pulses, passed offsets {passed}")
    assert len(fates) == 13 and all(len(f) == 1 for f in fates.values()), fates
    opens = 2 + OPEN_LAG_CYCLES
    assert passed == list(range(opens, opens + 10))
    assert pins.unexplained() == []
    with pytest.raises(CommandError, match="at least 120 ns"):
        link.call(Opcode.CONFIGURE, gated_config(104, 8, 8, 96))
