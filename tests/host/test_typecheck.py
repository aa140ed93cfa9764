"""The host library type-checks with mypy (public API: type hints are part of the contract)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HOST = Path(__file__).resolve().parents[2] / "host" / "cplscope"


@pytest.mark.skipif(not HOST.is_dir(), reason="needs the source checkout (host/cplscope)")
def test_host_library_passes_mypy(tmp_path):
    if shutil.which("mypy") is None and not _has_module("mypy"):
        pytest.skip("mypy is not installed (pip install '.[test]')")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--cache-dir",
         str(tmp_path / "mypy-cache"), "--no-error-summary", str(HOST)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
