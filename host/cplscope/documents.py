"""A run as a stream of documents, after Bluesky's event model, and the sinks that subscribe.

A scan (:func:`cplscope.scan.scan`) and a reprocessing (:func:`cplscope.archive.reprocess`)
are plans that emit, in order:

- ``("start", RunStart)``: the run metadata (instrument, calibration, sample, settings) and
  the plan (wavelengths, accumulations);
- ``("dark", DarkEvent)``: a dark measurement (one per accumulation when measured);
- ``("survey", Survey)``: the quick pass of a surveyed or time-budget scan
  (:class:`cplscope.survey.Survey`);
- ``("event", PointEvent)``: one per point and accumulation: the point's frames, context and
  result, and the spectrum as it stands after it;
- ``("stop", RunStop)``: the exit status (``"success"``, ``"abort"`` on Ctrl-C, ``"fail"``),
  the reason, the stream health and the final spectrum.

A sink is any callable ``sink(name, document)``. :class:`CsvSink`, :class:`ArchiveSink`,
:class:`ProgressSink`, :class:`CallbackSink` and :class:`PlotSink` are the ones cplscope uses;
a lab script passes its own in ``scan(..., sinks=[...])``. :class:`SpectrumAssembler` turns the
events into the spectrum (accumulations combined, the blank subtracted once), the same way for
a live run and for a reprocessing.
"""
from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ._clock import utc_now_iso
from .pipeline import PointContext, spectrum_row
from .results import FlagRules, PointResult
from .spectrum import Spectrum

__all__ = [
    "ArchiveSink", "CallbackSink", "CsvSink", "DarkEvent", "PlotSink", "PointEvent",
    "ProgressSink", "RunStart", "RunStop", "Sink", "SpectrumAssembler",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """The first document of a run.

    Attributes:
        uid: a unique id of the run.
        time: ISO 8601 UTC time of the start.
        metadata: the run metadata (:func:`cplscope.spectrum.run_metadata`).
        wavelengths_nm: the planned wavelengths, nm, in scan order.
        accumulations: the planned number of scans.
        n_bins: B of every frame.
        calibration: the :class:`~cplscope.calibration.Calibration` in force.
        blank: the :class:`~cplscope.calibration.Blank` subtracted, or None.
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
    """A dark measurement: ``dark`` (a :class:`~cplscope.measure.Dark`) taken before
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
        context: the point's :class:`~cplscope.pipeline.PointContext`.
        frames: every frame received for the point (a :class:`~cplscope.frames.FrameSet`).
        result: the accumulation's own result, before the blank.
        row: the spectrum's row for this wavelength after this event (accumulations so far
            combined, blank subtracted).
        blank: (g, σ) subtracted at this wavelength, or None.
        spectrum: the spectrum after this event.
        measurement: the live :class:`~cplscope.measure.PointMeasurement` (None when
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
    (:func:`cplscope.pipeline.spectrum_row`)."""

    def __init__(self, metadata: Mapping[str, Any], rules: FlagRules) -> None:
        self.metadata = dict(metadata)
        self.rules = rules
        self._results: dict[int, list[PointResult]] = {}
        self._rows: dict[int, PointResult] = {}
        self._accumulations: set[int] = set()

    def add(self, index: int, accumulation: int, result: PointResult,
            blank: tuple[float, float] | None) -> PointResult:
        """Add one accumulation's result for the wavelength at ``index``; returns its row."""
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


# --- sinks --------------------------------------------------------------------------------

class CsvSink:
    """Rewrites the spectrum CSV atomically after every point and at the end."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __call__(self, name: str, doc: Any) -> None:
        if name == "event":
            doc.spectrum.write_csv(self.path)
        elif name == "stop":
            doc.spectrum.write_csv(self.path)


class ArchiveSink:
    """Writes the raw HDF5 archive: every frame of every dark and point, each point's
    context and result, flushed after every document."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False,
                 append: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.append = append
        self._writer: Any = None

    def __call__(self, name: str, doc: Any) -> None:
        from .archive import ArchiveWriter, PointSettings

        if name == "start" and self.append:
            self._writer = ArchiveWriter.reopen(self.path)
        elif name == "start":
            self._writer = ArchiveWriter(self.path, n_bins=doc.n_bins, metadata=doc.metadata,
                                         calibration=doc.calibration, rules=doc.rules,
                                         blank=doc.blank, overwrite=self.overwrite,
                                         plan={"wavelengths_nm": list(doc.wavelengths_nm),
                                               "accumulations": doc.accumulations,
                                               "uid": doc.uid})
        elif name == "dark" and self._writer is not None:
            frames = getattr(doc.dark, "frames", None)
            if frames is not None:
                self._writer.add_dark(frames, source="shutter-closed",
                                      frame_time_s=frames.frame_time_s, dark=doc.dark)
        elif name == "event" and self._writer is not None:
            s = PointSettings.from_context(doc.context, frame_time_s=doc.frame_time_s,
                                           dwell_s=doc.dwell_s, bin_span=doc.bin_span,
                                           blank=doc.blank, index=doc.index)
            self._writer.add_point(doc.frames, s, doc.result)
        elif name == "stop" and self._writer is not None:
            self._writer.close(stream=doc.stream, exit_status=doc.exit_status,
                               extra=doc.extra)
            self._writer = None


class ProgressSink:
    """A tqdm progress bar over the planned points, with the last point's wavelength,
    g ± σ and dwell."""

    def __init__(self, desc: str = "scan") -> None:
        self.desc = desc
        self._bar: Any = None

    def __call__(self, name: str, doc: Any) -> None:
        if name == "start":
            from tqdm import tqdm

            self._bar = tqdm(total=len(doc.wavelengths_nm) * doc.accumulations, unit="pt",
                             desc=self.desc)
        elif name == "event" and self._bar is not None:
            r = doc.result
            left = (f"  budget left {doc.budget_left_s:.0f} s"
                    if math.isfinite(doc.budget_left_s) else "")
            self._bar.set_postfix_str(f"{r.wavelength_nm:g} nm  g={r.g_lum:+.1e}±{r.sigma_g:.0e}"
                                      f"  {r.dwell_s:.0f} s{left}", refresh=False)
            self._bar.update(1)
        elif name == "stop" and self._bar is not None:
            self._bar.close()
            self._bar = None


class CallbackSink:
    """Calls ``callback(point, index, accumulation)`` after every live point (``point`` is
    the :class:`~cplscope.measure.PointMeasurement`)."""

    def __init__(self, callback: Callable[..., None]) -> None:
        self.callback = callback

    def __call__(self, name: str, doc: Any) -> None:
        if name == "event" and doc.measurement is not None:
            self.callback(doc.measurement, doc.index, doc.accumulation)


class PlotSink:
    """Draws the CPL figure of the final spectrum (:func:`cplscope.plot.plot_cpl`) when
    the run stops with at least one point."""

    def __init__(self, path: str | os.PathLike[str], **options: Any) -> None:
        self.path = Path(path)
        self.options = options

    def __call__(self, name: str, doc: Any) -> None:
        if name == "stop" and len(doc.spectrum):
            from .plot import plot_cpl

            plot_cpl(doc.spectrum, self.path, **self.options)


def emit(sinks: Sequence[Sink], name: str, doc: Any) -> None:
    """Send one document to every sink, in order."""
    for sink in sinks:
        sink(name, doc)

