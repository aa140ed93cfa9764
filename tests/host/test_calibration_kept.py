"""A new calibration keeps what its steps do not measure: the stored blank and CD sign and
scale stay unless the user drops them (--drop-blank, --drop-cd), and the command says what
it kept. (Before: `calibrate --sim` silently discarded both.)"""
from __future__ import annotations

import dataclasses

import numpy as np

from cplscope.cli.main import main
from cplscope.settings.calibration import Blank, load_for


def _store_blank_and_cd(serial: str) -> None:
    cal = load_for(serial)
    blank = Blank([400.0, 450.0, 500.0], [1e-4, 2e-4, -1e-4], [3e-5, 3e-5, 4e-5])
    cd = {"cd_sign": -1, "cd_scale": 1.07, "sigma_scale": 0.01, "source": "CSA fit"}
    dataclasses.replace(cal, blank=blank, cd=cd).save()


def test_calibrate_keeps_the_blank_and_cd_calibration_unless_dropped(tmp_path, monkeypatch,
                                                                       capfd):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path))
    assert main(["-q", "calibrate", "--sim", "--dwell", "2"]) == 0
    serial = next(tmp_path.glob("calibration-*.json")).stem.removeprefix("calibration-")
    first = load_for(serial)
    assert first.blank is None and first.cd is None
    _store_blank_and_cd(serial)
    capfd.readouterr()

    assert main(["-q", "calibrate", "--sim", "--dwell", "2", "--seed", "1"]) == 0
    err = capfd.readouterr().err
    assert ("# kept from the stored calibration: the blank (3 points, 400–500 nm) and the CD "
            "calibration (sign -1, scale 1.07)") in err
    cal = load_for(serial)
    assert cal.date >= first.date and cal.a0_rad != first.a0_rad      # measured again
    np.testing.assert_array_equal(cal.blank.g, [1e-4, 2e-4, -1e-4])
    assert cal.cd == {"cd_sign": -1, "cd_scale": 1.07, "sigma_scale": 0.01,
                      "source": "CSA fit"}
    assert "kept the blank and the CD calibration" in cal.note

    assert main(["-q", "calibrate", "--sim", "--dwell", "2", "--drop-blank"]) == 0
    assert "kept from the stored calibration: the CD calibration" in capfd.readouterr().err
    cal = load_for(serial)
    assert cal.blank is None and cal.cd is not None
    assert main(["-q", "calibrate", "--sim", "--dwell", "2", "--drop-cd"]) == 0
    assert "kept" not in capfd.readouterr().err
    cal = load_for(serial)
    assert cal.blank is None and cal.cd is None
