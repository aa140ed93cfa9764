"""`--mode analog` on the measuring commands (issue 21), end to end on the twin: calibrate,
dark, point, scan and cd; and the analog mode's limits refused before connecting."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cplscope.cli.main import main
from cplscope.data.cd_spectrum import CDSpectrum
from cplscope.data.spectrum import Spectrum
from test_cli import no_instrument, refused  # noqa: F401  (a fixture)


def test_calibrate_dark_point_and_scan_in_analog_mode(analog_home, tmp_path, capsys):
    (stored,) = analog_home.glob("calibration-*.json")
    cal = json.loads(stored.read_text())
    assert cal["mode"] == "counting" and cal["analog"]["g_gain"] > 0
    assert abs(cal["analog"]["phase_offset_rad"] - cal["phase_offset_rad"]) < 0.05
    capsys.readouterr()
    assert main(["-q", "dark", "--sim", "--seed", "11", "--mode", "analog", "--dwell", "1"]) == 0
    out = capsys.readouterr().out
    assert "ADC counts" in out and float(out.split(":")[1].split()[0]) == pytest.approx(100, abs=1)
    assert main(["-q", "point", "--sim", "--seed", "12", "--mode", "analog", "--wavelength",
                 "438", "--dwell", "1", "--dark-dwell", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_frames"] == 10 and 8.5 < result["dof_sigma"] < 10
    csv = tmp_path / "a.csv"
    assert main(["-q", "scan", "--sim", "--seed", "13", "--mode", "analog", "--start", "430",
                 "--stop", "440", "--step", "10", "--dwell", "1", "--accumulations", "2",
                 "--dark-dwell", "1", "--output", str(csv)]) == 0
    spec = Spectrum.read_csv(csv)
    assert spec.metadata["settings"]["mode"] == "analog"
    assert spec.metadata["calibration"]["mode"] == "analog"
    assert np.all(spec.column("dof_sigma") > 12) and np.all(spec.accumulations == 2)
    assert np.all(np.abs(spec.g_lum - 6e-4) < 5 * spec.sigma_g)


def test_cd_in_analog_mode_needs_an_analog_baseline(analog_home, tmp_path, capsys):
    base, sample = tmp_path / "base.csv", tmp_path / "r.csv"
    cd = ["-q", "cd", "--sim", "--mode", "analog", "--start", "426", "--stop", "446", "--step",
          "20", "--dwell", "2", "--dark-dwell", "1", "--lamp-every", "0"]
    assert main(cd + ["--sample", "solvent", "--output", str(base)]) == 0
    assert main(cd + ["--sample", "R-Cs4PbBr6", "--baseline", str(base), "--output",
                      str(sample)]) == 0
    spec = CDSpectrum.read_csv(sample)
    assert spec.metadata["settings"]["mode"] == "analog"
    assert spec.metadata["lamp"].startswith("not watched")
    assert np.all(np.isfinite(spec.absorbance)) and np.all(spec.absorbance > 0.1)
    counting = tmp_path / "counting.csv"
    assert main(["-q", "cd", "--sim", "--start", "426", "--stop", "446", "--step", "20",
                 "--dwell", "1", "--sample", "solvent", "--lamp-every", "0", "--output",
                 str(counting)]) == 0
    capsys.readouterr()
    assert main(cd + ["--sample", "R-Cs4PbBr6", "--baseline", str(counting), "--output",
                      str(tmp_path / "mixed.csv")]) == 1
    assert "measured in counting mode" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--no-dark"], "needs the dark"),
    (["--dark-dwell", "0"], "needs the dark"),
    (["--survey"], "--survey: counting mode only"),
    (["--time-budget", "10min"], "--time-budget: counting mode only"),
    (["--archive", "a.h5"], "--archive: counting mode only"),
])
def test_analog_limits_are_refused_before_connecting(no_instrument, capfd, extra,  # noqa: F811
                                                     message):
    argv = ["scan", "--sim", "--mode", "analog", "--start", "400", "--stop", "410", "--step",
            "5"] + (["--dwell", "1"] if "--time-budget" not in extra else []) + extra
    refused(argv, capfd, message)
