"""The mapping between the scan engine's documents (:mod:`cplscope.data.documents`) and
Bluesky's event model, one to one, in both directions.

An engine run becomes one event-model run:

============================  =====================================================
engine document               event-model documents
============================  =====================================================
``RunStart``                  ``start``: the run metadata (``sample``, ``mode``,
                              ``settings``, ``instrument``, ``calibration``), the plan
                              (``num_points``, ``motors``, ``hints``) and, in
                              ``cplscope_run``, everything needed to rebuild the engine's
                              ``RunStart`` exactly (JSON text)
``DarkEvent``                 an event in stream ``dark`` (rate per phase bin, counts/s)
``Survey``                    one event per surveyed point in stream ``survey``
``PointEvent``                an event in stream ``primary``: the spectrum's row at this
                              wavelength after this point, named as the CSV's columns,
                              with ``index``, ``accumulation`` and ``budget_left_s``
``RunStop``                   events in stream ``spectrum`` (the final rows, exactly the
                              CSV; its descriptor's configuration holds the spectrum
                              metadata as JSON), then ``stop`` with the same
                              ``exit_status`` and ``reason``
============================  =====================================================

Every data key carries its units (``units``) and display precision (``precision``). Two
producers use this mapping: :func:`cplscope.bluesky.plans.cpl_scan` (through the RunEngine)
and :class:`EventModelSink` (the command line's ``--tiled``, without a RunEngine); one
consumer: :class:`ProjectCallback`, which turns event-model documents back into engine
documents for the project's sinks (CSV, figure, progress, live view).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from .. import __version__
from ..data.cd_spectrum import CD_TABLE, CDSpectrum
from ..data.documents import PointEvent, RunStart, RunStop
from ..data.spectrum import CPL_TABLE, Spectrum, written_value
from ..science.results import FlagRules
from ..settings.calibration import Blank, Calibration

__all__ = ["EventModelSink", "ProjectCallback", "STREAMS", "UNITS", "start_metadata",
           "stream_data"]

#: The streams of a run, in the order their first event comes.
STREAMS = ("dark", "survey", "primary", "spectrum")

#: Units of every quantity a stream carries ("" for dimensionless).
UNITS: dict[str, str] = {
    "wavelength_nm": "nm", "intensity": "counts/s", "i_left": "counts/s",
    "i_right": "counts/s", "delta_i": "counts/s", "sigma_intensity": "counts/s",
    "g_lum": "", "sigma_g": "", "linear": "", "sigma_linear": "", "chi2_red": "",
    "n_frames": "", "dwell_s": "s", "flags": "", "accumulations": "", "emission_z": "",
    "absorbance": "", "sigma_absorbance": "", "delta_a": "", "sigma_delta_a": "",
    "g_abs": "", "sigma_g_abs": "", "ellipticity_mdeg": "mdeg", "linear_dichroism": "",
    "sigma_linear_dichroism": "", "index": "", "accumulation": "", "budget_left_s": "s",
    "rate_cps": "counts/s", "sigma_rate_cps": "counts/s", "total_rate_cps": "counts/s",
    "level": "ADC counts", "sigma_level": "ADC counts", "merit": "",
}
#: Display precision (digits after the point) of the quantities that are not 6.
PRECISION: dict[str, int] = {"wavelength_nm": 3, "intensity": 1, "i_left": 1, "i_right": 1,
                             "delta_i": 2, "sigma_intensity": 2, "dwell_s": 2,
                             "ellipticity_mdeg": 3, "chi2_red": 3, "budget_left_s": 1,
                             "rate_cps": 2, "sigma_rate_cps": 2, "total_rate_cps": 2,
                             "emission_z": 2}

_SOURCE = "cplscope:engine"


# --- engine → event model ------------------------------------------------------------------

def start_metadata(start: RunStart, *, plan_name: str = "cpl_scan",
                   md: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The event-model ``start`` metadata of an engine run (without uid and time).

    ``cplscope_run`` is exact (JSON text, NaN and ∞ kept); the other keys are for people
    and catalogs, with non-finite numbers as null."""
    meta = start.metadata
    exact = {"uid": start.uid, "time": start.time, "metadata": meta,
             "wavelengths_nm": list(start.wavelengths_nm),
             "accumulations": start.accumulations, "n_bins": start.n_bins,
             "calibration": _calibration_dict(start.calibration),
             "blank": start.blank.to_dict() if isinstance(start.blank, Blank) else None,
             "rules": dataclasses.asdict(start.rules)}
    out: dict[str, Any] = {
        "plan_name": plan_name, "cplscope_version": __version__,
        "cplscope_uid": start.uid, "mode": meta.get("mode", "cpl"),
        "sample": meta.get("sample", "unknown"),
        "num_points": len(start.wavelengths_nm) * start.accumulations,
        "num_intervals": max(len(start.wavelengths_nm) * start.accumulations - 1, 0),
        "motors": ["wavelength_nm"],
        "hints": {"dimensions": [[["wavelength_nm"], "primary"]]},
        "cplscope_run": json.dumps(exact),
    }
    for key in ("instrument", "calibration", "settings", "date"):
        if key in meta:
            out[key] = _finite(meta[key])
    out.update(dict(md or {}))
    return out


