"""The raw archive's records and HDF5 layout, shared by the writer, the reader and the
helper process that does every HDF5 read and write (:mod:`cplscope.data.archive_hdf5`).

A run's archive is a sequence of records (:mod:`cplscope.data.journal`): ``start`` (the run:
metadata, calibration, rules, blank, plan), ``dark`` and ``point`` (each with all its frames),
``stop`` (the exit status, stream health and the metadata the run added) and ``lost`` (a
note, written when a damaged archive was read, of what could not be). Each payload is a JSON
object and then the record's arrays, in a fixed order and dtype, sized by the JSON and
checked against the payload's length.

This module imports only numpy and the journal, so the helper process starts quickly.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DARK", "LOST", "POINT", "START", "STOP", "FRAME_DT", "GATE_DT", "PayloadError",
           "journal_path", "pack", "unpack"]

FORMAT = "cplscope-archive"
#: (2, later: ``live_fraction``, gated counting's open share of the frame time, 1 when
#: absent.)
#: 2: each point stores its whole context (dark σ, nominal and commanded A0, tracking, drive,
#: target σ, why it stopped, its plan index) and the run its blank and plan; version 1
#: archives are still read. 3: the HDF5 file adds its NeXus entry (``/entry``,
#: :mod:`cplscope.data.archive_nexus`) and the stop record the run's spectrum; the records
#: are otherwise those of version 2, so a version-2 archive is resumed (and its HDF5 file
#: rebuilt as version 3). 4: a dark's or point's record of gated frames carries each frame's
#: gate (time bin) and timing (:data:`GATE_DT`, after the frame info; its JSON says
#: ``"gated": true``), the HDF5 file the datasets ``frames/gate`` … ``frames/gate_width``;
#: records without it are version 3's, so a version-2 or -3 archive is resumed (and its
#: HDF5 file rebuilt as version 4).
VERSION = 4
READABLE = (1, 2, 3, 4)
APPENDABLE = (2, 3, 4)

START, DARK, POINT, STOP, LOST = 1, 2, 3, 4, 5
KIND_NAMES = {START: "start", DARK: "dark", POINT: "point", STOP: "stop", LOST: "lost"}

FLAGS_LEN = 256
TEXT_LEN = 64
FRAME_DT = np.dtype([("seq", "<u4"), ("timestamp_us", "<u8"), ("flags", "<u2"),
                     ("periods", "<u4"), ("pem_period_ps", "<u4"), ("mono_position", "<i4"),
                     ("acq_id", "<u2"), ("bin_span", "<f8"), ("owner", "<i4")])
FRAME_FIELDS: tuple[str, ...] = tuple(FRAME_DT.names or ())
#: Gated counting (version 4): each frame's gate (time bin, 0 … n_gates − 1), the gates of
#: its configuration, the excitation pulses whose gate it counted, and the gate's timing (ns)
GATE_DT = np.dtype([("gate", "<i2"), ("n_gates", "<u1"), ("pulses", "<u8"),
                    ("pulse_period_ns", "<u4"), ("gate_delay_ns", "<u4"),
                    ("gate_width_ns", "<u4")])
GATE_FIELDS: tuple[str, ...] = tuple(GATE_DT.names or ())
#: The HDF5 file's dataset (under ``frames/``) of each :data:`GATE_DT` field, and its units;
#: a frame counted without gating has gate −1 and zeros there (a run resumed from an archive
#: of version 3 or older, whose frames did not keep it)
GATE_DATASETS = {"gate": ("gate", "1"), "n_gates": ("n_gates", "1"),
                 "pulses": ("pulses", "1"), "pulse_period_ns": ("pulse_period", "ns"),
                 "gate_delay_ns": ("gate_delay", "ns"), "gate_width_ns": ("gate_width", "ns")}
SETTINGS_DT = np.dtype([
    ("wavelength_nm", "<f8"), ("a0_rad", "<f8"), ("phase_offset_rad", "<f8"),
    ("frame_time_s", "<f8"), ("dwell_s", "<f8"), ("handedness", "<i1"), ("bin_span", "<f8"),
    ("dead_time_s", "<f8"), ("dark_source", f"S{TEXT_LEN}"), ("accumulation", "<i4"),
    ("noise", "S8"), ("blank_g", "<f8"), ("blank_sigma", "<f8"), ("a0_tracking", "?"),
    ("dark_sigma_common", "?"), ("target_sigma", "<f8"), ("a0_nominal_rad", "<f8"),
    ("a0_commanded_rad", "<f8"), ("pem_drive", "<f8"), ("stopped", "S16"),
    ("extra_flags", f"S{TEXT_LEN}"), ("index", "<i4"), ("matter_rate", "<f8"),
    ("plan_every", "<i4"), ("live_fraction", "<f8")])
SETTINGS_FIELDS: tuple[str, ...] = tuple(SETTINGS_DT.names or ())
TEXT_FIELDS = {"dark_source", "noise", "stopped", "extra_flags"}
#: result fields stored as integers (every other one but ``flags`` is a float)
INT_RESULT_FIELDS = {"n_frames", "accumulations"}
DARK_DT = np.dtype([("wavelength_nm", "<f8"), ("frame_time_s", "<f8"), ("n_frames", "<i8"),
                    ("source", f"S{TEXT_LEN}"), ("time", "S32"), ("frame_start", "<i8"),
                    ("frame_stop", "<i8")])
_LEN = struct.Struct("<I")


def result_dtype(names: Sequence[str]) -> np.dtype:
    """The compound dtype of a point's result with fields ``names`` (PointResult's)."""
    return np.dtype([(n, f"S{FLAGS_LEN}" if n == "flags" else
                      "<i8" if n in INT_RESULT_FIELDS else "<f8") for n in names])


def point_dtype(result_names: Sequence[str]) -> np.dtype:
    return np.dtype([("settings", SETTINGS_DT), ("result", result_dtype(result_names)),
                     ("frame_start", "<i8"), ("frame_stop", "<i8")])


def journal_path(path: str | os.PathLike[str]) -> Path:
    """The journal of the archive at ``path`` (``run.h5`` → ``run.h5.journal``); a journal's
    own path is its own journal."""
    p = Path(path)
    return p if p.name.endswith(".journal") else p.with_name(p.name + ".journal")


def archive_path(path: str | os.PathLike[str]) -> Path:
    """The archive a journal belongs to (``run.h5.journal`` → ``run.h5``)."""
    p = Path(path)
    return p.with_name(p.name[: -len(".journal")]) if p.name.endswith(".journal") else p


class PayloadError(ValueError):
    """A record whose checksums are right but whose content is not what its kind holds."""


def pack(meta: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> bytes:
    """A record payload: the JSON of ``meta`` (NaN allowed), then the arrays' bytes."""
    text = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    return b"".join([_LEN.pack(len(text)), text,
                     *(np.ascontiguousarray(a).tobytes() for a in arrays)])


