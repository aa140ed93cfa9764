"""The raw archive: every frame of a run with its settings and results, durable from the
moment a point is measured, and the reader (docs/data-files.md, "Raw archive" and
"Durability"); :mod:`cplscope.plans.reprocess` recomputes a spectrum from it.

While a run is going, its archive ``run.h5`` is a journal, ``run.h5.journal``
(:mod:`cplscope.data.journal`): an append-only file of checksummed records (the run's start,
each dark, each point with all its frames, the run's stop), each one written and fsync'd
before :meth:`ArchiveWriter.add_point` returns. A crash at any instant (SIGKILL, power loss)
keeps every point that was completed; a full disk keeps them too and raises
:class:`~cplscope.util.files.DiskFullError`. When the run stops (success, Ctrl-C or an
error), the HDF5 file ``run.h5`` is built from the journal in a helper process, made durable
and renamed into place, and only then is the journal removed. After a crash the journal is
still there: :meth:`Archive.open` (``run.h5``) reads it, ``cplscope reprocess`` recomputes the
spectrum from it, and ``--resume`` appends to it and builds the HDF5 at the end.

:meth:`Archive.open` reads an HDF5 archive in a helper process too
(:mod:`cplscope.data.archive_hdf5`), under a time limit, so a damaged or crafted file is
refused within seconds and never hangs the reader; the parts that can be read are kept and
:attr:`Archive.lost` says what could not be.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from ..util.clock import utc_now_iso
from ..util.files import DiskFullError, check_new_file, free_bytes, fsync_dir
from ..settings.calibration import Blank, Calibration
from ..science.frames import FrameSet, GatedFrameSet, RawFrames
from ..science.pipeline import PointContext
from ..science.results import FlagRules, PointResult
from . import archive_format as fmt
from .archive_format import FORMAT, VERSION, archive_path, journal_path
from .archive_hdf5 import HelperError, run_helper
from .journal import JournalError, JournalWriter, Record, scan_journal
from .spectrum import PointRows, Spectrum

__all__ = [
    "Archive", "ArchiveWriter", "ArchivedDark", "ArchivedPoint", "FrameSet", "PointSettings",
    "RawFrames", "archive_exists", "journal_path", "predict_archive_bytes",
]

_READABLE = fmt.READABLE
_TEXT_LEN = fmt.TEXT_LEN
_FLAGS_LEN = fmt.FLAGS_LEN
_FRAME_DT = fmt.FRAME_DT
_FRAME_FIELDS = fmt.FRAME_FIELDS
_RESULT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PointResult))
#: Seconds the helper gets to read an HDF5 archive, plus one per this many bytes.
READ_TIMEOUT_S = 20.0
BUILD_TIMEOUT_S = 120.0
_BYTES_PER_S = 10e6
#: Bytes a frame takes in the journal and in the HDF5 file besides its counts (its gating
#: included, which only gated frames carry).
_FRAME_EXTRA = fmt.FRAME_DT.itemsize + fmt.GATE_DT.itemsize + 4


def archive_exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds an archive: the HDF5 file or the journal of a run that has not
    ended (or was killed)."""
    p = Path(path)
    return p.exists() or journal_path(p).exists()


def predict_archive_bytes(n_frames: float, n_bins: int, n_points: int) -> int:
    """Bytes the archive of ``n_frames`` frames of ``n_bins`` bins in ``n_points`` points
    takes (journal or HDF5 file; they are within a few per cent of each other)."""
    per_point = 2 * 8 * n_bins + 1500
    return int(n_frames * (4 * n_bins + _FRAME_EXTRA) + n_points * per_point + 64_000)


