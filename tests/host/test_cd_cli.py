"""`cplscope cd`, `cd-plot` and `cd-calibrate` on the simulated instrument (CD geometry)."""
import argparse
import json

import pytest

from cplscope.cli import cd as cli_cd
from cplscope.data.cd_spectrum import CDSpectrum


def run(argv):
    parser = argparse.ArgumentParser(prog="cplscope")
    parser.add_argument("-q", "--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_cd.add_parsers(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_baseline_sample_plot_and_csa_calibration(home, capsys):
    from cplscope.plans.calibrate import calibrate_simulated
    from cplscope.settings.calibration import load_for

    stored = calibrate_simulated(seed=3, dwell_s=5.0)
    assert stored.cd is None
    grid = ["--start", "284", "--stop", "296", "--step", "4"]
    assert run(["-q", "cd", "--sim", "--seed", "1", "--sample", "solvent", *grid, "--dwell", "20",
                "--output", "solvent.csv"]) == 0
    assert run(["-q", "cd", "--sim", "--sample", "CSA", "--seed", "2", *grid, "--dwell", "20",
                "--baseline", "solvent.csv", "--output", "csa.csv", "--plot", "csa.png",
                "--archive", "csa.h5"]) == 0
    csa = CDSpectrum.read_csv(home / "csa.csv")
    assert csa.metadata["mode"] == "cd" and csa.metadata["sample"] == "CSA"
    assert all(p.flags == () for p in csa) and (home / "csa.png").stat().st_size > 10_000
    assert all(p.delta_a > 0 for p in csa)          # CSA's positive band near 290 nm
    assert run(["cd-reprocess", "csa.h5", "--output", "csa2.csv"]) == 0
    assert [p.as_dict() for p in CDSpectrum.read_csv(home / "csa2.csv")] == [
        p.as_dict() for p in csa]
    assert run(["cd-calibrate", "csa.csv", "--save", "cd-cal.json"]) == 0
    cal = json.loads((home / "cd-cal.json").read_text())
    assert cal["cd_sign"] == 1 and abs(cal["cd_scale"] - 1.0) < 4 * cal["sigma_scale"] + 0.01
    # stored with the instrument's calibration too, where `cplscope cd` finds it
    assert load_for(stored.serial).cd == cal
    assert run(["cd-plot", "csa.csv", "csa.csv", "--mirror", "--output", "pair.svg"]) == 0
    out = capsys.readouterr().out
    assert "accepted" in out and "cd_sign = +1" in out and "NOT a mirror pair" in out
    assert (home / "pair.svg").exists()


def test_user_errors(home):
    from cplscope.cli.options import CliError

    with pytest.raises(CliError, match="needs --baseline"):
        run(["cd", "--sim", "--start", "400", "--stop", "410", "--step", "5",
             "--target-sigma", "1e-3"])
    with pytest.raises(SystemExit):     # --dwell and a target together
        run(["cd", "--sim", "--start", "400", "--stop", "410", "--step", "5", "--dwell", "1",
             "--target-sigma-delta-a", "1e-4"])
    (home / "x.csv").write_text("wavelength_nm,absorbance\n")
    with pytest.raises(ValueError, match="not a cplscope CD spectrum"):
        run(["cd-plot", "x.csv", "--output", "x.png"])


def test_cd_outputs_follow_the_overwrite_policy(home, capsys):
    from cplscope.cli.main import main

    (home / "taken.csv").write_text("x\n")
    grid = ["--start", "420", "--stop", "424", "--step", "4", "--dwell", "1"]
    assert main(["cd", "--sim", "--sample", "solvent", *grid, "--output", "taken.csv"]) == 2
    err = capsys.readouterr().err
    assert "--output taken.csv exists" in err and "--overwrite" in err and "Traceback" not in err
    assert main(["cd", "--sim", "--sample", "solvent", *grid, "--plot", "x.txt"]) == 2
    assert "--plot" in capsys.readouterr().err