def unpack_meta(payload: bytes) -> tuple[dict[str, Any], int]:
    """The JSON object at the start of ``payload`` and where the arrays start."""
    if len(payload) < _LEN.size:
        raise PayloadError("payload shorter than its length field")
    (n,) = _LEN.unpack_from(payload)
    if _LEN.size + n > len(payload):
        raise PayloadError("payload shorter than its JSON")
    try:
        meta = json.loads(payload[_LEN.size:_LEN.size + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"its JSON does not parse ({exc})") from None
    if not isinstance(meta, dict):
        raise PayloadError("its JSON is not an object")
    return meta, _LEN.size + n


def array_specs(kind: int, meta: dict[str, Any], n_bins: int) -> list[tuple[np.dtype, tuple]]:
    """The dtype and shape of each array a record of ``kind`` carries after its JSON."""
    if kind not in (DARK, POINT):
        return []
    n = meta.get("n_frames")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise PayloadError(f"n_frames {n!r} is not a count")
    b = int(n_bins)
    specs: list[tuple[np.dtype, tuple]] = [
        (np.dtype("<f8"), (b,)), (np.dtype("<f8"), (b,)), (np.dtype("<u4"), (n, b)),
        (FRAME_DT, (n,))]
    gated = meta.get("gated", False)
    if not isinstance(gated, bool):
        raise PayloadError(f"gated {gated!r} is not true or false")
    return specs + [(GATE_DT, (n,))] if gated else specs


def array_offsets(kind: int, meta: dict[str, Any], n_bins: int, start: int,
                  length: int) -> list[tuple[np.dtype, tuple, int]]:
    """(dtype, shape, offset in the payload) of each array; the sizes must add up to the
    payload's ``length`` exactly."""
    out = []
    pos = start
    for dtype, shape in array_specs(kind, meta, n_bins):
        out.append((dtype, shape, pos))
        pos += dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if pos != length:
        raise PayloadError(f"its arrays take {pos - start} bytes, the record holds "
                           f"{length - start}")
    return out


def unpack(kind: int, payload: bytes, n_bins: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The JSON object and the arrays of one record's payload (arrays are read-only views)."""
    meta, start = unpack_meta(payload)
    arrays = [np.frombuffer(payload, dtype=dt, count=int(np.prod(shape, dtype=np.int64)),
                            offset=off).reshape(shape)
              for dt, shape, off in array_offsets(kind, meta, n_bins, start, len(payload))]
    return meta, arrays
