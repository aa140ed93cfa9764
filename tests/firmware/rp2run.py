"""Runs a script in the MicroPython unix port with the firmware and the behavioural rp2
model (rp2model/: machine, rp2, usb.device) on its path, the model being the chip `chip`
("RP2040" or "RP2350", rp2model/chip.py)."""
import subprocess
from pathlib import Path

from fwpaths import FIRMWARE

MODEL = Path(__file__).resolve().parent / "rp2model"

PRELUDE = """
import sys
sys.path.insert(0, %r)
sys.path.insert(0, %r)
__import__("chip").select(%%r)
""" % (str(MODEL), str(FIRMWARE))
# (no new global name: a script that makes its first global under heap_lock must find the
# globals' table as it would be without the chip's selection)


def run_mp(micropython: str, script: str, tmp_path, name: str = "run.py",
           chip: str = "RP2040") -> str:
    """Run `script` (after the path set-up, on the chip model `chip`); it must print OK
    last. Returns stdout."""
    path = tmp_path / name
    path.write_text(PRELUDE % chip + script)
    p = subprocess.run([micropython, "-X", "heapsize=8M", str(path)], capture_output=True,
                       text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), out
    return p.stdout
