"""Fixtures shared by the host tests."""
import pytest

from cplscope.cli.main import main


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    """A private calibration store, calibrated once per module with `cplscope calibrate
    --sim` (as a user would)."""
    path = tmp_path_factory.mktemp("cplscope-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(path))
    assert main(["-q", "calibrate", "--sim", "--seed", "0", "--dwell", "5"]) == 0
    yield path
    mp.undo()