# --- settings ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PointSettings:
    """How one point was measured and estimated: its :class:`~cplscope.science.pipeline.PointContext`
    plus the frame time, dwell and bin span of its usable frames, the blank subtracted and
    its position in the plan. Everything reprocessing needs.

    Attributes:
        wavelength_nm: emission wavelength, nm.
        a0_rad: PEM peak retardation A0 in force at this point, rad.
        phase_offset_rad: φ0, rad.
        frame_time_s: mean duration of one usable frame, s.
        dwell_s: counting time of the frames used, s.
        handedness: +1 or −1.
        bin_span: fraction of the PEM period covered by the bins, (0, 1].
        dead_time_s: counter dead time, s (0 = no correction).
        dark: expected dark counts per bin per frame, scalar or (B,).
        dark_source: where ``dark`` came from, e.g. ``"dark:0"`` (index into the archive's
            darks), ``"given"``, ``"none"``.
        accumulation: index of the scan (0, 1, …) this point belongs to.
        noise: ``"poisson"`` (counting) or ``"gaussian"``.
        blank_g, blank_sigma: blank subtracted from the wavelength's combined g (NaN: none).
        a0_tracking: whether the firmware held A0 constant over wavelength.
        dark_sigma: standard uncertainty of ``dark``: a scalar common to all bins, or (B,).
        target_sigma: the adaptive target σ_g (NaN: fixed dwell).
        a0_nominal_rad: A0 by the firmware's PEM model (STATUS ``a0_rad``), rad.
        a0_commanded_rad: the A0 commanded, rad.
        pem_drive: the PEM drive, 0 … 1.
        stopped: why counting ended (:class:`~cplscope.science.pipeline.PointContext`).
        extra_flags: flags the measurement added (``hopeless``), ``;``-separated.
        index: position of the wavelength in the plan (−1: unknown, version-1 archives).
        matter_rate, plan_every: the signal that matters and the planning frames
            (:class:`~cplscope.science.pipeline.PointContext`; NaN and 0 in older archives).
        live_fraction: gated counting's open share of the frame time (1: continuous
            counting, and in older archives).
    """

    wavelength_nm: float
    a0_rad: float
    phase_offset_rad: float
    frame_time_s: float
    dwell_s: float
    handedness: int = 1
    bin_span: float = 1.0
    dead_time_s: float = 0.0
    dark: Any = 0.0
    dark_source: str = "none"
    accumulation: int = 0
    noise: str = "poisson"
    blank_g: float = math.nan
    blank_sigma: float = math.nan
    a0_tracking: bool = True
    dark_sigma: Any = 0.0
    target_sigma: float = math.nan
    a0_nominal_rad: float = math.nan
    a0_commanded_rad: float = math.nan
    pem_drive: float = math.nan
    stopped: str = "dwell"
    extra_flags: str = ""
    index: int = -1
    matter_rate: float = math.nan
    plan_every: int = 0
    live_fraction: float = 1.0

    @property
    def blank(self) -> tuple[float, float] | None:
        """(g, σ) of the blank subtracted, or None."""
        return None if math.isnan(self.blank_g) else (self.blank_g, self.blank_sigma)

    @classmethod
    def from_context(cls, ctx: PointContext, *, frame_time_s: float, dwell_s: float,
                     bin_span: float, blank: tuple[float, float] | None = None,
                     index: int = -1) -> PointSettings:
        """The archive row of a point measured with context ``ctx``."""
        g, sg = blank if blank is not None else (math.nan, math.nan)
        return cls(
            wavelength_nm=ctx.wavelength_nm, a0_rad=ctx.a0_rad,
            phase_offset_rad=ctx.phase_offset_rad, frame_time_s=float(frame_time_s),
            dwell_s=float(dwell_s), handedness=ctx.handedness, bin_span=float(bin_span),
            dead_time_s=ctx.dead_time_s, dark=ctx.dark, dark_source=ctx.dark_source,
            accumulation=ctx.accumulation, noise=ctx.noise, blank_g=float(g),
            blank_sigma=float(sg), a0_tracking=ctx.a0_tracking, dark_sigma=ctx.dark_sigma,
            target_sigma=ctx.target_sigma, a0_nominal_rad=ctx.a0_nominal_rad,
            a0_commanded_rad=ctx.a0_commanded_rad, pem_drive=ctx.pem_drive,
            stopped=ctx.stopped, extra_flags=";".join(ctx.extra_flags), index=int(index),
            matter_rate=float(ctx.matter_rate), plan_every=int(ctx.plan_every),
            live_fraction=float(ctx.live_fraction))

    def context(self) -> PointContext:
        """The point's :class:`~cplscope.science.pipeline.PointContext`."""
        return PointContext(
            wavelength_nm=self.wavelength_nm, a0_rad=self.a0_rad,
            phase_offset_rad=self.phase_offset_rad, handedness=self.handedness,
            dead_time_s=self.dead_time_s, dark=self.dark, dark_sigma=self.dark_sigma,
            dark_source=self.dark_source, accumulation=self.accumulation, noise=self.noise,
            target_sigma=self.target_sigma, a0_nominal_rad=self.a0_nominal_rad,
            a0_commanded_rad=self.a0_commanded_rad, a0_tracking=self.a0_tracking,
            pem_drive=self.pem_drive, stopped=self.stopped,
            extra_flags=tuple(f for f in self.extra_flags.split(";") if f),
            matter_rate=float(self.matter_rate), plan_every=int(self.plan_every),
            live_fraction=float(self.live_fraction))


