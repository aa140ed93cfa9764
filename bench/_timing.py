"""Timing shared by the benchmark scripts (run as ``python bench/<script>.py``, so this
directory is on the import path)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeats: int, number: int = 1) -> tuple[float, Any]:
    """(best s per call over ``repeats`` timings of ``number`` calls each, fn's last result).
    Garbage collection stays on, as in the code being measured."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            result = fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best, result


def best_time(fn: Callable[[], Any], repeats: int = 7, number: int = 1) -> float:
    """Best s per call, as :func:`best_of`."""
    return best_of(fn, repeats, number)[0]
