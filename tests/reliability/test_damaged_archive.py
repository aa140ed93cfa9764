"""A damaged or truncated archive is answered within a bound (a generous one, that tells a
hang from a slow machine: no answer means a hang), never with wrong data: every point read
back is the point that was written, to the byte, and every point that cannot be read is
reported lost (or, at the end of a journal, as the record in flight); a file that cannot be
read at all is refused with a message that names it. Random byte damage at many offsets
(hypothesis for the journal, seeded offsets for the HDF5 file, read in the helper process),
truncation at many lengths, the CLI, a read that blocks inside the HDF5 library, and an
archive of cplscope 0.1 whose SWMR writer was killed."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cplscope.data.archive as archive_module
from cplscope.cli.main import main
from cplscope.data.archive import Archive, ArchiveWriter, PointSettings, RawFrames
from cplscope.data.archive_hdf5 import HelperError, run_helper
from cplscope.data.journal import scan_journal
from cplscope.data.spectrum import run_metadata
from cplscope.science.results import PointResult
from cplscope.settings.calibration import default_calibration

from durability_helpers import calibrated_home, fingerprint  # noqa: F401

#: a read that takes longer is a hang (the helper's own limit is set to 10 s below)
BOUND_S = 60.0
B, N_FRAMES, N_POINTS = 16, 40, 6
CAL = default_calibration("SIM-0001")
META = run_metadata(identify=dict(implementation="c", board="sim", firmware_version="0",
                                  protocol_version=1, serial="SIM-0001"), calibration=CAL,
                    sample="R-Cs4PbBr6", settings={})


def _write(path: Path, *, close: bool) -> None:
    """An archive of a dark and six points of 40 frames (a killed run's journal when not
    closed)."""
    rng = np.random.default_rng(1)
    plan = {"wavelengths_nm": [400.0 + i for i in range(N_POINTS)], "accumulations": 1}
    w = ArchiveWriter(path, n_bins=B, metadata=META, calibration=CAL, plan=plan)
    ar = np.arange(N_FRAMES)
    w.add_dark(RawFrames(rng.integers(0, 50, (N_FRAMES, B), dtype=np.uint32), ar, ar * 200,
                         np.full(N_FRAMES, 8), ar, ar, ar, ar, np.ones(N_FRAMES)))
    for i in range(N_POINTS):
        counts = rng.integers(0, 1000, size=(N_FRAMES, B), dtype=np.uint32)
        frames = RawFrames(counts, ar + i * N_FRAMES, ar * 200, np.full(N_FRAMES, 8), ar, ar,
                           ar, ar, np.ones(N_FRAMES))
        s = PointSettings(400.0 + i, 1.5, 0.0, 0.01, N_FRAMES * 0.01, dark=0.5, index=i,
                          dark_source="dark:0")
        r = PointResult(400.0 + i, float(i), 0, 0, 0, 1e-3 * i, 1e-4, 0, 0, 1, N_FRAMES,
                        N_FRAMES * 0.01, ("overload",) if i % 2 else ())
        w.add_point(frames, s, r)
    if close:
        w.close()


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """The bytes of one sound journal (of a run that ended, but whose HDF5 file could not be
    built: the disk was full) and one sound HDF5 file of the same run, and the fingerprint
    of every point."""
    folder = tmp_path_factory.mktemp("sound")
    mp = pytest.MonkeyPatch()

    def no_room(journal, path):
        raise archive_module.DiskFullError(path)

    mp.setattr(archive_module, "build_hdf5", no_room)
    try:
        with pytest.raises(archive_module.DiskFullError):
            _write(folder / "j.h5", close=True)
    finally:
        mp.undo()
    _write(folder / "h.h5", close=True)
    with Archive.open(folder / "h.h5") as arc:
        points = {p.settings.index: fingerprint(p) for p in arc}
    with Archive.open(folder / "j.h5") as arc:
        assert {p.settings.index: fingerprint(p) for p in arc} == points
    return {"journal": (folder / "j.h5.journal").read_bytes(),
            "hdf5": (folder / "h.h5").read_bytes(), "points": points}


@pytest.fixture(autouse=True)
def short_helper_limit(monkeypatch):
    monkeypatch.setattr(archive_module, "READ_TIMEOUT_S", 10.0)


def _check(path: Path, points: dict) -> str:
    """Open the damaged archive at ``path``: within the bound; refused naming the file, or
    every point read back is the one written and every missing one is reported (lost, or
    cut short, or the run's end is missing: then it reads as a run killed earlier)."""
    t = time.monotonic()
    try:
        with Archive.open(path) as arc:
            got = {p.settings.index: fingerprint(p) for p in arc}
            reported = bool(arc.lost) or arc.in_flight or not arc.closed_cleanly
    except ValueError as exc:
        assert time.monotonic() - t < BOUND_S, "no answer in time: a hang"
        assert path.name in str(exc), str(exc)
        return "refused"
    assert time.monotonic() - t < BOUND_S, "no answer in time: a hang"
    wrong = [i for i, fp in got.items() if points.get(i) != fp]
    assert not wrong, f"points {wrong} were read back different from what was written"
    if len(got) < len(points):
        assert reported, "points are missing and nothing says so"
        return "partial"
    return "intact"


def _damaged(data: bytes, offset: int, xor: bytes) -> bytes:
    out = bytearray(data)
    for k, x in enumerate(xor):
        if offset + k < len(out):
            out[offset + k] ^= x
    return bytes(out)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 10**9), xor=st.binary(min_size=1, max_size=8).filter(any),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