def _text(value: str, size: int, what: str) -> str:
    raw = value.encode("utf-8")
    if len(raw) > size:
        raise ValueError(f"{what} {value!r} is longer than the archive's {size} bytes")
    return value


def _frame_rows(frames: FrameSet, owner: int) -> np.ndarray:
    rows = np.zeros(frames.n_frames, dtype=_FRAME_DT)
    for name in _FRAME_FIELDS:
        rows[name] = owner if name == "owner" else getattr(frames, name)
    return rows


def _gate_rows(frames: FrameSet) -> np.ndarray:
    """Each gated frame's gate (time bin) and timing (:data:`~cplscope.data.archive_format.GATE_DT`)."""
    assert isinstance(frames, GatedFrameSet)
    rows = np.zeros(frames.n_frames, dtype=fmt.GATE_DT)
    for name in fmt.GATE_FIELDS:
        rows[name] = frames.n_gates if name == "n_gates" else getattr(frames, name)
    return rows


def _frame_arrays(frames: FrameSet, owner: int) -> tuple[dict[str, Any], tuple[np.ndarray, ...]]:
    """The JSON keys and the arrays of a record's frames: the counts, the frame info and,
    for gated frames, each frame's gate."""
    arrays: tuple[np.ndarray, ...] = (np.asarray(frames.counts, dtype="<u4"),
                                      _frame_rows(frames, owner))
    if not isinstance(frames, GatedFrameSet):
        return {}, arrays
    return {"gated": True}, arrays + (_gate_rows(frames),)


def _per_bin(value: Any, n_bins: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype="<f8"), (n_bins,)))


# --- writer -----------------------------------------------------------------------------

