"""An emulated Pico: MicroPython's rp2 port running ``firmware/`` in rp2040js (Node.js).

``EmulatedPico(files)`` starts ``pico_bridge.mjs`` with the MicroPython image, the RP2040
bootrom and a flash file system holding the firmware, and waits until the board is enumerated
on the emulator's USB. ``find_device()`` then returns a pyusb device through the same
:class:`cplscope.sim.vusb.VirtualUSBBackend` the twin uses: the host code path is the one a
lab script takes. ``bench(...)`` changes the light, the PEM reference and the ADC input on the
emulated pins.

Nothing here is downloaded or built: the image, the bootrom and micropython-lib's
``usb-device`` are given by path (docs/hil-tests.md, "The emulated Pico").
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import usb.core

from cplscope.protocol import usb_ids
from cplscope.sim.launcher import read_ready_line, stop_process
from cplscope.sim.vusb import VirtualUSBBackend

from .fsimage import (RPI_PICO, FlashLayout, build_image, compile_mpy, firmware_files,
                      usb_device_files)

__all__ = ["PicoFiles", "EmulatedPico", "EmulatorError", "find_pico_files", "ensure_node_modules",
           "HERE"]

HERE = Path(__file__).resolve().parent
FIRMWARE = Path(os.environ.get("CPLSCOPE_EMULATED_FIRMWARE", HERE.parents[1] / "firmware"))
ENV_IMAGE = "CPLSCOPE_MICROPYTHON_IMAGE"
ENV_BOOTROM = "CPLSCOPE_RP2040_BOOTROM"
ENV_USB_LIB = "CPLSCOPE_USB_DEVICE_LIB"


class EmulatorError(RuntimeError):
    """The emulated Pico did not start or stopped; the text holds its console."""


@dataclass(frozen=True)
class PicoFiles:
    """What the emulated board needs from the user: a MicroPython rp2 image (.uf2 or .bin)
    for RPI_PICO, the RP2040 bootrom (16 KiB), and micropython-lib (for ``usb-device``)."""

    image: Path
    bootrom: Path
    usb_device_lib: Path


def find_pico_files(image: str | None, bootrom: str | None,
                    usb_lib: str | None) -> PicoFiles | str:
    """The three paths, from the options or else the environment; a text saying what is
    missing (the reason to skip) when one is not given or not there."""
    given = {ENV_IMAGE: image or os.environ.get(ENV_IMAGE),
             ENV_BOOTROM: bootrom or os.environ.get(ENV_BOOTROM),
             ENV_USB_LIB: usb_lib or os.environ.get(ENV_USB_LIB)}
    missing = [k for k, v in given.items() if not v]
    if missing:
        return ("the emulated Pico needs " + ", ".join(missing) + " (or --pico-image, "
                "--pico-bootrom, --usb-device-lib): the official MicroPython RPI_PICO .uf2, "
                "the RP2040 bootrom and a micropython-lib checkout (docs/hil-tests.md)")
    paths = {k: Path(v).expanduser() for k, v in given.items() if v}
    absent = [f"{k}={p}" for k, p in paths.items() if not p.exists()]
    if absent:
        return "not found: " + ", ".join(absent)
    return PicoFiles(paths[ENV_IMAGE], paths[ENV_BOOTROM], paths[ENV_USB_LIB])


def ensure_node_modules() -> Path:
    """``rp2040js`` from the committed lockfile (``npm ci`` the first time); returns the
    bridge script."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorError("the emulated Pico needs Node.js (node) on the PATH")
    if not (HERE / "node_modules" / "rp2040js" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise EmulatorError("rp2040js is not installed and npm is not on the PATH: run "
                                f"`npm ci` in {HERE}")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise EmulatorError(f"`npm ci` in {HERE} failed:\n{done.stdout}{done.stderr}")
    return HERE / "pico_bridge.mjs"


class EmulatedPico:
    """A running emulated board. Close it (or use ``with``) to end the emulator."""

    def __init__(self, files: PicoFiles, *, seed: int = 1, layout: FlashLayout = RPI_PICO,
                 boot_timeout_s: float = 300.0) -> None:
        script = ensure_node_modules()
        self._started_at = 0  # console length when the firmware last started
        self._pty: ReplPty | None = None
        self.folder = tempfile.mkdtemp(prefix="cplpico-")
        fs_path = Path(self.folder, "fs.img")
        board_files = {**firmware_files(FIRMWARE), **usb_device_files(files.usb_device_lib)}
        fs_path.write_bytes(build_image(compile_mpy(board_files), layout))
        self._log_path = Path(self.folder, "pico.log")
        cable = str(Path(self.folder, "cable"))
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                ["node", str(script), "--bootrom", str(files.bootrom), "--image",
                 str(files.image), "--fs", str(fs_path), "--fs-offset", str(layout.offset),
                 "--cable", cable, "--seed", str(seed)],
                cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        try:
            ready = self._read_ready(boot_timeout_s)
            self.backend = VirtualUSBBackend(ready["cable"])
            self.wait_enumerated(boot_timeout_s)
        except BaseException:
            self.close()
            raise

    def _read_ready(self, timeout_s: float) -> dict[str, Any]:
        ready, _line = read_ready_line(self._proc, timeout_s)
        if ready is None:
            raise EmulatorError(f"the emulator did not start; its output:\n{self.log()}")
        return ready

    def wait_enumerated(self, timeout_s: float = 300.0, *, after: int = 0) -> dict[str, Any]:
        """Wait until the firmware's composite device is on the emulated bus (more than
        `after` enumerations so far); returns the bridge's statistics. The wait is in wall
        time and generous: the emulator runs at a fraction of real time."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise EmulatorError(f"the emulator exited with status {self._proc.returncode};"
                                    f" its output:\n{self.log()}")
            st = self.stats()
            if st["visible"] and st["enumerations"] > after and self.find_device() is not None:
                return st
            if time.monotonic() > deadline:
                raise EmulatorError(f"the board did not enumerate as {usb_ids.VID:04x}:"
                                    f"{usb_ids.PID:04x} within {timeout_s:g} s; its output:\n"
                                    f"{self.log()}")
            time.sleep(0.2)

    def find_device(self) -> usb.core.Device | None:
        """``usb.core.find(idVendor=VID, idProduct=PID, backend=self.backend)``."""
        return usb.core.find(idVendor=usb_ids.VID, idProduct=usb_ids.PID, backend=self.backend)

    def control(self, **request: Any) -> dict[str, Any]:
        return self.backend.control(request)

    def stats(self) -> dict[str, Any]:
        """The bridge's counters: instrument time (``time_us``), bus state, USB traffic, photons
        and PEM edges put on the pins, HV and shutter outputs, the bench settings."""
        return self.control(op="stats")

    def bench(self, **settings: Any) -> dict[str, Any]:
        """Change the bench (keys of ``bench`` in pico_bridge.mjs: ``light_cps``, ``pem_hz``,
        ``pem_on``, ``adc_mean``, ``adc_amp``, …); returns all settings."""
        return self.control(op="bench", set=settings)["bench"]

    def gate_probe(self, *, offsets: list[list[int]] | None = None, width: int = 2,
                   limit: int = 0, stop: bool = False) -> dict[str, Any]:
        """Gated counting watched cycle by cycle (8 ns) on the emulated pins. With `offsets`,
        start: pulse n of the trigger (GP18) gets photons on GP2 ``offsets[n mod len]``
        cycles after its rising edge, each `width` cycles long, for `limit` pulses (0: no
        limit; the probe then stops at the next pulse but one). Every call returns what was
        recorded since the last: ``changes`` ([cycle, levels]: bit 0 the trigger, bit 1 the
        gate start GP19, bit 2 the gated photon GP20, at each change), ``photons`` ([cycle,
        its trigger's rising cycle]), ``pulses`` (scripted so far), ``on`` (False once the
        limit is done) and ``overflow``; `stop` ends the probe."""
        req: dict[str, Any] = {"op": "gate_probe"}
        if offsets is not None:
            req["start"] = {"offsets": offsets, "width": width, "limit": limit}
        if stop:
            req["stop"] = True
        return self.control(**req)

    def instrument_time_s(self) -> float:
        return self.control(op="time")["time_us"] * 1e-6

    def console(self, *, since_start: bool = False) -> str:
        """What the board printed on its CDC REPL so far; with ``since_start``, only since
        the firmware last started (boot or :meth:`restart_firmware`), so a traceback
        printed when an earlier test's failure was reported does not count."""
        text = self.control(op="console")["text"]
        return text[self._started_at:] if since_start else text

    def interrupt(self, timeout_s: float = 60.0) -> str:
        """Ctrl-C on the REPL: the firmware's traceback (where it was), text up to the
        prompt. The board then sits at the REPL until :meth:`restart_firmware`."""
        before = len(self.console())
        self.control(op="repl", text="\x03\x03")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.console()[before:]
            if ">>> " in text:
                return text
            time.sleep(0.2)
        return self.console()[before:] + "\n(no REPL prompt: the board does not answer)"

    def restart_firmware(self, timeout_s: float = 300.0) -> None:
        """Ctrl-C, then a soft reset (Ctrl-D at the REPL): main.py runs again and the
        firmware re-enumerates, as after a power cycle but for the RAM's contents."""
        self.interrupt()
        n = self.stats()["enumerations"]
        self._started_at = len(self.console())
        self.control(op="repl", text="\x04")
        self.wait_enumerated(timeout_s, after=n)

    def repl_pty(self) -> "ReplPty":
        """A pseudo-terminal relaying the board's CDC REPL (for mpremote): its ``path`` is the
        serial port. Started once; closed with the board."""
        if self._pty is None:
            self._pty = ReplPty(self)
        return self._pty

    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def close(self) -> None:
        if getattr(self, "_pty", None) is not None:
            self._pty.close()
        p = getattr(self, "_proc", None)
        if p is not None and p.poll() is None:
            try:
                self.control(op="quit")
            except Exception:
                pass
            stop_process(p, 3.0)
        if hasattr(self, "backend"):
            self.backend.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "EmulatedPico":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplPty:
    """The emulated board's CDC REPL as a serial port: a pseudo-terminal whose other end a
    thread relays to the bridge (``repl`` writes what mpremote sends, ``cdc_read`` brings
    what the board sent). While the board is off the bus (a reset) what mpremote sends is
    dropped, as a real port would lose it; the port itself stays."""

    def __init__(self, pico: EmulatedPico) -> None:
        import os
        import threading
        import tty

        self._pico = pico
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="repl-pty", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import os
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.02)
            try:
                if ready:
                    data = os.read(self._master, 4096)
                    if data:
                        try:
                            self._pico.control(op="repl", text=data.decode("latin1"))
                        except Exception:
                            self.dropped += len(data)  # off the bus
                got = self._pico.control(op="cdc_read")["text"]
                if got:
                    os.write(self._master, got.encode("latin1"))
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)

    def close(self) -> None:
        import os

        self._stop.set()
        self._thread.join(2.0)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
