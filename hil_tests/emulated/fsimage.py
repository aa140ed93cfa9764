"""The Pico's flash file system with the firmware on it, as `mpremote cp` would leave it.

MicroPython's rp2 port mounts a littlefs v2 file system from the end of flash. On a real board
a user copies ``firmware/`` and micropython-lib's ``usb-device`` there with mpremote
(docs/firmware.md); for the emulated board the same files are written into a littlefs image
with ``littlefs-python`` and placed at that offset of the emulated flash.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FlashLayout", "RPI_PICO", "firmware_files", "usb_device_files", "compile_mpy",
           "build_image"]


@dataclass(frozen=True)
class FlashLayout:
    """Where a MicroPython board keeps its file system: ``offset`` bytes from the start of
    flash, ``block_count`` erase blocks of ``block_size`` bytes."""

    offset: int
    block_size: int
    block_count: int

    @property
    def size(self) -> int:
        return self.block_size * self.block_count


#: RPI_PICO (2 MB flash): 1408 KiB of file system after 640 KiB of firmware.
RPI_PICO = FlashLayout(offset=0xA0000, block_size=4096, block_count=352)


def firmware_files(firmware: Path) -> dict[str, bytes]:
    """``firmware/``'s main.py and its cpl/ and board/ packages: board path → contents."""
    out = {"main.py": (firmware / "main.py").read_bytes()}
    for package in ("cpl", "board"):
        for f in sorted((firmware / package).glob("*.py")):
            out[f"{package}/{f.name}"] = f.read_bytes()
    return out


def usb_device_files(lib: Path) -> dict[str, bytes]:
    """micropython-lib's ``usb-device`` package as ``mip install usb-device`` puts it in
    ``/lib``. `lib` is a micropython-lib checkout, its ``micropython/usb/usb-device`` folder, or
    any folder holding ``usb/device/__init__.py``."""
    for base in (lib, lib / "micropython" / "usb" / "usb-device"):
        pkg = base / "usb" / "device"
        if (pkg / "__init__.py").is_file():
            return {f"lib/usb/device/{f.name}": f.read_bytes() for f in sorted(pkg.glob("*.py"))}
    raise FileNotFoundError(
        f"{lib}: no usb/device/__init__.py there or in micropython/usb/usb-device: give a "
        "micropython-lib checkout (https://github.com/micropython/micropython-lib)")


def compile_mpy(files: dict[str, bytes], *, keep: frozenset[str] = frozenset({"main.py"}),
                march: str = "armv6m") -> dict[str, bytes]:
    """Every ``.py`` of `files` but those in `keep` compiled with ``mpy-cross -march`` (armv6m:
    RP2040), as the board is meant to receive them: compiling 170 kB of source on the chip
    fragments its 240 kB heap. Compile errors raise RuntimeError with mpy-cross's text."""
    import tempfile

    from cplscope.board.mpy import compile_file

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src.py")
        dst = Path(tmp, "out.mpy")
        for path, data in files.items():
            if not path.endswith(".py") or path in keep:
                out[path] = data
                continue
            src.write_bytes(data)
            compile_file(src, dst, path, march=march)
            out[path[:-3] + ".mpy"] = dst.read_bytes()
    return out


def build_image(files: dict[str, bytes], layout: FlashLayout = RPI_PICO) -> bytes:
    """A littlefs v2 image of `layout`'s size holding `files` (board path → contents)."""
    from littlefs import LittleFS

    fs = LittleFS(block_size=layout.block_size, block_count=layout.block_count)
    made: set[str] = set()
    for path in sorted(files):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                fs.mkdir(d)
                made.add(d)
        with fs.open(path, "wb") as f:
            f.write(files[path])
    image = bytes(fs.context.buffer)
    if len(image) != layout.size:
        raise RuntimeError(f"littlefs image of {len(image)} bytes, expected {layout.size}")
    return image
