"""Calibration: JSON round trip, validation, default location, serial check."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from cplscope.settings.calibration import (
    Blank,
    Calibration,
    CalibrationError,
    CalibrationMismatch,
    default_path,
    load_for,
)


def make(**kw) -> Calibration:
    base = dict(a0_rad=1.9159, phase_offset_rad=0.312, handedness=-1, dead_time_s=18e-9,
                serial="CPL-0042", date="2024-05-01T12:00:00+00:00", source="linear-polarizer",
                reference_wavelength_nm=438.0, sigma_a0_rad=0.002, sigma_phase_offset_rad=0.001,
                blank=Blank([400.0, 450.0, 500.0], [1e-4, 2e-4, -1e-4], [3e-5, 3e-5, 4e-5]))
    base.update(kw)
    return Calibration(**base)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_save_load_round_trip_at_default_path(home):
    cal = make()
    path = cal.save()
    assert path == home / "calibration-CPL-0042.json" == default_path("CPL-0042")
    back = load_for("CPL-0042")
    assert back == cal and not back.is_default
    assert json.loads(path.read_text())["format"] == "cplscope-calibration"


def test_default_path_without_cplscope_home(monkeypatch, tmp_path):
    monkeypatch.delenv("CPLSCOPE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path("X1") == tmp_path / ".config" / "cplscope" / "calibration-X1.json"


def test_load_for_without_file_gives_documented_default(home):
    cal = load_for("CPL-7")
    assert cal.is_default and cal.source == "default" and cal.serial == "CPL-7"
    assert (cal.a0_rad, cal.phase_offset_rad, cal.handedness, cal.dead_time_s) == (
        math.pi / 2, 0.0, 1, 0.0)
    assert cal.blank is None


def test_other_instruments_file_is_refused(home, tmp_path):
    path = make(serial="CPL-0001").save(tmp_path / "c.json")
    with pytest.raises(CalibrationMismatch, match="CPL-0001.*CPL-0042"):
        load_for("CPL-0042", path)
    with pytest.raises(CalibrationMismatch):
        Calibration.load(path, expected_serial="CPL-0042")
    assert Calibration.load(path).serial == "CPL-0001"     # deliberate use stays possible


@pytest.mark.parametrize("field, value, match", [
    ("a0_rad", 0.0, "a0_rad"), ("a0_rad", 4.0, "a0_rad"), ("a0_rad", "1.5", "a0_rad"),
    ("handedness", 0, "handedness"), ("handedness", True, "handedness"),
    ("dead_time_s", -1e-9, "dead_time_s"), ("phase_offset_rad", float("nan"), "phase_offset"),
    ("serial", "a/b", "serial"), ("date", "yesterday", "ISO 8601"), ("source", "", "source"),
    ("sigma_a0_rad", -0.1, "sigma_a0_rad"),
])
def test_invalid_values_name_the_field(field, value, match):
    with pytest.raises(CalibrationError, match=match):
        make(**{field: value})


def test_invalid_files_name_the_file_and_the_problem(tmp_path):
    good = make().to_dict()
    cases = {
        "notjson.json": "{not json",
        "typo.json": json.dumps({**good, "a0": 1.0}),
        "missing.json": json.dumps({k: v for k, v in good.items() if k != "handedness"}),
        "version.json": json.dumps({**good, "version": 99}),
        "blank.json": json.dumps({**good, "blank": {"wavelength_nm": [500, 400], "g": [0, 0],
                                                     "sigma_g": [1, 1]}}),
    }
    expected = {"notjson.json": "not valid JSON", "typo.json": "unknown key",
                "missing.json": "missing key", "version.json": "version",
                "blank.json": "increasing"}
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(CalibrationError, match=expected[name]) as info:
            Calibration.load(p)
        assert name in str(info.value)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    p = make().save(tmp_path / "cal.json")
    make(a0_rad=1.6).save(p)
    assert [f.name for f in tmp_path.iterdir()] == ["cal.json"]
    assert Calibration.load(p).a0_rad == 1.6


def test_blank_interpolates_and_refuses_to_extrapolate():
    blank = make().blank
    g, s = blank.at(425.0)
    assert g == pytest.approx(1.5e-4) and s == pytest.approx(3e-5)
    assert blank.covers([400.0, 500.0]) and not blank.covers([399.0])
    with pytest.raises(CalibrationError, match="400 … 500 nm"):
        blank.at(520.0)


def test_blank_arrays_are_read_only_and_validated():
    blank = make().blank
    with pytest.raises(ValueError):
        blank.g[0] = 1.0
    with pytest.raises(CalibrationError, match="same"):
        Blank([400.0, 410.0], [0.0], [0.0, 0.0])
    with pytest.raises(CalibrationError, match="finite"):
        Blank([400.0], [np.nan], [0.0])


def test_replace_keeps_validation():
    with pytest.raises(CalibrationError):
        dataclasses.replace(make(), handedness=2)
