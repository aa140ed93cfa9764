"""cplscope.board.flash against a stand-in for mpremote (a board's file system in a dict) and for
the vendor interface: the order of the steps, the maintenance request, the version check, the
SHA-256 comparison, and the messages for a board in no known state. The real workflow on the
real MicroPython port runs in the emulated tier (hil_tests/test_hil_emulated.py, `flash`)."""
from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

import cplscope.board.flash as F
from cplscope.settings.hv_model import HvModel, load_hv_model, save_hv_model
from cplscope.settings.calibration import CalibrationError
from cplscope.board.transport import DeviceNotFound

ROOT = Path(__file__).resolve().parents[2]


class FakeBoard:
    """mpremote's view of a board: `exec` scripts understood by pattern, `fs cp`, `reset`."""

    def __init__(self, version: str = "1.28.0", corrupt: str | None = None) -> None:
        self.version = version
        self.files: dict[str, bytes] = {}
        self.corrupt = corrupt
        self.calls: list[list[str]] = []
        self.resets = 0
        self.maintenance_flag = False
        self.down = False          # off the bus between MAINTENANCE and the restart

    def run(self, cmd):
        cmd = list(cmd)
        self.calls.append(cmd)
        assert cmd[1:3] == ["connect", "/dev/fake"], cmd
        out = []
        for part in " ".join(cmd[3:]).split(" + "):
            words = part.split(" ")
            if words[0] == "exec":
                script = part[5:]
                if "machine.reset()" in script:
                    self.maintenance_flag = "/maintenance" in script
                    self.resets += 1
                    continue
                out.append(f"MPY micropython {self.version}")
                for path in re.findall(r"'([^']+)'", script.split("for p in", 1)[-1]
                                       .split(":", 1)[0]) if "SHA" in script else []:
                    data = self.files.get(path)
                    h = hashlib.sha256(data).hexdigest() if data is not None else "missing"
                    out.append(f"SHA {path} {h}")
            elif words[:2] == ["fs", "cp"]:
                data = Path(words[2]).read_bytes()
                remote = words[3][1:]
                if remote == self.corrupt:
                    data = data[:-1] + b"\0"
                self.files[remote] = data
            elif words == ["reset"]:
                self.resets += 1
                self.down = False
        return subprocess.CompletedProcess(cmd, 0, "\n".join(out) + "\n", "")


class FakeInstrument:
    def __init__(self, log: list[str], version: str = "0.1.0", board=None) -> None:
        self.log = log
        self.version = version
        self.board = board

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def info(self):
        return {"serial": "e6614104035a2b22", "firmware_version": self.version}

    def enter_maintenance(self):
        self.log.append("MAINTENANCE")
        if self.board is not None:
            self.board.down = True
        return {"rebooting": "maintenance"}


def opener(board, log, calls=None, fail_first=False):
    """The vendor interface of `board`: absent while it is down (or on the first call)."""
    calls = [] if calls is None else calls

    def open_instrument():
        calls.append(1)
        if board.down or (fail_first and len(calls) == 1):
            raise DeviceNotFound("not on the bus")
        return FakeInstrument(log, board=board)
    return open_instrument


@pytest.fixture
def no_wait(monkeypatch):
    monkeypatch.setattr(F.time, "sleep", lambda s: None)
    monkeypatch.setattr(F, "find_serial_port", lambda serial=None: "/dev/fake")


def usb_lib(tmp_path: Path) -> Path:
    pkg = tmp_path / "mplib" / "usb" / "device"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "core.py").write_text("y = 2\n")
    return tmp_path / "mplib"


def test_flash_running_board_twice(no_wait, tmp_path):
    board = FakeBoard()
    log: list[str] = []
    opened: list[int] = []
    open_instrument = opener(board, log, opened)
    for _ in range(2):
        info = F.flash(open_instrument=open_instrument, port="/dev/fake",
                       usb_device_lib=usb_lib(tmp_path) if not opened else tmp_path / "mplib",
                       mpremote="/bin/true", run=board.run, log=lambda s: None)
        assert info["firmware_version"] == "0.1.0"
    assert log == ["MAINTENANCE", "MAINTENANCE"]       # the vendor command, not Ctrl-C
    assert board.resets == 2 and not board.maintenance_flag
    assert board.files["main.py"] == (ROOT / "firmware" / "main.py").read_bytes()
    assert "board/rp2.mpy" in board.files and "cpl/instrument.mpy" in board.files
    # usb-device compiled as well: compiled on the board it would fragment the heap
    assert "board/sim.mpy" not in board.files and "lib/usb/device/core.mpy" in board.files
    assert "lib/usb/device/core.py" not in board.files
    # copied in one mpremote session each time
    copies = [c for c in board.calls if "cp" in c]
    assert len(copies) == 2


