"""HDF5 raw archive: contents, crash safety under SIGKILL, reprocessing."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from cplscope.data.archive import Archive, ArchiveWriter, PointSettings, RawFrames
from cplscope.plans.reprocess import reprocess
from cplscope.settings.calibration import Blank, Calibration
from cplscope.demod import estimate
from cplscope.demod.bins import bin_layout
from cplscope.protocol import Counts, Flags
from cplscope.science.results import FLAG_DWELL_LIMIT, PointResult, frame_health_flags, point_from_estimate
from cplscope.data.spectrum import run_metadata

B, A0, PHI0, FRAME_TIME, DARK = 16, np.pi / 2, 0.3, 0.01, 2.0
OK = int(Flags.PEM_LOCKED | Flags.HV_ON | Flags.SHUTTER_OPEN)
IDENTIFY = dict(implementation="cplscope", board="sim", firmware_version="0.1.0",
                protocol_version=1, serial="SIM-0001")
CAL = Calibration(a0_rad=A0, phase_offset_rad=PHI0, handedness=1, dead_time_s=0.0,
                  serial="SIM-0001", date="2024-05-01T12:00:00+00:00", source="linear-polarizer")


def metadata(cal=CAL):
    return run_metadata(identify=IDENTIFY, calibration=cal, sample="R-Cs4PbBr6",
                        settings=dict(bins=B, periods=500), date="2024-05-01T12:00:00+00:00")


def make_frames(rng, m, g, n, bad=()):
    """n Poisson frames; ``bad`` lists (frame, flags) pairs for frames that must be excluded."""
    lay = bin_layout(B, A0, PHI0)
    counts = rng.poisson(m * (lay.w + 0.5 * g * lay.s + 0.02 * lay.c) + DARK, size=(n, B))
    flags = np.full(n, OK)
    for i, value in bad:
        flags[i] = int(value)
        counts[i] *= 50                           # garbage that must never reach the estimate
    return RawFrames(counts.astype(np.uint32), np.arange(n), 10_000 * np.arange(n), flags,
                     np.full(n, 500), np.full(n, 20_000_000), np.zeros(n, int),
                     np.ones(n, int), np.ones(n))


def measure(frames, wl, cal=CAL, blank=None, dwell_limit=False, accumulation=0):
    use = frames.usable
    dwell = float(use.sum()) * FRAME_TIME
    e = estimate(frames.counts[use], cal.a0_rad, phase_offset=cal.phase_offset_rad, dark=DARK,
                 dead_time=cal.dead_time_s, frame_time=FRAME_TIME if cal.dead_time_s else None)
    settings = PointSettings(wl, cal.a0_rad, cal.phase_offset_rad, FRAME_TIME, dwell,
                             handedness=cal.handedness, dead_time_s=cal.dead_time_s, dark=DARK,
                             dark_source="dark:0", accumulation=accumulation,
                             blank_g=blank[0] if blank else math.nan,
                             blank_sigma=blank[1] if blank else math.nan)
    result = point_from_estimate(e, wl, dwell, handedness=cal.handedness, blank=blank,
                                 dwell_limit=dwell_limit,
                                 frame_flags=frame_health_flags(frames.flags))
    return settings, result


def assert_same(a: PointResult, b: PointResult):
    for (k, x), y in zip(a.as_dict().items(), b.as_dict().values()):
        if isinstance(x, float):
            assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12), k
        else:
            assert x == y, k


@pytest.fixture
def archive(tmp_path):
    """A closed archive of 6 points (one with a saturated and an unlocked frame), one dark."""
    rng = np.random.default_rng(17)
    path = tmp_path / "run.h5"
    stored = []
    with ArchiveWriter(path, n_bins=B, metadata=metadata(), calibration=CAL) as w:
        dark = make_frames(rng, 0.0, 0.0, 40)
        assert w.add_dark(dark, source="shutter-closed", frame_time_s=FRAME_TIME) == 0
        for i, wl in enumerate(np.arange(430.0, 442.0, 2.0)):
            bad = {2: [(5, OK | Flags.SATURATED)],
                   3: [(7, OK | Flags.OVERLOAD), (8, OK & ~Flags.PEM_LOCKED)]}.get(i, [])
            frames = make_frames(rng, 2e3 * (1 + i), 6e-3, 60, bad)
            settings, result = measure(frames, float(wl), dwell_limit=(i == 4))
            assert w.add_point(frames, settings, result) == i
            stored.append((frames, settings, result))
        w.set_stream(dict(frames=400, rejected=1, missing=2, reconnects=0))
    return path, stored


def test_archive_holds_every_frame_settings_and_results(archive):
    path, stored = archive
    with Archive.open(path) as arc:
        assert len(arc) == len(stored) and arc.n_bins == B and arc.closed_cleanly
        assert arc.stream == dict(frames=400, rejected=1, missing=2, reconnects=0)
        assert arc.metadata["instrument"]["serial"] == "SIM-0001"
        assert arc.calibration == CAL
        for ap, (frames, settings, result) in zip(arc, stored):
            np.testing.assert_array_equal(ap.frames.counts, frames.counts)   # unusable ones too
            np.testing.assert_array_equal(ap.frames.flags, frames.flags)
            np.testing.assert_array_equal(ap.frames.seq, frames.seq)
            np.testing.assert_array_equal(ap.frames.timestamp_us, frames.timestamp_us)
            assert ap.settings.wavelength_nm == settings.wavelength_nm
            assert ap.settings.dark_source == "dark:0"
            np.testing.assert_array_equal(ap.settings.dark, np.full(B, DARK))
            assert_same(ap.result, result)
        (dark,) = arc.darks
        assert dark.source == "shutter-closed" and dark.frames.n_frames == 40
        np.testing.assert_allclose(dark.level, dark.frames.counts.mean(axis=0))
        assert arc.results().metadata["stream"]["missing"] == 2


def test_unusable_frames_are_flagged_and_never_estimated(archive):
    path, stored = archive
    with Archive.open(path) as arc:
        assert arc.point(2).result.flags == ("saturated",)
        assert set(arc.point(3).result.flags) == {"overload", "pem_unlocked"}
        assert arc.point(2).result.n_frames == 59 and arc.point(3).result.n_frames == 58
        assert FLAG_DWELL_LIMIT in arc.point(4).result.flags


def test_an_archive_closed_without_a_spectrum_plots_its_points(archive):
    """ArchiveWriter by hand, closed without the run's spectrum: the NeXus entry's default
    plot is the points as measured, g_lum against wavelength."""
    path, stored = archive
    with h5py.File(path, "r") as f:
        assert f.attrs["NX_class"] == "NXroot" and f.attrs["default"] == "entry"
        entry = f["entry"]
        assert entry.attrs["default"] == "points" and "data" not in entry
        points = entry["points"]
        assert points.attrs["NX_class"] == "NXdata" and points.attrs["signal"] == "g_lum"
        np.testing.assert_array_equal(points["g_lum"][:], [r.g_lum for _, _, r in stored])
        np.testing.assert_array_equal(points["g_lum_errors"][:],
                                      [r.sigma_g for _, _, r in stored])
        np.testing.assert_array_equal(points["wavelength"][:],
                                      [s.wavelength_nm for _, s, _ in stored])
        assert points["wavelength"].attrs["units"] == "nm"
        assert points["intensity"].attrs["units"] == "counts/s"


def test_reprocess_without_changes_reproduces_the_stored_results(archive):
    path, stored = archive
    spec = reprocess(path)
    assert len(spec) == len(stored)
    for p, (_, _, result) in zip(spec, stored):
        assert_same(p, result)
    assert spec.metadata["reprocessed"]["archive"] == str(path)
    assert spec.metadata["stream"]["frames"] == 400


def test_reprocess_with_new_calibration(archive):
    path, stored = archive
    flipped = reprocess(path, Calibration(**{**CAL.__dict__, "handedness": -1}))
    for p, (_, _, r) in zip(flipped, stored):
        assert p.g_lum == pytest.approx(-r.g_lum, rel=1e-9) and p.i_left == pytest.approx(r.i_right)
    assert flipped.metadata["calibration"]["handedness"] == -1
    # a dead time raises the corrected intensity by ≈ 1 + r·τ per bin (rate r ≈ counts/bin time)
    tau = 50e-9
    dead = reprocess(path, Calibration(**{**CAL.__dict__, "dead_time_s": tau}))
    for p, (frames, _, r) in zip(dead, stored):
        rate_bin = frames.counts[frames.usable].mean() / (FRAME_TIME / B)
        assert p.intensity / r.intensity == pytest.approx(1 + rate_bin * tau, rel=0.1 * rate_bin * tau)
    # A0 changes relative to the stored calibration: reprocessing at A0 = 1.9 equals a fresh fit
    new = Calibration(**{**CAL.__dict__, "a0_rad": 1.9})
    p0 = reprocess(path, new)[0]
    with Archive.open(path) as arc:
        ap = arc.point(0)
    use = ap.frames.usable
    e = estimate(ap.frames.counts[use], 1.9, phase_offset=PHI0, dark=DARK)
    assert p0.g_lum == pytest.approx(e.g_lum, rel=1e-12)


def test_reprocess_with_a_blank(archive):
    path, stored = archive
    blank = Blank([400.0, 500.0], [1e-3, 1e-3], [2e-4, 2e-4])
    spec = reprocess(path, blank=blank)
    for p, (_, _, r) in zip(spec, stored):
        assert p.g_lum == pytest.approx(r.g_lum - 1e-3, rel=1e-9, abs=1e-15)
        assert p.sigma_g == pytest.approx(math.hypot(r.sigma_g, 2e-4))
    assert spec.metadata["calibration"]["blank_applied"] is True


def test_writer_refuses_bad_use(tmp_path, archive):
    path, _ = archive
    with pytest.raises(FileExistsError):
        ArchiveWriter(path, n_bins=B, metadata=metadata())
    w = ArchiveWriter(tmp_path / "x.h5", n_bins=8, metadata=metadata())
    frames, settings, result = archive[1][0]
    with pytest.raises(ValueError, match="B=16 bins but this archive holds B=8"):
        w.add_point(frames, settings, result)
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.add_point(frames, settings, result)
    other = tmp_path / "plain.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a cplscope raw archive"):
        Archive.open(other)


def test_counts_frames_from_the_decoder_are_accepted(tmp_path):
    frames = [Counts(B, Flags(OK), 500, 12, 20_000_000, 3, np.arange(B, dtype=np.uint32) + i,
                     seq=100 + i, timestamp_us=1000 * i) for i in range(5)]
    raw = RawFrames.of(frames)
    assert raw.n_frames == 5 and raw.usable.all() and raw.seq.tolist() == list(range(100, 105))
    with ArchiveWriter(tmp_path / "c.h5", n_bins=B, metadata=metadata()) as w:
        w.add_dark(frames)
    with Archive.open(tmp_path / "c.h5") as arc:
        np.testing.assert_array_equal(arc.darks[0].frames.counts, raw.counts)
        assert arc.darks[0].frames.mono_position.tolist() == [12] * 5


def test_a_live_archive_can_be_read_while_it_is_written(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "live.h5"
    w = ArchiveWriter(path, n_bins=B, metadata=metadata(), calibration=CAL)
    frames = make_frames(rng, 1e3, 0.0, 20)
    w.add_point(frames, *measure(frames, 450.0))
    with Archive.open(path) as arc:
        assert len(arc) == 1 and not arc.closed_cleanly and arc.stream is None
    w.close()


CHILD = textwrap.dedent("""
    import sys, numpy as np
    from cplscope.data.archive import ArchiveWriter, PointSettings, RawFrames
    from cplscope.settings.calibration import default_calibration
    from cplscope.science.results import PointResult
    from cplscope.data.spectrum import run_metadata
    path, B, n = sys.argv[1], 16, 3000
    cal = default_calibration("SIM-0001")
    meta = run_metadata(identify=dict(implementation="c", board="sim", firmware_version="0",
                        protocol_version=1, serial="SIM-0001"), calibration=cal, sample="s",
                        settings={})
    w = ArchiveWriter(path, n_bins=B, metadata=meta, calibration=cal)
    i = 0
    while True:
        counts = np.random.default_rng(i).integers(0, 1000, size=(n, B), dtype=np.uint32)
        ar = np.arange(n)
        frames = RawFrames(counts, ar + i * n, ar, np.full(n, 8), ar, ar, ar, ar, np.ones(n))
        s = PointSettings(400.0 + i, 1.5, 0.0, 0.01, n * 0.01, dark=0.5, accumulation=i)
        r = PointResult(400.0 + i, float(i), 0, 0, 0, 1e-3 * i, 1e-4, 0, 0, 1, n, n * 0.01,
                        ("overload",) if i % 2 else ())
        w.add_point(frames, s, r)
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("attempt", range(4))
def test_sigkill_mid_run_loses_no_completed_point(tmp_path, attempt):
    """A writer killed with SIGKILL at a random moment leaves a readable archive holding every
    point whose add_point returned, with the right frames."""
    path = tmp_path / "killed.h5"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE,
                             text=True, env=os.environ.copy())
    try:
        target = 2 + attempt
        last = -1
        for line in child.stdout:
            last = int(line)
            if last >= target:
                break
        time.sleep(np.random.default_rng(attempt).uniform(0.0, 0.03))   # land mid-write
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert last >= target, "the writer died before writing its points"
    with Archive.open(path) as arc:
        assert not arc.closed_cleanly
        assert len(arc) >= last + 1
        for ap in arc:
            i = ap.index
            expected = np.random.default_rng(i).integers(0, 1000, size=(3000, B), dtype=np.uint32)
            np.testing.assert_array_equal(ap.frames.counts, expected)
            assert ap.frames.seq[0] == i * 3000
            assert ap.result.g_lum == pytest.approx(1e-3 * i)
            assert ap.result.flags == (("overload",) if i % 2 else ())
            assert ap.settings.accumulation == i