def test_a_damaged_journal_gives_back_only_what_was_written(originals, tmp_path, offset, xor,
                                                            cut):
    data = originals["journal"]
    damaged = _damaged(data, offset % len(data), xor)
    if cut is not None:
        damaged = damaged[: cut % len(data)]
    path = tmp_path / "d.h5"
    journal = tmp_path / "d.h5.journal"
    journal.write_bytes(damaged)
    try:
        _check(path, originals["points"])
    finally:
        journal.unlink()


def test_random_damage_of_the_hdf5_file_at_many_offsets(originals, tmp_path):
    data = originals["hdf5"]
    rng = np.random.default_rng(23)
    outcomes = []
    for k in range(40):
        offset = int(rng.integers(0, len(data)))
        path = tmp_path / f"d{k}.h5"
        path.write_bytes(_damaged(data, offset, rng.integers(1, 256, 4, dtype=np.uint8)
                                  .tobytes()))
        outcomes.append(_check(path, originals["points"]))
    # the test can fail: damage does lose points, and is detected
    assert outcomes.count("partial") + outcomes.count("refused") > 10


def test_truncated_archives_keep_what_lies_before_the_cut(originals, tmp_path):
    for kind, name in (("journal", "t.h5.journal"), ("hdf5", "t.h5")):
        data = originals[kind]
        outcomes = {}
        for frac in (0.999, 0.9, 0.75, 0.5, 0.25, 0.01):
            cut = int(len(data) * frac)
            (tmp_path / name).write_bytes(data[:cut])
            outcomes[frac] = _check(tmp_path / "t.h5", originals["points"])
            (tmp_path / name).unlink()
        assert outcomes[0.01] == "refused"
        assert outcomes[0.9] == "partial", (kind, outcomes)
    # a journal cut in the middle of its fifth point's record keeps the four before it
    data = originals["journal"]
    (tmp_path / "whole.journal").write_bytes(data)
    records = scan_journal(tmp_path / "whole.journal").records
    fifth = [r for r in records if r.kind == 3][4]
    (tmp_path / "u.h5.journal").write_bytes(data[: fifth.offset + fifth.length // 2])
    with Archive.open(tmp_path / "u.h5") as arc:
        assert [p.settings.index for p in arc] == [0, 1, 2, 3]
        assert arc.in_flight and not arc.lost and not arc.closed_cleanly


def test_reprocess_says_what_was_lost_or_refuses_naming_the_file(calibrated_home, originals,
                                                                  tmp_path, capfd):
    data = originals["journal"]
    point_2 = data.index(b"CPLR", len(data) // 2)    # a record in the middle
    (tmp_path / "p.h5.journal").write_bytes(_damaged(data, point_2 + 200, b"\xff"))
    assert main(["reprocess", str(tmp_path / "p.h5"), "--output",
                 str(tmp_path / "p.csv")]) == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err
    lost = [ln for ln in err.splitlines() if ln.startswith("# lost: ")]
    assert len(lost) == 1 and "plan index" in lost[0] and "damaged" in lost[0], err
    assert "recovered from its journal" in err
    (tmp_path / "x.h5").write_bytes(originals["hdf5"][:200])
    assert main(["reprocess", str(tmp_path / "x.h5"), "--output",
                 str(tmp_path / "x.csv")]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "x.h5 cannot be read" in err
    assert not (tmp_path / "x.csv").exists()




def test_a_read_that_blocks_inside_the_hdf5_library_is_ended_in_time(tmp_path):
    """A FIFO blocks the HDF5 library's open() forever: the helper is killed at its limit,
    the caller gets an answer, and the next read works (a new helper)."""
    fifo = tmp_path / "blocks.h5"
    os.mkfifo(fifo)
    t = time.monotonic()
    with pytest.raises(HelperError, match="no answer within 3 s"):
        run_helper("read", fifo, tmp_path / "out.journal", timeout_s=3.0)
    assert time.monotonic() - t < BOUND_S
    assert not (tmp_path / "out.journal").exists()
    # the archive reader refuses such a file (or such a journal) before opening it
    with pytest.raises(ValueError, match="blocks.h5 is not a file"):
        Archive.open(fifo)
    os.mkfifo(tmp_path / "j.h5.journal")
    with pytest.raises(ValueError, match="j.h5.journal is not a file"):
        Archive.open(tmp_path / "j.h5")
    _write(tmp_path / "ok.h5", close=True)
    with Archive.open(tmp_path / "ok.h5") as arc:
        assert len(arc) == N_POINTS


OLD_WRITER = textwrap.dedent('''
    """An archive as cplscope 0.1 wrote it (SWMR, libver latest), killed mid-run."""
    import json, os, signal, sys
    import h5py, numpy as np
    from cplscope.data import archive_format as fmt
    path, B, n = sys.argv[1], 16, 20
    result_fields = json.loads(sys.argv[2])
    f = h5py.File(path, "w", libver="latest")
    for key, value in (("format", fmt.FORMAT), ("version", 2), ("n_bins", B),
                       ("created", "2024-01-01T00:00:00+00:00"), ("closed", False),
                       ("stream", "null"), ("exit_status", "")):
        f.attrs[key] = value
    f.attrs["metadata"] = sys.argv[3]
    f.attrs["calibration"] = sys.argv[4]
    f.attrs["rules"] = json.dumps({})
    f.attrs["blank"] = "null"
    f.attrs["plan"] = json.dumps({"wavelengths_nm": [400.0, 401.0, 402.0], "accumulations": 1})
    f.create_dataset("frames/counts", (0, B), maxshape=(None, B), dtype="<u4", chunks=(256, B))
    f.create_dataset("frames/info", (0,), maxshape=(None,), dtype=fmt.FRAME_DT, chunks=(512,))
    # 0.1's point rows: the settings and results of that release, none of the later fields
    settings_01 = np.dtype([d for d in fmt.SETTINGS_DT.descr
                            if d[0] not in ("matter_rate", "plan_every")])
    point_01 = np.dtype([("settings", settings_01), ("result", fmt.result_dtype(result_fields)),
                         ("frame_start", "<i8"), ("frame_stop", "<i8")])
    f.create_dataset("points", (0,), maxshape=(None,), dtype=point_01, chunks=(16,))
    for name in ("points_dark", "points_dark_sigma"):
        f.create_dataset(name, (0, B), maxshape=(None, B), dtype="<f8", chunks=(64, B))
    f.create_dataset("darks", (0,), maxshape=(None,), dtype=fmt.DARK_DT, chunks=(16,))
    for name in ("darks_level", "darks_sigma"):
        f.create_dataset(name, (0, B), maxshape=(None, B), dtype="<f8", chunks=(16, B))
    f.flush()
    f.swmr_mode = True
    for i in range(2):
        c, info = f["frames/counts"], f["frames/info"]
        c.resize((n * (i + 1), B)); c[n * i:] = np.full((n, B), 100 + i, dtype="<u4")
        rows = np.zeros(n, dtype=fmt.FRAME_DT); rows["seq"] = np.arange(n) + n * i
        rows["bin_span"] = 1.0; rows["owner"] = i
        info.resize((n * (i + 1),)); info[n * i:] = rows
        row = np.zeros((), dtype=f["points"].dtype)
        s = row["settings"]
        s["wavelength_nm"], s["a0_rad"], s["frame_time_s"], s["dwell_s"] = 400.0 + i, 1.5, 0.01, 0.2
        s["handedness"], s["bin_span"], s["noise"], s["index"] = 1, 1.0, b"poisson", i
        s["dark_source"], s["stopped"], s["dark_sigma_common"] = b"none", b"dwell", True
        for k in ("blank_g", "blank_sigma", "target_sigma", "a0_nominal_rad",
                  "a0_commanded_rad", "pem_drive"):
            s[k] = np.nan
        r = row["result"]
        r["wavelength_nm"], r["g_lum"], r["n_frames"], r["accumulations"] = (
            400.0 + i, 1e-3 * i, n, 1)
        row["frame_start"], row["frame_stop"] = n * i, n * (i + 1)
        for name in ("points_dark", "points_dark_sigma"):
            f[name].resize((i + 1, B)); f[name][i] = 0.0
        f["points"].resize((i + 1,)); f["points"][i] = row
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_an_archive_of_0_1_whose_swmr_writer_was_killed_still_reads(tmp_path):
    from dataclasses import fields

    path = tmp_path / "old.h5"
    names = [f.name for f in fields(PointResult)
             if f.name not in ("exclusion_z", "dof_sigma")]       # added after 0.1
    done = subprocess.run([sys.executable, "-c", OLD_WRITER, str(path), json.dumps(names),
                           json.dumps(META), json.dumps(CAL.to_dict())], capture_output=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    import h5py

    with pytest.raises(OSError, match="already open"):
        h5py.File(path, "r")                 # the mark of the killed SWMR writer
    with Archive.open(path) as arc:
        assert len(arc) == 2 and not arc.closed_cleanly and not arc.lost
        assert [p.result.g_lum for p in arc] == [0.0, 1e-3]
        assert arc.point(1).frames.counts.min() == 101
