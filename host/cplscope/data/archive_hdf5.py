"""Every HDF5 read and write of the raw archive, run in a helper process (:func:`run_helper`,
forked from a small server that has imported h5py once): the HDF5 library is C, and a
damaged or crafted file can make it hang or crash where Ctrl-C cannot reach; in a helper
process a time limit can, and the scan or reprocessing that asked survives it.

    python -m cplscope.data.archive_hdf5 build RUN.h5.journal OUT.h5
    python -m cplscope.data.archive_hdf5 read RUN.h5 OUT.journal

``build`` writes the HDF5 archive from a run's journal; ``read`` turns an HDF5 archive (of
any version this cplscope reads, also one whose SWMR writer was killed) back into journal
records, one per dark and point, with a ``lost`` record for each part that cannot be read.
By hand (for a look at what the helper does), a failure ends with status 1 and one JSON line
on stderr.

Layout of the HDF5 file (``B`` = bins; docs/data-files.md, "Raw archive"): attributes of
``/`` (``format``, ``version``, ``n_bins``, ``created``, ``metadata``, ``calibration``,
``rules``, ``blank``, ``plan``, ``closed``, ``stream``, ``exit_status``, ``extra``, ``lost``),
``frames/counts`` (N, B) and ``frames/info`` (N,) (from version 4, for a gated run, also
``frames/gate``, ``n_gates``, ``pulses``, ``pulse_period``, ``gate_delay``, ``gate_width``,
each (N,)), ``points`` (P,) with ``points_dark`` and
``points_dark_sigma`` (P, B), ``darks`` (D,) with ``darks_level`` and ``darks_sigma`` (D, B);
from version 3 also the NeXus entry ``/entry`` and the dimension scales ``point``, ``dark``,
``bin`` and ``frame`` (:mod:`cplscope.data.archive_nexus`), which the reader does not need.
"""
from __future__ import annotations

import atexit
import errno as errno_codes
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..util.files import DiskFullError, is_disk_full
from . import archive_format as fmt
from .archive_nexus import name_dimensions, write_entry
from .journal import JournalWriter, iter_payloads, scan_journal

__all__ = ["HelperError", "run_helper"]


