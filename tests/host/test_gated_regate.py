"""Time bins in the raw archive, and re-gating them offline: a `--time-bins N` run is archived
with each frame's gate, `reprocess` gives back its spectrum and time-bin files, `reprocess
--gate` makes the spectrum of a gate of whole bins (the same as summing those bins through the
pipeline; on the twin's Eu-like sample, free of its short-lived background), refuses what the
bins cannot make, and an interrupted time-bin run resumes."""
import dataclasses
import json

import h5py
import numpy as np
import pytest

from cplscope.cli.main import main
from cplscope.data.archive import Archive
from cplscope.data.spectrum import Spectrum
from cplscope.plans.reprocess import reprocess
from cplscope.science.frames import GatedFrameSet
from cplscope.science.pipeline import process_point
from cplscope.science.regate import GateError, choose_bins

N_BINS = 8
BIN_S = 0.5e-3
EU_G, EU_TAU, BACKGROUND_TAU = 0.2, 1e-3, 50e-6


@pytest.fixture(scope="module")
def run(cli_home, tmp_path_factory):
    """A time-bin run (8 bins of 0.5 ms from the pulse) of a Eu-like emitter (τ = 1 ms,
    g = +0.2) on an achiral background 2.5 times brighter that is gone after 0.5 ms (τ =
    50 µs: bin 0 holds it), with its archive."""
    folder = tmp_path_factory.mktemp("regate")
    grid = np.arange(580.0, 600.5, 1.0)
    flat = np.ones_like(grid)
    parts = [(EU_G, EU_TAU, 4e4), (0.0, BACKGROUND_TAU, 1e5)]
    sample = {"name": "eu-on-background", "wavelength_nm": grid.tolist(), "components": [
        {"emission": flat.tolist(), "g_lum": (g * flat).tolist(), "lifetime_s": tau,
         "peak_rate_cps": rate} for g, tau, rate in parts]}
    (folder / "sample.json").write_text(json.dumps(sample))
    assert main(["-q", "scan", "--sim", "--seed", "9", "--sample-file",
                 str(folder / "sample.json"), "--start", "590", "--stop", "592", "--step", "2",
                 "--dwell", "8", "--dark-dwell", "2", "--pulse-rate", "200", "--gate",
                 f"0:{N_BINS * BIN_S}", "--time-bins", str(N_BINS),
                 "--output", str(folder / "eu.csv"), "--archive", str(folder / "eu.h5")]) == 0
    return folder


def _rows(path):
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]


def test_a_time_bin_run_is_archived_with_each_frames_gate(run):
    with Archive.open(run / "eu.h5") as arc:
        assert arc.version == 4 and arc.metadata["settings"]["gating"]["gates"] == N_BINS
        p = arc.point(0)
        assert isinstance(p.frames, GatedFrameSet) and p.frames.n_gates == N_BINS
        assert set(p.frames.gate) == set(range(N_BINS))
        delay, width = p.frames.gate_times_s()
        # as the board ran them: its shortest delay is 80 ns
        np.testing.assert_allclose(delay, BIN_S * np.arange(N_BINS), atol=1e-7)
        np.testing.assert_allclose(width, BIN_S, rtol=1e-6)
        assert np.all(p.frames.pulses > 0) and all(
            isinstance(d.frames, GatedFrameSet) for d in arc.darks)
    with h5py.File(run / "eu.h5") as f:
        n = f["frames/counts"].shape[0]
        for name, unit in (("gate", "1"), ("n_gates", "1"), ("pulses", "1"),
                           ("pulse_period", "ns"), ("gate_delay", "ns"), ("gate_width", "ns")):
            ds = f[f"frames/{name}"]
            assert ds.shape == (n,) and ds.attrs["units"] == unit and ds.attrs["long_name"]
            assert ds.dims[0][0] == f["frame"]            # the netCDF dimension "frame"
        assert f["frames/gate"][:].min() == 0 and f["frames/gate"][:].max() == N_BINS - 1
        assert set(f["frames/n_gates"][:]) == {N_BINS}


def test_reprocess_gives_back_the_runs_spectrum_and_time_bin_files(run):
    assert main(["reprocess", str(run / "eu.h5"), "--output", str(run / "re.csv")]) == 0
    assert _rows(run / "re.csv") == _rows(run / "eu.csv")
    for name in ("timebins", "timebins.decay"):
        assert (run / f"re.{name}.csv").read_text() == (run / f"eu.{name}.csv").read_text()
    # a gate of every bin is the run's own
    assert main(["reprocess", str(run / "eu.h5"), "--gate", f"0:{N_BINS * BIN_S}",
                 "--output", str(run / "all.csv")]) == 0
    assert _rows(run / "all.csv") == _rows(run / "eu.csv")


