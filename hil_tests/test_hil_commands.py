"""Every command: its happy path, and its error paths answered with the documented status,
with no effect on the instrument (docs/protocol.md: "a command that fails validation has no
effect"), and the firmware still answering afterwards."""
from __future__ import annotations

import math
import time
from typing import Any

import pytest

from cplscope.protocol import CommandError, Counts, Opcode, ReplyStatus

A0 = math.pi / 2
STATUS_KEYS = {"state", "mode", "bins", "periods", "pem_locked", "pem_period_ps", "a0_rad",
               "wavelength_nm", "mono_position", "moving", "homed", "hv_volts", "hv_set_volts",
               "shutter_open", "overload", "frames_sent", "frames_dropped", "frames_late",
               "uptime_us", "fault", "loop_max_us", "replayed"}
#: STATUS fields that a refused command must leave as they were (the rest are clocks,
#: counters and sensor read-backs).
STEADY = ("state", "mode", "bins", "periods", "a0_rad", "wavelength_nm", "mono_position",
          "moving", "homed", "hv_set_volts", "shutter_open", "overload")


def snapshot(t) -> dict[str, Any]:
    """Everything a refused command must not change: the steady STATUS fields and the full
    configurations that PEM_CONFIG, MONO_CONFIG and SET_LIMITS return for empty args."""
    st = t.command(Opcode.STATUS)
    moving = ("wavelength_nm", "mono_position") if st["moving"] else ()
    return {"status": {k: st[k] for k in STEADY if k not in moving},
            "pem": t.command(Opcode.PEM_CONFIG, {}) if st["state"] != "running" else None,
            "mono": (t.command(Opcode.MONO_CONFIG, {})
                     if st["state"] != "running" and not st["moving"] else None),
            "limits": t.command(Opcode.SET_LIMITS, {})}


def expect_refusals(inst, cases: list[tuple[int, dict | None, ReplyStatus]]) -> None:
    """Send each (opcode, args, status) case; all must be refused with that status, change
    nothing, and leave the firmware answering IDENTIFY."""
    t = inst.transport
    serial = inst.info()["serial"]
    problems = []
    for opcode, args, status in cases:
        before = snapshot(t)
        try:
            result = t.command(opcode, args)
        except CommandError as exc:
            if exc.status != status:
                problems.append(f"{opcode} {args}: {exc.status!r} ({exc.text}), "
                                f"expected {status!r}")
            elif not exc.text.strip():
                problems.append(f"{opcode} {args}: refused without a text")
        else:
            problems.append(f"{opcode} {args}: accepted ({result}), expected {status!r}")
            continue
        after = snapshot(t)
        if after != before:
            problems.append(f"{opcode} {args}: a refused command changed the instrument: "
                            f"{before} -> {after}")
        if t.command(Opcode.IDENTIFY)["serial"] != serial:
            problems.append(f"{opcode} {args}: IDENTIFY changed after it")
    assert not problems, "\n".join(problems)


def home_and_tune(inst, nm: float = 438.0) -> None:
    inst.configure_counting(bins=16, periods=500)
    inst.home()
    inst.set_retardation(A0)
    inst.move_to(nm)


