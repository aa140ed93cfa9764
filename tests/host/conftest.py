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
    yield from _calibrated_home(tmp_path_factory, "--seed", "0", "--mode", "analog", "--dwell",
                                "3")


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    """A private, empty settings folder (CPLSCOPE_HOME) for the module's tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(tmp_path_factory.mktemp("home")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def nexus_runs(tmp_path_factory):
    """A folder with a simulated CPL scan (``run.csv``, ``run.h5``: R-Cs4PbBr6, 440–448 nm,
    2 accumulations) and a CD scan (``cd.csv``, ``cd.h5``: CSA, 284–292 nm), each with its
    archive; the instrument uncalibrated (the default calibration)."""
    folder = tmp_path_factory.mktemp("nexus-runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(tmp_path_factory.mktemp("nexus-home")))
    try:
        assert main(["-q", "scan", "--sim", "--seed", "1", "--sample", "R-Cs4PbBr6", "--start",
                     "440", "--stop", "448", "--step", "4", "--dwell", "0.5", "--dark-dwell",
                     "0.2", "--accumulations", "2", "--output", str(folder / "run.csv"),
                     "--archive", str(folder / "run.h5")]) == 0
        assert main(["-q", "cd", "--sim", "--seed", "2", "--sample", "CSA", "--start", "284",
                     "--stop", "292", "--step", "4", "--dwell", "0.5", "--output",
                     str(folder / "cd.csv"), "--archive", str(folder / "cd.h5")]) == 0
    finally:
        mp.undo()
    return folder
