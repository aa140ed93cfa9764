"""The NeXus entry of the HDF5 archive (docs/data-files.md, "The NeXus entry"): what makes
the file self-describing for any NeXus or netCDF reader, written by
:mod:`cplscope.data.archive_hdf5` next to the raw tables it reads back.

``/entry`` (NXentry) names the experiment after NXoptical_spectroscopy (``experiment_type``
``circularly polarized luminescence`` or ``circular dichroism``) and holds:

- ``data`` (NXdata, the default plot): the run's spectrum as its CSV holds it, one row per
  wavelength, the signal g_lum (CPL) or ΔA (CD) with its σ as ``<signal>_errors`` against
  ``wavelength`` (nm);
- ``points`` (NXdata): every point of every accumulation as measured (before the blank),
  along dimension ``point`` with ``wavelength`` and ``accumulation`` as coordinates;
- ``instrument`` (NXinstrument): the PEM (NXwaveplate, a modulated retarder), the
  monochromator (NXmonochromator) and the detector (NXdetector, ``data`` a link to the
  raw frames' counts), with their settings at each point;
- ``sample`` (NXsample).

Every numeric dataset carries ``units`` (``1`` for a dimensionless one, as in UDUNITS), and
every dimension is a netCDF-4 dimension scale (:func:`name_dimensions`), so that xarray
opens any group with named dimensions. Imports numpy (and h5py, which the archive's helper
process has imported already).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import __version__
from .archive_format import GATE_DATASETS
from .units import INTENSITY_QUANTITIES, UNITS, intensity_unit

__all__ = ["EXPERIMENT_TYPES", "SIGNALS", "field_name", "mode_of", "name_dimensions",
           "write_entry"]

#: ``experiment_type`` of the entry, by the run's mode
EXPERIMENT_TYPES = {"cpl": "circularly polarized luminescence", "cd": "circular dichroism"}
#: the default plot's signal, by the run's mode
SIGNALS = {"cpl": "g_lum", "cd": "delta_a"}
#: a σ column → the quantity it is the standard uncertainty of (NeXus: ``<quantity>_errors``)
_ERRORS_OF = {"sigma_g": "g_lum", "sigma_linear": "linear", "sigma_intensity": "intensity",
              "sigma_absorbance": "absorbance", "sigma_delta_a": "delta_a",
              "sigma_g_abs": "g_abs", "sigma_linear_dichroism": "linear_dichroism"}
#: columns whose name carries their unit: the unit goes to ``units``
_RENAMED = {"wavelength_nm": "wavelength", "dwell_s": "dwell",
            "ellipticity_mdeg": "ellipticity"}


def field_name(column: str) -> str:
    """The NeXus field of a CSV column: ``wavelength_nm`` → ``wavelength``, ``sigma_g`` →
    ``g_lum_errors``, ``dwell_s`` → ``dwell``, ``ellipticity_mdeg`` → ``ellipticity``; the
    others keep their name."""
    if column in _ERRORS_OF:
        return _ERRORS_OF[column] + "_errors"
    return _RENAMED.get(column, column)


def _unit(column: str, intensity: str) -> str:
    if column in INTENSITY_QUANTITIES:
        return intensity
    return UNITS.get(column, "") or "1"


def mode_of(metadata: Mapping[str, Any]) -> str:
    """``cd`` for a CD run, else ``cpl``."""
    return "cd" if metadata.get("mode") == "cd" else "cpl"


def name_dimensions(f: Any, n_bins: int) -> None:
    """Make the raw tables' dimensions netCDF-4 dimension scales at the root (where every
    group sees them): ``point``, ``dark`` and ``bin`` (indices) and ``frame`` (a dimension
    without values; also of a gated run's ``frames/gate`` …), so that netCDF readers
    (xarray) see named dimensions, never ``phony_dim_*``."""
    n_frames = f["frames/counts"].shape[0]
    for name, n in (("point", f["points"].shape[0]), ("dark", f["darks"].shape[0]),
                    ("bin", n_bins)):
        _number(f, name, np.arange(n, dtype=np.int64), "1").make_scale(name)
    frame = f.create_dataset("frame", shape=(n_frames,), dtype="<i4")  # never written
    frame.attrs["units"] = "1"
    frame.make_scale(f"{_DIMENSION_ONLY}{n_frames:10d}")
    gated = [(f"frames/{name}", ("frame",)) for name, _ in GATE_DATASETS.values()
             if f"frames/{name}" in f]
    for name, dims in (("points", ("point",)), ("points_dark", ("point", "bin")),
                       ("points_dark_sigma", ("point", "bin")), ("darks", ("dark",)),
                       ("darks_level", ("dark", "bin")), ("darks_sigma", ("dark", "bin")),
                       ("frames/counts", ("frame", "bin")), ("frames/info", ("frame",)),
                       *gated):
        for axis, dim in enumerate(dims):
            f[name].dims[axis].attach_scale(f[dim])


#: how netCDF-4 names a dimension scale that is a dimension only, not a variable
_DIMENSION_ONLY = "This is a netCDF dimension but not a netCDF variable."


def write_entry(f: Any, start: Mapping[str, Any], stop: Mapping[str, Any] | None,
                points: np.ndarray, frames: str = "/frames/counts") -> None:
    """Write ``/entry`` into the open HDF5 file ``f`` (h5py, its dimensions named by
    :func:`name_dimensions`) of a run with ``start`` and ``stop`` records (the stop's
    ``spectrum``: the run's spectrum, column → values), the archive's ``points`` table and
    its raw frames' counts at ``frames``."""
    meta = start.get("metadata") or {}
    mode = mode_of(meta)
    unit = intensity_unit(meta)
    f.attrs["NX_class"] = "NXroot"
    f.attrs["default"] = "entry"
    f.attrs["creator"] = "cplscope"
    entry = _group(f, "entry", "NXentry")
    _text(entry, "experiment_type", EXPERIMENT_TYPES[mode])
    sample = _sample_name(meta.get("sample"))
    _text(entry, "title", f"{EXPERIMENT_TYPES[mode]} of {sample}")
    _text(entry, "start_time", str(meta.get("date") or start.get("created") or ""))
    if stop is not None and stop.get("time"):
        _text(entry, "end_time", str(stop["time"]))
    plan = start.get("plan") or {}
    _text(entry, "entry_identifier", str(plan.get("uid") or meta.get("uid") or ""))
    program = _text(entry, "program_name", "cplscope")
    program.attrs["version"] = __version__
    _text(_group(entry, "sample", "NXsample"), "name", sample)

    result, settings = points["result"], points["settings"]
    _instrument(entry, meta, settings, frames)
    spectrum = (stop or {}).get("spectrum")
    if spectrum:
        columns = {c: np.asarray(v) for c, v in spectrum.items()}
        _table(entry, "data", columns, "wavelength", SIGNALS[mode], unit)
        entry["data"].attrs["description"] = (
            "the run's spectrum as its CSV holds it: accumulations combined, the blank "
            "subtracted")
    columns = {n: result[n] for n in (result.dtype.names or ())}
    columns["accumulation"] = settings["accumulation"]
    columns["index"] = settings["index"] if "index" in (settings.dtype.names or ()) else \
        np.full(len(points), -1)
    _table(entry, "points", columns, f["point"], "g_lum", unit,
           coordinates=("wavelength", "accumulation", "index"))
    entry["points"].attrs["description"] = (
        "every point of every accumulation as measured: before the blank; g_lum is the "
        "estimator's (for a CD run, the transmitted light's)")
    entry.attrs["default"] = "data" if spectrum else "points"


def _group(parent: Any, name: str, nx_class: str) -> Any:
    g = parent.create_group(name)
    g.attrs["NX_class"] = nx_class
    return g


def _text(parent: Any, name: str, value: str) -> Any:
    return parent.create_dataset(name, data=value)


def _number(parent: Any, name: str, data: Any, units: str) -> Any:
    ds = parent.create_dataset(name, data=data)
    ds.attrs["units"] = units
    return ds


def _per_point(parent: Any, name: str, data: Any, units: str) -> Any:
    """A value per point of the raw table, along its dimension ``point``."""
    ds = _number(parent, name, data, units)
    ds.dims[0].attach_scale(parent.file["point"])
    return ds


def _sample_name(sample: Any) -> str:
    if isinstance(sample, Mapping):
        return str(sample.get("name") or json.dumps(sample))
    return str(sample) if sample else "unnamed sample"


#: the PEM's settings at each point: (archive setting, NeXus field, units)
_PEM_FIELDS = (("a0_rad", "peak_retardation", "rad"),
               ("a0_nominal_rad", "peak_retardation_nominal", "rad"),
               ("a0_commanded_rad", "peak_retardation_commanded", "rad"),
               ("phase_offset_rad", "phase_offset", "rad"), ("pem_drive", "drive", "1"),
               ("handedness", "handedness", "1"))


def _instrument(entry: Any, meta: Mapping[str, Any], s: np.ndarray, frames: str) -> None:
    ident = meta.get("instrument") or {}
    inst = _group(entry, "instrument", "NXinstrument")
    _text(inst, "name", f"cplscope {ident.get('board', '')} {ident.get('serial', '')}".strip())
    pem = _group(inst, "pem", "NXwaveplate")
    kind = _text(pem, "type", "photoelastic modulator")
    kind.attrs["custom"] = True
    for setting, field, unit in _PEM_FIELDS:
        if setting in (s.dtype.names or ()):          # version 1 has not all of them
            _per_point(pem, field, s[setting], unit)
    mono = _group(inst, "monochromator", "NXmonochromator")
    _per_point(mono, "wavelength", s["wavelength_nm"], "nm")
    det = _group(inst, "detector", "NXdetector")
    settings = meta.get("settings") or {}
    _text(det, "mode", str(settings.get("mode", "counting")))
    _per_point(det, "count_time", s["dwell_s"], "s")
    _per_point(det, "frame_time", s["frame_time_s"], "s")
    _per_point(det, "dead_time", s["dead_time_s"], "s")
    det["data"] = entry.file[frames]           # a hard link: the raw frames, not a copy
    entry.file[frames].attrs["target"] = frames


def _table(entry: Any, name: str, columns: Mapping[str, np.ndarray], dim: Any, signal: str,
           unit: str, coordinates: Sequence[str] = ()) -> None:
    """An NXdata group of 1-D columns along dimension ``dim``: the name of one of its
    columns (which becomes the dimension scale, as ``wavelength``), or a dimension scale
    (the root's ``point``)."""
    import h5py

    group = _group(entry, name, "NXdata")
    scale = None if isinstance(dim, str) else dim
    written = []
    for column, values in columns.items():
        field = field_name(column)
        if values.dtype.kind in "OSU":
            text = [";".join(v) if isinstance(v, (list, tuple)) else
                    (v.decode() if isinstance(v, bytes) else str(v)) for v in values]
            ds = group.create_dataset(field, data=np.array(text, dtype=object),
                                      dtype=h5py.string_dtype())
        else:
            ds = _number(group, field, values, _unit(column, unit))
        ds.attrs["long_name"] = column
        if field == dim:
            ds.make_scale(dim)
            scale = ds
        written.append(ds)
    for ds in written:
        if ds is not scale:
            ds.dims[0].attach_scale(scale)
            if coordinates and ds.name.rsplit("/", 1)[-1] not in coordinates:
                ds.attrs["coordinates"] = " ".join(coordinates)
    group.attrs["signal"] = signal
    group.attrs["axes"] = "wavelength"
    group.attrs["wavelength_indices"] = 0
