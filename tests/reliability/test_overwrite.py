"""One overwrite policy for the command line and the API: an existing CSV, archive (its HDF5
file or a killed run's journal), figure or export is refused unless ``overwrite=True``
(``--overwrite``), before anything is measured or created; a resumed scan rewrites only its
own CSV; and a run that fails its checks, or measures no point, leaves no file behind."""
from __future__ import annotations

from pathlib import Path

import pytest

from cplscope.cli.main import main
from cplscope.data.export import write_jasco_csv
from cplscope.data.spectrum import Spectrum
from cplscope.plot.sink import PlotSink

from durability_helpers import Recorder, calibrated_home, sim  # noqa: F401

SCAN = ["-q", "scan", "--sim", "--start", "430", "--stop", "434", "--step", "2", "--periods",
        "1000", "--dwell", "0.1", "--dark-dwell", "0.1"]


def _precious(path: Path) -> bytes:
    path.write_bytes(b"precious data\n")
    return path.read_bytes()


@pytest.mark.parametrize("existing", ["r.csv", "r.h5", "r.h5.journal"])
def test_the_api_refuses_an_existing_output_before_measuring(sim, tmp_path, existing):
    before = _precious(tmp_path / existing)
    frames = sim.health().frames
    rec = Recorder()
    with pytest.raises(FileExistsError, match=existing.replace(".", r"\.")):
        sim.scan(430, 434, 2, dwell_s=0.1, dark_dwell_s=0.1, output=tmp_path / "r.csv",
                 archive=tmp_path / "r.h5", callback=rec)
    assert rec.done == [] and sim.health().frames == frames     # nothing was measured
    assert (tmp_path / existing).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]   # nothing was created


def test_overwrite_true_replaces_and_a_figure_or_export_follows_the_same_policy(sim, tmp_path):
    csv, h5 = tmp_path / "r.csv", tmp_path / "r.h5"
    _precious(csv)
    _precious(tmp_path / "r.h5.journal")      # a killed run's journal is replaced as well
    spec = sim.scan(430, 434, 2, dwell_s=0.1, dark_dwell_s=0.1, output=csv, archive=h5,
                    overwrite=True)
    assert len(Spectrum.read_csv(csv)) == 3 and h5.exists()
    assert not (tmp_path / "r.h5.journal").exists()
    png, jasco = tmp_path / "r.png", tmp_path / "j.csv"
    for path in (png, jasco):
        _precious(path)
    with pytest.raises(FileExistsError, match="r.png"):
        PlotSink(png)
    with pytest.raises(FileExistsError, match="j.csv"):
        write_jasco_csv(spec, jasco)
    assert jasco.read_bytes() == b"precious data\n"
    PlotSink(png, overwrite=True)
    write_jasco_csv(spec, jasco, overwrite=True)
    assert jasco.read_bytes() != b"precious data\n"


def test_a_resume_rewrites_its_own_csv_and_refuses_another(sim, tmp_path):
    csv, h5, other = tmp_path / "r.csv", tmp_path / "r.h5", tmp_path / "other.csv"

    def stop(point, index, acc):
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sim.scan(430, 436, 2, dwell_s=0.1, dark_dwell_s=0.1, output=csv, archive=h5,
                 callback=stop)
    sim.scan(430, 432, 2, dwell_s=0.1, dark=False, output=other)      # another run's CSV
    before = other.read_bytes()
    with pytest.raises(FileExistsError, match="other.csv"):
        sim.resume(h5, output=other)
    assert other.read_bytes() == before
    assert len(sim.resume(h5, output=csv)) == 4


def test_the_command_line_refuses_before_it_creates_anything(calibrated_home, tmp_path,
                                                             monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    for option, name in (("--output", "r.csv"), ("--archive", "r.h5"), ("--plot", "r.png"),
                         ("--jasco", "j.csv")):
        before = _precious(tmp_path / name)
        argv = [*SCAN, "--output", "new.csv", option, name] if option != "--output" else \
            [*SCAN, "--output", name]
        assert main(argv) == 2
        err = capfd.readouterr().err
        assert f"{option} {name} exists; pass --overwrite" in err and "Traceback" not in err
        assert (tmp_path / name).read_bytes() == before
        assert not (tmp_path / "new.csv").exists()
        (tmp_path / name).unlink()
    _precious(tmp_path / "r.h5.journal")        # a killed run's archive is an archive too
    assert main([*SCAN, "--output", "new.csv", "--archive", "r.h5"]) == 2
    assert "r.h5.journal exists (the journal of a run that did not end)" in \
        capfd.readouterr().err
    (tmp_path / "r.h5.journal").unlink()
    # the CD figure and the CD calibration file too
    for argv, name in ((["cd-plot", "x.csv", "--output", "taken.png"], "taken.png"),
                       (["cd-calibrate", "x.csv", "--save", "taken.json"], "taken.json")):
        before = _precious(tmp_path / name)
        assert main(argv) == 2
        assert f"{name} exists; pass --overwrite" in capfd.readouterr().err
        assert (tmp_path / name).read_bytes() == before
    # reprocess's output too
    assert main([*SCAN, "--output", "s.csv", "--archive", "s.h5"]) == 0
    before = _precious(tmp_path / "s.reprocessed.csv")
    assert main(["reprocess", "s.h5"]) == 2
    assert "s.reprocessed.csv exists" in capfd.readouterr().err
    assert (tmp_path / "s.reprocessed.csv").read_bytes() == before


def test_a_failed_check_or_a_run_without_points_leaves_nothing(calibrated_home, tmp_path,
                                                               monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    # a budget too short to survey: it fails after connecting, before the first point
    assert main(["-q", "scan", "--sim", "--start", "400", "--stop", "560", "--step", "2",
                 "--time-budget", "1s", "--output", "b.csv", "--archive", "b.h5", "--plot",
                 "b.png"]) == 1
    assert "cannot survey" in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []
    # so the same command, corrected, runs without --overwrite
    assert main([*SCAN, "--output", "b.csv", "--archive", "b.h5"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.csv", "b.h5"]