def _turns(frames, n):
    """The start of each complete turn through the gates (one acquisition), by hand."""
    g, a = frames.gate, frames.acq_id
    return [i for i in range(len(g) - n + 1)
            if list(g[i:i + n]) == list(range(n)) and len(set(a[i:i + n])) == 1]


@pytest.mark.parametrize("j0, j1", [(1, 8), (2, 5), (0, 1)])
def test_a_gate_of_bins_j0_to_j1_is_those_bins_summed_through_the_pipeline(run, j0, j1):
    path = run / "eu.h5"
    with Archive.open(path) as arc:
        # without dead time the bins' raw counts add up (with it, each bin is corrected at
        # its own rate first: test_gated_protocol)
        cal = dataclasses.replace(arc.calibration, dead_time_s=0.0)
    spec = reprocess(path, cal, gate=(j0 * BIN_S, (j1 - j0) * BIN_S))
    assert spec.metadata["reprocessed"]["gate"]["time_bins"] == [j0, j1 - 1]
    with Archive.open(path) as arc:
        for k, p in enumerate(arc):
            use = p.frames.select(p.frames.usable)
            starts = _turns(use, N_BINS)
            turns = [np.arange(i, i + N_BINS) for i in starts]
            part = [t[j0:j1] for t in turns]
            counts = np.stack([use.counts[t].sum(axis=0) for t in part])
            times = use.frame_times_s
            frame_s = np.mean([times[t].sum() for t in part])
            whole_s = np.mean([times[t].sum() for t in turns])
            live = sum((use.pulses[t] * use.gate_width_ns[t]).sum() for t in part) * 1e-9
            ctx = p.settings.context().recalibrated(arc.calibration, cal)
            ctx = dataclasses.replace(
                ctx, live_fraction=live / sum(times[t].sum() for t in part),
                dark=ctx.dark * frame_s / whole_s, dark_sigma=ctx.dark_sigma * frame_s / whole_s)
            span = np.mean([use.spans[t].mean() for t in part])
            dwell = sum(times[t].sum() for t in part)
            _, ref = process_point(counts, frame_s, span, dwell, ctx,
                                   frame_flags=p.frames.flags, rules=arc.rules)
            row = spec.points[k]
            assert row.n_frames == len(starts)
            assert row.dwell_s == pytest.approx(dwell, rel=1e-12)
            for name in ("g_lum", "sigma_g", "intensity", "sigma_intensity"):
                assert getattr(row, name) == pytest.approx(getattr(ref, name), rel=1e-9), name
            assert row.flags == ref.flags


def test_the_regated_europium_band_is_free_of_the_short_lived_background(run):
    whole = Spectrum.read_csv(run / "eu.csv")
    late = reprocess(run / "eu.h5", gate=(BIN_S, (N_BINS - 1) * BIN_S))
    # the whole gate (from the pulse on) holds the background: g is diluted far below +0.2
    assert np.all(whole.g_lum < EU_G - 10 * whole.sigma_g), whole.g_lum
    # from 0.5 ms on the background (50 µs) is gone (e^−10 of it is left): the europium's g
    # within its σ
    g, s = late.g_lum, late.sigma_g
    assert np.all(np.abs(g - EU_G) < 4 * s) and np.all(s < 0.03), (g, s)
    # and the photons of the first bin are left out: fewer per second of counting
    assert np.all(late.intensity < whole.intensity)


