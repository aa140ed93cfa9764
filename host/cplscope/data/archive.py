"""HDF5 raw archive: every frame of a run with its settings and results, crash-safe, and
the reader (docs/data-files.md, "Raw archive"); :mod:`cplscope.plans.reprocess` recomputes
a spectrum from it.

The writer opens the file once, creates every dataset (resizable, chunked), writes the run
metadata, calibration and flag rules as attributes and then switches the file to HDF5
single-writer/multiple-reader (SWMR) mode. SWMR orders every flush so that the file on disk is
always a consistent HDF5 file: after each point (or dark) the writer appends the frames, then
the point's row, then flushes. A crash or ``kill -9`` loses at most the point being written;
:meth:`Archive.open` reads such a file (it opens in SWMR-read mode, which ignores the "still
open for writing" mark a killed writer leaves) and ignores frames that no point row claims.

Layout (``B`` = bins, fixed per archive):

- attributes of ``/``: ``format``, ``version``, ``n_bins``, ``metadata``, ``calibration``,
  ``rules`` (JSON), ``closed`` (False until :meth:`ArchiveWriter.close`), ``stream`` (JSON,
  written at close);
- ``frames/counts`` (N, B) uint32 and ``frames/info`` (N,) compound: ``seq``,
  ``timestamp_us``, ``flags``, ``periods``, ``pem_period_ps``, ``mono_position``, ``acq_id``,
  ``bin_span``, ``owner`` (point index ≥ 0, or −1 − dark index);
- ``points`` (P,) compound of ``settings`` (:class:`PointSettings`), ``result``
  (:class:`~cplscope.science.results.PointResult`), ``frame_start``/``frame_stop``; ``points_dark``
  (P, B) float64, the dark per bin per frame each point used;
- ``darks`` (D,) compound and ``darks_level``/``darks_sigma`` (D, B) float64.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from ..util.clock import utc_now_iso
from ..settings.calibration import Blank, Calibration
from ..science.frames import FrameSet, RawFrames
from ..science.pipeline import PointContext
from ..science.results import FlagRules, PointResult
from .spectrum import Spectrum

__all__ = [
    "Archive", "ArchiveWriter", "ArchivedDark", "ArchivedPoint", "FrameSet", "PointSettings",
    "RawFrames",
]

FORMAT = "cplscope-archive"
#: 2: each point stores its whole context (dark σ, nominal and commanded A0, tracking, drive,
#: target σ, why it stopped, its plan index) and the run its blank and plan; version 1
#: archives are still read.
VERSION = 2
_READABLE = (1, 2)
_FLAGS_LEN = 256
_TEXT_LEN = 64
_FRAME_DT = np.dtype([("seq", "<u4"), ("timestamp_us", "<u8"), ("flags", "<u2"),
                      ("periods", "<u4"), ("pem_period_ps", "<u4"), ("mono_position", "<i4"),
                      ("acq_id", "<u2"), ("bin_span", "<f8"), ("owner", "<i4")])


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
            matter_rate=float(ctx.matter_rate), plan_every=int(ctx.plan_every))

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
            matter_rate=float(self.matter_rate), plan_every=int(self.plan_every))


_SETTINGS_DT = np.dtype([
    ("wavelength_nm", "<f8"), ("a0_rad", "<f8"), ("phase_offset_rad", "<f8"),
    ("frame_time_s", "<f8"), ("dwell_s", "<f8"), ("handedness", "<i1"), ("bin_span", "<f8"),
    ("dead_time_s", "<f8"), ("dark_source", f"S{_TEXT_LEN}"), ("accumulation", "<i4"),
    ("noise", "S8"), ("blank_g", "<f8"), ("blank_sigma", "<f8"), ("a0_tracking", "?"),
    ("dark_sigma_common", "?"), ("target_sigma", "<f8"), ("a0_nominal_rad", "<f8"),
    ("a0_commanded_rad", "<f8"), ("pem_drive", "<f8"), ("stopped", "S16"),
    ("extra_flags", f"S{_TEXT_LEN}"), ("index", "<i4"), ("matter_rate", "<f8"),
    ("plan_every", "<i4")])
_TEXT_FIELDS = {"dark_source", "noise", "stopped", "extra_flags"}
_RESULT_DT = np.dtype([(f.name, f"S{_FLAGS_LEN}" if f.name == "flags" else
                        "<i8" if f.name in ("n_frames", "accumulations") else "<f8")
                       for f in fields(PointResult)])
_POINT_DT = np.dtype([("settings", _SETTINGS_DT), ("result", _RESULT_DT),
                      ("frame_start", "<i8"), ("frame_stop", "<i8")])
_FRAME_FIELDS: tuple[str, ...] = tuple(_FRAME_DT.names or ())
_SETTINGS_FIELDS: tuple[str, ...] = tuple(_SETTINGS_DT.names or ())
_RESULT_FIELDS: tuple[str, ...] = tuple(_RESULT_DT.names or ())
_DARK_DT = np.dtype([("wavelength_nm", "<f8"), ("frame_time_s", "<f8"), ("n_frames", "<i8"),
                     ("source", f"S{_TEXT_LEN}"), ("time", "S32"), ("frame_start", "<i8"),
                     ("frame_stop", "<i8")])


def _text(value: str, size: int, what: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > size:
        raise ValueError(f"{what} {value!r} is longer than the archive's {size} bytes")
    return raw


# --- writer -----------------------------------------------------------------------------

class ArchiveWriter:
    """Append-only, crash-safe writer of one run's raw archive.

    Use as a context manager, or call :meth:`close` at the end with the stream health.
    """

    def __init__(self, path: str | os.PathLike[str], *, n_bins: int,
                 metadata: Mapping[str, Any], calibration: Calibration | None = None,
                 rules: FlagRules = FlagRules(), overwrite: bool = False,
                 blank: Blank | None = None, plan: Mapping[str, Any] | None = None) -> None:
        """Create the archive at ``path``.

        Args:
            n_bins: B, phase bins of every frame in this run (2 … 64).
            metadata: run metadata (:func:`cplscope.data.spectrum.run_metadata`), JSON-ready.
            calibration: the calibration in force (stored in full, blank included).
            rules: the flag thresholds the results were computed with.
            overwrite: replace an existing file (otherwise FileExistsError).
            blank: the blank the run subtracts (None: none).
            plan: the run's plan (wavelengths, accumulations), JSON-ready.
        """
        if not 2 <= int(n_bins) <= 64:
            raise ValueError(f"n_bins must be 2 … 64, got {n_bins}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; choose a new file name for this run or "
                                  "allow overwriting it (--overwrite, overwrite=True)")
        self.n_bins = int(n_bins)
        self._stream: dict[str, int] | None = None
        f = h5py.File(self.path, "w", libver="latest")
        try:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["n_bins"] = self.n_bins
            f.attrs["created"] = utc_now_iso()
            f.attrs["metadata"] = json.dumps(dict(metadata))
            f.attrs["calibration"] = json.dumps(calibration.to_dict() if calibration else None)
            f.attrs["rules"] = json.dumps(asdict(rules))
            f.attrs["closed"] = False
            f.attrs["stream"] = "null"
            f.attrs["exit_status"] = ""
            f.attrs["blank"] = json.dumps(blank.to_dict() if blank is not None else None)
            f.attrs["plan"] = json.dumps(dict(plan) if plan is not None else None)
            b = self.n_bins
            chunk = max(16, 16384 // (4 * b))
            f.create_dataset("frames/counts", (0, b), maxshape=(None, b), dtype="<u4",
                             chunks=(chunk, b))
            f.create_dataset("frames/info", (0,), maxshape=(None,), dtype=_FRAME_DT, chunks=(512,))
            f.create_dataset("points", (0,), maxshape=(None,), dtype=_POINT_DT, chunks=(16,))
            for name in ("points_dark", "points_dark_sigma"):
                f.create_dataset(name, (0, b), maxshape=(None, b), dtype="<f8",
                                 chunks=(64, b))
            f.create_dataset("darks", (0,), maxshape=(None,), dtype=_DARK_DT, chunks=(16,))
            for name in ("darks_level", "darks_sigma"):
                f.create_dataset(name, (0, b), maxshape=(None, b), dtype="<f8", chunks=(16, b))
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self._file: h5py.File | None = f

    @classmethod
    def reopen(cls, path: str | os.PathLike[str]) -> ArchiveWriter:
        """Open an existing archive to append to it (resuming its scan)."""
        p = Path(path)
        try:
            f = h5py.File(p, "r+", libver="latest")
        except OSError as exc:
            raise ValueError(f"{p} cannot be opened for appending: {exc}") from None
        try:
            if f.attrs.get("format") != FORMAT or int(f.attrs["version"]) != VERSION:
                raise ValueError(f"{p} is not a version-{VERSION} cplscope archive: it cannot "
                                 "be appended to")
            f.attrs["closed"] = False
            f.flush()
            f.swmr_mode = True
        except BaseException:
            f.close()
            raise
        self = cls.__new__(cls)
        self.path = p
        self.n_bins = int(f.attrs["n_bins"])
        self._stream = None
        self._file = f
        return self

    def _f(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"archive {self.path} is closed")
        return self._file

    def _append_frames(self, frames: RawFrames, owner: int) -> tuple[int, int]:
        if frames.n_bins != self.n_bins:
            raise ValueError(f"frames have B={frames.n_bins} bins but this archive holds "
                             f"B={self.n_bins}; start a new archive for a new bin count")
        f = self._f()
        counts, info = f["frames/counts"], f["frames/info"]
        start, n = counts.shape[0], frames.n_frames
        rows = np.zeros(n, dtype=_FRAME_DT)
        for name in _FRAME_FIELDS:
            rows[name] = owner if name == "owner" else getattr(frames, name)
        counts.resize((start + n, self.n_bins))
        counts[start:] = frames.counts
        info.resize((start + n,))
        info[start:] = rows
        return start, start + n

    @staticmethod
    def _append_row(ds: h5py.Dataset, row: np.ndarray) -> int:
        i = ds.shape[0]
        ds.resize((i + 1,) + ds.shape[1:])
        ds[i] = row
        return i

    def add_dark(self, frames: Any, *, level: npt.ArrayLike | None = None,
                 sigma: npt.ArrayLike | None = None, source: str = "shutter-closed",
                 wavelength_nm: float = math.nan, frame_time_s: float = math.nan,
                 dark: Any = None) -> int:
        """Store a dark measurement with its raw frames; returns its index (for
        ``PointSettings.dark_source = f"dark:{index}"``).

        ``level`` (per bin per frame, counts) and its ``sigma`` are taken from ``dark`` (a
        :class:`~cplscope.plans.point.Dark`) at ``frame_time_s`` when given, else they default
        to the mean of the usable frames and its standard error sqrt(mean/n) (Poisson).
        """
        raw = FrameSet.of(frames)
        f = self._f()
        if dark is not None and level is None:
            level = dark.per_frame(frame_time_s)
            sigma = dark.sigma_per_frame(frame_time_s)
        if level is None:
            use = raw.counts[raw.usable].astype(np.float64)
            if use.shape[0] == 0:
                raise ValueError("no usable dark frames to average; pass level explicitly")
            level = use.mean(axis=0)
            sigma = np.sqrt(level / use.shape[0]) if sigma is None else sigma
        lvl = np.broadcast_to(np.asarray(level, dtype=np.float64), (self.n_bins,))
        sig = np.broadcast_to(np.asarray(np.nan if sigma is None else sigma, dtype=np.float64),
                              (self.n_bins,))
        index = f["darks"].shape[0]
        start, stop = self._append_frames(raw, -1 - index)
        row = np.zeros((), dtype=_DARK_DT)
        row["wavelength_nm"], row["frame_time_s"], row["n_frames"] = wavelength_nm, frame_time_s, raw.n_frames
        row["source"] = _text(source, _TEXT_LEN, "dark source")
        row["time"] = utc_now_iso().encode()
        row["frame_start"], row["frame_stop"] = start, stop
        for name, value in (("darks_level", lvl), ("darks_sigma", sig)):
            ds = f[name]
            ds.resize((index + 1, self.n_bins))
            ds[index] = value
        self._append_row(f["darks"], row)
        f.flush()
        return index

    def add_point(self, frames: Any, settings: PointSettings, result: PointResult) -> int:
        """Append one point: all its frames (usable or not), its settings and its result,
        then flush to disk. Returns the point's index."""
        raw = FrameSet.of(frames)
        f = self._f()
        dark = np.broadcast_to(np.asarray(settings.dark, dtype=np.float64), (self.n_bins,))
        dark_sd = np.asarray(settings.dark_sigma, dtype=np.float64)
        row = np.zeros((), dtype=_POINT_DT)
        s = row["settings"]
        for name in _SETTINGS_FIELDS:
            if name == "dark_sigma_common":
                s[name] = dark_sd.ndim == 0
                continue
            value = getattr(settings, name)
            if name in _TEXT_FIELDS:
                value = _text(value, _SETTINGS_DT[name].itemsize, name)
            s[name] = value
        r = row["result"]
        for name in _RESULT_FIELDS:
            value = getattr(result, name)
            r[name] = _text(";".join(value), _FLAGS_LEN, "flags") if name == "flags" else value
        index = f["points"].shape[0]
        row["frame_start"], row["frame_stop"] = self._append_frames(raw, index)
        for name, value in (("points_dark", dark),
                            ("points_dark_sigma", np.broadcast_to(dark_sd, (self.n_bins,)))):
            ds = f[name]
            ds.resize((index + 1, self.n_bins))
            ds[index] = value
        self._append_row(f["points"], row)      # last: the row commits the point
        f.flush()
        return index

    def close(self, stream: Mapping[str, int] | None = None, *,
              exit_status: str = "success", extra: Mapping[str, Any] | None = None) -> None:
        """Close the archive, recording the stream-health counters (``frames``,
        ``rejected``, ``missing``, ``reconnects``, …), the run's exit status
        (``"success"``, ``"abort"``, ``"fail"``) and the metadata the run added as it went
        (``extra``: survey, plan), and marking it closed."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        with h5py.File(self.path, "r+", libver="latest") as f:
            f.attrs["stream"] = json.dumps(dict(stream) if stream is not None else None)
            f.attrs["exit_status"] = exit_status
            f.attrs["extra"] = json.dumps(dict(extra) if extra else {})
            f.attrs["closed"] = True

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(self._stream)

    def set_stream(self, stream: Mapping[str, int]) -> None:
        """Stream-health counters to record when the context manager closes the archive."""
        self._stream = {k: int(v) for k, v in stream.items()}


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


class Archive:
    """Read access to a raw archive, also one whose writer was killed or is still running."""

    def __init__(self, file: h5py.File, path: Path) -> None:
        self._f = file
        self.path = path
        attrs = file.attrs
        if attrs.get("format") != FORMAT:
            file.close()
            raise ValueError(f"{path} is not a cplscope raw archive (format attribute "
                             f"{attrs.get('format')!r})")
        self.version = int(attrs["version"])
        if self.version not in _READABLE:
            file.close()
            raise ValueError(f"{path}: archive version {attrs['version']} is not supported "
                             f"(this cplscope reads versions {', '.join(map(str, _READABLE))}); "
                             "update cplscope")
        self.n_bins: int = int(attrs["n_bins"])
        self.metadata: dict[str, Any] = json.loads(attrs["metadata"])
        cal = json.loads(attrs["calibration"])
        self.calibration: Calibration | None = (
            Calibration.from_dict(cal, where=f"{path} calibration") if cal else None)
        self.rules = FlagRules(**json.loads(attrs["rules"]))
        self.closed_cleanly: bool = bool(attrs["closed"])
        self.stream: dict[str, int] | None = json.loads(attrs["stream"])
        self.exit_status: str = str(attrs.get("exit_status", ""))
        blank = json.loads(attrs.get("blank", "null"))
        self.blank: Blank | None = Blank(**blank) if blank else None
        self.plan: dict[str, Any] | None = json.loads(attrs.get("plan", "null"))
        self.extra: dict[str, Any] = json.loads(attrs.get("extra", "{}"))
        n_frames = file["frames/counts"].shape[0]
        points = file["points"][:]
        # a killed writer may leave a row whose frames did not reach the disk: never trust one
        complete = points["frame_stop"] <= min(n_frames, file["frames/info"].shape[0])
        self._points = points[: int(np.argmin(complete)) if not complete.all() else len(points)]
        self._n_dark = min(file["darks"].shape[0], file["darks_level"].shape[0],
                           file["darks_sigma"].shape[0])

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Archive:
        """Open an archive for reading (SWMR-read mode, so killed or live runs open too)."""
        p = Path(path)
        try:
            f = h5py.File(p, "r", libver="latest", swmr=True)
        except OSError as exc:
            raise ValueError(f"{p} cannot be opened as an HDF5 archive: {exc}") from None
        return cls(f, p)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._points)

    def __iter__(self) -> Iterator[ArchivedPoint]:
        for i in range(len(self)):
            yield self.point(i)

    def _frames(self, start: int, stop: int) -> RawFrames:
        info = self._f["frames/info"][start:stop]
        cols = {n: info[n].astype(np.int64) for n in _FRAME_FIELDS if n not in ("bin_span", "owner")}
        return RawFrames(self._f["frames/counts"][start:stop], bin_span=info["bin_span"], **cols)

    def point(self, i: int) -> ArchivedPoint:
        """Point ``i`` with its settings, stored result and frames."""
        row = self._points[i]
        s = row["settings"]
        names = s.dtype.names or ()
        kw: dict[str, Any] = {}
        for name in _SETTINGS_FIELDS:
            if name not in names or name == "dark_sigma_common":
                continue
            v = s[name]
            kw[name] = v.decode() if isinstance(v, bytes) else v.item()
        kw["dark"] = self._f["points_dark"][i]
        if "points_dark_sigma" in self._f:
            sd = self._f["points_dark_sigma"][i]
            kw["dark_sigma"] = float(sd[0]) if bool(s["dark_sigma_common"]) else sd
        settings = PointSettings(**kw)
        r = row["result"]
        rnames = r.dtype.names or ()
        rk: dict[str, Any] = {n: r[n].item() for n in _RESULT_FIELDS if n != "flags" and n in rnames}
        rk["flags"] = tuple(x for x in r["flags"].decode().split(";") if x)
        return ArchivedPoint(i, settings, PointResult(**rk),
                             self._frames(int(row["frame_start"]), int(row["frame_stop"])))

    @property
    def darks(self) -> list[ArchivedDark]:
        """Every dark measurement of the run."""
        rows = self._f["darks"][: self._n_dark]
        return [ArchivedDark(i, self._f["darks_level"][i], self._f["darks_sigma"][i],
                             r["source"].decode(), float(r["wavelength_nm"]),
                             float(r["frame_time_s"]), r["time"].decode(),
                             self._frames(int(r["frame_start"]), int(r["frame_stop"])))
                for i, r in enumerate(rows)]

    def results(self) -> Spectrum:
        """The results as stored during the run, as a :class:`Spectrum`."""
        meta = dict(self.metadata)
        if self.stream is not None:
            meta["stream"] = self.stream
        return Spectrum([p.result for p in self], meta)