def stream_data(name: str, doc: Any) -> list[dict[str, Any]]:
    """The events that the engine document ``(name, doc)`` maps to, in order: dicts with
    ``stream`` (its name), ``data`` (key → value) and, for the ``spectrum`` stream,
    ``configuration`` (key → value, for its descriptor)."""
    if name == "dark":
        return [{"stream": "dark", "data": _dark_data(doc)}]
    if name == "survey":
        return [{"stream": "survey", "data": _survey_data(doc, k)}
                for k in range(len(doc.points))]
    if name == "event":
        data = _row_data(doc.row)
        data.update(index=int(doc.index), accumulation=int(doc.accumulation),
                    budget_left_s=float(doc.budget_left_s))
        return [{"stream": "primary", "data": data}]
    if name == "stop":
        spec = doc.spectrum
        config = {"spectrum_metadata": json.dumps(spec.metadata),
                  "spectrum_kind": "cd" if isinstance(spec, CDSpectrum) else "cpl"}
        return [{"stream": "spectrum", "data": _row_data(row), "configuration": config}
                for row in spec]
    return []


def data_keys(data: Mapping[str, Any], source: str = _SOURCE) -> dict[str, dict[str, Any]]:
    """The descriptor's data keys of ``data``: dtype, shape, units and precision."""
    keys: dict[str, dict[str, Any]] = {}
    for k, v in data.items():
        arr = np.asarray(v, dtype=float) if isinstance(v, list) else np.asarray(v)
        if isinstance(v, str):     # no dtype_numpy: any length (a Tiled writer picks)
            dtype, shape, numpy = "string", [], None
        elif arr.ndim:
            dtype, shape, numpy = "array", list(arr.shape), arr.dtype.str
        elif isinstance(v, (bool, np.bool_)):
            dtype, shape, numpy = "boolean", [], "|b1"
        elif isinstance(v, (int, np.integer)):
            dtype, shape, numpy = "integer", [], "<i8"
        else:
            dtype, shape, numpy = "number", [], "<f8"
        key: dict[str, Any] = {"source": source, "dtype": dtype, "shape": shape}
        if numpy is not None:
            key["dtype_numpy"] = numpy
        if dtype in ("number", "integer", "array"):
            key["units"] = UNITS.get(k, "")
            key["precision"] = PRECISION.get(k, 6) if dtype != "integer" else 0
        keys[k] = key
    return keys


def _row_data(row: Any) -> dict[str, Any]:
    """The row as its CSV writes it (floats rounded to their resolution)."""
    table = CD_TABLE if isinstance(row, CD_TABLE.row_type) else CPL_TABLE
    out: dict[str, Any] = {}
    for col in table.columns:
        v = getattr(row, col)
        if col == "flags":
            out[col] = ";".join(v)
        elif col in table.int_columns:
            out[col] = int(v)
        else:
            out[col] = written_value(table, col, v, row)
    return out


