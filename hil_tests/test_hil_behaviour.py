"""Instrument behaviour: PEM lock, the overload guard, the monochromator (homing, backlash,
frames during moves), dark counts and a complete short scan."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cplscope.data.archive import Archive
from cplscope.plans.reprocess import reprocess
from cplscope.board.controller import OverloadError
from cplscope.protocol import CommandError, EventCode, Flags, Opcode, ReplyStatus, Severity
from cplscope.science.results import chi2_quantile
from cplscope.plans.scan import scan_wavelengths
from cplscope.data.spectrum import Spectrum

from .helpers import raw_frames, rate_cps, tune, wait_event, wait_locked


def test_pem_unlock_flags_frames_and_relock_restores_them(open_instrument) -> None:
    inst = open_instrument()
    tune(inst, periods=500)
    t = inst.transport
    pem = inst.configure_pem()
    right = pem["frequency_hz"]
    inst.configure_pem(source="internal", frequency_hz=right)
    wait_locked(inst)  # a board driving the PEM itself sweeps for the resonance first
    mark = len(t.events)
    inst.configure_pem(frequency_hz=right * 1.1)  # outside any resonance search range
    unlock = wait_event(inst, EventCode.PEM_UNLOCK, since=mark)
    assert unlock.severity >= Severity.WARNING
    assert t.command(Opcode.STATUS)["pem_locked"] is False
    frames = raw_frames(inst, 20)
    assert all(not f.flags & Flags.PEM_LOCKED and not f.usable for f in frames)

    mark = len(t.events)
    inst.configure_pem(frequency_hz=right)
    wait_event(inst, EventCode.PEM_LOCK, since=mark)
    assert t.command(Opcode.STATUS)["pem_locked"]
    frames = raw_frames(inst, 20)
    assert all(f.flags & Flags.PEM_LOCKED and f.usable for f in frames)
    inst.configure_pem(source=pem["source"], frequency_hz=right)


def test_overload_guard_trips_and_clear_fault_recovers(open_instrument) -> None:
    """A count-rate limit below the light's rate must trip the guard: EVENT OVERLOAD, HV 0,
    shutter closed, state fault, START/HV/shutter refused until CLEAR_FAULT. (A low limit
    rather than a bright light: the same test is safe on a real PMT.)"""
    inst = open_instrument()
    tune(inst, periods=500)
    t = inst.transport
    limits = inst.set_limits()
    rate, sigma = rate_cps(inst.acquire(n_frames=20))
    assert rate > 10 * sigma > 0, "needs light to trip the guard"
    inst.set_limits(max_count_rate_cps=rate / 2)
    mark = len(t.events)
    with pytest.raises(OverloadError):
        inst.acquire(n_frames=2000)
    event = wait_event(inst, EventCode.OVERLOAD, since=mark)
    assert event.severity == Severity.ERROR and event.text
    st = t.command(Opcode.STATUS)
    assert (st["state"], st["overload"], st["shutter_open"], st["hv_set_volts"]) == (
        "fault", True, False, 0.0)
    assert st["hv_volts"] in (None, 0.0) or st["hv_volts"] < 5.0
    for opcode, args in ((Opcode.START, None), (Opcode.SET_HV, {"volts": 800.0}),
                         (Opcode.SHUTTER, {"open": True})):
        with pytest.raises(CommandError) as exc:
            t.command(opcode, args)
        assert exc.value.status == ReplyStatus.BAD_STATE and "CLEAR_FAULT" in exc.value.text
    assert t.command(Opcode.SET_HV, {"volts": 0.0})["hv_set_volts"] == 0.0  # HV off is fine
    assert t.command(Opcode.STOP)  # STOP in fault: OK, stays in fault
    assert t.command(Opcode.STATUS)["state"] == "fault"

    inst.set_limits(max_count_rate_cps=limits["max_count_rate_cps"])
    assert inst.clear_fault()["state"] == "idle"
    st = t.command(Opcode.STATUS)
    assert (st["overload"], st["hv_set_volts"], st["shutter_open"]) == (False, 0.0, False)
    inst.set_hv(800.0)
    inst.open_shutter()
    again, sigma2 = rate_cps(inst.acquire(n_frames=20))
    assert abs(again - rate) < 0.05 * rate + 5 * math.hypot(sigma, sigma2)


def test_homing_and_backlash_end_at_the_same_place(open_instrument) -> None:
    inst = open_instrument()
    tune(inst, 400.0, periods=5000)
    t = inst.transport
    mark = len(t.events)
    assert inst.home() == {"position": 0}
    assert wait_event(inst, EventCode.MONO, since=mark).severity == Severity.INFO
    mono = inst.configure_monochromator()
    st = t.command(Opcode.STATUS)
    assert (st["mono_position"], st["wavelength_nm"], st["homed"]) == (0, mono["home_nm"], True)
    # on the steep red flank of the emission a step changes the rate by ~1 %
    slope_nm = 448.0
    inst.move_to(slope_nm - 20)
    inst.move_to(slope_nm)  # from below: a plain upward move
    from_below = t.command(Opcode.STATUS)["mono_position"]
    r_below, s_below = rate_cps(inst.acquire(duration_s=2.0))
    inst.move_to(slope_nm + 20)
    inst.move_to(slope_nm)  # from above: overshoots by the backlash, ends going up
    from_above = t.command(Opcode.STATUS)["mono_position"]
    r_above, s_above = rate_cps(inst.acquire(duration_s=2.0))
    assert from_below == from_above == round((slope_nm - mono["home_nm"])
                                             * mono["steps_per_nm"])
    # same optical position: rates agree within 4σ (Poisson) plus 0.2 % for source drift
    assert abs(r_below - r_above) < 4 * math.hypot(s_below, s_above) + 2e-3 * r_below


def test_frames_during_a_move_are_flagged_and_excluded(open_instrument) -> None:
    inst = open_instrument()
    tune(inst, 450.0, periods=250)  # 5 ms frames: a 10 nm move spans several
    t = inst.transport
    target = {}

    def move_midway(i: int) -> None:
        if i == 30:
            target.update(t.command(Opcode.MOVE, {"wavelength_nm": 440.0}))

    frames = raw_frames(inst, 200, during=move_midway)
    moving = [f for f in frames if f.flags & Flags.MONO_MOVING]
    assert moving, "no frame saw the move"
    assert all(not f.usable for f in moving)
    start = frames[0].mono_position
    for f in frames:
        if not f.flags & Flags.MONO_MOVING:
            assert f.mono_position in (start, target["position"]), f
    assert frames[-1].mono_position == target["position"]
    # the downward move overshoots below the target and comes back up
    assert min(f.mono_position for f in moving) < target["position"]

    # the acquisition layer leaves them out and counts them
    inst._wavelength_nm = 440.0

    def move_again(frames_so_far, dwell):
        if len(frames_so_far) == 10:
            t.command(Opcode.MOVE, {"wavelength_nm": 450.0})

    fs = inst.acquire(n_frames=120, progress=move_again)
    assert fs.excluded >= 1 and fs.n_frames == 120
    assert not np.any(fs.flags & Flags.MONO_MOVING)
    assert len(fs.received) == fs.n_frames + fs.excluded


@pytest.mark.long(205)
def test_dark_counts_are_flat_across_phase_bins(open_instrument) -> None:
    inst = open_instrument()
    tune(inst, 438.0, periods=5000)
    dark = inst.measure_dark(dwell_s=200.0)
    assert inst.status()["shutter_open"] is True, "measure_dark must restore the shutter"
    assert not np.any(dark.frames.flags & Flags.SHUTTER_OPEN)
    counts = dark.frames.counts.sum(axis=0).astype(float)
    b = counts.size
    chi2 = float(np.sum((counts - counts.mean()) ** 2 / counts.mean()))
    assert counts.mean() > 20, "too few dark counts to test flatness"
    assert chi2_quantile(1e-4, b - 1) < chi2 < chi2_quantile(1 - 1e-4, b - 1)
    rate, _ = rate_cps(inst.acquire(duration_s=5.0))
    assert dark.total_rate_cps < 0.01 * rate


@pytest.mark.sim_only("compares with the bench's dark rate")
def test_dark_rate_is_the_benchs(open_instrument) -> None:
    bench_dark_cps = 20.0 * 0.999  # docs/simulator.md: 20 cps on the plateau, ε(800 V) 0.999
    inst = open_instrument("N-Cs4PbBr6")
    tune(inst, 438.0, periods=5000)
    dark = inst.measure_dark(dwell_s=400.0)
    expected = bench_dark_cps * dark.dwell_s
    observed = dark.total_rate_cps * dark.dwell_s
    assert abs(observed - expected) < 4 * math.sqrt(expected)


@pytest.mark.long(40)
def test_short_scan_writes_csv_and_archive(open_instrument, tmp_path) -> None:
    inst = open_instrument()
    tune(inst, 430.0, periods=5000)
    csv, h5 = tmp_path / "scan.csv", tmp_path / "scan.h5"
    spec = inst.scan(430.0, 446.0, 4.0, dwell_s=5.0, dark_dwell_s=5.0, output=csv,
                     archive=h5, sample="hil")
    planned = scan_wavelengths(430.0, 446.0, 4.0)
    back = Spectrum.read_csv(csv)
    assert np.array_equal(back.wavelength_nm, planned)
    assert np.array_equal(spec.wavelength_nm, planned)
    assert back.metadata["instrument"]["serial"] == inst.info()["serial"]
    assert back.metadata["stream"]["rejected"] == 0 and back.metadata["stream"]["missing"] == 0
    assert np.all(back.column("dwell_s") >= 5.0 * (1 - 1e-9))
    assert np.all(np.isfinite(back.intensity))
    with Archive.open(h5) as arc:
        assert arc.closed_cleanly and len(arc) == len(planned)
        assert [p.settings.wavelength_nm for p in arc] == list(planned)
        assert len(arc.darks) == 1
    again = reprocess(h5)
    ok = np.isfinite(spec.g_lum)
    assert np.allclose(again.g_lum[ok], spec.g_lum[ok], rtol=1e-9, atol=0)
