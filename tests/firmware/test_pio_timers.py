"""Period timer, overload guard and stepper PIO programs in the pioemu emulator."""
import random

import pytest

pioemu = pytest.importorskip("pioemu")
from pioemu import State  # noqa: E402
from pioemu.shift_register import ShiftRegister  # noqa: E402
import test_pio_counter as _counter  # noqa: E402  (the PIO model and its helpers)

PIO, Sm, Signal, SYNC = _counter.PIO, _counter.Sm, _counter.Signal, _counter.SYNC

REF, PHOT, HV_EN, SHUTTER, STEP, DIR = 1, 0, 4, 5, 6, 7


def run_until(sm: Sm, t_end: int) -> None:
    while sm.state.clock < t_end and sm.step():
        pass


def test_period_timer_measures_every_period_to_a_cycle_without_drift():
    rng = random.Random(3)
    ref, edges, horizon = Signal.random_edges(rng, 50, 12, gap=(180, 260), width=(20, 90),
                                              tail=100)
    # started at its first instruction, X left over from before
    sm = Sm(PIO.period_timer, lambda t: ref(t) << REF, jmp_pin=REF,
            state=State(x_register=rng.getrandbits(32)))
    words = []
    while sm.state.clock < horizon and sm.step():
        while sm.state.receive_fifo:
            words.append(sm.state.receive_fifo.popleft())
    words = words[1:]  # the start-up word
    assert len(words) == len(edges)
    first = PIO.first_edge_cycles_from_word(words[0])
    # the edge reaches the SM SYNC cycles late and is seen within one 2-cycle sample
    assert 0 <= first - (edges[0] + SYNC) <= 1
    measured = [PIO.period_cycles_from_word(w) for w in words[1:]]
    true = [b - a for a, b in zip(edges, edges[1:])]
    for m, p in zip(measured, true):
        assert abs(m - p) <= 1
    # errors do not add up: any run of periods spans the true time to ±1 cycle
    assert abs(first + sum(measured) - (edges[-1] + SYNC)) <= 1


def guard_sm(pads, limit: int, window: int) -> Sm:
    on = (1 << HV_EN) | (1 << SHUTTER)  # armed: HV on, shutter open
    return Sm(PIO.overload_guard, pads, jmp_pin=PHOT, set_base=HV_EN, set_count=2,
              state=State(input_shift_register=ShiftRegister(limit, 0),
                          output_shift_register=ShiftRegister(PIO.guard_window(window), 0),
                          pin_directions=on, pin_values=on))


def test_guard_holds_below_the_limit():
    window, limit = 400, 20
    horizon = 10 * window
    # 15 pulses per window, well under 20
    phot = Signal(horizon, [(t, 3) for t in range(0, horizon, window // 15)])
    sm = guard_sm(lambda t: phot(t) << PHOT, limit, window)
    run_until(sm, horizon)
    assert sm.stopped_at is None
    assert sm.state.pin_values >> HV_EN & 3 == 3


@pytest.mark.parametrize("onset", [137, 1333])
def test_guard_trips_within_two_windows_of_an_overload(onset):
    window, limit = 400, 20
    horizon = 20 * window
    quiet = [(t, 3) for t in range(0, onset, 100)]
    burst = [(t, 3) for t in range(onset, horizon, 10)]  # 40 per window, 2x the limit
    phot = Signal(horizon, quiet + burst)
    sm = guard_sm(lambda t: phot(t) << PHOT, limit, window)
    run_until(sm, horizon)
    assert sm.stopped_at is not None, "the guard did not trip"
    assert sm.stopped_at - onset <= 2 * window + 2 * SYNC
    # HV enable and shutter were driven low before the IRQ was raised
    assert sm.state.pin_values >> HV_EN & 3 == 0
    # the limit is a limit: it takes limit + 1 edges within one window (which stretches by
    # a cycle per counted edge) to trip
    span = window + limit + 8
    recent = sum(1 for s, _ in quiet + burst if sm.stopped_at - span <= s + SYNC < sm.stopped_at)
    assert recent >= limit + 1


@pytest.mark.parametrize("steps", [1, 5, -3])
def test_stepper_issues_exactly_the_steps_with_direction_then_reports_done(steps):
    horizon = 40 + abs(steps) * PIO.STEPPER_CYCLES_PER_STEP + 40
    sm = Sm(PIO.stepper, lambda t: 0, sideset_base=STEP, out_base=DIR, out_count=1,
            shift_osr_right=False,
            state=State(pin_directions=(1 << STEP) | (1 << DIR)))
    sm.state.transmit_fifo.append(PIO.stepper_word(steps))
    rises, previous, dir_at_rise = [], 0, []
    while sm.state.clock < horizon and sm.step():
        level = sm.state.pin_values >> STEP & 1
        if level and not previous:
            rises.append(sm.state.clock)
            dir_at_rise.append(sm.state.pin_values >> DIR & 1)
        previous = level
    assert len(rises) == abs(steps)
    assert dir_at_rise == [1 if steps > 0 else 0] * abs(steps)
    assert [b - a for a, b in zip(rises, rises[1:])] == [PIO.STEPPER_CYCLES_PER_STEP] * (
        abs(steps) - 1)
    assert len(sm.pushes) == 1 and sm.pushes[0] > rises[-1]


def test_stepper_word_rejects_a_zero_move():
    with pytest.raises(ValueError):
        PIO.stepper_word(0)
