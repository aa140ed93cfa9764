"""Ctrl-C in a terminal during a simulated scan: the scan ends at once (exit status 130), keeps
every point it completed in a valid CSV, and leaves no process behind.

A terminal sends SIGINT to its whole foreground process group: the test starts `cplscope scan
--sim` in a process group of its own and signals the group, mid-point. The simulator's
processes must not take that SIGINT (they run in their own session) and must still be there
for the host to stop the acquisition and close them; before, they died with it and the host
waited out its 30-s no-data timeout."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from cplscope.data.spectrum import Spectrum
from cplscope.plans.scan import scan_wavelengths

START, STOP, STEP = 430.0, 470.0, 2.0
#: an exit later than this after SIGINT is a hang (not a speed claim: ~1 s is typical)
HANG_S = 10.0


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process from /proc, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    procs = (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit())
    return {child for child in procs if (proc_state(child) or ("", 0))[1] == pid}


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as dead)."""
    state = proc_state(pid)
    return state is not None and state[0] != "Z"


def test_ctrl_c_mid_scan_ends_at_once_keeps_the_points_and_every_process(tmp_path):
    csv = tmp_path / "interrupted.csv"
    env = dict(os.environ, CPLSCOPE_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    # 10-ms frames, 60 s per point: a point takes about a second of wall time, so the
    # signal comes in the middle of one
    cmd = [sys.executable, "-m", "cplscope.cli.main", "scan", "--sim", "--start", str(START),
           "--stop", str(STOP), "--step", str(STEP), "--dwell", "60", "--dark-dwell", "1",
           "--periods", "500", "--output", str(csv), "-v"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    first_point = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if " nm  I = " in line:
                first_point.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_point.wait(120), "no point within 120 s:\n" + "".join(lines)
        time.sleep(0.3)  # into the next point's acquisition
        children = children_of(proc.pid)
        assert len(children) >= 2, f"the simulator's processes were not found: {children}"
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        rc = proc.wait(60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(10)
    output = "".join(lines)
    assert took < HANG_S, f"Ctrl-C took {took:.1f} s to end the scan:\n{output}"
    assert rc == 130, f"exit status {rc}:\n{output}"
    # every completed point is in a valid CSV, and only those
    spec = Spectrum.read_csv(csv)
    printed = sum(" nm  I = " in line for line in lines)
    planned = scan_wavelengths(START, STOP, STEP)
    assert 1 <= len(spec) == printed < len(planned), output
    assert np.array_equal(spec.wavelength_nm, planned[:len(spec)])
    assert np.all(np.isfinite(spec.column("g_lum")))
    assert f"interrupted: {len(spec)} points kept" in output
    # and no process is left behind
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in children if alive(pid)], "simulator processes left behind"