class ArchiveWriter:
    """Append-only, crash-safe writer of one run's raw archive (its journal while the run
    goes, the HDF5 file from :meth:`close` on).

    Use as a context manager, or call :meth:`close` at the end with the stream health.
    """

    def __init__(self, path: str | os.PathLike[str], *, n_bins: int,
                 metadata: Mapping[str, Any], calibration: Calibration | None = None,
                 rules: FlagRules = FlagRules(), overwrite: bool = False,
                 blank: Blank | None = None, plan: Mapping[str, Any] | None = None,
                 durable: bool = True) -> None:
        """Start the archive at ``path`` (its journal ``path.journal`` until :meth:`close`).

        Args:
            n_bins: B, phase bins of every frame in this run (2 … 64).
            metadata: run metadata (:func:`cplscope.data.spectrum.run_metadata`), JSON-ready.
            calibration: the calibration in force (stored in full, blank included).
            rules: the flag thresholds the results were computed with.
            overwrite: replace an existing archive (otherwise FileExistsError).
            blank: the blank the run subtracts (None: none).
            plan: the run's plan (wavelengths, accumulations), JSON-ready.
            durable: fsync every record (False only for benchmarks).
        """
        if not 2 <= int(n_bins) <= 64:
            raise ValueError(f"n_bins must be 2 … 64, got {n_bins}")
        self.path = archive_path(path)
        self.journal_path = journal_path(self.path)
        check_new_file(self.path, overwrite=overwrite, also=(self.journal_path,))
        if overwrite:
            for p in (self.journal_path, self.path):
                p.unlink(missing_ok=True)
        self.n_bins = int(n_bins)
        self._stream: dict[str, int] | None = None
        self.n_points = self.n_darks = 0
        self.appended = 0
        self.seeded = False
        self.created = True
        self.failed: BaseException | None = None
        start = {"format": FORMAT, "version": VERSION, "n_bins": self.n_bins,
                 "created": utc_now_iso(), "metadata": dict(metadata),
                 "calibration": calibration.to_dict() if calibration else None,
                 "rules": asdict(rules),
                 "blank": blank.to_dict() if blank is not None else None,
                 "plan": dict(plan) if plan is not None else None,
                 "result_fields": list(_RESULT_FIELDS)}
        payload = fmt.pack(json.loads(json.dumps(start)))
        # the start record twice: one damaged copy does not take the run's description with it
        self._journal: JournalWriter | None = JournalWriter.create(
            self.journal_path, durable=durable, records=[(fmt.START, payload)] * 2)

    @classmethod
    def reopen(cls, path: str | os.PathLike[str], *, durable: bool = True) -> ArchiveWriter:
        """Open an existing archive to append to it (resuming its scan): its journal when
        the run did not end (a crash), else a new journal with the HDF5 file's records."""
        p = archive_path(path)
        j = journal_path(p)
        seeded = not j.exists()
        if seeded:
            if not p.exists():
                raise ValueError(f"{p}: no such archive")
            _seed_journal(p, j)
        try:
            with Archive.open(p) as arc:
                if arc.version not in fmt.APPENDABLE:
                    raise ValueError(f"{p} is a version-{arc.version} cplscope archive: it "
                                     "cannot be appended to (only versions "
                                     f"{', '.join(map(str, fmt.APPENDABLE))} can)")
                n_bins = arc.n_bins
                n_points, n_darks = arc.n_records("point"), arc.n_records("dark")
            journal = JournalWriter.append_to(j, durable=durable)
        except BaseException:
            if seeded:
                j.unlink(missing_ok=True)
            raise
        self = cls.__new__(cls)
        self.path, self.journal_path, self.n_bins = p, j, n_bins
        self._stream = None
        self.n_points, self.n_darks = n_points, n_darks
        self.appended = 0
        self.failed = None
        self.seeded = seeded
        self.created = False
        self._journal = journal
        return self

    def _w(self) -> JournalWriter:
        if self._journal is None:
            raise ValueError(f"archive {self.path} is closed")
        return self._journal

    def _append(self, kind: int, payload: bytes, tag: tuple[int, int] = (0, 0)) -> None:
        try:
            self._w().append(kind, payload, tag)
        except DiskFullError as exc:
            self.failed = exc
            raise DiskFullError(self.path) from exc.__cause__
        except OSError as exc:
            self.failed = exc
            raise

    def add_dark(self, frames: Any, *, level: npt.ArrayLike | None = None,
                 sigma: npt.ArrayLike | None = None, source: str = "shutter-closed",
                 wavelength_nm: float = math.nan, frame_time_s: float = math.nan,
                 dark: Any = None) -> int:
        """Store a dark measurement with its raw frames, durably; returns its index (for
        ``PointSettings.dark_source = f"dark:{index}"``).

        ``level`` (per bin per frame, counts) and its ``sigma`` are taken from ``dark`` (a
        :class:`~cplscope.plans.point.Dark`) at ``frame_time_s`` when given, else they default
        to the mean of the usable frames and its standard error sqrt(mean/n) (Poisson).
        """
        raw = FrameSet.of(frames)
        self._check_bins(raw)
        if dark is not None and level is None:
            level = dark.per_frame(frame_time_s)
            sigma = dark.sigma_per_frame(frame_time_s)
        if level is None:
            use = raw.counts[raw.usable].astype(np.float64)
            if use.shape[0] == 0:
                raise ValueError("no usable dark frames to average; pass level explicitly")
            level = use.mean(axis=0)
            sigma = np.sqrt(level / use.shape[0]) if sigma is None else sigma
        index = self.n_darks
        gated, frame_arrays = _frame_arrays(raw, -1 - index)
        meta = {"index": index, "wavelength_nm": float(wavelength_nm),
                "frame_time_s": float(frame_time_s), "n_frames": int(raw.n_frames),
                "source": _text(source, _TEXT_LEN, "dark source"), "time": utc_now_iso(),
                **gated}
        arrays = (_per_bin(level, self.n_bins),
                  _per_bin(np.nan if sigma is None else sigma, self.n_bins), *frame_arrays)
        self._append(fmt.DARK, fmt.pack(meta, arrays), (index, 0))
        self.n_darks += 1
        self.appended += 1
        return index

    def add_point(self, frames: Any, settings: PointSettings, result: PointResult) -> int:
        """Append one point: all its frames (usable or not), its settings and its result,
        durably (the point counts as done when this returns). Returns the point's index."""
        raw = FrameSet.of(frames)
        self._check_bins(raw)
        dark_sd = np.asarray(settings.dark_sigma, dtype=np.float64)
        s: dict[str, Any] = {}
        for f in fields(PointSettings):
            if f.name in ("dark", "dark_sigma"):
                continue
            value = getattr(settings, f.name)
            if f.name in fmt.TEXT_FIELDS:
                value = _text(value, fmt.SETTINGS_DT[f.name].itemsize, f.name)
            s[f.name] = value.item() if isinstance(value, np.generic) else value
        r: dict[str, Any] = {}
        for name in _RESULT_FIELDS:
            value = getattr(result, name)
            if name == "flags":
                _text(";".join(value), _FLAGS_LEN, "flags")
                value = list(value)
            r[name] = value.item() if isinstance(value, np.generic) else value
        index = self.n_points
        gated, frame_arrays = _frame_arrays(raw, index)
        meta = {"settings": s, "result": r, "dark_sigma_common": bool(dark_sd.ndim == 0),
                "n_frames": int(raw.n_frames), **gated}
        arrays = (_per_bin(settings.dark, self.n_bins), _per_bin(dark_sd, self.n_bins),
                  *frame_arrays)
        self._append(fmt.POINT, fmt.pack(meta, arrays),
                     (int(settings.index), int(settings.accumulation)))
        self.n_points += 1
        self.appended += 1
        return index

    def _check_bins(self, frames: FrameSet) -> None:
        self._w()
        if frames.n_bins != self.n_bins and frames.n_frames:
            raise ValueError(f"frames have B={frames.n_bins} bins but this archive holds "
                             f"B={self.n_bins}; start a new archive for a new bin count")

    def close(self, stream: Mapping[str, int] | None = None, *,
              exit_status: str = "success", extra: Mapping[str, Any] | None = None,
              spectrum: PointRows | None = None) -> None:
        """End the run: record the stream-health counters (``frames``, ``rejected``,
        ``missing``, ``reconnects``, …), the run's exit status (``"success"``, ``"abort"``,
        ``"fail"``), the metadata the run added as it went (``extra``: survey, plan) and
        its ``spectrum`` (CPL or CD, as its CSV holds it: the NeXus entry's default plot;
        without it the entry plots the points as measured), then build the HDF5 file from
        the journal and remove the journal.

        After a full disk the journal is left as it is (it holds every completed point) and
        nothing more is written. An archive that holds nothing leaves no file behind.

        Raises:
            DiskFullError: no room for the HDF5 file; the journal is kept.
        """
        journal = self._journal
        if journal is None:
            return
        self._journal = None
        try:
            if isinstance(self.failed, DiskFullError):
                return
            if self.n_points == 0 and self.n_darks == 0 and not self.seeded:
                journal.close()
                self.journal_path.unlink(missing_ok=True)   # nothing was measured
                return
            meta = {"stream": dict(stream) if stream is not None else None,
                    "exit_status": exit_status, "extra": dict(extra) if extra else {},
                    "time": utc_now_iso()}
            if spectrum is not None and len(spectrum):
                meta["spectrum"] = spectrum.written_columns()
            journal.append(fmt.STOP, fmt.pack(json.loads(json.dumps(meta))))
        except DiskFullError as exc:
            raise DiskFullError(self.path) from exc.__cause__
        finally:
            journal.close()
        build_hdf5(self.journal_path, self.path)

    def discard(self) -> None:
        """Close and remove a new archive (a run that measured no point: its dark alone is
        measured again by the next run). An archive being resumed is never removed."""
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()
            if self.created:
                self.journal_path.unlink(missing_ok=True)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(self._stream)

    def set_stream(self, stream: Mapping[str, int]) -> None:
        """Stream-health counters to record when the context manager closes the archive."""
        self._stream = {k: int(v) for k, v in stream.items()}


