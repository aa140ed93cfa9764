"""The photon input's high-time limit (the rp2 board's guard against a stuck or paralyzed
input, docs/hardware.md) is kept per instrument with the count-rate limits, sent to the board
by every prepared run, and refused with a reason where it could not work."""
import json

import pytest

import cplscope
from cplscope.cli.main import main
from cplscope.settings.calibration import CalibrationError
from cplscope.settings.rate_limits import RateLimits, limits_path, load_limits, save_limits


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("bad", [0.0, 0.005, 1.0, 1.5, True, "0.5"])
def test_a_fraction_the_guard_could_not_use_is_refused(bad):
    with pytest.raises(CalibrationError, match="high_fraction must be 0.01 … 0.99"):
        RateLimits(high_fraction=bad)


def test_stored_limits_keep_the_fraction_and_old_files_still_load(home, tmp_path):
    assert RateLimits().high_fraction is None           # the board's default holds
    save_limits("S1", RateLimits(high_fraction=0.7))
    assert load_limits("S1") == RateLimits(high_fraction=0.7)
    old = tmp_path / "old.json"                          # written before the fraction existed
    old.write_text(json.dumps({"serial": "S1", "linear_cps": 1e6, "damage_cps": 5e6}))
    assert load_limits("S1", old) == RateLimits(1e6, 5e6, None)
    save_limits("S1", RateLimits())
    assert "high_fraction" not in limits_path("S1").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"serial": "S1", "linear_cps": 1e6, "damage_cps": 5e6,
                               "high_fraction": 2}))
    with pytest.raises(CalibrationError, match="bad.json: high_fraction"):
        load_limits("S1", bad)


def test_the_stored_fraction_reaches_the_board_at_prepare(home, capsys):
    with cplscope.connect("sim", seed=3) as inst:
        default = inst.limits()["max_high_fraction"]
    assert main(["limits", "--sim", "--max-high-fraction", "0.7"]) == 0
    assert "stored" in capsys.readouterr().out
    assert main(["limits", "--sim"]) == 0
    assert "high time     0.7" in capsys.readouterr().out
    with cplscope.connect("sim", seed=3) as inst:
        assert inst.limits()["max_high_fraction"] == default   # a new board: its default
        inst.prepare(periods=5000)
        assert inst.limits()["max_high_fraction"] == 0.7
        # for one run, not stored
        inst.set_rate_limits(high_fraction=0.6, save=False)
        assert inst.limits()["max_high_fraction"] == 0.6
    assert load_limits(str(inst.info()["serial"])).high_fraction == 0.7


@pytest.mark.parametrize("value", ["1", "0.001"])
def test_the_cli_refuses_a_fraction_out_of_range(home, capsys, value):
    assert main(["limits", "--sim", "--max-high-fraction", value]) == 2
    assert "--max-high-fraction" in capsys.readouterr().err
