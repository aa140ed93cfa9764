"""The state of a running scan as the live view shows it: a sink of the engine's documents
(:mod:`cplscope.data.documents`) that keeps the run's metadata, its points so far, the last
point's dwell and σ against the target, the progress, the predicted time left and the flags,
and gives them as JSON (:meth:`LiveRun.snapshot`). Thread-safe: the engine writes from its
thread, the web server reads from its own."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LiveRun"]


def _num(x: Any) -> float | None:
    """A JSON number: None for NaN and ±∞."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class LiveRun:
    """A sink ``(name, document)`` that keeps what the live page shows.

    Args:
        clock: wall-clock seconds (for the time-left estimate); ``time.monotonic``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._state: dict[str, Any] = {"status": "waiting", "metadata": {}, "points": [],
                                       "progress": {}, "current": None}
        self._t0 = math.nan
        self._planned = 0
        self._seq = 0

    def __call__(self, name: str, doc: Any) -> None:
        with self._lock:
            if name == "start":
                self._start(doc)
            elif name == "survey":
                self._state["progress"]["survey_predicted_s"] = _num(
                    doc.as_dict().get("predicted_total_s"))
            elif name == "event":
                self._event(doc)
            elif name == "stop":
                self._state["status"] = doc.exit_status
                self._state["reason"] = doc.reason
                self._state["points"] = [self._point(r, None) for r in doc.spectrum]
                self._state["progress"]["time_left_s"] = 0.0

    def _start(self, doc: Any) -> None:
        meta = doc.metadata
        settings = meta.get("settings", {})
        self._planned = len(doc.wavelengths_nm) * doc.accumulations
        self._t0, self._seq = self._clock(), 0
        target_key = next((k for k in settings if k.startswith("target_sigma")), None)
        self._state = {
            "status": "running", "reason": "",
            "metadata": {"uid": doc.uid, "date": meta.get("date"),
                         "sample": meta.get("sample"), "mode": meta.get("mode", "cpl"),
                         "serial": meta.get("instrument", {}).get("serial"),
                         "wavelengths_nm": list(doc.wavelengths_nm),
                         "accumulations": doc.accumulations, "settings": _jsonable(settings)},
            "target": {"name": target_key,
                       "value": _num(settings.get(target_key)) if target_key else None},
            "points": [], "current": None,
            "progress": {"done": 0, "planned": self._planned, "time_left_s": None,
                         "budget_left_s": None, "survey_predicted_s": None},
        }

    def _point(self, row: Any, doc: Any) -> dict[str, Any]:
        """The row's values as its CSV writes them (rounded to their resolution)."""
        from ..data.cd_spectrum import CD_TABLE
        from ..data.spectrum import CPL_TABLE, written_value

        cd = hasattr(row, "delta_a")
        table = CD_TABLE if cd else CPL_TABLE

        def value(name: str) -> float | None:
            return _num(written_value(table, name, getattr(row, name), row))

        p: dict[str, Any] = {
            "wavelength_nm": value("wavelength_nm"),
            "g_lum": value("g_abs" if cd else "g_lum"),
            "sigma_g": value("sigma_g_abs" if cd else "sigma_g"),
            "intensity": value("intensity"), "flags": list(row.flags),
            "dwell_s": value("dwell_s")}
        if cd:
            p.update(delta_a=value("delta_a"), sigma_delta_a=value("sigma_delta_a"))
        if doc is not None:
            p.update(index=int(doc.index), accumulation=int(doc.accumulation))
        return p

    def _event(self, doc: Any) -> None:
        st = self._state
        point = self._point(doc.row, doc)
        rows = {p["index"]: p for p in st["points"]}
        rows[point["index"]] = point
        st["points"] = [rows[i] for i in sorted(rows)]
        self._seq += 1
        elapsed = self._clock() - self._t0
        left = elapsed / self._seq * (self._planned - self._seq) if self._seq else None
        st["progress"].update(done=self._seq, time_left_s=_num(left),
                              budget_left_s=_num(doc.budget_left_s))
        merit = getattr(doc.measurement, "merit", math.nan) if doc.measurement else math.nan
        st["current"] = {"wavelength_nm": point["wavelength_nm"],
                         "dwell_s": point["dwell_s"],
                         "sigma": _num(merit) if math.isfinite(merit) else point["sigma_g"],
                         "target": st["target"]["value"], "flags": point["flags"]}

    def snapshot(self) -> dict[str, Any]:
        """The run so far: ``status``, ``metadata``, ``points`` (``wavelength_nm``,
        ``g_lum``, ``sigma_g``, ``intensity``, ``flags``, ``dwell_s``, …; for CD, g is
        g_abs), ``current`` (the last point's dwell and σ against ``target``), ``progress``
        (``done``, ``planned``, ``time_left_s``, …). NaN is null."""
        import copy

        with self._lock:
            return copy.deepcopy(self._state)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _num(value)
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)
