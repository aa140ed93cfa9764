"""Fixtures of the Bluesky tests (docs/bluesky.md). They need the ``[bluesky]`` extra; without
it every test here is skipped, with the reason."""
from __future__ import annotations

import pytest

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lab-services", action="store_true", default=False,
                     help="also run the tests that start lab services (Tiled, a queue "
                          "server with Redis; a minute or two; CI runs them)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_services: starts lab services (Tiled, a queue "
                            "server, Redis, Chromium); runs with --lab-services")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--lab-services"):
        return
    skip = pytest.mark.skip(reason="starts lab services (Tiled; a queue server and Redis; "
                                   "Chromium), a minute or two: run with --lab-services "
                                   "(CI does)")
    for item in items:
        if item.get_closest_marker("lab_services") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="package")
def home(tmp_path_factory):
    """A private calibration store: the twin is calibrated once, as a user would."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cplscope-home")
    mp.setenv("CPLSCOPE_HOME", str(path))
    from cplscope.plans.calibrate import calibrate_simulated

    calibrate_simulated(seed=0, dwell_s=5.0)
    yield path
    mp.undo()


@pytest.fixture
def RE():
    from bluesky import RunEngine

    engine = RunEngine(call_returns_result=True)
    yield engine
    if engine.state != "idle":
        engine.halt()
