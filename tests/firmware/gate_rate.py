"""The highest pulse rate of gated counting, in the pioemu emulator, cycle by cycle: the whole
chain (GSTART as the trigger PWM's inverted channel B drives it, `gate_window`, `pem_gate` and
the two photon counters with their DMA rings) at one pulse period, gate delay and width, with
2-cycle photons (the shortest the counters take) at every offset from their pulse.

A run is clean when every gate opens (one `gate_window` pass per gate start, at a fixed lag),
the gated pad carries exactly the photons whose edge is inside their own pulse's gate
([δ + 1, δ + 1 + w) cycles after the pulse, docs/hardware.md), none lost and none from the
next pulse, and the phase-bin counters count the gated pad by their sampling rule. Shared by
tests/firmware/test_pio_gate_rate.py and bench/bench_gate_rate.py."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import test_pio_counter as _counter
import test_pio_gating as _gating
from fwpaths import FIRMWARE

_spec = importlib.util.spec_from_file_location("cplscope_fw_gating",
                                               FIRMWARE / "board" / "gating.py")
_fw_gating = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fw_gating)

PIO = _gating.PIO
PEM_CYCLES = 160  # the PEM period of the runs (its phase bins are not what is measured here)
BINS = 4
# PEM periods per 12 cycles of pulse period (up to 4×): about as many photons at any period
PEM_PERIODS = 6
# a passed photon's copy reaches the gated pad this many cycles after the photon's pad, at
# most (the synchroniser, the 2-cycle sample, the `mov`)
PASS_LATENCY_MAX = 6
# photons: one every few pulses, at least this many cycles apart (the counters' pulse pair
# resolution with room to spare), each 2 cycles wide
PHOTON_SPACING = 12


def doc_bound(delay: int, width: int) -> int:
    """The bound the docs stated from the programs' arithmetic before it was measured:
    δ + w + 4 cycles per pulse period."""
    return delay + width + 4


# The firmware's arithmetic of the limit (board/gating.py, which the rp2 board's CONFIGURE
# checks): the gate must end inside its own period (δ + 1 + w ≤ T: GSTART rises δ after the
# pulse and a photon passes 1 to w cycles later) and gate_window must be back at its `wait 0`
# while GSTART is still low after the next pulse (3 cycles after its gate's last sample:
# w + 3 ≤ T). test_pio_gate_rate.py holds it against the measurement.
shortest_period = _fw_gating.shortest_period


@dataclass
class Verdict:
    """One run: what went wrong, by kind (all empty: clean).

    missed: gate starts (pad cycle) without a gate opened 3 cycles later; extra_opens: gates
    opened without a gate start; lost: photons (pad cycle) inside their gate not passed;
    strays: photons outside their gate that passed (of these, `wrong_pulse` are inside the
    previous pulse's gate span); unexplained: gated-pad pulses no photon explains;
    miscounted: the counters' counts differ from their sampling rule on the gated pad."""

    period: int
    delay: int
    width: int
    photons: int = 0
    inside: int = 0
    missed: list = field(default_factory=list)
    extra_opens: list = field(default_factory=list)
    lost: list = field(default_factory=list)
    strays: list = field(default_factory=list)
    wrong_pulse: list = field(default_factory=list)
    unexplained: list = field(default_factory=list)
    miscounted: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missed or self.extra_opens or self.lost or self.strays
                    or self.unexplained or self.miscounted)

    def summary(self) -> str:
        if self.clean:
            return "clean"
        parts = []
        for name in ("missed", "extra_opens", "lost", "strays", "wrong_pulse", "unexplained"):
            n = len(getattr(self, name))
            if n:
                parts.append("%s %d" % (name.replace("_", " "), n))
        if self.miscounted:
            parts.append("miscounted")
        return ", ".join(parts)


def run(period: int, delay: int, width: int, gstart_delay: int | None = None) -> Verdict:
    """The whole chain at a pulse period of `period` cycles (the PWM at div = 1), GSTART
    `delay` cycles after each pulse (δ ≥ 1: one PWM count) and a gate of `width` cycles.
    `gstart_delay`: GSTART rises this late instead, the verdict still judging against
    `delay` (to show that the verdict fails a gate in the wrong place)."""
    first = 7
    periods = PEM_PERIODS * min(4, max(1, period // 12))
    refs = _counter.ref_train(periods + 1, PEM_CYCLES, 0, seed=0)
    horizon = refs[-1] + 2 * PEM_CYCLES
    pulses = list(range(first, horizon, period))
    gs, rises = _gating.gstart_train(
        pulses, delay if gstart_delay is None else gstart_delay, horizon)
    # every other photon at an offset from its pulse where a gate's edge or a pulse is
    # (0, the gate's first and last passing cycles and their neighbours), the others at
    # offset j mod period, j = 0, 1, …: every offset, at many pulses of both parities
    lag = PIO.GATE_OPEN_LAG_CYCLES
    edges = sorted({o % period for o in (0, period - 1, delay + lag - 1, delay + lag,
                                         delay + lag + width - 1, delay + lag + width)})
    photons, owner, k, i = [], [], 0, 0
    step = -(-(PHOTON_SPACING + period - 1) // period)
    while k < len(pulses) - 1:
        offset = edges[(i // 2) % len(edges)] if i % 2 == 0 else (i // 2) % period
        photons.append((pulses[k] + offset, 2))
        owner.append(k)
        i += 1
        k += step + (i // 2) % 2  # a window that skips every other gate meets photons
    chain = _gating.run_chain(gs, _counter.Signal(horizon, photons), refs, PEM_CYCLES, width,
                              BINS, periods, horizon)
    end = chain.end
    v = Verdict(period, delay, width)
    opens = set(chain.opens)
    for g in rises:
        if g + _gating.OPEN_AFTER_GSTART <= end and g + _gating.OPEN_AFTER_GSTART not in opens:
            v.missed.append(g)
    starts = {g + _gating.OPEN_AFTER_GSTART for g in rises}
    v.extra_opens = [o for o in chain.opens if o not in starts]
    pin_rises = [r for r, _ in chain.pin_pulses]
    explained = set()
    for (t, _), k in zip(photons, owner):
        near = [r for r in pin_rises if 0 < r - t <= PASS_LATENCY_MAX]
        explained.update(near)
        if t + PASS_LATENCY_MAX >= end:
            continue  # the run stopped before this one's copy was due
        v.photons += 1
        offset = t - pulses[k]
        inside = delay + lag <= offset < delay + lag + width
        if inside:
            v.inside += 1
            if not near:
                v.lost.append(t)
        elif near:
            v.strays.append(t)
            if k and delay + lag <= offset + period < delay + lag + width:
                v.wrong_pulse.append(t)
    v.unexplained = [r for r in pin_rises if r + 1 < end and r not in explained]
    expected = _counter.sampled_counts(refs[:periods], BINS, chain.t_bin,
                                       chain.pin_pulses, horizon)
    v.miscounted = chain.counts != expected
    return v


def shortest_clean_period(delay: int, width: int, longest: int) -> int | None:
    """The shortest period from which every period up to `longest` runs clean (None: not
    even `longest`)."""
    best = None
    for period in range(longest, 3, -1):
        if not run(period, delay, width).clean:
            break
        best = period
    return best
