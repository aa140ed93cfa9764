"""Faults injected into the simulated instrument: corrupt frames, a USB disconnect, a firmware
crash and a killed host process, all in the middle of a scan. None loses, duplicates or
mis-measures a point, and every corrupt frame is detected and left out."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cplscope.data.archive import Archive
from cplscope.plans.scan import scan_wavelengths
from cplscope.data.spectrum import Spectrum

from .helpers import tune

pytestmark = pytest.mark.sim_only("injects faults into the simulated instrument")


def settled_health_and_log(inst) -> tuple:
    """Health and fault log once no frame is in flight between them (an idle board still
    sends a STATUS every second of device time)."""
    for _ in range(50):
        log = inst.sim.fault_log()
        time.sleep(0.2)
        health = inst.health()
        if inst.sim.fault_log() == log:
            return health, log
    raise AssertionError("the stream never settled")


def test_corrupt_frames_are_all_detected_and_never_used(open_instrument, tmp_path) -> None:
    inst = open_instrument(faults={"corrupt": 1e-3}, seed=3)
    tune(inst, 430.0, periods=250)  # 5 ms frames: ~12 000 frames in the scan
    csv, h5 = tmp_path / "corrupt.csv", tmp_path / "corrupt.h5"
    spec = inst.scan(430.0, 450.0, 2.0, dwell_s=5.0, dark_dwell_s=5.0, output=csv, archive=h5)
    health, log = settled_health_and_log(inst)
    corrupted = set(log["corrupted_seqs"])
    assert log["dropped_seqs"] == []
    assert health.restarts == 0
    assert len(corrupted) >= 5, "too few corrupt frames to test anything"
    # every corrupt frame is a sequence gap and at least one rejection; it is more than one
    # only when the bytes after its sync hold another C5 5C (protocol.md), ~0.1 % per frame:
    # allow 3 such strays in ~15 frames (probability of more: ~1e-8)
    assert health.missing == len(corrupted)
    assert len(corrupted) <= health.rejected <= len(corrupted) + 3
    # the count is in the CSV (as it stood when the scan ended)
    stream = Spectrum.read_csv(csv).metadata["stream"]
    assert 0 < stream["rejected"] <= health.rejected
    assert stream["rejected"] == spec.metadata["stream"]["rejected"]
    # no corrupt frame was used, and every gap in the frames of one acquisition is a corrupt
    # frame (a point whose frames were corrupted counts the rest in another bounded
    # acquisition, with the control frames between the two in the sequence)
    with Archive.open(h5) as arc:
        n_points = 0
        for point in arc:
            n_points += 1
            seq = point.frames.seq
            assert not set(seq.tolist()) & corrupted
            for acq in np.unique(point.frames.acq_id):
                seqs = set(seq[point.frames.acq_id == acq].tolist())
                gaps = set(range(min(seqs), max(seqs) + 1)) - seqs
                assert gaps <= corrupted, (f"point {point.index}, acquisition {acq}: gaps "
                                           f"{sorted(gaps - corrupted)}")
        assert n_points == len(scan_wavelengths(430.0, 450.0, 2.0))


def planned_and_frame_time_ok(csv: Path, start: float, stop: float, step: float,
                              dwell_s: float) -> Spectrum:
    spec = Spectrum.read_csv(csv)
    planned = scan_wavelengths(start, stop, step)
    assert np.array_equal(spec.wavelength_nm, planned), "a point was lost or duplicated"
    dwell = spec.column("dwell_s")
    assert np.all(dwell >= dwell_s * (1 - 1e-9))
    frame_time = dwell / spec.column("n_frames")
    # the restored configuration: every point counted in the same frames (K = 5000 → 0.1 s)
    assert np.allclose(frame_time, 0.1, rtol=1e-6), frame_time
    assert np.all(np.isfinite(spec.intensity)) and np.all(spec.intensity > 0)
    return spec


def test_usb_disconnect_mid_scan_resumes(open_instrument, tmp_path) -> None:
    inst = open_instrument(seed=4)
    tune(inst, 430.0, periods=5000)
    csv = tmp_path / "disconnect.csv"
    armed: dict[str, object] = {}

    def pull_cable(point, index, accumulation) -> None:
        if index == 2 and not armed:
            # 0.5 s of instrument time into the next point's counting; back 2 s later
            armed.update(inst.sim.set_faults(disconnect_at=inst.sim.instrument_time_s() + 0.5,
                                             reconnect_after=2.0))

    inst.scan(430.0, 446.0, 2.0, dwell_s=5.0, dark_dwell_s=2.0, output=csv,
              callback=pull_cable)
    assert armed
    assert inst.sim.stats()["unplugs"] == 1
    spec = planned_and_frame_time_ok(csv, 430.0, 446.0, 2.0, 5.0)
    assert spec.metadata["stream"]["reconnects"] >= 1


def test_firmware_crash_mid_scan_resumes(open_instrument, tmp_path) -> None:
    inst = open_instrument(seed=5)
    tune(inst, 430.0, periods=5000)
    csv = tmp_path / "crash.csv"
    restarter: list[threading.Thread] = []

    def crash(point, index, accumulation) -> None:
        if index == 3 and not restarter:
            inst.sim.kill_firmware()
            timer = threading.Timer(0.3, inst.sim.restart_firmware)
            restarter.append(timer)
            timer.start()

    inst.scan(430.0, 446.0, 2.0, dwell_s=5.0, dark_dwell_s=2.0, output=csv, callback=crash)
    restarter[0].join(30)
    spec = planned_and_frame_time_ok(csv, 430.0, 446.0, 2.0, 5.0)
    stream = spec.metadata["stream"]
    assert stream["restarts"] >= 1 and stream["reconnects"] >= 1
    assert inst.sim.stats()["firmware_connections"] == 2
    status = inst.status()
    assert (status["homed"], status["bins"], status["periods"]) == (True, 16, 5000)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_host_killed_mid_scan_leaves_a_readable_archive(tmp_path) -> None:
    archive = tmp_path / "killed.h5"
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("child_scan.py")),
                              str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(os.environ))
    assert child.stdout is not None
    printed: list[dict] = []
    pids: dict = {}
    deadline = time.monotonic() + 60
    try:
        while len(printed) < 4:
            line = child.stdout.readline()
            if not line:
                assert child.stderr is not None
                pytest.fail(f"the child ended early: {child.stderr.read()}")
            msg = json.loads(line)
            if "hub_pid" in msg:
                pids = msg
            elif "index" in msg:
                printed.append(msg)
            assert time.monotonic() < deadline, "the child scan is too slow"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    # the simulator's processes die with their parent
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids and not [p for p in pids.values() if _alive(p)], "orphan sim processes"
    with Archive.open(archive) as arc:
        assert not arc.closed_cleanly
        points = list(arc)
        assert len(points) >= len(printed)
        for p, seen in zip(points, printed):
            assert p.index == seen["index"]
            assert p.settings.wavelength_nm == seen["wavelength_nm"]
            assert p.result.g_lum == seen["g_lum"]
            assert p.result.intensity == seen["intensity"]
            assert p.frames.usable.sum() == seen["n_frames"]
