"""Runs the firmware unit tests in tests/firmware/mp/ inside the real MicroPython
interpreter (unix port), one subprocess per test function, so each is reported on its own."""
import os
import re
import subprocess

import pytest

from fwpaths import FIRMWARE, MP_TESTS, VECTORS


def _collect():
    out = []
    for path in sorted(MP_TESTS.glob("test_*.py")):
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M):
            out.append(pytest.param(path.stem, name, id="%s::%s" % (path.stem, name)))
    return out


CASES = _collect()


def test_there_are_micropython_tests():
    assert len(CASES) > 40


@pytest.mark.parametrize("module, name", CASES)
def test_mp(micropython, module, name):
    env = dict(os.environ, MICROPYPATH="%s:%s" % (FIRMWARE, MP_TESTS),
               CPL_VECTORS=str(VECTORS))
    p = subprocess.run([micropython, "-X", "heapsize=8M", "runner.py", module, name],
                       cwd=MP_TESTS, env=env, capture_output=True, text=True, timeout=60)
    if p.returncode != 0 or ("PASS " + name) not in p.stdout:
        pytest.fail("in MicroPython:\n" + p.stdout + p.stderr, pytrace=False)
