"""Monochromator settings kept per instrument and sent by prepare()."""
import pytest

import cplscope
from cplscope.settings.calibration import CalibrationError
from cplscope.settings.monochromator import load_mono_config, save_mono_config


def test_settings_are_validated_merged_and_kept(tmp_path):
    p = tmp_path / "m.json"
    assert load_mono_config("abc", p) == {}
    save_mono_config("abc", {"steps_per_nm": 20, "home_nm": 250}, p)
    save_mono_config("abc", {"backlash_steps": 80}, p)
    assert load_mono_config("abc", p) == {"steps_per_nm": 20.0, "home_nm": 250.0,
                                          "backlash_steps": 80}
    with pytest.raises(CalibrationError, match="unknown monochromator setting"):
        save_mono_config("abc", {"steps": 3}, p)
    with pytest.raises(CalibrationError, match="min_nm"):
        save_mono_config("abc", {"min_nm": 600, "max_nm": 500}, p)


def test_prepare_sends_the_stored_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path))
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=1) as inst:
        save_mono_config(str(inst.info()["serial"]), {"max_nm": 700.0, "backlash_steps": 70})
        inst.prepare()
        with pytest.raises(Exception, match="max_nm|range|700"):
            inst.move_to(750.0)
        assert inst.move_to(650.0) == pytest.approx(650.0)
