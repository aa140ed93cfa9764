"""A scan killed at any instant (SIGKILL of the scanning process, or of its whole process
group as a power cut would) loses no completed point, and ``--resume`` finishes it: 22
kills at random instants (fixed seed) of one `cplscope scan --sim --archive` run and of the
resumes that follow, each kill followed by ``--resume``. The result is one uninterrupted
run's: every point once, none lost or repeated, each completed point byte-identical from the
moment it was completed to the end, the first stretch byte-identical to an uninterrupted
run's (the simulated instrument is deterministic), and the CSV the same rows.

The kill instants are random delays (seeded) after one of three triggers: the process
starts; its files grow (a record was just written to the journal, the next is coming); the
HDF5 file is being built from the journal at the end. What happens at each instant depends on the
machine's speed, the verdict never does."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from cplscope.data.archive import Archive
from cplscope.data.spectrum import Spectrum
from cplscope.plans.reprocess import reprocess

from durability_helpers import (  # noqa: F401
    archived_points,
    calibrated_home,
    cplscope,
    data_rows,
)

KILLS = 22
SCAN = ["-q", "scan", "--sim", "--sample", "R-Cs4PbBr6", "--seed", "7", "--start", "430",
        "--stop", "478", "--step", "2", "--periods", "1000", "--dwell", "0.1", "--dark-dwell",
        "0.1", "--accumulations", "2"]
N_POINTS = 25 * 2


def _finish(child, limit: float = 120.0) -> tuple[int, str]:
    try:
        _, err = child.communicate(timeout=limit)
    except BaseException:
        child.kill()
        child.communicate()
        raise
    return child.returncode, err.decode()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _kill_at_random(child, files: list[Path], building: Path, how: str, delay: float,
                    power_cut: bool) -> bool:
    """Kill ``child`` at the instant ``how``/``delay`` says; False if it ended first."""
    start = time.monotonic()

    def written() -> int:
        return sum(max(_size(f), 0) for f in files)

    grown_from = written()
    while child.poll() is None:
        # "start": at a random instant of the start-up, or at the first write if the
        # start-up is quicker (so that no kill depends on how fast this machine is)
        if how == "start" and (time.monotonic() - start >= delay or written() > grown_from):
            break
        if how == "growth" and written() > grown_from:
            time.sleep(delay)
            break
        if how == "build" and building.exists():
            time.sleep(delay)
            break
        if time.monotonic() - start > 120:
            raise AssertionError("the scan made no progress in 120 s")
        time.sleep(0.0005)
    if child.poll() is not None:
        return False
    if power_cut:                          # the process and all it started, at once
        os.killpg(child.pid, signal.SIGKILL)
    else:
        child.send_signal(signal.SIGKILL)
    child.wait()
    return True


def test_sigkill_at_random_instants_then_resume_equals_one_uninterrupted_run(
        calibrated_home, tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    ref_dir.mkdir()
    run_dir.mkdir()
    # the uninterrupted run, beside the killed ones (the other core)
    uninterrupted = cplscope(*SCAN, "--output", "r.csv", "--archive", "r.h5", cwd=ref_dir)

    rng = np.random.default_rng(19)
    archive, journal = run_dir / "r.h5", run_dir / "r.h5.journal"
    building = run_dir / ".r.h5.building"
    seen: dict[tuple[int, int], tuple] = {}
    first_stretch: dict[tuple[int, int], tuple] | None = None
    kills = 0
    triggers: list[str] = []
    while kills < KILLS:
        argv = ([*SCAN, "--output", "r.csv", "--archive", "r.h5"] if kills == 0 else
                ["-q", "scan", "--sim", "--resume", "r.h5", "--output", "r.csv"])
        how = rng.choice(["growth", "growth", "growth", "start"])
        if kills == KILLS - 1:
            how = "build"
        delay = float(rng.uniform(0.0, 0.03) if how != "start" else rng.uniform(0.2, 3.0))
        child = cplscope(*argv, cwd=run_dir, start_new_session=True)
        killed = _kill_at_random(child, [journal, archive, run_dir / "r.csv"], building, how,
                                 delay, power_cut=bool(rng.random() < 0.3))
        if not killed:
            rc, err = _finish(child)
            assert rc == 0, err
            assert how == "build", f"the scan ended after {kills} kills: make it longer"
            break                          # it ended before the build could be caught
        kills += 1
        triggers.append(how)
        child.stdout.close()
        child.stderr.close()
        if not (journal.exists() or archive.exists()):
            continue                       # killed before the run began: nothing to keep
        now = archived_points(archive)
        lost = {k for k in seen if k not in now}
        assert not lost, f"kill {kills} ({how}): completed points lost: {sorted(lost)}"
        changed = [k for k in seen if now[k] != seen[k]]
        assert not changed, f"kill {kills}: completed points changed: {changed}"
        seen.update(now)
        if first_stretch is None:
            first_stretch = dict(now)
    assert kills >= 20 and "start" in triggers and "growth" in triggers

    rc, err = _finish(cplscope("-q", "scan", "--sim", "--resume", "r.h5", "--output", "r.csv",
                               cwd=run_dir))
    assert rc == 0, err
    rc, err = _finish(uninterrupted)
    assert rc == 0, err
    reference = archived_points(ref_dir / "r.h5")
    assert len(reference) == N_POINTS
    assert not journal.exists() and not building.exists()
    final = archived_points(archive)
    with Archive.open(archive) as arc:
        assert arc.closed_cleanly and arc.exit_status == "success" and not arc.lost
        assert arc.metadata["sample"] == "R-Cs4PbBr6"
    # the same points as the uninterrupted run, each once; the completed ones never changed
    assert sorted(final) == sorted(reference)
    assert all(final[k] == v for k, v in seen.items())
    # the twin is deterministic: the points of the first run, before its kill, are the
    # uninterrupted run's to the byte (later runs re-seed the simulator when they start)
    assert first_stretch is not None
    assert all(reference[k] == v for k, v in first_stretch.items())
    # the CSV has the uninterrupted run's rows: every wavelength once, both accumulations,
    # and it is what the archive gives when reprocessed
    ours, theirs = Spectrum.read_csv(run_dir / "r.csv"), Spectrum.read_csv(ref_dir / "r.csv")
    assert np.array_equal(ours.wavelength_nm, theirs.wavelength_nm)
    assert (ours.accumulations == 2).all()
    assert data_rows(run_dir / "r.csv")[0] == data_rows(ref_dir / "r.csv")[0]
    again = tmp_path / "again.csv"
    reprocess(archive).write_csv(again)
    assert data_rows(again) == data_rows(run_dir / "r.csv")
    assert not [p.name for p in run_dir.iterdir() if p.name not in ("r.csv", "r.h5")]


def _killed_then_resumed(scan: list[str], folder: Path, name: str, *, kills: int,
                         seed: int, points: int) -> None:
    """Run ``scan`` (with ``--output NAME.csv --archive NAME.h5`` in ``folder``), kill it
    while it writes, ``--resume`` it and kill that, ``kills`` times in all (SIGKILL; the
    second a power cut), asserting after each that no completed point was lost or changed;
    then resume it to the end: the archive holds its ``points`` (one accumulation) once
    each, those completed before a kill unchanged."""
    rng = np.random.default_rng(seed)
    archive, journal = folder / f"{name}.h5", folder / f"{name}.h5.journal"
    resume = [*scan[:3], "--resume", archive.name, "--output", f"{name}.csv"]
    seen: dict[tuple[int, int], tuple] = {}
    for k in range(kills):
        argv = ([*scan, "--output", f"{name}.csv", "--archive", archive.name] if k == 0 else
                resume)
        child = cplscope(*argv, cwd=folder, start_new_session=True)
        assert _kill_at_random(child, [journal, archive, folder / f"{name}.csv"],
                               folder / f".{name}.h5.building", "growth",
                               float(rng.uniform(0.0, 0.03)), power_cut=k == 1)
        child.stdout.close()
        child.stderr.close()
        assert journal.exists()           # killed: the journal holds the completed points
        now = archived_points(archive)
        assert all(now.get(key) == v for key, v in seen.items())
        seen.update(now)
    rc, err = _finish(cplscope(*resume, cwd=folder))
    assert rc == 0, err
    final = archived_points(archive)
    assert sorted(final) == [(i, 0) for i in range(points)]
    assert all(final[key] == v for key, v in seen.items())


CD_SCAN = ["-q", "cd", "--sim", "--sample", "solvent", "--seed", "5", "--start", "300",
           "--stop", "330", "--step", "2", "--periods", "1000", "--dwell", "0.1",
           "--dark-dwell", "0.1"]


def test_a_killed_cd_scan_resumes_with_cd_resume(calibrated_home, tmp_path):
    """The same for `cplscope cd`: killed at three instants, `cd --resume` after each, every
    point once, the completed ones unchanged, and the CD CSV what the archive gives."""
    from cplscope.data.cd_spectrum import CDSpectrum
    from cplscope.plans.reprocess import cd_reprocess

    archive = tmp_path / "b.h5"
    _killed_then_resumed(CD_SCAN, tmp_path, "b", kills=3, seed=29, points=16)
    with Archive.open(archive) as arc:
        assert arc.metadata["mode"] == "cd" and arc.metadata["sample"] == "solvent"
    again = tmp_path / "again.csv"
    cd_reprocess(archive).write_csv(again)
    assert data_rows(again) == data_rows(tmp_path / "b.csv")
    assert len(CDSpectrum.read_csv(tmp_path / "b.csv")) == 16


TIME_BINS = ["-q", "scan", "--sim", "--sample", "Eu-background", "--seed", "6", "--start",
             "586", "--stop", "600", "--step", "2", "--periods", "1000", "--dwell", "0.4",
             "--dark-dwell", "0.2", "--pulse-rate", "200", "--gate", "50e-6:2e-3",
             "--time-bins", "4"]


def test_a_killed_time_bin_scan_resumes_with_every_frames_time_bin(calibrated_home, tmp_path):
    """A time-bin run (each frame one of 4 gates) killed twice while it writes, `--resume`
    after each: every point once with its frames' time bins, the completed ones unchanged,
    the CSV what the archive gives, and the g(t) file holds every point's bins."""
    archive = tmp_path / "t.h5"
    _killed_then_resumed(TIME_BINS, tmp_path, "t", kills=2, seed=31, points=8)
    with Archive.open(archive) as arc:
        assert arc.closed_cleanly and not arc.lost
        assert all(p.frames.n_gates == 4 and set(p.frames.gate) == {0, 1, 2, 3} for p in arc)
    again = tmp_path / "again.csv"
    reprocess(archive).write_csv(again)
    assert data_rows(again) == data_rows(tmp_path / "t.csv")
    bins = data_rows(tmp_path / "t.timebins.csv")[1:]
    assert sorted({float(ln.split(",")[0]) for ln in bins}) == list(range(586, 601, 2))
    assert len(bins) == 8 * 4
