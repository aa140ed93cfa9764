"""The highest pulse rate of gated counting, measured in pioemu through the whole chain
(gate_rate.py): at the shortest period docs/hardware.md states every gate opens and passes
exactly its own pulse's photons, and one cycle shorter it does not, for the reason the docs
give (the gate runs into the next pulse, or gate_window re-arms after the next gate start)."""
import pytest

pytest.importorskip("pioemu")
import gate_rate as R  # noqa: E402


@pytest.mark.parametrize("delay,width", [(1, 2), (2, 2), (3, 2), (1, 4), (5, 4), (2, 8), (8, 16),
                                         (6, 8)])
def test_the_shortest_period_is_clean_and_one_cycle_less_is_not(delay, width):
    period = R.shortest_period(delay, width)
    at = R.run(period, delay, width)
    assert at.clean, at.summary()
    assert at.inside >= 8 and at.photons - at.inside >= 8, (at.inside, at.photons)
    # a little longer is clean too (the limit is a threshold, not a resonance)
    for longer in (period + 1, period + 3):
        assert R.run(longer, delay, width).clean, longer
    past = R.run(period - 1, delay, width)
    assert not past.clean
    if delay + 1 > 3:
        # the gate's last cycle is the next pulse's first: that pulse's photon passes
        assert past.wrong_pulse and not past.missed, past.summary()
    else:
        # GSTART's low (δ cycles) is over before gate_window is back at its `wait 0`:
        # it skips gates (at δ = 2 both limits meet)
        assert past.missed, past.summary()


def test_the_highest_pulse_rate_beats_the_docs_arithmetic_bound():
    """The shortest gate (2 cycles) right after the pulse (δ = 1, one PWM count): a clean
    5-cycle period (25 MHz at 125 MHz), 2 cycles under the δ + w + 4 the docs estimated;
    the protocol's 100 ns (12.5 cycles) is the tighter limit."""
    assert R.shortest_period(1, 2) == 5 < R.doc_bound(1, 2) == 7
    assert R.shortest_clean_period(1, 2, longest=14) == 5
    # and a gate as wide as a 13-cycle (104 ns) period allows
    assert R.shortest_clean_period(2, 10, longest=16) == 13


def test_the_verdict_sees_a_gate_two_cycles_late():
    """The check itself can fail: GSTART two cycles later than the δ it judges against
    loses the gate's first photons and passes photons after its end."""
    assert R.run(12, 3, 4).clean
    late = R.run(12, 3, 4, gstart_delay=5)
    assert late.lost and late.strays and not late.missed, late.summary()
