"""The command line's planning and per-instrument settings: --retardation, --time-budget,
--survey, --skip-hopeless, --resume, --linear-rate/--max-rate, `cplscope limits` and
`cplscope mono`, on the simulated instrument."""
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from cplscope.data.archive import Archive
from cplscope.cli.main import main
from cplscope.data.spectrum import Spectrum

SCAN = ["scan", "--sim", "--seed", "5", "--start", "430", "--stop", "446", "--step", "4",
        "--periods", "5000"]


def test_retardation_and_a_time_budget(cli_home, tmp_path):
    out = tmp_path / "b.csv"
    assert main(["-q", *SCAN, "--retardation", "1.7", "--time-budget", "1min",
                 "--output", str(out)]) == 0
    spec = Spectrum.read_csv(out)
    assert spec.metadata["settings"]["a0_commanded_rad"] == pytest.approx(
        1.7 / spec.metadata["calibration"]["a0_rad"] * spec.metadata["calibration"][
            "a0_command_rad"], rel=1e-9)
    assert spec.metadata["plan"]["budget_s"] == 60.0
    assert spec.dwell_s.sum() <= 60.0 + 0.1 * len(spec) + 1e-9


@pytest.mark.parametrize("argv, words", [
    (["--time-budget", "soon"], ["--time-budget", "soon"]),
    (["--time-budget", "1min", "--dwell", "1"], ["--time-budget", "--dwell"]),
    (["--skip-hopeless", "--dwell", "1"], ["--skip-hopeless", "--target-sigma"]),
    (["--retardation", "4", "--dwell", "1"], ["--retardation", "π"]),
    (["--linear-rate", "5e6", "--max-rate", "1e6", "--dwell", "1"], ["--max-rate"]),
])
def test_planning_mistakes_end_before_anything_runs(cli_home, capsys, argv, words):
    assert main([*SCAN, *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err


def test_survey_prints_its_prediction_and_nonlinear_points_are_flagged(cli_home, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main([*SCAN, "--dwell", "1", "--survey", "0.5", "--linear-rate", "1e6",
                 "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "survey of 5 points" in err and "above the linear range" in err
    spec = Spectrum.read_csv(out)
    assert spec.has_flag("nonlinear").any() and spec.metadata["survey"]["nonlinear_nm"]


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_the_survey_prediction_is_printed_on_its_own_lines(cli_home, tmp_path, capfd, quiet):
    """Issue 25: with -q the prediction was not shown; without it, it was printed on the
    progress bar's line."""
    import re

    out = tmp_path / "s.csv"
    assert main([*quiet, *SCAN, "--dwell", "1", "--survey", "0.5", "--output", str(out)]) == 0
    err = capfd.readouterr().err
    lines = re.split(r"[\r\n]", err)
    survey = [ln for ln in lines if "survey of 5 points" in ln]
    assert len(survey) == 1 and survey[0].startswith("survey of 5 points"), err
    assert any(ln.startswith("  peak count rate") for ln in lines)


def _scan_interrupted_at_its_third_point(out, h5, ctrl_c_at_point, *options: str) -> None:
    """`cplscope scan` of SCAN (and ``options``) into ``out`` and ``h5``, with Ctrl-C during
    its third point."""
    with ctrl_c_at_point(3):
        assert main(["-q", *SCAN, "--dwell", "0.5", *options, "--output", str(out),
                     "--archive", str(h5)]) == 130


def test_resume_continues_an_interrupted_scan(cli_home, tmp_path, ctrl_c_at_point):
    out, h5 = tmp_path / "r.csv", tmp_path / "r.h5"
    _scan_interrupted_at_its_third_point(out, h5, ctrl_c_at_point)
    assert len(Spectrum.read_csv(out)) == 2
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(out)]) == 0
    spec = Spectrum.read_csv(out)
    assert np.array_equal(spec.wavelength_nm, [430, 434, 438, 442, 446])
    with Archive.open(h5) as arc:
        assert len(arc) == 5 and arc.exit_status == "success"
    # --resume takes its settings from the archive
    assert main(["scan", "--sim", "--resume", str(h5), "--start", "400"]) == 2


def test_a_scan_at_a_chosen_retardation_resumes_at_it(cli_home, tmp_path, ctrl_c_at_point):
    out, h5 = tmp_path / "r.csv", tmp_path / "r.h5"
    _scan_interrupted_at_its_third_point(out, h5, ctrl_c_at_point, "--retardation", "1.7")
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(out)]) == 0
    with Archive.open(h5) as arc:
        commanded = [p.settings.a0_commanded_rad for p in arc]
    assert len(commanded) == 5 and commanded == [commanded[0]] * 5, commanded
    assert commanded[0] == pytest.approx(1.7 / arc.calibration.retardation_scale, rel=1e-9)


def test_a_resumed_scan_drives_the_pem_as_its_archive_says_whatever_the_store_holds_now(
        cli_home, tmp_path, monkeypatch, ctrl_c_at_point):
    from cplscope.settings.calibration import load_for

    out, h5 = tmp_path / "r.csv", tmp_path / "r.h5"
    _scan_interrupted_at_its_third_point(out, h5, ctrl_c_at_point)
    # the store now holds another calibration (its PEM drive scale 10 % off), or none at all
    with Archive.open(h5) as arc:
        serial = arc.calibration.serial
    stored = load_for(serial)
    changed = dataclasses.replace(stored, a0_rad=stored.a0_rad * 1.1)
    for home in ("changed", "empty"):
        monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / home))
        if home == "changed":
            changed.save()
        copy = tmp_path / f"{home}.h5"
        shutil.copy(h5, copy)
        journal = Path(str(h5) + ".journal")
        if journal.exists():
            shutil.copy(journal, Path(str(copy) + ".journal"))
        assert main(["-q", "scan", "--sim", "--resume", str(copy), "--output",
                     str(tmp_path / f"{home}.csv")]) == 0
        with Archive.open(copy) as arc:
            commanded = [p.settings.a0_commanded_rad for p in arc]
        assert len(commanded) == 5
        assert commanded == [commanded[0]] * 5, (home, commanded)
    # the API refuses to go on at another A0, saying which
    import cplscope

    with Archive.open(h5) as arc:
        cal = arc.calibration
    with cplscope.connect("sim", seed=5) as inst:
        inst.calibration = cal
        inst.prepare(periods=5000, a0_rad=1.5)
        with pytest.raises(ValueError, match="commanded A0"):
            inst.resume(h5, output=tmp_path / "api.csv")


def test_limits_and_monochromator_settings_are_kept_per_instrument(cli_home, capsys):
    assert main(["limits", "--sim", "--linear-rate", "1.5e6", "--max-rate", "8e6"]) == 0
    assert "1.5e+06" in capsys.readouterr().out
    assert main(["limits", "--sim"]) == 0
    out = capsys.readouterr().out
    assert "1.5e+06" in out and "8e+06" in out
    assert main(["mono", "--sim", "--max-nm", "700"]) == 0
    capsys.readouterr()
    assert main(["mono", "--sim"]) == 0
    assert "max_nm          700 nm" in capsys.readouterr().out
    # the stored range is checked before a scan moves
    assert main(["point", "--sim", "--wavelength", "750", "--dwell", "1"]) == 2
    assert "750" in capsys.readouterr().err
    assert main(["mono", "--sim", "--max-nm", "900"]) == 0
    assert main(["limits", "--sim", "--linear-rate", "2e6", "--max-rate", "1e7"]) == 0
