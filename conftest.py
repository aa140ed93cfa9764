"""Settings shared by every test directory (tests/ and hil_tests/).

Simulated runs that a test starts without a seed are repeatable (`_repeatable_fresh_seeds`).

Test by-products stay out of the source tree: Hypothesis keeps its example database and caches
under pytest's cache directory (``.pytest_cache/d/hypothesis``, so a failing example is
replayed on the next run), or in a temporary directory removed at the end when the cache is
off (``-p no:cacheprovider``).
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import tempfile
import zlib
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


@pytest.fixture(autouse=True)
def _repeatable_fresh_seeds(request: pytest.FixtureRequest,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated run without a seed draws one from the operating system, as a user's run
    does. In a test the draws come from a generator seeded by the test's id instead: each run
    the test starts still gets a seed of its own, and the test's verdict is the same on every
    run of the suite (a statistical assertion then fails always or never)."""
    try:
        from cplscope.util import seeds
    except ImportError:  # the package is not installed: the tests say so themselves
        return
    draws = random.Random(zlib.crc32(request.node.nodeid.encode()))
    monkeypatch.setattr(seeds, "fresh_seed", lambda: draws.randrange(seeds.SEED_RANGE))


@pytest.fixture(scope="session")
def ctrl_c_at_point():
    """``with ctrl_c_at_point(n): ...``: the scan engine's ``n``-th point measurement in the
    block raises KeyboardInterrupt, as a Ctrl-C during it would (the points before it are
    measured as usual)."""
    @contextlib.contextmanager
    def interrupting(n: int):
        import cplscope.plans.engine as engine

        real, calls = engine.measure_point, []

        def measure_point(*a, **kw):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*a, **kw)

        engine.measure_point = measure_point
        try:
            yield
        finally:
            engine.measure_point = real
    return interrupting
