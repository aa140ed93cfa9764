"""What the durability tests share: a calibrated simulated instrument for the command line
(run in-process or as a subprocess), and comparisons of archives and spectra."""
from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cplscope.cli.main import main
from cplscope.data.archive import Archive


_STORE: list[Path] = []


@pytest.fixture(scope="module")
def calibrated_home(tmp_path_factory):
    """A private calibration store (``CPLSCOPE_HOME``) for the module, calibrated once per
    test session with ``cplscope calibrate --sim`` as a user would, so no scan calibrates
    on its own. (The tests that use it never change it.)"""
    mp = pytest.MonkeyPatch()
    if not _STORE:
        path = tmp_path_factory.mktemp("cplscope-home", numbered=True)
        mp.setenv("CPLSCOPE_HOME", str(path))
        assert main(["-q", "calibrate", "--sim", "--dwell", "2"]) == 0
        _STORE.append(path)
    mp.setenv("CPLSCOPE_HOME", str(_STORE[0]))
    yield _STORE[0]
    mp.undo()


def cplscope(*argv: str, cwd: Path | None = None, **popen: Any) -> subprocess.Popen:
    """``python -m cplscope ARGV`` as a child process (stdout and stderr piped)."""
    return subprocess.Popen([sys.executable, "-m", "cplscope", *argv], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=dict(os.environ), **popen)


def fingerprint(point: Any) -> tuple:
    """Everything stored of an archived point, as bytes: settings, result and frames."""
    frames = point.frames
    names = ("counts", "seq", "timestamp_us", "flags", "periods", "pem_period_ps",
             "mono_position", "acq_id")
    if hasattr(frames, "gate"):      # gated frames: each one's gate (time bin) and timing
        names += ("gate", "pulses", "pulse_period_ns", "gate_delay_ns", "gate_width_ns")
    raw = b"".join(np.asarray(getattr(frames, n)).tobytes() for n in names)
    result = tuple((k, _canon(v)) for k, v in vars(point.result).items())
    settings = tuple((k, _canon(v)) for k, v in vars(point.settings).items())
    return hashlib.sha256(raw).hexdigest(), result, settings


def _canon(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if hasattr(v, "tobytes"):
        return v.tobytes()
    return v


def archived_points(path: Path) -> dict[tuple[int, int], tuple]:
    """(plan index, accumulation) → fingerprint of every point of the archive; asserts that
    no point is there twice."""
    out: dict[tuple[int, int], tuple] = {}
    with Archive.open(path) as arc:
        for p in arc:
            key = (p.settings.index, p.settings.accumulation)
            assert key not in out, f"{path}: point {key} is stored twice"
            out[key] = fingerprint(p)
    return out


def data_rows(csv: Path) -> list[str]:
    """A spectrum CSV's header and data rows (the metadata lines left out)."""
    return [ln for ln in csv.read_text().splitlines() if not ln.startswith("#")]


@pytest.fixture(scope="module")
def sim(calibrated_home):
    """One simulated instrument for the module (calibrated, counting, 20-ms frames)."""
    import cplscope

    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=11) as inst:
        inst.prepare(bins=16, periods=1000)
        yield inst


class Recorder:
    """A scan callback that keeps the (index, accumulation) of every completed point."""

    def __init__(self) -> None:
        self.done: list[tuple[int, int]] = []

    def __call__(self, point: Any, index: int, accumulation: int) -> None:
        self.done.append((index, accumulation))