def test_every_command_happy_path(open_instrument) -> None:
    inst = open_instrument()
    t = inst.transport
    ident = t.command(Opcode.IDENTIFY)
    assert {"implementation", "board", "firmware_version", "protocol_version",
            "serial"} <= set(ident)
    st = t.command(Opcode.STATUS)
    assert set(st) == STATUS_KEYS
    assert t.command(Opcode.CONFIGURE, {"mode": "analog", "sample_rate_hz": 200000.0,
                                        "block_samples": 1024}) == {
        "mode": "analog", "sample_rate_hz": 200000.0, "block_samples": 1024}
    assert t.command(Opcode.CONFIGURE, {"mode": "counting", "bins": 32, "periods": 250}) == {
        "mode": "counting", "bins": 32, "periods": 250}
    st = t.command(Opcode.STATUS)
    assert (st["mode"], st["bins"], st["periods"]) == ("counting", 32, 250)
    limits = t.command(Opcode.SET_LIMITS, {"max_count_rate_cps": 3e6})
    assert set(limits) == {"max_count_rate_cps", "max_adc_level", "max_high_fraction",
                           "max_hv_volts"}
    assert limits["max_count_rate_cps"] == 3e6
    pem = t.command(Opcode.PEM_CONFIG, {})
    assert set(pem) >= {"source", "frequency_hz", "drive_per_rad_nm"}
    assert t.command(Opcode.PEM_CONFIG, {"source": pem["source"]}) == pem
    mono = t.command(Opcode.MONO_CONFIG, {})
    assert set(mono) >= {"steps_per_nm", "home_nm", "backlash_steps", "min_nm", "max_nm"}
    assert t.command(Opcode.MONO_CONFIG, {"backlash_steps": mono["backlash_steps"]}) == mono

    assert t.command(Opcode.HOME, timeout=120.0) == {"position": 0}
    st = t.command(Opcode.STATUS)
    assert st["homed"] and st["mono_position"] == 0 and st["wavelength_nm"] == mono["home_nm"]
    target = round((438.0 - mono["home_nm"]) * mono["steps_per_nm"])
    assert t.command(Opcode.MOVE, {"wavelength_nm": 438.0}) == {
        "position": target, "wavelength_nm": pytest.approx(438.0, abs=1 / mono["steps_per_nm"])}
    inst._homed = True  # the Instrument did not see the raw HOME
    inst._wait_stopped(target, 60.0)
    assert t.command(Opcode.STATUS)["mono_position"] == target
    ret = t.command(Opcode.SET_RETARDATION, {"a0_rad": A0})
    assert ret["a0_rad"] == pytest.approx(A0)
    assert ret["drive"] == pytest.approx(A0 * 438.0 * pem["drive_per_rad_nm"], rel=1e-3)
    assert t.command(Opcode.STATUS)["a0_rad"] == pytest.approx(A0, rel=1e-3)

    hv = t.command(Opcode.SET_HV, {"volts": 700.0})
    assert hv["hv_set_volts"] == 700.0
    assert hv["hv_volts"] is None or hv["hv_volts"] == pytest.approx(700.0, rel=0.05, abs=5)
    assert t.command(Opcode.SHUTTER, {"open": True}) == {"shutter_open": True}
    acq = t.command(Opcode.START)["acq_id"]
    assert t.command(Opcode.STATUS)["state"] == "running"
    frame = t.data.get(timeout=10.0)
    while not (isinstance(frame, Counts) and frame.acq_id == acq):
        frame = t.data.get(timeout=10.0)
    assert (frame.n_bins, frame.periods) == (32, 250)
    stop = t.command(Opcode.STOP)
    assert stop["frames_sent"] >= 1
    assert t.command(Opcode.STOP)["frames_sent"] == stop["frames_sent"]  # idle STOP: no-op
    assert t.command(Opcode.START)["acq_id"] == (acq + 1) % 65536
    t.command(Opcode.STOP)
    assert t.command(Opcode.SHUTTER, {"open": False}) == {"shutter_open": False}
    assert t.command(Opcode.SET_HV, {"volts": 0.0})["hv_set_volts"] == 0.0
    assert t.command(Opcode.CLEAR_FAULT) == {"state": "idle"}
    test = t.command(Opcode.SELF_TEST)
    assert test["passed"], test


