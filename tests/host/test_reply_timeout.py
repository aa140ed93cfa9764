"""How long a command waits for its reply: ``reply_timeout`` of connect() and Transport
(5 s by default; the Instrument's own commands wait twice that), longer for a slow board."""
from __future__ import annotations

import pytest

import cplscope
from cplscope.board.transport import Transport


def test_connect_passes_the_reply_timeout_to_the_transport() -> None:
    with cplscope.connect("sim", seed=1, reply_timeout=7.5) as inst:
        assert inst.transport.reply_timeout == 7.5
        assert inst.status()["state"] == "idle"


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_a_reply_timeout_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="reply_timeout"):
        Transport(lambda: None, reply_timeout=bad)