def _dark_data(doc: Any) -> dict[str, Any]:
    d = doc.dark
    out: dict[str, Any] = {"accumulation": int(doc.accumulation), "index": int(doc.index),
                           "dwell_s": float(d.dwell_s)}
    if hasattr(d, "rate_cps"):
        out.update(rate_cps=[float(x) for x in d.rate_cps],        # lists: JSON as it is
                   sigma_rate_cps=[float(x) for x in d.sigma_rate_cps],
                   total_rate_cps=float(d.total_rate_cps))
    else:
        out.update(level=float(d.level), sigma_level=float(d.sigma))
    return out


def _survey_data(sv: Any, k: int) -> dict[str, Any]:
    p = sv.points[k]
    r = p.result
    return {"wavelength_nm": float(sv.wavelengths_nm[k]), "intensity": float(r.intensity),
            "g_lum": float(r.g_lum), "sigma_g": float(r.sigma_g), "merit": float(p.merit),
            "dwell_s": float(r.dwell_s), "flags": ";".join(r.flags)}


def _calibration_dict(cal: Any) -> dict[str, Any] | None:
    return cal.to_dict() if isinstance(cal, Calibration) else None


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON for catalogs)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class EventModelSink:
    """An engine sink that turns the engine's documents into event-model documents (with
    :func:`event_model.compose_run`, validated) and passes each ``(name, doc)`` to
    ``callbacks`` (e.g. a Tiled writer). The same mapping as the RunEngine path of
    :func:`cplscope.bluesky.plans.cpl_scan`."""

    def __init__(self, *callbacks: Callable[[str, dict], Any], plan_name: str = "cpl_scan",
                 md: Mapping[str, Any] | None = None) -> None:
        self.callbacks = callbacks
        self.plan_name, self.md = plan_name, dict(md or {})
        self._run: Any = None
        self._descriptors: dict[str, Any] = {}

    def _emit(self, name: str, doc: dict) -> None:
        for cb in self.callbacks:
            cb(name, doc)

    def __call__(self, name: str, doc: Any) -> None:
        from event_model import compose_run

        if name == "start":
            self._run = compose_run(metadata=start_metadata(doc, plan_name=self.plan_name,
                                                            md=self.md))
            self._descriptors = {}
            self._emit("start", self._run.start_doc)
            return
        if self._run is None:
            return
        for item in stream_data(name, doc):
            self._event(item["stream"], item["data"], item.get("configuration"))
        if name == "stop":
            self._emit("stop", self._run.compose_stop(exit_status=doc.exit_status,
                                                      reason=doc.reason))
            self._run = None

    def _event(self, stream: str, data: dict[str, Any],
               configuration: Mapping[str, Any] | None) -> None:
        now = time.time()
        if stream not in self._descriptors:
            config = {}
            if configuration:
                config = {stream: {"data": dict(configuration),
                                   "timestamps": {k: now for k in configuration},
                                   "data_keys": data_keys(configuration)}}
            bundle = self._run.compose_descriptor(
                name=stream, data_keys=data_keys(data), configuration=config,
                object_keys={stream: list(data)})
            self._descriptors[stream] = bundle
            self._emit("descriptor", bundle.descriptor_doc)
        event = self._descriptors[stream].compose_event(
            data=dict(data), timestamps={k: now for k in data})
        self._emit("event", event)


# --- event model → engine ------------------------------------------------------------------

