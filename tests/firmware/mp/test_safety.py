"""Overload guard: EVENT OVERLOAD, latched fault, recovery only through CLEAR_FAULT."""
import json

from cpl import protocol as P
from helpers import make, ok, cmd, frames, events, run, counts_frames

CONFIGURE, START, SET_HV, SHUTTER, STATUS, CLEAR_FAULT = 2, 3, 8, 9, 10, 13


def tripped():
    inst, b = make()
    ok(inst, b, SET_HV, {"volts": 900})
    ok(inst, b, SHUTTER, {"open": True})
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 8, "periods": 100})
    ok(inst, b, START)
    b.written.clear()
    b.trip("PMT rate 3.2e6 cps > limit 2.0e6 cps")
    run(inst, 1)
    return inst, b


def test_trip_reports_event_flags_frame_and_latches_fault():
    inst, b = tripped()
    evs = [e for e in events(b) if e[0] == P.EV_OVERLOAD]
    assert evs == [(P.EV_OVERLOAD, 2, "PMT rate 3.2e6 cps > limit 2.0e6 cps")], evs
    fs = counts_frames(b)
    assert fs and fs[0]["flags"] & P.F_OVERLOAD
    assert inst.state == "fault"
    b.written.clear()
    run(inst, 5)
    assert counts_frames(b) == []  # acquisition stopped
    assert not [e for e in events(b) if e[0] == P.EV_OVERLOAD]  # reported once
    st = ok(inst, b, STATUS)
    assert st["overload"] is True and st["state"] == "fault" and st["hv_set_volts"] == 0.0


def test_fault_blocks_start_hv_and_shutter_until_clear():
    inst, b = tripped()
    for op, args in ((START, None), (SET_HV, {"volts": 100}), (SHUTTER, {"open": True})):
        st, text = cmd(inst, b, op, args)
        assert st == P.ST_BAD_STATE and "CLEAR_FAULT" in text, (op, st, text)
    assert b.hv == 0.0 and b.shutter is False
    ok(inst, b, SET_HV, {"volts": 0})  # making it safer is always allowed
    ok(inst, b, SHUTTER, {"open": False})
    assert ok(inst, b, CLEAR_FAULT) == {"state": "idle"}
    assert b.tripped is False
    assert ok(inst, b, STATUS)["overload"] is False
    assert b.hv == 0.0  # clearing does not bring the HV back
    ok(inst, b, START)
    assert inst.state == "running"


def test_second_trip_after_clear_is_reported_again():
    inst, b = tripped()
    ok(inst, b, CLEAR_FAULT)
    b.written.clear()
    b.trip("ADC level 4095 > limit 4000")
    run(inst, 1)
    assert [e[2] for e in events(b) if e[0] == P.EV_OVERLOAD] == ["ADC level 4095 > limit 4000"]
