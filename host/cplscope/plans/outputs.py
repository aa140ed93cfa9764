"""The files and displays a plan writes to: the sinks of a run (CSV, archive, progress bar,
callback) built from the options of :func:`cplscope.plans.scan.scan`,
:func:`cplscope.plans.cd_scan.cd_scan` and :func:`cplscope.plans.resume.resume_scan`; the
one overwrite policy of their files; the free space a scan needs; and where a run's points
are safe when the disk fills up."""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.archive import journal_path, predict_archive_bytes
from ..data.documents import Sink
from ..data.sinks import ArchiveSink, CallbackSink, CsvSink, ProgressSink
from ..util.files import DiskFullError, check_new_file, free_bytes

__all__ = ["check_free_space", "located_disk_full", "run_sinks", "same_run_csv"]

log = logging.getLogger(__name__)


def run_sinks(*, output: str | os.PathLike[str] | None = None,
              archive: str | os.PathLike[str] | None = None, overwrite: bool = False,
              append: bool = False, progress: bool | Sink = False,
              callback: Callable[..., None] | None = None,
              sinks: Sequence[Sink] = (), run: Mapping[str, Any] | None = None) -> list[Sink]:
    """The sinks of a run, in the order they get each document: the archive first (the raw
    frames are the most precious), then the CSV, the progress display, the callback and
    ``sinks``.

    The overwrite policy, checked here, before anything is measured or created: an existing
    CSV or archive is refused (FileExistsError naming it) unless ``overwrite``. A resumed run
    (``append``) appends to its own archive, and rewrites the CSV only when it is that run's
    own (the run's metadata, ``run``, has the CSV's uid, or for files older than uids, its
    date).

    Args:
        output: the spectrum CSV, rewritten atomically after every point.
        archive: the raw archive; ``append``: continue the one that exists (resume),
            ``overwrite``: replace it.
        progress: True for a tqdm bar, or a sink of its own.
        callback: ``callback(point, index, accumulation)`` after every live point.
    """
    if archive is not None and not append:
        check_new_file(archive, overwrite=overwrite, also=(journal_path(archive),))
    if output is not None and not (append and same_run_csv(output, run)):
        check_new_file(output, overwrite=overwrite)
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


def same_run_csv(path: str | os.PathLike[str], run: Mapping[str, Any] | None) -> bool:
    """Whether ``path`` is the spectrum CSV (CPL or CD) of the run whose metadata is ``run``
    (a resumed run rewrites its own CSV, never another's): the same uid, or, for a run older
    than uids, the same start date."""
    from ..data.cd_spectrum import CDSpectrum
    from ..data.spectrum import Spectrum

    p = Path(path)
    if not run or not p.is_file():
        return False
    for kind in (Spectrum, CDSpectrum):
        try:
            theirs = kind.read_csv(p).metadata
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if run.get("uid") or theirs.get("uid"):
            return theirs.get("uid") == run.get("uid")
        return run.get("date") is not None and theirs.get("date") == run.get("date")
    return False


def predicted_bytes(settings: Any, *, n_points: int, frame_s: float, n_bins: int,
                    csv: bool) -> int:
    """The most disk space (bytes) a scan of ``n_points`` points (all accumulations) may
    take: its archive twice (the journal, then the HDF5 file built from it before the journal
    is removed) and its CSV."""
    if settings.time_budget_s is not None:
        counting = float(settings.time_budget_s)
    else:
        per_point = settings.dwell_s if settings.dwell_s is not None else settings.max_dwell_s
        counting = n_points * float(per_point)
    if settings.survey:
        counting += n_points * (1.0 if settings.survey is True else float(settings.survey))
    if settings.dark is True:
        # a dark with no set dwell is measured as long as the longest point, at most
        dark_s = settings.dark_dwell_s if settings.dark_dwell_s is not None else (
            settings.dwell_s if settings.dwell_s is not None else settings.max_dwell_s)
        counting += int(settings.accumulations) * float(dark_s)
    frames = counting / max(frame_s, 1e-6) + 2 * n_points       # + a partial frame each
    return 2 * predict_archive_bytes(frames, n_bins, n_points) + (n_points * 400 if csv else 0)


def check_free_space(sinks: Sequence[Sink], settings: Any, *, n_points: int, frame_s: float,
                     n_bins: int) -> int | None:
    """Warn (log) when the scan's archive and CSV may not fit in the free space of their
    folder; returns the predicted bytes (None without an archive)."""
    archive = next((s for s in sinks if isinstance(s, ArchiveSink)), None)
    if archive is None or n_points <= 0 or not math.isfinite(frame_s):
        return None
    csv = any(isinstance(s, CsvSink) for s in sinks)
    need = predicted_bytes(settings, n_points=n_points, frame_s=frame_s, n_bins=n_bins, csv=csv)
    free = free_bytes(archive.path)
    if free is not None and need > free:
        log.warning("%s may need up to %s (its journal while the scan runs, then the HDF5 "
                    "file built from it), and its disk has %s free: free space before a long "
                    "scan. If the disk fills up, the scan stops and every point measured by "
                    "then is kept (finish it with --resume).", archive.path, _size(need),
                    _size(free))
    return need


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def located_disk_full(exc: BaseException, sinks: Sequence[Sink], *, command: str,
                      complete: bool = False) -> DiskFullError:
    """The run's :class:`DiskFullError`, saying how many points are safe where: in the
    archive (finish with ``cplscope <command> --resume``), else in the CSV."""
    path = exc.path if isinstance(exc, DiskFullError) else getattr(exc, "filename", None)
    what = Path(path) if path else Path("an output file")
    for sink in sinks:
        if isinstance(sink, ArchiveSink):
            safe = sink.safe()
            if safe is not None:
                return DiskFullError(what, points=safe[0], safe_in=safe[1], resume=sink.path,
                                     command=command)
    for sink in sinks:
        if isinstance(sink, CsvSink):
            safe = sink.safe()
            if safe is not None:
                return DiskFullError(what, points=safe[0], safe_in=safe[1],
                                     command=command, complete=complete)
    return DiskFullError(what, points=0, safe_in=Path("no file"), command=command)
