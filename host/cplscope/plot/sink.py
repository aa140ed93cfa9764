"""A sink that draws the run's figure (CPL or CD) when the run stops."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["PlotSink"]


class PlotSink:
    """Draws the figure of the final spectrum when the run stops with at least one point:
    :func:`cplscope.plot.cpl.plot_cpl` for CPL, :func:`cplscope.plot.cd.plot_cd` for CD."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False,
                 **options: Any) -> None:
        """An existing figure at ``path`` is refused here, before the run, unless
        ``overwrite`` (the overwrite policy of every output)."""
        from ..util.files import check_new_file

        check_new_file(path, overwrite=overwrite)
        self.path = Path(path)
        self.options = options

    def __call__(self, name: str, doc: Any) -> None:
        if name == "stop" and len(doc.spectrum):
            from ..data.cd_spectrum import CDSpectrum

            # drawn beside, then renamed: a full disk or a crash never leaves half a figure
            tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")
            try:
                if isinstance(doc.spectrum, CDSpectrum):
                    from .cd import plot_cd

                    plot_cd(doc.spectrum, tmp, **self.options)
                else:
                    from .cpl import plot_cpl

                    plot_cpl(doc.spectrum, tmp, **self.options)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