IDLE_REFUSALS: list[tuple[int, dict | None, ReplyStatus]] = [
    (Opcode.IDENTIFY, {"verbose": True}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 16}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {"mode": "photons", "bins": 16, "periods": 10}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 12, "periods": 10}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 128, "periods": 10},
     ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 16, "periods": 0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 16, "periods": 100001},
     ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 16.0, "periods": 10}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": True, "periods": 10}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 16, "periods": "10"}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {"mode": "counting", "bins": 16, "periods": 10,
                        "sample_rate_hz": 1e5}, ReplyStatus.BAD_ARGS),
    (Opcode.CONFIGURE, {"mode": "analog", "sample_rate_hz": 999.0, "block_samples": 1024},
     ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "analog", "sample_rate_hz": 250001.0, "block_samples": 1024},
     ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "analog", "sample_rate_hz": 1e5, "block_samples": 1023},
     ReplyStatus.OUT_OF_RANGE),
    (Opcode.CONFIGURE, {"mode": "analog", "sample_rate_hz": 1e5, "block_samples": 0},
     ReplyStatus.OUT_OF_RANGE),
    (Opcode.START, {"now": True}, ReplyStatus.BAD_ARGS),
    (Opcode.STOP, {"force": True}, ReplyStatus.BAD_ARGS),
    (Opcode.MOVE, {}, ReplyStatus.BAD_ARGS),
    (Opcode.MOVE, {"wavelength_nm": 450.0, "position": 100}, ReplyStatus.BAD_ARGS),
    (Opcode.MOVE, {"wavelength_nm": "450"}, ReplyStatus.BAD_ARGS),
    (Opcode.MOVE, {"wavelength_nm": 100.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.MOVE, {"wavelength_nm": 5000.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.MOVE, {"position": -10**6}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.MOVE, {"position": 1.5}, ReplyStatus.BAD_ARGS),
    (Opcode.HOME, {"fast": True}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_RETARDATION, {}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_RETARDATION, {"a0_rad": 0.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_RETARDATION, {"a0_rad": -1.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_RETARDATION, {"a0_rad": 3.2}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_RETARDATION, {"a0_rad": 1.0, "track_wavelength": 1}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_HV, {}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_HV, {"volts": -1.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_HV, {"volts": 1e6}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_HV, {"volts": "800"}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_HV, {"volts": None}, ReplyStatus.BAD_ARGS),
    (Opcode.SHUTTER, {}, ReplyStatus.BAD_ARGS),
    (Opcode.SHUTTER, {"open": 1}, ReplyStatus.BAD_ARGS),
    (Opcode.STATUS, {"all": True}, ReplyStatus.BAD_ARGS),
    (Opcode.SELF_TEST, {"quick": True}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_LIMITS, {"max_count_rate_cps": 0.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_LIMITS, {"max_adc_level": 4096}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_LIMITS, {"max_adc_level": 100.5}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_LIMITS, {"max_high_fraction": 1.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_LIMITS, {"max_high_fraction": 0.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_LIMITS, {"max_high_fraction": "0.5"}, ReplyStatus.BAD_ARGS),
    (Opcode.SET_LIMITS, {"max_hv_volts": -1.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_LIMITS, {"max_hv_volts": 1e6}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.SET_LIMITS, {"max_rate": 1.0}, ReplyStatus.BAD_ARGS),
    (Opcode.CLEAR_FAULT, {"all": True}, ReplyStatus.BAD_ARGS),
    (Opcode.PEM_CONFIG, {"source": "laser"}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.PEM_CONFIG, {"frequency_hz": 10.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.PEM_CONFIG, {"drive_per_rad_nm": 0.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.PEM_CONFIG, {"source": 1}, ReplyStatus.BAD_ARGS),
    (Opcode.MONO_CONFIG, {"steps_per_nm": 0.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.MONO_CONFIG, {"min_nm": 900.0, "max_nm": 200.0}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.MONO_CONFIG, {"backlash_steps": -1}, ReplyStatus.OUT_OF_RANGE),
    (Opcode.MONO_CONFIG, {"backlash_steps": 1.5}, ReplyStatus.BAD_ARGS),
    (0, None, ReplyStatus.UNKNOWN_COMMAND),
    (18, None, ReplyStatus.UNKNOWN_COMMAND),
    (99, {"x": 1}, ReplyStatus.UNKNOWN_COMMAND),
    (255, None, ReplyStatus.UNKNOWN_COMMAND),
]


def test_refusals_when_idle(open_instrument) -> None:
    inst = open_instrument()
    home_and_tune(inst)
    expect_refusals(inst, IDLE_REFUSALS)


def test_refusals_that_depend_on_the_setting(open_instrument) -> None:
    inst = open_instrument()
    home_and_tune(inst)
    inst.set_hv(800.0)
    # the HV set point is above the new ceiling
    expect_refusals(inst, [(Opcode.SET_LIMITS, {"max_hv_volts": 500.0},
                            ReplyStatus.OUT_OF_RANGE)])
    inst.set_hv(0.0)
    # π rad held at 438 nm needs drive 0.88; at 900 nm it would need 1.8 (> full scale)
    inst.set_retardation(math.pi)
    pem = inst.transport.command(Opcode.PEM_CONFIG, {})
    too_far = 1.05 / (math.pi * pem["drive_per_rad_nm"])
    expect_refusals(inst, [
        (Opcode.MOVE, {"wavelength_nm": too_far}, ReplyStatus.OUT_OF_RANGE),
        (Opcode.PEM_CONFIG, {"drive_per_rad_nm": pem["drive_per_rad_nm"] * 3},
         ReplyStatus.OUT_OF_RANGE)])
    inst.set_retardation(A0)


def test_refusals_while_running(open_instrument) -> None:
    inst = open_instrument()
    home_and_tune(inst)
    t = inst.transport
    t.command(Opcode.START)
    try:
        expect_refusals(inst, [
            (Opcode.START, None, ReplyStatus.BAD_STATE),
            (Opcode.CONFIGURE, {"mode": "counting", "bins": 16, "periods": 100},
             ReplyStatus.BAD_STATE),
            (Opcode.HOME, None, ReplyStatus.BAD_STATE),
            (Opcode.PEM_CONFIG, {"frequency_hz": 50000.0}, ReplyStatus.BAD_STATE),
            (Opcode.MONO_CONFIG, {"backlash_steps": 10}, ReplyStatus.BAD_STATE)])
        assert t.command(Opcode.STATUS)["state"] == "running"
    finally:
        t.command(Opcode.STOP)


def test_refusals_while_moving(open_instrument, hil) -> None:
    # real time in the simulator (speed 1), so that the 700 nm move takes 1.4 s of wall time
    inst = open_instrument(speed=1.0)
    inst.configure_counting(bins=16, periods=500)
    inst.home()
    t = inst.transport
    mono = t.command(Opcode.MONO_CONFIG, {})
    t.command(Opcode.MOVE, {"wavelength_nm": mono["max_nm"]})
    assert t.command(Opcode.STATUS)["moving"], "the move ended before it could be checked"
    expect_refusals(inst, [
        (Opcode.MOVE, {"wavelength_nm": mono["min_nm"] + 10}, ReplyStatus.BAD_STATE),
        (Opcode.MONO_CONFIG, {"backlash_steps": 10}, ReplyStatus.BAD_STATE)])
    assert t.command(Opcode.STATUS)["moving"], "the move ended during the check: inconclusive"
    deadline = time.monotonic() + 120
    while t.command(Opcode.STATUS)["moving"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.command(Opcode.STATUS)["mono_position"] == round(
        (mono["max_nm"] - mono["home_nm"]) * mono["steps_per_nm"])


@pytest.mark.sim_only("a real board stays homed across tests; only a fresh boot is unhomed")
def test_refusals_before_homing(open_instrument) -> None:
    inst = open_instrument()
    assert inst.status()["homed"] is False
    expect_refusals(inst, [
        (Opcode.MOVE, {"wavelength_nm": 450.0}, ReplyStatus.BAD_STATE),
        (Opcode.MOVE, {"position": 10}, ReplyStatus.BAD_STATE),
        (Opcode.SET_RETARDATION, {"a0_rad": A0}, ReplyStatus.BAD_STATE)])