class HelperError(ValueError):
    """The helper process failed, timed out or crashed: ``message`` says why."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


# --- parent side ----------------------------------------------------------------------------

def run_helper(command: str, source: str | os.PathLike[str], target: str | os.PathLike[str],
               *, timeout_s: float) -> None:
    """Run ``command`` (``build`` or ``read``) from ``source`` to ``target`` in a helper
    process, killed after ``timeout_s`` (or when the caller is interrupted).

    Raises:
        DiskFullError: no room to write ``target``.
        HelperError: it failed (the message says why), crashed, or took longer than
            ``timeout_s`` (then it is killed).
    """
    # absolute: the server keeps the folder it started in
    done_target = Path(os.path.abspath(target))
    request: dict[str, Any] = {"command": command, "source": os.path.abspath(source),
                               "target": str(done_target), "timeout_s": float(timeout_s)}
    try:
        if hasattr(os, "fork"):
            with _LOCK:
                report = _server().call(request, timeout_s)
        else:
            report = _call_alone(request, timeout_s)
    except BaseException:
        done_target.unlink(missing_ok=True)
        raise
    if report.get("ok"):
        return
    done_target.unlink(missing_ok=True)    # a crashed helper cannot clean up
    code = report.get("errno")
    if code in _NO_ROOM or (command == "build" and _no_room_for(source, target)):
        # the HDF5 library may crash rather than report a full disk: the free space tells
        raise DiskFullError(target)
    raise HelperError(str(report.get("error")), code if isinstance(code, int) else None)


def _no_room_for(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> bool:
    from ..util.files import free_bytes

    free = free_bytes(Path(target).parent)
    try:
        need = Path(source).stat().st_size
    except OSError:
        return False
    return free is not None and free < need + (1 << 16)


_NO_ROOM = (errno_codes.ENOSPC, errno_codes.EDQUOT, errno_codes.EFBIG)
_LOCK = threading.Lock()
_SERVER: _Server | None = None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])   # the folder that holds cplscope
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]]
                                                 if env.get("PYTHONPATH") else [])])
    return env


def _server() -> _Server:
    global _SERVER
    if _SERVER is not None and _SERVER.owner != os.getpid():
        _SERVER = None          # a forked process: the server's pipes are its parent's
    if _SERVER is None or _SERVER.proc.poll() is not None:
        if _SERVER is None:
            atexit.register(_shutdown)
        _SERVER = _Server()
    return _SERVER


def _shutdown() -> None:
    """At exit: end the server (EOF on its input ends it; it is idle between requests)."""
    server = _SERVER
    if server is None or server.owner != os.getpid():
        return
    try:
        if server.proc.stdin is not None:
            server.proc.stdin.close()
        server.proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        server.proc.kill()
        server.proc.wait()
    if server.proc.stdout is not None:
        server.proc.stdout.close()


class _Server:
    """The helper server (``python -m cplscope.data.archive_hdf5 serve``): it imports h5py
    once and forks one child per request, so a helper starts in milliseconds. One request
    at a time; any trouble (a time-out, Ctrl-C, a garbled answer) kills the child and the
    server, and the next request starts a new one."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cplscope.data.archive_hdf5", "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_env())
        self.owner = os.getpid()
        self._buffer = b""

    def call(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s + 30.0     # + the server's start
        child = None
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            started = self._line(deadline)
            child = int(started["pid"])
            deadline = time.monotonic() + timeout_s
            report = self._line(deadline)
            child = None
            return report
        except _NoAnswer:
            raise HelperError(f"no answer within {timeout_s:.0f} s (the HDF5 library did not "
                              "finish: the file is damaged)") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.stop(child)
            raise HelperError(f"the helper process failed ({exc})") from None
        except BaseException:
            self.stop(child)
            raise
        finally:
            if child is not None:
                self.stop(child)

    def _line(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise _NoAnswer
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ValueError("the helper server ended")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        report = json.loads(line)
        if not isinstance(report, dict):
            raise ValueError("the helper server sent something else")
        return report

    def stop(self, child: int | None) -> None:
        """Kill ``child`` (a helper) and the server."""
        global _SERVER
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        if _SERVER is self:
            _SERVER = None


class _NoAnswer(Exception):
    pass


def _call_alone(request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """A helper of its own (where there is no fork)."""
    cmd = [sys.executable, "-m", "cplscope.data.archive_hdf5", request["command"],
           request["source"], request["target"]]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=_env(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise HelperError(f"no answer within {timeout_s:.0f} s (the HDF5 library did not "
                          "finish: the file is damaged)") from None
    if done.returncode == 0:
        return {"ok": True}
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = None
    if isinstance(report, dict):
        return report
    return {"error": f"the HDF5 library crashed (status {done.returncode})"}


# --- build: journal -> HDF5 -------------------------------------------------------------------

def build(journal: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write the HDF5 archive of ``journal`` to ``out`` (which must not exist).

    Two passes over the journal: the first gathers the run's description and every dark's
    and point's row, the second copies the frames. The file is written in that order, the
    attributes, dataset headers and tables first and the frames after them, so that a copy
    cut short loses its last frames, not its description.
    """
    scan = scan_journal(journal)
    plan = _Plan()
    for rec, payload in iter_payloads(journal, scan.records):
        plan.see(rec.kind, payload)
    if plan.start is None:
        raise ValueError(f"{journal} holds no start record")
    with _create(out) as f:
        writer = _Builder(f, plan)
        owner = {fmt.DARK: 0, fmt.POINT: 0}
        for rec, payload in iter_payloads(journal, scan.records):
            if rec.kind in owner:
                _, arrays = fmt.unpack(rec.kind, payload, writer.n_bins)
                index = owner[rec.kind]
                owner[rec.kind] += 1
                writer.frames(arrays[2], arrays[3], index if rec.kind == fmt.POINT
                              else -1 - index, arrays[4] if len(arrays) > 4 else None)
        f.flush()
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(out: str | os.PathLike[str]) -> Any:
    """A new HDF5 file in the 1.10 format, where every piece of metadata carries a checksum
    (fletcher32 on every dataset checksums the data), so damage is detected and never read
    as data; the root group keeps its attributes in its own header (compact storage, up to
    32), which the library writes first, not in a heap it writes last."""
    import h5py

    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_attr_phase_change(32, 24)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fid = h5py.h5f.create(os.fsencode(out), h5py.h5f.ACC_EXCL, fcpl=fcpl, fapl=fapl)
    return h5py.File(fid)


class _Plan:
    """The first pass: the start, the last stop (when nothing follows it), the notes of
    what was lost, and the rows of every dark and point with their frame ranges."""

    def __init__(self) -> None:
        self.start: dict[str, Any] | None = None
        self.stop: dict[str, Any] | None = None
        self.lost: list[dict[str, Any]] = []
        self.darks: list[tuple[dict[str, Any], np.ndarray, np.ndarray, int, int]] = []
        self.points: list[tuple[dict[str, Any], np.ndarray, np.ndarray, int, int]] = []
        self.frames = 0
        self.gated = False      # some record holds gated frames: the file gets frames/gate …

    def see(self, kind: int, payload: bytes) -> None:
        if kind == fmt.START:
            if self.start is None:
                self.start = fmt.unpack(kind, payload, 0)[0]
            return
        if self.start is None:
            return
        if kind == fmt.STOP:
            self.stop = fmt.unpack_meta(payload)[0]
            return
        self.stop = None           # records after a stop: the run went on (a resume)
        if kind == fmt.LOST:
            self.lost.append(fmt.unpack_meta(payload)[0])
        elif kind in (fmt.DARK, fmt.POINT):
            meta, arrays = fmt.unpack(kind, payload, int(self.start["n_bins"]))
            n = int(meta["n_frames"])
            row = (meta, arrays[0].copy(), arrays[1].copy(), self.frames, self.frames + n)
            (self.darks if kind == fmt.DARK else self.points).append(row)
            self.frames += n
            self.gated = self.gated or len(arrays) > 4


#: units of the raw tables' numeric datasets (counts per bin per frame; gated frames' gate
#: and timing)
_RAW_UNITS = {"points_dark": "counts", "points_dark_sigma": "counts", "darks_level": "counts",
              "darks_sigma": "counts", "frames/counts": "counts",
              **{f"frames/{name}": unit for name, unit in fmt.GATE_DATASETS.values()}}
#: what a gated frame's datasets hold (their ``long_name``)
_GATE_NAMES = {"gate": "the gate (time bin) the frame counted, 0 … n_gates − 1; −1: a frame "
                       "counted without gating, or whose archive did not keep its gate",
               "n_gates": "gates (time bins) of the frame's configuration",
               "pulses": "excitation pulses whose gate the frame counted",
               "pulse_period_ns": "the excitation's pulse period",
               "gate_delay_ns": "the frame's gate opening after each pulse",
               "gate_width_ns": "the frame's gate width"}
#: the gate fields of a frame counted without gating (or whose gate was not kept)
_NO_GATE = np.array([(-1, 0, 0, 0, 0, 0)], dtype=fmt.GATE_DT)

#: the attributes whose text the ``checksums`` attribute covers
CHECKED_ATTRS = ("metadata", "calibration", "rules", "blank", "plan", "stream", "extra",
                 "lost", "exit_status")


class _Builder:
    """Creates the file's attributes, datasets and tables (from the first pass), then
    takes the frames record by record."""

    def __init__(self, f: Any, plan: _Plan) -> None:
        start = plan.start
        assert start is not None
        self.f = f
        self.n_bins = b = int(start["n_bins"])
        stop = plan.stop
        texts = {key: json.dumps(start.get(key)) for key in ("metadata", "calibration",
                                                              "rules", "blank", "plan")}
        texts.update(stream=json.dumps(stop.get("stream") if stop else None),
                     extra=json.dumps((stop.get("extra") if stop else None) or {}),
                     lost=json.dumps(plan.lost),
                     exit_status=str(stop.get("exit_status", "")) if stop else "")
        a = f.attrs
        a["format"] = fmt.FORMAT
        a["version"] = fmt.VERSION      # a version-2 run (resumed) has version 3's records
        a["n_bins"] = b
        a["created"] = str(start.get("created", ""))
        a["closed"] = stop is not None
        for key, text in texts.items():
            a[key] = text
        a["checksums"] = json.dumps({k: _text_crc(t) for k, t in texts.items()})

        def dataset(name: str, data: np.ndarray | None, rows: int, dtype: Any,
                    chunk: int, one_d: bool = False) -> Any:
            shape = (rows,) if one_d or name in ("frames/info", "points", "darks") else (rows, b)
            chunks = (max(1, min(rows, chunk)),) + shape[1:]
            ds = f.create_dataset(name, shape, maxshape=(None,) + shape[1:], dtype=dtype,
                                  chunks=chunks, fletcher32=True)
            if name in _RAW_UNITS:
                ds.attrs["units"] = _RAW_UNITS[name]
            if data is not None and rows:
                ds[...] = data
            return ds

        points = np.zeros(len(plan.points), dtype=fmt.point_dtype(start["result_fields"]))
        for i, (meta, _, _, first, last) in enumerate(plan.points):
            _point_row(points[i], meta, start["result_fields"], first, last)
        darks = np.zeros(len(plan.darks), dtype=fmt.DARK_DT)
        for i, (meta, _, _, first, last) in enumerate(plan.darks):
            _dark_row(darks[i], meta, first, last)

        def per_bin(rows: list, k: int) -> np.ndarray:
            return np.array([r[k] for r in rows], dtype="<f8").reshape(len(rows), b)

        dataset("points", points, len(points), points.dtype, 16)
        dataset("points_dark", per_bin(plan.points, 1), len(points), "<f8", 64)
        dataset("points_dark_sigma", per_bin(plan.points, 2), len(points), "<f8", 64)
        dataset("darks", darks, len(darks), fmt.DARK_DT, 16)
        dataset("darks_level", per_bin(plan.darks, 1), len(darks), "<f8", 16)
        dataset("darks_sigma", per_bin(plan.darks, 2), len(darks), "<f8", 16)
        dataset("frames/counts", None, plan.frames, "<u4", max(16, 16384 // (4 * b)))
        dataset("frames/info", None, plan.frames, fmt.FRAME_DT, 512)
        self.gated = plan.gated
        if plan.gated:
            for field, (name, _) in fmt.GATE_DATASETS.items():
                ds = dataset(f"frames/{name}", None, plan.frames, fmt.GATE_DT[field], 4096,
                             one_d=True)
                ds.attrs["long_name"] = _GATE_NAMES[field]
        f["frames"].attrs["NX_class"] = "NXcollection"
        name_dimensions(f, b)
        write_entry(f, start, stop, points)
        # now: the library places the metadata it changed (the tables' headers grew with
        # their dimensions) when it flushes, and after this flush comes only raw frames
        f.flush()
        self.next_frame = 0

    def frames(self, counts: np.ndarray, info: np.ndarray, owner: int,
               gates: np.ndarray | None = None) -> None:
        start, n = self.next_frame, counts.shape[0]
        if n:
            rows = info.copy()
            rows["owner"] = owner
            self.f["frames/counts"][start:start + n] = counts
            self.f["frames/info"][start:start + n] = rows
            if self.gated:
                g = gates if gates is not None else np.repeat(_NO_GATE, n)
                for field, (name, _) in fmt.GATE_DATASETS.items():
                    self.f[f"frames/{name}"][start:start + n] = g[field]
        self.next_frame = start + n


#: settings a journal written before they existed lacks
_SETTINGS_DEFAULTS = {"live_fraction": 1.0}


def _point_row(row: Any, meta: dict[str, Any], result_fields: list[str], first: int,
               last: int) -> None:
    s = row["settings"]
    for name in fmt.SETTINGS_FIELDS:
        value = meta["dark_sigma_common"] if name == "dark_sigma_common" else \
            meta["settings"].get(name, _SETTINGS_DEFAULTS.get(name))
        s[name] = str(value).encode() if name in fmt.TEXT_FIELDS else value
    r = row["result"]
    for name in result_fields:
        value = meta["result"][name]
        r[name] = ";".join(value).encode() if name == "flags" else value
    row["frame_start"], row["frame_stop"] = first, last


def _dark_row(row: Any, meta: dict[str, Any], first: int, last: int) -> None:
    for key in ("wavelength_nm", "frame_time_s", "n_frames"):
        row[key] = meta[key]
    row["source"] = str(meta["source"]).encode()
    row["time"] = str(meta["time"]).encode()
    row["frame_start"], row["frame_stop"] = first, last


def _text_crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) & 0xFFFFFFFF


# --- read: HDF5 -> journal --------------------------------------------------------------------

def read(h5: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Turn the HDF5 archive ``h5`` into journal records in ``out`` (a new file)."""
    import h5py

    notes: list[str] = []
    padded: Path | None = None
    try:
        try:
            f = h5py.File(h5, "r")
        except OSError as exc:
            if "truncated file" in str(exc):
                padded, note = _padded_copy(Path(h5), Path(out))
                notes.append(note)
                f = h5py.File(padded, "r")
            elif "already open" in str(exc):
                # an archive of cplscope 0.1 whose SWMR writer was killed carries the "open
                # for write" mark, which SWMR-read mode ignores. Only then: SWMR-read mode
                # retries every metadata read that fails its checksum, for a long time
                f = h5py.File(h5, "r", libver="latest", swmr=True)
            else:
                raise
        with f:
            _Reader(f, JournalWriter.create(out, durable=False), notes).run()
    finally:
        if padded is not None:
            padded.unlink(missing_ok=True)


def _padded_copy(h5: Path, near: Path) -> tuple[Path, str]:
    """A copy of the truncated file ``h5``, extended with zeros to the length its superblock
    records, so that the library opens it; whatever lay in the missing part fails its
    checksum when read (the file itself is not touched). Only for the superblock versions 2
    and 3 (HDF5 1.8 and later with their file format), which record it at a fixed place."""
    with open(h5, "rb") as fh:
        head = fh.read(48)
    size = h5.stat().st_size
    if len(head) < 48 or head[:8] != b"\x89HDF\r\n\x1a\n" or head[8] not in (2, 3):
        raise ValueError("the file is cut short and its superblock does not say how long it "
                         "was")
    width = head[9]                              # size of offsets: 8 on every platform today
    if width != 8:
        raise ValueError("the file is cut short (and has unusual offsets)")
    eof = int.from_bytes(head[12 + 2 * width: 12 + 3 * width], "little")
    if not size < eof <= 64 * size + (1 << 20):
        raise ValueError(f"the file is cut short and its recorded length {eof} is not "
                         "believable")
    copy = near.with_name(near.name + ".padded.h5")
    copy.unlink(missing_ok=True)
    with open(h5, "rb") as src, open(copy, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
        dst.truncate(eof)
    return copy, (f"the file is cut short: it has {size} of its {eof} bytes, and whatever "
                  "lay in the missing part is lost")


class _Reader:
    def __init__(self, f: Any, out: JournalWriter, notes: list[str]) -> None:
        self.f, self.out, self.notes = f, out, notes

    def emit(self, kind: int, meta: dict[str, Any], arrays: tuple = (),
             tag: tuple[int, int] = (0, 0)) -> None:
        self.out.append(kind, fmt.pack(meta, arrays), tag)

    def lost(self, what: str, error: BaseException | str, **where: Any) -> None:
        text = _plain(error) if isinstance(error, BaseException) else error
        self.emit(fmt.LOST, {"what": what, "error": text[:500], **where})

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.out.close()

    def _run(self) -> None:
        f = self.f
        attrs = f.attrs
        if _text(attrs.get("format")) != fmt.FORMAT:
            raise ValueError(f"not a cplscope raw archive (format attribute "
                             f"{attrs.get('format')!r})")
        version = int(attrs["version"])
        if version not in fmt.READABLE:
            raise ValueError(f"archive version {version} is not supported (this cplscope "
                             f"reads versions {', '.join(map(str, fmt.READABLE))}); update "
                             "cplscope")
        self.n_bins = int(attrs["n_bins"])
        if not 2 <= self.n_bins <= 64:
            raise ValueError(f"n_bins {self.n_bins} is out of range")
        self._check_texts(attrs)
        start: dict[str, Any] = {"format": fmt.FORMAT, "version": version,
                                 "n_bins": self.n_bins, "created": _text(attrs.get("created"))}
        for key in ("metadata", "calibration", "rules", "blank", "plan"):
            start[key] = json.loads(attrs.get(key, "null"))
        try:
            points = f["points"][:]
            start["result_fields"] = list(points.dtype["result"].names or ())
        except Exception as exc:
            points = None
            start["result_fields"] = []
            error = exc
        self.emit(fmt.START, start)
        for note in self.notes:
            self.lost("file", note)
        for item in json.loads(attrs.get("lost", "[]")):
            if isinstance(item, dict):
                self.emit(fmt.LOST, item)
        n_frames = self._n_frames()
        items: list[tuple[int, str, int]] = []
        if points is None:
            self.lost("points", f"the points table cannot be read ({error}): every point is "
                      "lost")
        else:
            for i, row in enumerate(points):
                items.append((int(row["frame_start"]), "point", i))
        darks = self._darks()
        for i, row in enumerate(darks):
            items.append((int(row["frame_start"]), "dark", i))
        for _, what, i in sorted(items):
            try:
                if what == "point":
                    assert points is not None
                    self.point(i, points[i], n_frames)
                else:
                    self.dark(i, darks[i], n_frames)
            except _InFlight:
                continue
            except Exception as exc:
                where: dict[str, Any] = {"index": i}
                if what == "point" and points is not None:
                    s = points[i]["settings"]
                    where.update(wavelength_nm=_num(s["wavelength_nm"]),
                                 accumulation=_int(s["accumulation"]),
                                 plan_index=_int(s["index"]) if "index" in (
                                     s.dtype.names or ()) else -1)
                self.lost(what, exc, **where)
        if bool(attrs.get("closed", False)):
            self.emit(fmt.STOP, {"stream": json.loads(attrs.get("stream", "null")),
                                 "exit_status": _text(attrs.get("exit_status", "")),
                                 "extra": json.loads(attrs.get("extra", "{}")),
                                 "time": ""})

    def _check_texts(self, attrs: Any) -> None:
        """The attributes' texts against their CRC-32 (archives that carry them): a changed
        digit in the calibration must not pass for data."""
        if "checksums" not in attrs:
            return
        sums = json.loads(_text(attrs["checksums"]))
        for key, crc in sums.items():
            if _text_crc(_text(attrs.get(key, ""))) != crc:
                raise ValueError(f"the run's {key} (an attribute of the file) is damaged: "
                                 "its checksum does not match")

    def _n_frames(self) -> int:
        try:
            return min(self.f["frames/counts"].shape[0], self.f["frames/info"].shape[0])
        except Exception as exc:
            self.lost("frames", f"the frames cannot be read ({exc})")
            return 0

    def _darks(self) -> np.ndarray:
        if "darks" not in self.f:
            return np.zeros(0, dtype=fmt.DARK_DT)
        try:
            rows = self.f["darks"][:]
            n = min(len(rows), self.f["darks_level"].shape[0], self.f["darks_sigma"].shape[0])
            return rows[:n]
        except Exception as exc:
            self.lost("darks", f"the darks table cannot be read ({exc})")
            return np.zeros(0, dtype=fmt.DARK_DT)

    def _frames(self, start: int, stop: int, n_frames: int) -> tuple[np.ndarray, ...]:
        """The counts and the frame info of frames ``start`` … ``stop`` − 1, and their gates
        when they were counted gated (version 4)."""
        if stop > n_frames:   # a killed SWMR writer's row whose frames never reached the disk
            raise _InFlight
        if not 0 <= start <= stop:
            raise ValueError(f"frame range {start}…{stop} is not a range")
        counts = np.asarray(self.f["frames/counts"][start:stop], dtype="<u4")
        raw = self.f["frames/info"][start:stop]
        info = np.zeros(stop - start, dtype=fmt.FRAME_DT)
        for name in fmt.FRAME_FIELDS:
            if name in (raw.dtype.names or ()):
                info[name] = raw[name]
        if counts.shape != (stop - start, self.n_bins):
            raise ValueError(f"frames have shape {counts.shape}")
        gates = self._gates(start, stop)
        return (counts, info) if gates is None else (counts, info, gates)

    def _gates(self, start: int, stop: int) -> np.ndarray | None:
        """Each frame's gate (version 4, gated frames), or None: frames counted without
        gating, or by an archive that did not keep their gate."""
        if "frames/gate" not in self.f:
            return None
        gates = np.zeros(stop - start, dtype=fmt.GATE_DT)
        for field, (name, _) in fmt.GATE_DATASETS.items():
            gates[field] = self.f[f"frames/{name}"][start:stop]
        kept = gates["gate"] >= 0
        if not kept.any():
            return None
        if not kept.all():
            raise ValueError("some of its frames have a gate and some do not")
        return gates

    def point(self, i: int, row: Any, n_frames: int) -> None:
        frames = self._frames(int(row["frame_start"]), int(row["frame_stop"]), n_frames)
        counts = frames[0]
        s, r = row["settings"], row["result"]
        snames, rnames = s.dtype.names or (), r.dtype.names or ()
        settings = {n: (_text(s[n]) if n in fmt.TEXT_FIELDS else s[n].item())
                    for n in fmt.SETTINGS_FIELDS if n in snames and n != "dark_sigma_common"}
        result = {n: r[n].item() for n in rnames if n != "flags"}
        result["flags"] = [x for x in _text(r["flags"]).split(";") if x]
        dark = np.asarray(self.f["points_dark"][i], dtype="<f8")
        common = bool(s["dark_sigma_common"]) if "dark_sigma_common" in snames else True
        if "points_dark_sigma" in self.f:
            dark_sd = np.asarray(self.f["points_dark_sigma"][i], dtype="<f8")
        else:   # version 1: no dark σ was stored
            dark_sd, common = np.zeros(self.n_bins), True
        if dark.shape != (self.n_bins,) or dark_sd.shape != (self.n_bins,):
            raise ValueError("the point's dark has the wrong shape")
        meta = {"settings": settings, "result": result, "dark_sigma_common": common,
                "n_frames": int(counts.shape[0]), **_gated(frames)}
        tag = (int(settings.get("index", -1)), int(settings.get("accumulation", 0)))
        self.emit(fmt.POINT, meta, (dark, dark_sd, *frames), tag)

    def dark(self, i: int, row: Any, n_frames: int) -> None:
        frames = self._frames(int(row["frame_start"]), int(row["frame_stop"]), n_frames)
        counts = frames[0]
        level = np.asarray(self.f["darks_level"][i], dtype="<f8")
        sigma = np.asarray(self.f["darks_sigma"][i], dtype="<f8")
        if level.shape != (self.n_bins,) or sigma.shape != (self.n_bins,):
            raise ValueError("the dark level has the wrong shape")
        meta = {"index": i, "wavelength_nm": _num(row["wavelength_nm"]),
                "frame_time_s": _num(row["frame_time_s"]), "n_frames": int(counts.shape[0]),
                "source": _text(row["source"]), "time": _text(row["time"]), **_gated(frames)}
        self.emit(fmt.DARK, meta, (level, sigma, *frames), (i, 0))


def _gated(frames: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """The record JSON's mark of frames that carry their gates."""
    return {"gated": True} if len(frames) > 2 else {}


class _InFlight(Exception):
    """A row of a killed writer whose frames never reached the disk: not a completed point."""


def _plain(exc: BaseException) -> str:
    """What an error of the HDF5 library means for the archive, in words."""
    text = str(exc)
    if "filter returned failure" in text or "checksum" in text:
        return "its data fail their checksum (the file is damaged there)"
    if "truncated" in text:
        return "the file is cut short"
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ValueError) else text


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.bytes_):
        return bytes(v).decode("utf-8", "replace")
    return "" if v is None else str(v)


def _num(v: Any) -> float:
    return float(np.asarray(v).item())


def _int(v: Any) -> int:
    return int(np.asarray(v).item())


# --- the helper process -----------------------------------------------------------------------

def _work(command: str, source: str, target: str) -> dict[str, Any]:
    """Do one request; the report the parent gets."""
    try:
        (build if command == "build" else read)(source, target)
    except BaseException as exc:          # any failure: one report for the parent
        Path(target).unlink(missing_ok=True)
        code = errno_codes.ENOSPC if is_disk_full(exc) else getattr(exc, "errno", None)
        return {"error": _plain(exc)[:2000], "errno": code if isinstance(code, int) else None}
    return {"ok": True}


def serve() -> int:
    """The helper server: one JSON request a line on stdin, each done in a forked child
    (which an alarm ends after the request's time limit, even inside the HDF5 library);
    answers ``{"pid": …}`` when the child starts and its report when it ends."""
    import h5py  # noqa: F401 - imported once, before the children are forked

    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides; EOF ends the server
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            command, source, target = req["command"], req["source"], req["target"]
            limit = max(1, math.ceil(float(req["timeout_s"])) + 1)
        except (ValueError, KeyError, TypeError):
            return 2
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                  # the helper
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(limit)                      # ends it even inside the C library
            try:
                os.write(w, json.dumps(_work(command, source, target)).encode())
            finally:
                os._exit(0)
        os.close(w)
        out.write(json.dumps({"pid": pid}).encode() + b"\n")
        out.flush()
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        try:
            report = json.loads(b"".join(chunks))
        except ValueError:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            how = f"crashed (signal {sig})" if sig else f"ended (status {status})"
            report = {"error": f"the HDF5 library {how}"}
        out.write(json.dumps(report).encode() + b"\n")
        out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``serve``, ``build JOURNAL OUT.h5`` or ``read IN.h5 OUT.journal``; status 1 and the
    error as one JSON line on stderr on failure."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["serve"]:
        return serve()
    if len(args) != 3 or args[0] not in ("build", "read"):
        print(json.dumps({"error": "usage: serve | build JOURNAL OUT.h5 | read IN.h5 "
                          "OUT.journal"}), file=sys.stderr)
        return 2
    report = _work(args[0], args[1], args[2])
    if not report.get("ok"):
        print(json.dumps(report), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
