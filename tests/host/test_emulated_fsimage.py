"""The emulated Pico's flash file system (hil_tests/emulated/fsimage.py): what a user's
`mpremote cp` leaves on the board, in the layout MicroPython's rp2 port mounts."""
from __future__ import annotations

from pathlib import Path

import pytest

from hil_tests.emulated.fsimage import (RPI_PICO, build_image, compile_mpy, firmware_files,
                                        usb_device_files)

littlefs = pytest.importorskip("littlefs")
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def read_back(image: bytes) -> dict[str, bytes]:
    fs = littlefs.LittleFS(block_size=RPI_PICO.block_size, block_count=RPI_PICO.block_count,
                           mount=False)
    fs.context.buffer[:] = image
    fs.mount()
    out = {}
    for root, _dirs, files in fs.walk("/"):
        for name in files:
            path = f"{root.rstrip('/')}/{name}".lstrip("/")
            with fs.open(path, "rb") as f:
                out[path] = f.read()
    return out


def test_image_holds_the_firmware_compiled_but_main(tmp_path) -> None:
    lib = tmp_path / "usb" / "device"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("from .core import *\n")
    (lib / "core.py").write_text("x = 1\n")
    files = {**firmware_files(FIRMWARE), **usb_device_files(tmp_path)}
    assert "board/rp2.py" in files and "lib/usb/device/core.py" in files
    image = build_image(compile_mpy(files))
    assert len(image) == RPI_PICO.size == 1408 * 1024
    back = read_back(image)
    assert back["main.py"] == (FIRMWARE / "main.py").read_bytes()  # runs at boot: source
    assert "board/rp2.py" not in back
    mpy = back["board/rp2.mpy"]
    assert mpy[:2] == b"M\x06"  # .mpy version 6, the format of MicroPython 1.22 and later
    assert set(back) == {p[:-3] + ".mpy" if p != "main.py" else p for p in files}


def test_usb_device_lib_is_found_in_a_micropython_lib_checkout(tmp_path) -> None:
    pkg = tmp_path / "micropython" / "usb" / "usb-device" / "usb" / "device"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert set(usb_device_files(tmp_path)) == {"lib/usb/device/__init__.py"}
    with pytest.raises(FileNotFoundError, match="micropython-lib"):
        usb_device_files(tmp_path / "micropython")
