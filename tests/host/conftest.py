"""Fixtures shared by the host tests."""
import pytest

from cplscope.cli.main import main


def _calibrated_home(tmp_path_factory, *options: str):
    """A private calibration store, calibrated with `cplscope calibrate --sim OPTIONS` (as a
    user would); yields its folder."""
    path = tmp_path_factory.mktemp("cplscope-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(path))
    assert main(["-q", "calibrate", "--sim", *options]) == 0
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    """Calibrated once per module, in counting mode."""
    yield from _calibrated_home(tmp_path_factory, "--seed", "0", "--dwell", "5")


@pytest.fixture(scope="module")
def analog_home(tmp_path_factory):
    """Calibrated once per module with the counting and the analog calibration."""
    yield from _calibrated_home(tmp_path_factory, "--mode", "analog", "--dwell", "3")


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """A private, empty settings folder (CPLSCOPE_HOME) for the module's tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()