class ProjectCallback:
    """A Bluesky callback (``RE.subscribe(ProjectCallback(CsvSink("r.csv"), ...))``) that
    rebuilds the engine's documents from the event-model documents of a cplscope run and
    passes them to the project's sinks: the CSV, the figure, the progress bar, the live view
    and any sink that reads ``start``, ``event`` (``row``, ``spectrum``, ``index``,
    ``accumulation``, ``budget_left_s``) and ``stop`` (``exit_status``, ``reason``,
    ``spectrum``).

    Rebuilt events have no raw frames, context or live measurement (``frames``, ``context``
    and ``measurement`` are None, and ``result`` is the row): the raw archive is written by
    the plan itself (``cpl_scan(..., archive=...)``). Runs that are not cplscope's pass by."""

    def __init__(self, *sinks: Callable[[str, Any], None]) -> None:
        from ..data.sinks import ArchiveSink

        for s in sinks:
            if isinstance(s, ArchiveSink):
                raise TypeError("the raw archive needs every frame, which event-model "
                                "documents do not carry: give the plan archive=PATH "
                                "(cpl_scan(..., archive=...)) instead")
        self.sinks = sinks
        self._start: RunStart | None = None
        self._streams: dict[str, str] = {}
        self._config: dict[str, dict[str, Any]] = {}
        self._rows: dict[int, Any] = {}
        self._final: list[Any] = []
        self._seq = 0

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self._on_start(doc)
        elif self._start is None:
            return
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc["name"]
            self._config[doc["name"]] = {k: v.get("data", {})
                                         for k, v in (doc.get("configuration") or {}).items()}
        elif name == "event":
            self._on_event(doc)
        elif name == "event_page":
            for event in _unpack_page(doc):
                self._on_event(event)
        elif name == "stop":
            self._on_stop(doc)

    def _emit(self, name: str, doc: Any) -> None:
        for sink in self.sinks:
            sink(name, doc)

    def _on_start(self, doc: Mapping[str, Any]) -> None:
        self._start = None
        if "cplscope_run" not in doc:
            return
        run = json.loads(doc["cplscope_run"])
        cal = run["calibration"]
        self._start = RunStart(
            run["uid"], run["time"], run["metadata"], tuple(run["wavelengths_nm"]),
            int(run["accumulations"]), int(run["n_bins"]),
            Calibration.from_dict(cal) if cal is not None else None,
            Blank(**run["blank"]) if run["blank"] is not None else None,
            FlagRules(**run["rules"]))
        self._streams, self._config, self._rows, self._final = {}, {}, {}, []
        self._seq = 0
        self._cd = self._start.metadata.get("mode") == "cd"
        self._emit("start", self._start)

    def _row(self, data: Mapping[str, Any]) -> Any:
        table = CD_TABLE if self._cd else CPL_TABLE
        kw = {c: (tuple(f for f in str(data[c]).split(";") if f) if c == "flags"
                  else int(data[c]) if c in table.int_columns else float(data[c]))
              for c in table.columns if c in data}
        return table.row_type(**kw)

    def _spectrum(self, rows: Iterable[Any], meta: Mapping[str, Any]) -> Any:
        kind = CDSpectrum if self._cd else Spectrum
        return kind(list(rows), dict(meta))

    def _partial_metadata(self) -> dict[str, Any]:
        assert self._start is not None
        meta = dict(self._start.metadata)
        done = len({acc for acc, _ in self._rows.values()})
        meta["accumulations"] = meta["accumulations_done"] = done
        return meta

    def _on_event(self, doc: Mapping[str, Any]) -> None:
        stream = self._streams.get(doc["descriptor"])
        data = doc["data"]
        if stream == "spectrum":
            self._final.append(self._row(data))
            return
        if stream != "primary":
            return
        row = self._row(data)
        self._rows[int(data["index"])] = (int(data["accumulation"]), row)
        self._seq += 1
        spec = self._spectrum((r for _, r in (self._rows[i] for i in sorted(self._rows))),
                              self._partial_metadata())
        self._emit("event", PointEvent(     # no context and frames: not in the documents
            self._seq, int(data["index"]), int(data["accumulation"]), None,  # type: ignore[arg-type]
            None,
            row, row, None, spec, None, dwell_s=float(row.dwell_s),
            budget_left_s=float(data.get("budget_left_s", math.nan))))

    def _on_stop(self, doc: Mapping[str, Any]) -> None:
        config = self._config.get("spectrum", {}).get("spectrum", {})
        if self._final and "spectrum_metadata" in config:
            spec = self._spectrum(self._final, json.loads(config["spectrum_metadata"]))
        else:
            spec = self._spectrum((r for _, r in (self._rows[i] for i in sorted(self._rows))),
                                  self._partial_metadata())
        self._emit("stop", RunStop(doc.get("exit_status", "success"), doc.get("reason", ""),
                                   None, spec))
        self._start = None


def _unpack_page(page: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    from event_model import unpack_event_page

    return unpack_event_page(page)

