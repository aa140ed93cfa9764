"""The point pipeline on the simulated instrument: the retardation in force at every point,
the blank once per wavelength, and reprocess reproducing the run's CSV exactly."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import cplscope
from cplscope.data.archive import Archive
from cplscope.plans.reprocess import reprocess
from cplscope.plans.calibrate import calibrate_simulated
from cplscope.settings.calibration import Blank
from cplscope.data.sinks import CsvSink
from cplscope.science.results import combine_points
from cplscope.data.spectrum import Spectrum


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(tmp_path_factory.mktemp("cal")))
    try:
        yield calibrate_simulated(seed=3, dwell_s=5.0, save=False)
    finally:
        mp.undo()


@pytest.fixture
def circular(calibration):
    """A calibrated instrument looking at a left-circular polarizer (true g = 2)."""
    with cplscope.connect("sim", sample="circular-polarizer-L", seed=4) as inst:
        inst.calibration = calibration
        inst.prepare(bins=16, periods=5000, hv_volts=800.0)
        yield inst


def _within(point, truth, n_sigma=4.0):
    r = point.result
    return abs(r.g_lum - truth) < n_sigma * r.sigma_g


def test_untracked_retardation_is_fitted_at_every_wavelength(circular):
    """With the drive held (track_wavelength=False) A0 falls as 1/λ; each point is fitted
    with its own A0, so g stays right across 400–600 nm (a single A0 was off by percent)."""
    inst = circular
    scale = inst.calibration.retardation_scale
    inst.move_to(500.0)
    inst.set_retardation(math.pi / 2 / scale, track_wavelength=False)
    for wl in (400.0, 450.0, 600.0):
        inst.move_to(wl)
        p = inst.measure(dwell_s=1.0)
        assert p.context.a0_tracking is False
        assert p.context.a0_rad == pytest.approx(math.pi / 2 * 500.0 / wl, rel=2e-3)
        assert _within(p, 2.0), (wl, p.result.g_lum, p.result.sigma_g)


def test_the_j0_zero_retardation_works(circular):
    inst = circular
    inst.move_to(500.0)
    inst.set_retardation(2.405 / inst.calibration.retardation_scale)
    p = inst.measure(dwell_s=1.0)
    assert p.context.a0_rad == pytest.approx(2.405, rel=1e-9)
    assert _within(p, 2.0), (p.result.g_lum, p.result.sigma_g)


def test_scan_metadata_records_the_tracking_state(circular, tmp_path):
    inst = circular
    inst.move_to(450.0)
    inst.set_retardation(1.5, track_wavelength=False)
    spec = inst.scan(450, 452, 2, dwell_s=0.5, dark=False, output=tmp_path / "s.csv")
    assert spec.metadata["settings"]["a0_tracking"] is False
    assert Spectrum.read_csv(tmp_path / "s.csv").metadata["settings"]["a0_tracking"] is False


def test_accumulated_scan_with_dark_and_blank_reprocesses_to_the_same_csv(calibration,
                                                                         tmp_path):
    blank = Blank(np.array([400.0, 500.0]), np.array([1e-4, 1e-4]), np.array([2e-3, 2e-3]))
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=8) as inst:
        inst.calibration = calibration
        inst.prepare(bins=16, periods=5000)
        events = []
        spec = inst.scan(436, 440, 2, dwell_s=1.0, accumulations=2, dark=True,
                         dark_dwell_s=1.0, blank=blank, output=tmp_path / "r.csv",
                         archive=tmp_path / "r.h5",
                         sinks=[lambda name, doc: events.append((name, doc))])
    names = [n for n, _ in events]
    assert names[0] == "start" and names[-1] == "stop" and names.count("event") == 6
    assert names.count("dark") == 2
    assert events[-1][1].exit_status == "success"
    # one row per wavelength; the blank's σ enters once, after combining
    assert len(spec) == 3 and (spec.accumulations == 2).all()
    raw = {}
    for n, d in events:
        if n == "event":
            raw.setdefault(d.index, []).append(d.result)
    for i, row in enumerate(spec):
        assert row.sigma_g > 2e-3
        c = combine_points(raw[i])
        assert row.sigma_g == pytest.approx(math.hypot(c.sigma_g, 2e-3), rel=1e-12)
    # every point stores its whole context, dark σ included
    with Archive.open(tmp_path / "r.h5") as arc:
        s = arc.point(0).settings
        assert s.dark_sigma != 0 and s.dark_source == "dark:0"
        assert arc.point(3).settings.dark_source == "dark:1"
        assert arc.exit_status == "success" and arc.blank == blank
    # reprocess with the run's own calibration: the same file, up to the reprocessing note
    again = reprocess(tmp_path / "r.h5", sinks=[CsvSink(tmp_path / "again.csv")])
    live = (tmp_path / "r.csv").read_text().splitlines()
    redo = [ln for ln in (tmp_path / "again.csv").read_text().splitlines()
            if not ln.startswith("# reprocessed.")]
    assert redo == live
    assert all(_same(a, b) for a, b in zip(again, spec))      # in memory: every digit
    # a new calibration recomputes from the frames
    flipped = reprocess(tmp_path / "r.h5", replace(calibration, handedness=-1, blank=blank))
    assert np.allclose(flipped.g_lum, -spec.g_lum - 2e-4, atol=1e-12)


def _same(a, b):
    for x, y in zip(a.as_dict().values(), b.as_dict().values()):
        if isinstance(x, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            return False
    return True
