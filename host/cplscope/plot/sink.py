"""A sink that draws the CPL figure when the run stops."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["PlotSink"]


class PlotSink:
    """Draws the CPL figure of the final spectrum (:func:`cplscope.plot.cpl.plot_cpl`) when
    the run stops with at least one point."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        self.path = Path(path)
        self.options = options

    def __call__(self, name: str, doc: Any) -> None:
        if name == "stop" and len(doc.spectrum):
            from .cpl import plot_cpl

            plot_cpl(doc.spectrum, self.path, **self.options)
