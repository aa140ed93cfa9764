"""The simulated instrument is deterministic: the same seed and the same commands give
bit-identical frames (counts, sequence numbers, timestamps), CSV data rows and archive
datasets, whatever the machine's load. Measured as exact equality of two runs, one of them
with both cores kept busy by other processes; nothing here is timed."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import cplscope

SEED = 5
_DATE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d")
#: archive fields that hold the wall-clock date of the run, not data
_WALL_FIELDS = {"time", "date", "created"}
#: archive datasets that hold the run's random unique id
_RANDOM = {"entry/entry_identifier"}


def _frames(fs: Any) -> dict[str, np.ndarray]:
    return {"counts": fs.counts, "seq": fs.seq, "timestamp_us": fs.timestamp_us,
            "flags": fs.flags, "periods": fs.periods, "pem_period_ps": fs.pem_period_ps,
            "mono_position": fs.mono_position, "acq_id": fs.acq_id}


def _session(folder: Path, seed: int = SEED) -> dict[str, Any]:
    """A dark, fixed-dwell points at two wavelengths, a short scan with CSV and archive."""
    out: dict[str, Any] = {}
    with cplscope.connect("sim", seed=seed) as inst:
        inst.prepare(bins=16, periods=5000)  # 0.1-s frames
        dark = inst.measure_dark(2.0)
        out["dark"] = _frames(dark.frames)
        for wl in (438.0, 470.0):
            inst.move_to(wl)
            point = inst.measure(dwell_s=3.0, dark=dark)
            out[f"point {wl}"] = _frames(point.frames)
            out[f"g {wl}"] = point.result.g_lum
        inst.scan(430.0, 440.0, 5.0, dwell_s=2.0, dark_dwell_s=1.0,
                  output=folder / "scan.csv", archive=folder / "scan.h5")
    lines = (folder / "scan.csv").read_text().splitlines()
    out["csv rows"] = [ln for ln in lines if not ln.startswith("#")]
    out["archive"] = _datasets(folder / "scan.h5")
    return out


def _datasets(path: Path) -> dict[str, Any]:
    """Every dataset of the archive, compound ones split into their fields, without the
    fields that hold the wall-clock date."""
    found: dict[str, Any] = {}

    def split(name: str, value: Any) -> None:
        if isinstance(value, np.ndarray) and value.dtype.names:
            for field in value.dtype.names:
                if field not in _WALL_FIELDS:
                    split(f"{name}.{field}", value[field])
        elif isinstance(value, bytes):            # a text: a date is wall clock
            if not _DATE.match(value):
                found[name] = value
        elif not (isinstance(value, np.ndarray) and value.dtype.kind == "S" and value.size
                  and all(_DATE.match(v) for v in value.ravel())):
            found[name] = value

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and name not in _RANDOM:
            split(name, obj[()])

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), where
        else:
            assert np.array_equal(a, b), where
    elif isinstance(a, float):
        assert a == b or (a != a and b != b), where
    else:
        assert a == b, where


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each run starts from an empty calibration store, as the first run did."""
    def make(name: str) -> Path:
        home = tmp_path / name
        home.mkdir()
        monkeypatch.setenv("CPLSCOPE_HOME", str(home))
        return home
    return make


def test_same_seed_same_commands_give_identical_data_on_an_idle_and_a_busy_machine(
        fresh_home) -> None:
    quiet = _session(fresh_home("quiet"))
    burners = []
    try:
        for _ in range(2):  # both cores busy during the whole second run
            burners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                            stdin=subprocess.DEVNULL))
        busy = _session(fresh_home("busy"))
    finally:
        for p in burners:
            p.kill()
        for p in burners:
            p.wait()
    assert quiet["point 438.0"]["counts"].shape[0] == 30  # 3 s of 0.1-s frames, all usable
    assert quiet["archive"], "the archive holds no dataset"
    assert len(quiet["csv rows"]) == 1 + 3  # the header and three points
    _same(quiet, busy, "run")


def test_a_host_too_slow_for_its_retry_timer_gets_the_same_data(
        fresh_home, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host machine so loaded that replies seem late: on a lossy link the host would send
    commands again and give up partial frames, but the twin without cable faults loses
    nothing, so neither may happen there and change its timeline. Here the retry timer runs
    out after 0.2 ms instead of 250 ms."""
    from cplscope.board import transport

    quiet = _session(fresh_home("quiet"))
    monkeypatch.setattr(transport, "_RETRY_FRACTION", 4e-5)
    hurried = _session(fresh_home("hurried"))
    _same(quiet, hurried, "run")


def test_a_different_seed_gives_different_counts(fresh_home) -> None:
    """The comparison above can fail: another seed changes the counts (and only them)."""
    a = _session(fresh_home("a"))
    b = _session(fresh_home("b"), seed=SEED + 1)
    assert not np.array_equal(a["point 438.0"]["counts"], b["point 438.0"]["counts"])
    # the instrument's timeline is the same: it depends on the commands, not on the counts
    assert np.array_equal(a["point 438.0"]["timestamp_us"], b["point 438.0"]["timestamp_us"])
    assert np.array_equal(a["point 438.0"]["seq"], b["point 438.0"]["seq"])