def test_flash_from_the_repl_when_the_vendor_interface_does_not_answer(no_wait, tmp_path):
    board = FakeBoard()
    # a board with MicroPython only, or whose firmware does not answer
    F.flash(open_instrument=opener(board, [], fail_first=True), port="/dev/fake", usb_device_lib=usb_lib(tmp_path),
            mpremote="/bin/true", run=board.run, log=lambda s: None)
    assert board.resets == 2
    first = " ".join(board.calls[0])
    assert "/maintenance" in first and "machine.reset()" in first


def test_flash_detects_a_corrupted_copy(no_wait, tmp_path):
    board = FakeBoard(corrupt="cpl/tx.mpy")
    with pytest.raises(F.FlashError, match="cpl/tx.mpy on the board does not match"):
        F.flash(open_instrument=None, port="/dev/fake", usb_device_lib=usb_lib(tmp_path),
                mpremote="/bin/true", run=board.run, log=lambda s: None)
    assert board.resets == 1, "restarted the firmware after a bad copy"


def test_flash_refuses_an_old_micropython(no_wait, tmp_path):
    board = FakeBoard(version="1.26.1")
    with pytest.raises(F.FlashError, match=r"1\.26\.1.*v1\.28\.0.*BOOTSEL"):
        F.flash(open_instrument=None, port="/dev/fake", usb_device_lib=usb_lib(tmp_path),
                mpremote="/bin/true", run=board.run, log=lambda s: None)
    assert not board.files


def test_flash_with_nothing_there_says_what_to_do(monkeypatch):
    monkeypatch.setattr(F, "find_serial_port", lambda serial=None: None)
    monkeypatch.setattr(F.time, "sleep", lambda s: None)

    def nothing():
        raise DeviceNotFound("none")

    with pytest.raises(F.FlashError) as e:
        F.flash(open_instrument=nothing, mpremote="/bin/true", wait_s=0.0,
                run=lambda cmd: pytest.fail("ran mpremote"), log=lambda s: None)
    assert "no board found" in str(e.value) and "GP22" in str(e.value)


def test_flash_reports_a_firmware_that_does_not_come_back(no_wait, tmp_path):
    board = FakeBoard()
    calls: list[int] = []

    def open_instrument():
        calls.append(1)
        if len(calls) == 1:
            return FakeInstrument([], board=board)
        raise DeviceNotFound("gone")

    with pytest.raises(F.FlashError, match="did not answer within"):
        F.flash(open_instrument=open_instrument, port="/dev/fake",
                usb_device_lib=usb_lib(tmp_path), mpremote="/bin/true", run=board.run,
                wait_s=0.0, log=lambda s: None)


def test_hv_model_is_kept_per_serial(tmp_path):
    path = tmp_path / "hv.json"
    assert load_hv_model("abc", path).is_default
    save_hv_model("abc", HvModel(kind="module", settle_ms=250), path)
    m = load_hv_model("abc", path)
    assert m.kind == "module" and m.settle_ms == 250
    assert m.args() == {"kind": "module", "settle_ms": 250}
    with pytest.raises(CalibrationError, match="counting head"):
        HvModel(kind="counting_head", max_volts=100.0)
    with pytest.raises(CalibrationError, match="kind"):
        HvModel(kind="laser")
    path.write_text('{"kind": "module", "gain": 3}')
    with pytest.raises(CalibrationError, match="expected an object"):
        load_hv_model("abc", path)


def test_a_board_that_leaves_the_bus_while_being_opened_counts_as_gone():
    """Seen on the emulated Pico: the board restarting into maintenance mode was found, then
    off the bus when its configuration was set (ENODEV); flash must take that as gone."""
    import errno

    import usb.core

    def opener():
        raise usb.core.USBError("no such device", errno=errno.ENODEV)

    assert F._try_open(opener) is None

    def broken():
        raise usb.core.USBError("pipe error", errno=errno.EPIPE)

    with pytest.raises(usb.core.USBError):
        F._try_open(broken)
