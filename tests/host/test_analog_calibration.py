"""The analog mode's own calibration (issue 21): A0, φ0, handedness and the front end's gain
measured in analog mode, stored next to the counting constants, and used by analog scans.

The twin's front end gets the build guide's 160 kHz single-pole bandwidth (issue 20): the PEM
harmonics reach the ADC delayed (17° at 50 kHz, 32° at 100 kHz) and attenuated, which biases
analog g under the counting calibration and not under the analog one."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

import cplscope
from cplscope.plans.calibrate import calibrate_simulated
from cplscope.settings.calibration import (
    AnalogCalibration,
    Calibration,
    CalibrationError,
    load_for,
)

SLOW_FRONT_END = {"bench_options": {"adc_bandwidth_hz": 160e3}}
G_TRUE = 0.5


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The twin with a slow front end, calibrated in counting and then in analog mode the
    way `cplscope calibrate --sim --mode analog` does it."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")
    mp.setenv("CPLSCOPE_HOME", str(home))
    cal = calibrate_simulated(seed=3, dwell_s=5.0, mode="analog", **SLOW_FRONT_END)
    yield cal, home
    mp.undo()


def test_the_analog_calibration_is_stored_next_to_the_counting_one(calibrated):
    cal, _ = calibrated
    assert cal.mode == "counting" and cal.analog is not None
    assert cal.phase_offset_rad == pytest.approx(0.3, abs=0.01)     # the PEM's own φ0
    a = cal.analog
    lag_2f = math.atan(2 * 50e3 / 160e3)           # cos δ carries 2f: its lag over 2
    assert a.phase_lag_rad == pytest.approx(lag_2f / 2, abs=0.03)
    assert a.phase_offset_rad == pytest.approx(cal.phase_offset_rad + a.phase_lag_rad, abs=1e-9)
    assert a.handedness == 1 and a.sample_rate_hz == pytest.approx(249674.90625)
    assert 0.9 < a.g_gain < 1.0 and (1.0 - a.g_gain) > 5 * a.sigma_g_gain
    stored = load_for(cal.serial)
    assert stored == cal and stored.analog == a
    analog = stored.for_mode("analog")
    assert (analog.mode, analog.a0_rad, analog.phase_offset_rad, analog.g_gain,
            analog.dead_time_s, analog.analog) == ("analog", a.a0_rad, a.phase_offset_rad,
                                                   a.g_gain, 0.0, None)
    assert stored.for_mode("counting") is stored and analog.for_mode("analog") is analog


def flat_sample(tmp_path) -> str:
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"name": "flat", "wavelength_nm": [380.0, 700.0],
                                "emission": [1.0, 1.0], "g_lum": [G_TRUE, G_TRUE],
                                "linear": [0.0, 0.0], "peak_rate_cps": 2e6}))
    return str(path)


def analog_scan(sample: str, calibration: Calibration):
    with cplscope.connect("sim", sample=sample, seed=44, **SLOW_FRONT_END) as inst:
        inst.calibration = calibration
        inst.prepare(mode="analog")
        return inst.scan(480, 500, 20, dwell_s=2.0, dark_dwell_s=2.0)


def test_an_analog_scan_uses_the_analog_calibration(calibrated, tmp_path, caplog):
    """With the counting constants the slow front end biases g by several σ (the run says
    so); with the analog ones g is right."""
    cal, _ = calibrated
    sample = flat_sample(tmp_path)
    right = analog_scan(sample, cal)
    assert right.metadata["calibration"]["mode"] == "analog"
    for p in right:
        assert abs(p.g_lum - G_TRUE) < 4 * p.sigma_g * p.coverage_factor(4.0), p
    with caplog.at_level("WARNING"):
        wrong = analog_scan(sample, dataclasses.replace(cal, analog=None))
    assert "no analog calibration" in caplog.text
    assert wrong.metadata["calibration"]["mode"] == "counting"
    for p in wrong:
        assert p.g_lum < G_TRUE - 4 * p.sigma_g * p.coverage_factor(4.0), p


def test_a_counting_recalibration_keeps_the_analog_constants(calibrated):
    cal, _ = calibrated
    again = calibrate_simulated(seed=5, dwell_s=2.0, save=False)
    assert again.analog == cal.analog and again.mode == "counting"


def test_analog_calibration_files_are_checked():
    good = AnalogCalibration(a0_rad=1.5, phase_offset_rad=0.5, handedness=1,
                             date="2026-01-01T00:00:00+00:00", source="test", g_gain=0.95)
    assert AnalogCalibration.from_dict(good.to_dict()) == good
    for bad, match in [({"g_gain": 0.0}, "g_gain"), ({"handedness": 2}, "handedness"),
                       ({"a0_rad": 4.0}, "a0_rad"), ({"date": "yesterday"}, "date"),
                       ({"sigma_g_gain": -1.0}, "sigma_g_gain")]:
        with pytest.raises(CalibrationError, match=match):
            AnalogCalibration.from_dict({**good.to_dict(), **bad})
    with pytest.raises(CalibrationError, match="unknown key"):
        AnalogCalibration.from_dict({**good.to_dict(), "gain": 1.0})
    with pytest.raises(CalibrationError, match="missing"):
        AnalogCalibration.from_dict({"a0_rad": 1.5})
    base = Calibration(a0_rad=1.5, phase_offset_rad=0.3, handedness=1, dead_time_s=0.0,
                       serial="X1", date="2026-01-01T00:00:00+00:00", source="t")
    with pytest.raises(CalibrationError, match="mode"):
        dataclasses.replace(base, mode="photon")
    with pytest.raises(ValueError, match="mode"):
        base.for_mode("photon")
    assert base.for_mode("analog") is base          # no analog constants: the counting ones
    old = {k: v for k, v in base.to_dict().items() if k not in ("mode", "analog", "g_gain")}
    assert Calibration.from_dict(old) == base        # files from before the analog section
