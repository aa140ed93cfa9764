"""``--resume`` measures what its archive recorded and nothing else: an option that
contradicts the archive is refused with exit status 2 and a message naming both values, the
same values are accepted, and the simulated instrument measures the archive's sample with
its seed (never another sample under the archive's name). ``reprocess``/``cd-reprocess``
refuse the other kind of archive, and another instrument's calibration unless
``--force-calibration``, which the result records."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cplscope.cli.main import main
from cplscope.data.archive import Archive
from cplscope.data.spectrum import Spectrum
from cplscope.settings.calibration import Calibration

from durability_helpers import calibrated_home  # noqa: F401

SCAN = ["-q", "scan", "--sim", "--sample", "N-Cs4PbBr6", "--seed", "3", "--start", "430",
        "--stop", "450", "--step", "4", "--periods", "1000", "--dwell", "1", "--dark-dwell",
        "0.2", "--bins", "8"]


@pytest.fixture(scope="module")
def interrupted(calibrated_home, tmp_path_factory, ctrl_c_at_point):
    """A scan of N-Cs4PbBr6 (no emission; 8 bins, seed 3) stopped after two of its six
    points."""
    folder = tmp_path_factory.mktemp("resume")
    with ctrl_c_at_point(3):
        assert main([*SCAN, "--output", str(folder / "s.csv"), "--archive",
                     str(folder / "s.h5")]) == 130
    return folder


@pytest.mark.parametrize("option, words", [
    (["--sample", "R-Cs4PbBr6"], ["--sample R-Cs4PbBr6", "N-Cs4PbBr6"]),
    (["--bins", "16"], ["--bins 16", "the archive's: 8"]),
    (["--periods", "5000"], ["--periods 5000", "1000"]),
    (["--hv", "700"], ["--hv 700", "800"]),
    (["--no-dark"], ["--no-dark"]),
    (["--dark-dwell", "3"], ["--dark-dwell 3", "0.2"]),
    (["--seed", "4"], ["--seed 4", "the archive's: 3"]),
    (["--accumulations", "2"], ["--accumulations 2"]),
    (["--max-dwell", "60"], ["--max-dwell 60"]),
    (["--skip-hopeless"], ["--skip-hopeless"]),
    (["--retardation", "1.2"], ["--retardation 1.2"]),
    (["--linear-rate", "1e5"], ["--linear-rate 100000"]),
    (["--sample", "R-Cs4PbBr6", "--hv", "700"], ["--sample", "--hv 700"]),
    (["--dwell", "2"], ["drop --dwell"]),
    (["--start", "400"], ["drop --start"]),
])
def test_an_option_that_contradicts_the_archive_is_refused(interrupted, capfd, option, words):
    before = (interrupted / "s.csv").read_bytes()
    argv = ["-q", "scan", "--sim", "--resume", str(interrupted / "s.h5"), "--output",
            str(interrupted / "s.csv"), *option]
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err
    assert (interrupted / "s.csv").read_bytes() == before      # nothing was measured
    with Archive.open(interrupted / "s.h5") as arc:
        assert len(arc) == 2


def test_the_archive_s_own_values_are_accepted_and_its_sample_is_measured(interrupted):
    # no --sample: the simulator gets the archive's N-Cs4PbBr6, not the default R-Cs4PbBr6,
    # whose band at 430–450 nm is bright; N emits nothing, so every point of the resumed
    # part has no emission (R's would have millions of counts per second)
    h5, csv = interrupted / "s.h5", interrupted / "s.csv"
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(csv), "--bins",
                 "8", "--hv", "800", "--seed", "3"]) == 0
    spec = Spectrum.read_csv(csv)
    assert spec.metadata["sample"] == "N-Cs4PbBr6" and len(spec) == 6
    assert spec.has_flag("no_emission").all(), spec.intensity
    with Archive.open(h5) as arc:
        assert len(arc) == 6 and arc.metadata["sample"] == "N-Cs4PbBr6"
        assert max(p.result.intensity for p in arc) < 1e4


def test_reprocess_refuses_the_other_kind_and_another_instrument_s_calibration(
        interrupted, tmp_path, capfd):
    h5 = interrupted / "s.h5"
    assert main(["cd-reprocess", str(h5), "--output", str(tmp_path / "cd.csv")]) == 2
    err = capfd.readouterr().err
    assert "is not the archive of a CD scan" in err and "`cplscope reprocess`" in err
    assert not (tmp_path / "cd.csv").exists()
    with Archive.open(h5) as arc:
        cal = arc.calibration
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dataclasses.replace(cal, serial="OTHER-1").to_dict()))
    assert main(["reprocess", str(h5), "--calibration", str(other), "--output",
                 str(tmp_path / "x.csv")]) == 2
    err = capfd.readouterr().err
    assert "'OTHER-1'" in err and "--force-calibration" in err and "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()
    assert main(["reprocess", str(h5), "--calibration", str(other), "--force-calibration",
                 "--output", str(tmp_path / "x.csv")]) == 0
    assert "OTHER-1 was applied to a run of" in capfd.readouterr().err
    meta = Spectrum.read_csv(tmp_path / "x.csv").metadata
    assert meta["reprocessed"]["force_calibration"] == {
        "calibration_serial": "OTHER-1", "instrument_serial": cal.serial}
    assert Calibration.from_dict(json.loads(other.read_text())).serial == "OTHER-1"
    assert main(["reprocess", str(h5), "--force-calibration", "--output",
                 str(tmp_path / "y.csv")]) == 2          # needs a --calibration


def test_cd_archives_are_refused_by_the_cpl_commands(calibrated_home, tmp_path, capfd):
    h5 = tmp_path / "cd.h5"
    assert main(["-q", "cd", "--sim", "--sample", "solvent", "--start", "300", "--stop", "304",
                 "--step", "4", "--periods", "1000", "--dwell", "0.2", "--dark-dwell", "0.1",
                 "--output", str(tmp_path / "cd.csv"), "--archive", str(h5)]) == 0
    capfd.readouterr()
    assert main(["reprocess", str(h5), "--output", str(tmp_path / "x.csv")]) == 2
    err = capfd.readouterr().err
    assert "is the archive of a CD scan" in err and "`cplscope cd-reprocess`" in err
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output",
                 str(tmp_path / "y.csv")]) == 2
    assert "resume it with `cplscope cd --resume" in capfd.readouterr().err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "y.csv").exists()
    # cd --resume of a finished CD scan takes the archive's sample and seed
    assert main(["-q", "cd", "--sim", "--resume", str(h5), "--output",
                 str(tmp_path / "cd.csv"), "--sample", "CSA"]) == 2
    assert "--sample CSA (the archive's: solvent)" in capfd.readouterr().err
