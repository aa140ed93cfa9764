"""Runs a script in the MicroPython unix port with the firmware and the behavioural rp2
model (rp2model/: machine, rp2, usb.device) on its path."""
import subprocess
from pathlib import Path

from fwpaths import FIRMWARE

MODEL = Path(__file__).resolve().parent / "rp2model"

PRELUDE = """
import sys
sys.path.insert(0, %r)
sys.path.insert(0, %r)
""" % (str(MODEL), str(FIRMWARE))


def run_mp(micropython: str, script: str, tmp_path, name: str = "run.py") -> str:
    """Run `script` (after the path set-up); it must print OK last. Returns stdout."""
    path = tmp_path / name
    path.write_text(PRELUDE + script)
    p = subprocess.run([micropython, "-X", "heapsize=8M", str(path)], capture_output=True,
                       text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), out
    return p.stdout
