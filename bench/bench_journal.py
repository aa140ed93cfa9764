"""The cost of the archive's durability: frames per second written through the journal with
and without its fsync per point, the time per point, what that is at the board's default
frame rate, and the end of a run (the HDF5 file built from the journal in the helper
process, and read back).

    python bench/bench_journal.py [--dir DIR] [--points 40] [--repeats 3]

DIR is where the archives go (default: a temporary folder on the disk of the current
directory, which is where a user's archive would be): fsync's cost is the disk's. B = 16
bins; two point sizes: 50 frames (a 10-s point at the default 0.2-s frames) and 1500 frames
(300 s, the default maximum dwell). Side by side in the same run: ``durable=True`` (fsync per
record, what every scan does) and ``durable=False`` (the same bytes, left to the page
cache). The board's default frame rate is 5 frames/s (10 000 PEM periods at 50 kHz); a
point takes seconds to measure, so the fsync's milliseconds are what a scan loses.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import best_of

from cplscope.data.archive import Archive, ArchiveWriter, PointSettings, RawFrames
from cplscope.data.journal import scan_journal
from cplscope.science.results import PointResult

B = 16
DEFAULT_FRAME_S = 10_000 / 50_000


def _points(n_points: int, n_frames: int) -> list[tuple[RawFrames, PointSettings, PointResult]]:
    rng = np.random.default_rng(0)
    out = []
    ar = np.arange(n_frames)
    for i in range(n_points):
        counts = rng.poisson(4000, size=(n_frames, B)).astype(np.uint32)
        frames = RawFrames(counts, ar + i * n_frames, ar * 200_000, np.full(n_frames, 8),
                           np.full(n_frames, 10_000), np.full(n_frames, 20_000_000),
                           np.full(n_frames, 1234), np.full(n_frames, i), np.ones(n_frames))
        s = PointSettings(400.0 + i, 1.9, 0.3, DEFAULT_FRAME_S, n_frames * DEFAULT_FRAME_S,
                          dark=np.full(B, 0.5), dark_sigma=0.01, index=i,
                          dark_source="dark:0")
        r = PointResult(400.0 + i, 1e6, 5e5, 5e5, 300.0, 6e-4, 1e-4, 0.01, 1e-4, 1.01,
                        n_frames, n_frames * DEFAULT_FRAME_S, ())
        out.append((frames, s, r))
    return out


def write_run(folder: Path, points: list, durable: bool) -> tuple[float, float, Path]:
    """(s per point appended, s to close: the HDF5 build, the archive's path)."""
    path = folder / f"run-{time.perf_counter_ns()}.h5"
    w = ArchiveWriter(path, n_bins=B, metadata={"sample": "bench"}, durable=durable,
                      plan={"wavelengths_nm": [p[1].wavelength_nm for p in points],
                            "accumulations": 1})
    t = time.perf_counter()
    for frames, s, r in points:
        w.add_point(frames, s, r)
    per_point = (time.perf_counter() - t) / len(points)
    t = time.perf_counter()
    w.close({"frames": 0, "rejected": 0, "missing": 0, "reconnects": 0})
    return per_point, time.perf_counter() - t, path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=args.dir or Path.cwd()))
    try:
        # the helper process starts once, as in a CLI run; not part of any figure below
        write_run(folder, _points(1, 10), durable=False)
        print(f"archives in {folder} ({shutil.disk_usage(folder).free / 1e9:.0f} GB free); "
              f"B = {B}, {args.points} points per run, best of {args.repeats}\n")
        print("| frames per point | fsync | ms per point | frames/s written | "
              "share of a point at 5 frames/s | HDF5 build, s | HDF5 read back, s |")
        print("|---|---|---|---|---|---|---|")
        for n_frames in (50, 1500):
            points = _points(args.points, n_frames)
            for durable in (True, False):
                runs = [write_run(folder, points, durable) for _ in range(args.repeats)]
                per_point = min(r[0] for r in runs)
                build = min(r[1] for r in runs)
                read_s, n = best_of(lambda: _read(runs[-1][2]), args.repeats)
                assert n == args.points
                point_s = n_frames * DEFAULT_FRAME_S
                print(f"| {n_frames} | {'yes' if durable else 'no'} | {per_point * 1e3:.2f} | "
                      f"{n_frames / per_point:,.0f} | {per_point / point_s:.1e} | "
                      f"{build:.2f} | {read_s:.2f} |")
        journal = folder / "scan.h5.journal"
        w = ArchiveWriter(folder / "scan.h5", n_bins=B, metadata={}, durable=False)
        for frames, s, r in _points(args.points, 1500):
            w.add_point(frames, s, r)
        size = journal.stat().st_size
        scan_s, _ = best_of(lambda: scan_journal(journal), args.repeats)
        print(f"\njournal reader (checksums of every record, one pass): "
              f"{size / scan_s / 1e6:.0f} MB/s on a {size / 1e6:.1f} MB journal")
        w.discard()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: Path) -> int:
    with Archive.open(path) as arc:
        return len(arc)


if __name__ == "__main__":
    main()
