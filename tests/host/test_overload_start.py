"""An acquisition on a board in an overload fault raises OverloadError, whether the guard
tripped during this acquisition or before its START (a Pico's PIO guard watches the PMT all
the time, so a limit below the light trips it before any START)."""
from __future__ import annotations

import pytest

import cplscope
from cplscope.board.controller import OverloadError


def test_start_in_an_overload_fault_raises_overload_error() -> None:
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=3) as inst:
        inst.configure_counting(bins=16, periods=500)
        inst.home()
        inst.move_to(438.0)
        inst.set_hv(800.0)
        inst.open_shutter()
        inst.set_limits(max_count_rate_cps=10.0)
        with pytest.raises(OverloadError):
            inst.acquire(n_frames=200)
        with pytest.raises(OverloadError, match="CLEAR_FAULT|clear_fault"):
            inst.acquire(n_frames=5)   # START refused: the board is in its overload fault
        inst.set_limits(max_count_rate_cps=2e6)
        assert inst.clear_fault()["state"] == "idle"
