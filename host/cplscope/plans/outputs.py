"""The files and displays a plan writes to: the sinks of a run (CSV, archive, progress bar,
callback) built from the options of :func:`cplscope.plans.scan.scan` and
:func:`cplscope.plans.cd_scan.cd_scan`."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..data.documents import Sink
from ..data.sinks import ArchiveSink, CallbackSink, CsvSink, ProgressSink

__all__ = ["run_sinks"]


def run_sinks(*, output: str | os.PathLike[str] | None = None,
              archive: str | os.PathLike[str] | None = None, overwrite: bool = False,
              append: bool = False, progress: bool | Sink = False,
              callback: Callable[..., None] | None = None,
              sinks: Sequence[Sink] = ()) -> list[Sink]:
    """The sinks of a run, in the order they get each document: the archive first (the raw
    frames are the most precious), then the CSV, the progress display, the callback and
    ``sinks``.

    Args:
        output: the spectrum CSV, rewritten atomically after every point.
        archive: the raw HDF5 archive; ``append``: continue the one that exists (resume),
            ``overwrite``: replace it.
        progress: True for a tqdm bar, or a sink of its own.
        callback: ``callback(point, index, accumulation)`` after every live point.
    """
    out: list[Sink] = []
    if archive is not None:
        out.append(ArchiveSink(archive, overwrite=overwrite, append=append))
    if output is not None:
        out.append(CsvSink(output))
    if progress is True:
        out.append(ProgressSink())
    elif progress:
        out.append(progress)  # type: ignore[arg-type]
    if callback is not None:
        out.append(CallbackSink(callback))
    out.extend(sinks)
    return out
