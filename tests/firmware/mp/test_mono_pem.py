"""Monochromator homing and backlash; PEM drive ∝ λ; lock/unlock events."""
import math

from cpl import protocol as P
from cpl.mono import Mono
from cpl.args import CommandError
from fakeboard import FakeBoard
from helpers import make, ok, cmd, events, run, expect_raises

MOVE, HOME, SET_RET, PEM_CONFIG, MONO_CONFIG, STATUS = 5, 6, 7, 14, 15, 10


def home_alone(m, b):
    """Home a Mono on its own, the way the main loop drives it; returns the position."""
    m.start_home()
    while m.homing():
        b.wait(1000)
        m.poll()
    assert m.homed, m.home_error
    return m.position()


def settle(inst, n=10):
    run(inst, n)
    assert not inst.mono.moving()


def test_homing_finds_switch_edge_approaching_upward():
    for home_at, start in ((-1234, 0), (37, 0), (0, 0)):
        b = FakeBoard(home_at=home_at)
        m = Mono(b)
        m.backlash_steps = 5
        assert home_alone(m, b) == 0
        # home is the first position above the switch reached going up
        assert b.target == home_at + 1, (home_at, b.target)
        assert b.steps[-1] == 1
        assert not b.home_switch()
        b.pos -= 1
        assert b.home_switch()


def test_homing_starting_on_the_switch_leaves_it_first():
    b = FakeBoard(home_at=100)
    m = Mono(b)
    home_alone(m, b)
    assert b.steps[0] > 0 and b.target == 101


def test_backlash_every_move_ends_upward():
    inst, b = make()
    ok(inst, b, HOME)
    ok(inst, b, MONO_CONFIG, {"backlash_steps": 40})
    here = inst.mono.position()
    for nm in (500, 300, 300.5, 450, 449.9, 449.9, 700):
        b.steps.clear()
        ok(inst, b, MOVE, {"wavelength_nm": nm})
        settle(inst)
        target = int(round((nm - 200) * 10))
        assert inst.mono.position() == target
        if b.steps:
            assert b.steps[-1] > 0, (nm, b.steps)
        if target < here:
            assert b.steps == [target - 40 - here, 40], (nm, b.steps)
        elif target > here:
            assert b.steps == [target - here]
        else:
            assert b.steps == []
        here = target


def test_wavelength_conversion_with_config():
    inst, b = make()
    ok(inst, b, MONO_CONFIG, {"steps_per_nm": 4, "home_nm": 180, "min_nm": 190, "max_nm": 800})
    ok(inst, b, HOME)
    r = ok(inst, b, MOVE, {"wavelength_nm": 437.3})
    assert r["position"] == round((437.3 - 180) * 4)
    settle(inst)
    st = ok(inst, b, STATUS)
    assert abs(st["wavelength_nm"] - (180 + r["position"] / 4)) < 1e-6
    assert st["mono_position"] == r["position"] and st["homed"] is True


def homed_at(nm):
    """A board homed and moved to ``nm`` (the move finished)."""
    inst, b = make()
    ok(inst, b, HOME)
    ok(inst, b, MOVE, {"wavelength_nm": nm})
    settle(inst)
    return inst, b


def test_drive_tracks_wavelength_keeping_a0_constant():
    inst, b = homed_at(400)
    ok(inst, b, SET_RET, {"a0_rad": 1.8412})
    for nm in (350, 500, 650, 800):
        ok(inst, b, MOVE, {"wavelength_nm": nm})
        settle(inst)
        assert abs(b.drive - 1.8412 * nm * 0.0006366) < 1e-6, (nm, b.drive)
        a0 = ok(inst, b, STATUS)["a0_rad"]
        assert abs(a0 - 1.8412) < 1e-4, (nm, a0)


def test_fixed_drive_without_tracking():
    inst, b = homed_at(400)
    r = ok(inst, b, SET_RET, {"a0_rad": math.pi / 2, "track_wavelength": False})
    ok(inst, b, MOVE, {"wavelength_nm": 800})
    settle(inst)
    assert b.drive == r["drive"]
    assert abs(ok(inst, b, STATUS)["a0_rad"] - math.pi / 4) < 1e-4  # A0 ∝ 1/λ at fixed drive


def test_move_refused_where_tracking_needs_drive_above_full_scale():
    inst, b = homed_at(300)
    ok(inst, b, SET_RET, {"a0_rad": 3.0})  # drive 0.573 at 300 nm; > 1 above 523.6 nm
    st, text = cmd(inst, b, MOVE, {"wavelength_nm": 600})
    assert st == P.ST_OUT_OF_RANGE and "drive" in text, text
    assert inst.mono.position() == 1000 and not inst.mono.moving()
    ok(inst, b, MOVE, {"wavelength_nm": 520})


def test_pem_config_rescales_tracked_drive_or_refuses():
    inst, b = homed_at(500)
    ok(inst, b, SET_RET, {"a0_rad": 1.5})
    ok(inst, b, PEM_CONFIG, {"drive_per_rad_nm": 0.001})
    assert abs(b.drive - 1.5 * 500 * 0.001) < 1e-6
    st, _ = cmd(inst, b, PEM_CONFIG, {"drive_per_rad_nm": 0.002})  # would need 1.5
    assert st == P.ST_OUT_OF_RANGE and abs(b.drive - 0.75) < 1e-6


def test_pem_lock_and_unlock_events():
    inst, b = make()
    run(inst, 1)
    b.written.clear()
    b.locked = False
    run(inst, 2)
    b.locked = True
    run(inst, 2)
    evs = [e for e in events(b) if e[0] in (P.EV_PEM_LOCK, P.EV_PEM_UNLOCK)]
    assert [(e[0], e[1]) for e in evs] == [(P.EV_PEM_UNLOCK, 1), (P.EV_PEM_LOCK, 0)], evs
