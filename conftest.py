"""Settings shared by every test directory (tests/ and hil_tests/).

Test by-products stay out of the source tree: Hypothesis keeps its example database and caches
under pytest's cache directory (``.pytest_cache/d/hypothesis``, so a failing example is
replayed on the next run), or in a temporary directory removed at the end when the cache is
off (``-p no:cacheprovider``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_TEMPORARY: list[str] = []


def _hypothesis_home(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("hypothesis"))
    folder = tempfile.mkdtemp(prefix="cplscope-hypothesis-")
    _TEMPORARY.append(folder)
    return Path(folder)


@pytest.hookimpl(trylast=True)  # after the cache provider has set config.cache
def pytest_configure(config: pytest.Config) -> None:
    home = _hypothesis_home(config)
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(home)  # read when first needed
    try:
        from hypothesis.configuration import set_hypothesis_home_dir
    except ImportError:  # hypothesis not installed: the tests that need it skip
        return
    set_hypothesis_home_dir(home)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _TEMPORARY:
        shutil.rmtree(_TEMPORARY.pop(), ignore_errors=True)