@pytest.mark.parametrize("gate, words", [
    ("0.7e-3:1e-3", ("does not fall on the edges", "0.0005:0.001 (bins 1–2)",
                     "0.001:0.0005 (bin 2)", "0.0005:0.0015 (bins 1–3)")),
    ("1e-3:1.2e-3", ("does not fall on the edges", "0.001:0.001 (bins 2–3)")),
    ("2e-3:3e-3", ("reaches outside the measured bins", "8 time bins of 0.0005 s",
                   "within 0 … 0.004 s", "(the whole of it: 0:0.004)")),
    ("1e-3", ("DELAY:WIDTH",)),
])
def test_a_gate_the_bins_cannot_make_is_refused_with_the_nearest_ones(run, capfd, gate,
                                                                       words):
    out = run / "refused.csv"
    assert main(["reprocess", str(run / "eu.h5"), "--gate", gate, "--output", str(out)]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()


def test_a_gate_within_a_hundredth_of_a_bin_of_the_edges_is_taken():
    g = choose_bins(1.053e-3, 1.496e-3, 50e-6, 0.5e-3, 8)
    assert (g.first, g.stop) == (2, 5)
    assert g.delay_s == pytest.approx(1.05e-3) and g.width_s == pytest.approx(1.5e-3)
    with pytest.raises(GateError, match="edges"):
        choose_bins(1.06e-3, 1.5e-3, 50e-6, 0.5e-3, 8)
    with pytest.raises(GateError, match="outside"):
        choose_bins(0.0, 1e-3, 50e-6, 0.5e-3, 8)


def test_archives_without_time_bins_cannot_be_regated(cli_home, tmp_path, capfd):
    one = tmp_path / "one.h5"
    assert main(["-q", "scan", "--sim", "--seed", "3", "--sample", "Eu-background", "--start",
                 "590", "--stop", "590", "--step", "1", "--dwell", "1", "--dark-dwell", "1",
                 "--pulse-rate", "200", "--gate", "50e-6:2e-3", "--output",
                 str(tmp_path / "one.csv"), "--archive", str(one)]) == 0
    capfd.readouterr()
    assert main(["reprocess", str(one), "--gate", "50e-6:1e-3", "--output",
                 str(tmp_path / "x.csv")]) == 2
    err = capfd.readouterr().err
    assert "through one gate" in err and "--time-bins N" in err
    from pathlib import Path

    v2 = Path(__file__).parent / "data" / "archive-v2.h5"     # continuous counting
    with pytest.raises(GateError, match="continuous excitation"):
        reprocess(v2, gate=(0.0, 1e-3))
    assert main(["reprocess", str(v2), "--gate", "0:1e-3", "--decay-components", "2",
                 "--output", str(tmp_path / "y.csv")]) == 2
    assert "one or the other" in capfd.readouterr().err


def test_an_interrupted_time_bin_run_resumes_with_all_its_time_bins(cli_home, tmp_path,
                                                                   ctrl_c_at_point):
    csv, h5 = tmp_path / "tb.csv", tmp_path / "tb.h5"
    argv = ["-q", "scan", "--sim", "--seed", "4", "--sample", "Eu-background", "--start",
            "588", "--stop", "594", "--step", "2", "--dwell", "2", "--dark-dwell", "1",
            "--pulse-rate", "200", "--gate", "50e-6:2e-3", "--time-bins", "4",
            "--decay-components", "2"]
    with ctrl_c_at_point(3):
        assert main(argv + ["--output", str(csv), "--archive", str(h5)]) == 130
    assert len(Spectrum.read_csv(csv)) == 2
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(csv)]) == 0
    spec = Spectrum.read_csv(csv)
    assert len(spec) == 4 and spec.metadata["settings"]["decay_components"] == 2
    bins = _rows(tmp_path / "tb.timebins.csv")[1:]
    # every point's 4 bins: the 2 measured before the interruption (from the archive) too
    assert sorted({ln.split(",")[0] for ln in bins}) == ["588", "590", "592", "594"]
    assert len(bins) == 4 * 4
    fits = _rows(tmp_path / "tb.timebins.decay.csv")[1:]
    assert len(fits) == 4 * 2          # the run's two components, each point
    again = tmp_path / "again.csv"
    assert main(["reprocess", str(h5), "--output", str(again)]) == 0
    assert _rows(again) == _rows(csv)
    assert (tmp_path / "again.timebins.csv").read_text() == \
        (tmp_path / "tb.timebins.csv").read_text()
    with Archive.open(h5) as arc:
        assert arc.version == 4 and arc.closed_cleanly and len(arc) == 4
        assert all(p.frames.n_gates == 4 for p in arc)


def test_a_gated_archive_of_version_3_reads_reprocesses_and_resumes(tmp_path, monkeypatch):
    """archive-v3-gated.h5: a one-gate run of cplscope before version 4 (its frames without
    their gate), interrupted after its first point."""
    import shutil
    from pathlib import Path

    data = Path(__file__).parent / "data"
    home = tmp_path / "home"
    shutil.copytree(data / "archive-v2-home", home)
    monkeypatch.setenv("CPLSCOPE_HOME", str(home))
    h5, csv = tmp_path / "old.h5", tmp_path / "old.csv"
    shutil.copy(data / "archive-v3-gated.h5", h5)
    with Archive.open(h5) as arc:
        assert arc.version == 3 and len(arc) == 1
        assert not isinstance(arc.point(0).frames, GatedFrameSet)   # not kept then
    assert main(["-q", "reprocess", str(h5), "--output", str(csv)]) == 0
    assert _rows(csv) == _rows(data / "archive-v3-gated.csv")
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(csv)]) == 0
    with Archive.open(h5) as arc:
        assert arc.version == 4 and len(arc) == 3
        kinds = [isinstance(p.frames, GatedFrameSet) for p in arc]
        assert kinds == [False, True, True]       # the new points keep their gate
    with h5py.File(h5) as f:                    # the old point's frames: gate −1
        first = f["points"][0]
        gates = f["frames/gate"][first["frame_start"]:first["frame_stop"]]
        assert len(gates) and set(gates) == {-1}
    again = tmp_path / "again.csv"
    assert main(["-q", "reprocess", str(h5), "--output", str(again)]) == 0
    assert _rows(again) == _rows(csv)
    assert _rows(csv)[:2] == _rows(data / "archive-v3-gated.csv")   # header and point 1
