"""A run as a stream of documents, after Bluesky's event model, and the sinks that subscribe.

A scan (:func:`cplscope.plans.scan.scan`) and a reprocessing (:func:`cplscope.plans.reprocess.reprocess`)
are plans that emit, in order:

- ``("start", RunStart)``: the run metadata (instrument, calibration, sample, settings) and
  the plan (wavelengths, accumulations);
- ``("dark", DarkEvent)``: a dark measurement (one per accumulation when measured);
- ``("survey", Survey)``: the quick pass of a surveyed or time-budget scan
  (:class:`cplscope.plans.survey.Survey`);
- ``("event", PointEvent)``: one per point and accumulation: the point's frames, context and
  result, and the spectrum as it stands after it;
- ``("stop", RunStop)``: the exit status (``"success"``, ``"abort"`` on Ctrl-C, ``"fail"``),
  the reason, the stream health and the final spectrum.

A sink is any callable ``sink(name, document)``: :mod:`cplscope.data.sinks` has the CSV,
archive, progress and callback sinks, :class:`cplscope.plot.sink.PlotSink` draws the figure,
and a lab script passes its own in ``scan(..., sinks=[...])``. :class:`SpectrumAssembler` turns the
events into the spectrum (accumulations combined, the blank subtracted once), the same way for
a live run and for a reprocessing.
"""
from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..util.clock import utc_now_iso
from ..science.pipeline import PointContext, spectrum_row
from ..science.results import FlagRules, PointResult
from .spectrum import Spectrum

__all__ = ["DarkEvent", "PointEvent", "RunStart", "RunStop", "Sink", "SpectrumAssembler", "emit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """The first document of a run.

    Attributes:
        uid: a unique id of the run.
        time: ISO 8601 UTC time of the start.
        metadata: the run metadata (:func:`cplscope.data.spectrum.run_metadata`).
        wavelengths_nm: the planned wavelengths, nm, in scan order.
        accumulations: the planned number of scans.
        n_bins: B of every frame.
        calibration: the :class:`~cplscope.settings.calibration.Calibration` in force.
        blank: the :class:`~cplscope.settings.calibration.Blank` subtracted, or None.
        rules: the flag thresholds.
    """

    uid: str
    time: str
    metadata: dict[str, Any]
    wavelengths_nm: tuple[float, ...]
    accumulations: int
    n_bins: int
    calibration: Any
    blank: Any
    rules: FlagRules

    @classmethod
    def new(cls, metadata: Mapping[str, Any], wavelengths_nm: Sequence[float], *,
            accumulations: int, n_bins: int, calibration: Any, blank: Any,
            rules: FlagRules) -> RunStart:
        return cls(uuid.uuid4().hex, utc_now_iso(), dict(metadata),
                   tuple(float(w) for w in wavelengths_nm), int(accumulations), int(n_bins),
                   calibration, blank, rules)


@dataclass(frozen=True)
class DarkEvent:
    """A dark measurement: ``dark`` (a :class:`~cplscope.plans.point.Dark`) taken before
    accumulation ``accumulation``; ``index`` numbers the darks of the run (0, 1, …)."""

    accumulation: int
    index: int
    dark: Any


@dataclass(frozen=True)
class PointEvent:
    """One point of one accumulation.

    Attributes:
        seq_num: 1, 2, … over the run.
        index: position of the wavelength in the plan.
        accumulation: the scan it belongs to.
        context: the point's :class:`~cplscope.science.pipeline.PointContext`.
        frames: every frame received for the point (a :class:`~cplscope.science.frames.FrameSet`).
        result: the accumulation's own result, before the blank.
        row: the spectrum's row for this wavelength after this event (accumulations so far
            combined, blank subtracted).
        blank: (g, σ) subtracted at this wavelength, or None.
        spectrum: the spectrum after this event.
        measurement: the live :class:`~cplscope.plans.point.PointMeasurement` (None when
            replayed from an archive).
        frame_time_s, dwell_s, bin_span: of the usable frames.
        budget_left_s: counting time left in a time-budget scan, s (NaN: no budget).
    """

    seq_num: int
    index: int
    accumulation: int
    context: PointContext
    frames: Any
    result: PointResult
    row: PointResult
    blank: tuple[float, float] | None
    spectrum: Spectrum
    measurement: Any = None
    frame_time_s: float = math.nan
    dwell_s: float = math.nan
    bin_span: float = 1.0
    budget_left_s: float = math.nan


@dataclass(frozen=True)
class RunStop:
    """The last document of a run: ``exit_status`` ``"success"``, ``"abort"`` (Ctrl-C) or
    ``"fail"`` (an error, in ``reason``), the stream-health counters and the spectrum."""

    exit_status: str
    reason: str
    stream: dict[str, int] | None
    spectrum: Spectrum
    time: str = field(default_factory=utc_now_iso)
    extra: dict[str, Any] = field(default_factory=dict)
    """Metadata the run added as it went (the survey, the time-budget plan, resumes)."""


class Sink(Protocol):
    def __call__(self, name: str, doc: Any) -> None: ...


class SpectrumAssembler:
    """Builds the spectrum from per-accumulation point results: one row per wavelength, in
    plan order, the accumulations combined and the blank subtracted once
    (:func:`cplscope.science.pipeline.spectrum_row`)."""

    def __init__(self, metadata: Mapping[str, Any], rules: FlagRules) -> None:
        self.metadata = dict(metadata)
        self.rules = rules
        self._results: dict[int, list[PointResult]] = {}
        self._rows: dict[int, PointResult] = {}
        self._accumulations: set[int] = set()

    def add(self, index: int, accumulation: int, result: PointResult,
            blank: tuple[float, float] | None, **_: Any) -> PointResult:
        """Add one accumulation's result for the wavelength at ``index``; returns its row.
        (Keywords that other modes' assemblers take, such as the estimate, are ignored.)"""
        got = self._results.setdefault(index, [])
        got.append(result)
        self._accumulations.add(int(accumulation))
        row = spectrum_row(got, blank, self.rules)
        self._rows[index] = row
        return row

    def spectrum(self, stream: Mapping[str, int] | None = None,
                 **extra: Any) -> Spectrum:
        """The spectrum so far, with ``accumulations``/``accumulations_done`` (scans that
        have at least one point), the stream counters and ``extra`` in its metadata."""
        meta = dict(self.metadata)
        done = len(self._accumulations)
        meta["accumulations"] = done
        meta["accumulations_done"] = done
        meta.update(extra)
        spec = Spectrum([self._rows[i] for i in sorted(self._rows)], meta)
        if stream is not None:
            spec.set_stream(stream)
        return spec


def emit(sinks: Sequence[Sink], name: str, doc: Any) -> None:
    """Send one document to every sink, in order."""
    for sink in sinks:
        sink(name, doc)