def build_hdf5(journal: Path, path: Path) -> None:
    """Build the HDF5 archive ``path`` from ``journal`` (in a helper process), make it
    durable, put it in place atomically, then remove the journal.

    Raises:
        DiskFullError: no room for it; the journal (every completed point) is kept.
        ValueError: the helper failed; the journal is kept.
    """
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / f".{path.name}.building"
    tmp.unlink(missing_ok=True)
    size = journal.stat().st_size
    free = free_bytes(folder)
    if free is not None and free < size + (1 << 20):
        raise DiskFullError(path)
    try:
        run_helper("build", journal, tmp, timeout_s=BUILD_TIMEOUT_S + size / _BYTES_PER_S)
        os.replace(tmp, path)
    except HelperError as exc:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"{path} could not be written ({exc}); every point is kept in "
                         f"{journal}: `cplscope reprocess {path}` reads it") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    journal.unlink(missing_ok=True)
    fsync_dir(folder)


def _seed_journal(path: Path, journal: Path) -> None:
    """A journal holding every record of the HDF5 archive ``path`` (to append to it)."""
    tmp = journal.with_name(journal.name + ".seeding")
    tmp.unlink(missing_ok=True)
    try:
        _read_hdf5(path, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, journal)
        fsync_dir(journal.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_hdf5(path: Path, out: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        run_helper("read", path, out, timeout_s=READ_TIMEOUT_S + size / _BYTES_PER_S)
    except HelperError as exc:
        raise ValueError(f"{path} cannot be read as a cplscope archive: {exc}") from None


# --- reader -----------------------------------------------------------------------------

@dataclass
class ArchivedPoint:
    """One point read back: its index, settings, stored result and every frame."""

    index: int
    settings: PointSettings
    result: PointResult
    frames: RawFrames


@dataclass
class ArchivedDark:
    """One dark measurement read back: level and σ per bin per frame (counts), its frames."""

    index: int
    level: np.ndarray
    sigma: np.ndarray
    source: str
    wavelength_nm: float
    frame_time_s: float
    time: str
    frames: RawFrames = field(repr=False)


@dataclass
class _Item:
    """A dark or point record: its JSON, the per-bin arrays and where its frames lie (and
    whether each frame's gate follows them)."""

    meta: dict[str, Any]
    first: np.ndarray
    second: np.ndarray
    frames_at: int
    n_frames: int
    gated: bool = False


class Archive:
    """Read access to a raw archive: an ended run's HDF5 file, or the journal of a run that
    is going or was killed.

    Attributes:
        lost: what could not be read (damaged records or HDF5 objects), one line each; empty
            for a sound archive.
        in_flight: a record was cut short at the end of the journal (a run killed while it
            wrote a point: that point was never completed).
        source: ``"journal"`` or ``"hdf5"``.
    """

    def __init__(self, path: Path, journal: Path, *, source: str,
                 temporary: bool = False) -> None:
        self.path = path
        self.source = source
        self._journal = journal
        self._temporary = temporary
        try:
            scan = scan_journal(journal)
        except JournalError as exc:
            raise ValueError(str(exc)) from None
        self._fh: BinaryIO | None = open(journal, "rb")
        if temporary and os.name == "posix":
            journal.unlink(missing_ok=True)     # gone when closed, even after a crash
        try:
            self._load(scan)
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Archive:
        """Open an archive for reading: the journal of ``path`` when there is one (a run that
        is going, or was killed), else the HDF5 file (read in a helper process with a time
        limit).

        Raises:
            ValueError: not an archive, damaged beyond reading (its start record or file
                header), or the HDF5 library could not read it in time; the message names
                the file.
        """
        p = archive_path(path)
        j = journal_path(p)
        if j.exists():
            return cls(p, j, source="journal")
        if not p.exists():
            raise ValueError(f"{p}: no such archive")
        if not p.is_file():
            raise ValueError(f"{p} is not a file")
        with open(p, "rb") as fh:
            head = fh.read(8)
        if head != b"\x89HDF\r\n\x1a\n":
            raise ValueError(f"{p} is not a cplscope raw archive (neither an HDF5 file nor a "
                             "journal)")
        fd, tmp = tempfile.mkstemp(prefix="cplscope-read-", suffix=".journal")
        os.close(fd)
        os.unlink(tmp)
        try:
            _read_hdf5(p, Path(tmp))
            return cls(p, Path(tmp), source="hdf5", temporary=True)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, scan: Any) -> None:
        assert self._fh is not None
        self.lost: list[str] = []
        self.in_flight = False
        self._points: list[tuple[PointSettings, PointResult, _Item]] = []
        self._darks: list[_Item] = []
        self._stop: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.stream: dict[str, int] | None = None
        start: dict[str, Any] | None = None
        for rec in scan.records:
            payload = self._payload(rec)
            if start is None:
                if rec.kind == fmt.START:
                    start = self._start(payload)
                continue
            try:
                self._record(rec, payload)
            except (fmt.PayloadError, KeyError, TypeError, ValueError) as exc:
                self.lost.append(f"{self._what(rec.kind, rec.tag)}: its record does not "
                                 f"decode ({exc})")
        if start is None:
            raise ValueError(f"{self.path}: the run's start record is missing or damaged; "
                             "nothing in the file can be interpreted")
        for d in scan.damage:
            if d.at_end:
                self.in_flight = True
            elif d.kind is not None:
                self.lost.append(f"{self._what(d.kind, d.tag)}: its record is damaged "
                                 f"(bytes {d.start}–{d.stop})")
            else:
                self.lost.append(f"bytes {d.start}–{d.stop} are damaged (a dark or a point "
                                 "whose record is unreadable)")
        last = scan.records[-1].kind if scan.records else None
        self.closed_cleanly = last == fmt.STOP and not self.in_flight
        stop: dict[str, Any] = self._stop or {}
        self.exit_status: str = str(stop.get("exit_status", "")) if self.closed_cleanly else ""

    def _payload(self, rec: Record) -> bytes:
        assert self._fh is not None
        self._fh.seek(rec.offset)
        return self._fh.read(rec.length)

    def _start(self, payload: bytes) -> dict[str, Any]:
        try:
            meta, _ = fmt.unpack(fmt.START, payload, 0)
            if meta.get("format") != FORMAT:
                raise ValueError(f"{self.path} is not a cplscope raw archive (format "
                                 f"{meta.get('format')!r})")
            self.version = int(meta["version"])
            if self.version not in _READABLE:
                raise ValueError(
                    f"{self.path}: archive version {self.version} is not supported (this "
                    f"cplscope reads versions {', '.join(map(str, _READABLE))}); update "
                    "cplscope")
            self.n_bins: int = int(meta["n_bins"])
            if not 2 <= self.n_bins <= 64:
                raise ValueError(f"n_bins {self.n_bins} is out of range")
            self.metadata: dict[str, Any] = dict(meta["metadata"])
            cal = meta.get("calibration")
            self.calibration: Calibration | None = (
                Calibration.from_dict(cal, where=f"{self.path} calibration") if cal else None)
            self.rules = FlagRules(**meta["rules"])
            blank = meta.get("blank")
            self.blank: Blank | None = Blank(**blank) if blank else None
            self.plan: dict[str, Any] | None = meta.get("plan")
            self.created = str(meta.get("created", ""))
            self.result_fields = [n for n in meta.get("result_fields") or _RESULT_FIELDS]
        except (fmt.PayloadError, KeyError, TypeError, ValueError) as exc:
            msg = str(exc)
            raise ValueError(msg if str(self.path) in msg else
                             f"{self.path}: the run's start record does not decode "
                             f"({msg})") from None
        return meta

    def _what(self, kind: int | None, tag: tuple[int, int] | None) -> str:
        if kind == fmt.POINT and tag is not None:
            wl = ""
            plan = (getattr(self, "plan", None) or {}).get("wavelengths_nm") or []
            if 0 <= tag[0] < len(plan):
                wl = f" at {float(plan[tag[0]]):g} nm"
            return f"the point{wl} (plan index {tag[0]}, accumulation {tag[1]})"
        if kind == fmt.DARK and tag is not None:
            return f"dark {tag[0]}"
        return "a record"

    def _record(self, rec: Record, payload: bytes) -> None:
        meta, start = fmt.unpack_meta(payload)
        if rec.kind == fmt.STOP:
            self._stop = meta
            self.stream = meta.get("stream")
            self.extra = dict(meta.get("extra") or {})
            return
        if rec.kind == fmt.LOST:
            what = str(meta.get("what", "a part"))
            where = (f" at {meta['wavelength_nm']:g} nm" if isinstance(
                meta.get("wavelength_nm"), (int, float)) else "")
            index = f" {meta['index']}" if "index" in meta else ""
            self.lost.append(f"{what}{index}{where}: {meta.get('error', 'unreadable')}")
            return
        if rec.kind not in (fmt.DARK, fmt.POINT):
            return                                   # a kind this version does not know
        offsets = fmt.array_offsets(rec.kind, meta, self.n_bins, start, rec.length)
        first = np.frombuffer(payload, "<f8", self.n_bins, offsets[0][2]).copy()
        second = np.frombuffer(payload, "<f8", self.n_bins, offsets[1][2]).copy()
        item = _Item(meta, first, second, rec.offset + offsets[2][2], int(meta["n_frames"]),
                     len(offsets) > 4)
        if rec.kind == fmt.DARK:
            for key in ("wavelength_nm", "frame_time_s", "source", "time"):
                meta[key]                            # noqa: B018 - KeyError when missing
            self._darks.append(item)
            return
        self._points.append((*self._point(meta, first, second), item))

    def _point(self, meta: dict[str, Any], dark: np.ndarray,
               dark_sd: np.ndarray) -> tuple[PointSettings, PointResult]:
        s = meta["settings"]
        if not isinstance(s, dict):
            raise TypeError("settings are not an object")
        known = {f.name for f in fields(PointSettings)}
        kw = {k: v for k, v in s.items() if k in known and k not in ("dark", "dark_sigma")}
        kw["dark"] = dark
        kw["dark_sigma"] = float(dark_sd[0]) if meta.get("dark_sigma_common", True) else dark_sd
        settings = PointSettings(**kw)
        r = meta["result"]
        if not isinstance(r, dict):
            raise TypeError("result is not an object")
        rk = {n: r[n] for n in _RESULT_FIELDS if n in r and n != "flags"}
        rk["flags"] = tuple(str(x) for x in r.get("flags", ()))
        return settings, PointResult(**rk)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._temporary:
            self._journal.unlink(missing_ok=True)

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._points)

    def __iter__(self) -> Iterator[ArchivedPoint]:
        for i in range(len(self)):
            yield self.point(i)

    def n_records(self, kind: str) -> int:
        """How many ``"point"`` or ``"dark"`` records the archive holds."""
        return len(self._points) if kind == "point" else len(self._darks)

    @property
    def damaged(self) -> bool:
        """Whether some part of the archive could not be read (:attr:`lost`)."""
        return bool(self.lost)

    def _frames(self, item: _Item) -> RawFrames:
        if self._fh is None:
            raise ValueError(f"archive {self.path} is closed")
        n, b = item.n_frames, self.n_bins
        self._fh.seek(item.frames_at)
        gate_bytes = n * fmt.GATE_DT.itemsize if item.gated else 0
        raw = self._fh.read(n * b * 4 + n * _FRAME_DT.itemsize + gate_bytes)
        counts = np.frombuffer(raw, "<u4", n * b).reshape(n, b).copy()
        info = np.frombuffer(raw, _FRAME_DT, n, n * b * 4)
        col: dict[str, Any] = {name: info[name].astype(np.int64) for name in _FRAME_FIELDS
                               if name not in ("owner", "bin_span")}
        if not item.gated:
            return RawFrames(counts, **col, bin_span=info["bin_span"].copy())
        gates = np.frombuffer(raw, fmt.GATE_DT, n, n * (b * 4 + _FRAME_DT.itemsize))
        n_gates = {int(x) for x in gates["n_gates"]}
        if len(n_gates) > 1:
            raise ValueError(f"the frames of one record have {sorted(n_gates)} gates")
        col.update({name: gates[name].astype(np.int64) for name in fmt.GATE_FIELDS
                    if name != "n_gates"})
        return GatedFrameSet(counts, **col, bin_span=info["bin_span"].copy(),
                             n_gates=n_gates.pop() if n_gates else 1)

    def point(self, i: int) -> ArchivedPoint:
        """Point ``i`` with its settings, stored result and frames."""
        settings, result, item = self._points[i]
        return ArchivedPoint(i, settings, result, self._frames(item))

    @property
    def darks(self) -> list[ArchivedDark]:
        """Every dark measurement of the run."""
        return [ArchivedDark(i, d.first, d.second, str(d.meta["source"]),
                             float(d.meta["wavelength_nm"]), float(d.meta["frame_time_s"]),
                             str(d.meta["time"]), self._frames(d))
                for i, d in enumerate(self._darks)]

    def results(self) -> Spectrum:
        """The results as stored during the run, as a :class:`Spectrum`."""
        meta = dict(self.metadata)
        if self.stream is not None:
            meta["stream"] = self.stream
        return Spectrum([p.result for p in self], meta)
