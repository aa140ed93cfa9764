"""Reprocessing: a plan that recomputes a spectrum from a raw archive's frames through the
same point pipeline and document stream as the run."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..data.archive import Archive
from ..data.documents import PointEvent, RunStart, RunStop, Sink, SpectrumAssembler, emit
from ..data.spectrum import Spectrum
from ..science.pipeline import process_point
from ..science.results import (
    FLAG_DWELL_LIMIT,
    FLAG_FLICKER,
    FLAG_LINEAR_POL,
    FLAG_LINEAR_UNKNOWN,
    FLAG_MISFIT,
    FLAG_NO_EMISSION,
    FLAG_SCATTER,
    FlagRules,
)
from ..settings.calibration import Blank, Calibration
from ..util.clock import utc_now_iso

__all__ = ["reprocess"]

#: Flags the pipeline derives from the frames and the context; reprocessing recomputes them
#: and keeps any other flag a stored result carries.
DERIVED_FLAGS = frozenset({FLAG_NO_EMISSION, FLAG_LINEAR_POL, FLAG_LINEAR_UNKNOWN, FLAG_MISFIT,
                            FLAG_FLICKER, FLAG_SCATTER, "saturated", "overload", "mono_moving",
                            "overrun", "pem_unlocked", "nonlinear"})


def reprocess(path: str | os.PathLike[str], calibration: Calibration | None = None,
              blank: Blank | None = None, *, rules: FlagRules | None = None,
              sinks: Sequence[Sink] = ()) -> Spectrum:
    """Recompute a spectrum from an archive's frames, through the same point pipeline and
    document stream as the run (one row per wavelength, accumulations combined, the blank
    subtracted once).

    Frames that are not usable (docs/protocol.md, Flags) are left out, as in the run. With no
    arguments the result equals the run's CSV: the same rows, g, σ, flags and metadata, plus
    a ``reprocessed`` note.

    Args:
        calibration: new constants. Each point's A0 is recomputed from the firmware's
            nominal A0 stored with it (``a0_in_force``), so the tracking state is kept;
            φ0, handedness and dead time are replaced. None keeps the stored values.
        blank: a blank to subtract instead of the run's. When None: the new calibration's
            blank if a calibration is given (none if it has none), else the run's.
        rules: flag thresholds; the archive's by default.
        sinks: document subscribers (e.g. a :class:`~cplscope.data.sinks.CsvSink`).

    Returns:
        A :class:`Spectrum` whose metadata notes the reprocessing.
    """
    with Archive.open(path) as arc:
        rules = rules or arc.rules
        old = arc.calibration
        if calibration is not None and old is None:
            raise ValueError(f"{path} stores no calibration, so a new one cannot be applied "
                             "relative to it")
        meta = dict(arc.metadata)
        if calibration is not None:
            cal = {k: v for k, v in calibration.to_dict().items()
                   if k not in ("format", "version", "blank")}
            use_blank = blank if blank is not None else calibration.blank
            cal["blank_applied"] = use_blank is not None
            meta["calibration"] = cal
        else:
            use_blank = blank
            if blank is not None:
                meta.setdefault("calibration", {})["blank_applied"] = True
        assembler = SpectrumAssembler(meta, rules)
        plan = arc.plan or {}
        wavelengths = plan.get("wavelengths_nm") or []
        subscribers = list(sinks)
        emit(subscribers, "start", RunStart.new(
            meta, wavelengths, accumulations=int(plan.get("accumulations") or 1),
            n_bins=arc.n_bins, calibration=calibration or old, blank=use_blank or arc.blank,
            rules=rules))
        order: dict[float, int] = {}
        for seq, ap in enumerate(arc, 1):
            s = ap.settings
            ctx = s.context()
            kept = tuple(f for f in ap.result.flags if f not in DERIVED_FLAGS
                         and not (f == FLAG_DWELL_LIMIT and math.isfinite(s.target_sigma)))
            if kept:
                ctx = replace(ctx, extra_flags=tuple(dict.fromkeys(ctx.extra_flags + kept)))
            if calibration is not None:
                ctx = ctx.recalibrated(old, calibration)
            if calibration is not None or blank is not None:
                point_blank = (use_blank.at(s.wavelength_nm) if use_blank is not None
                               else None)
            else:
                point_blank = s.blank
            use = ap.frames.select(ap.frames.usable)
            if use.n_frames == 0:
                raise ValueError(f"{path}: point {ap.index} ({s.wavelength_nm:g} nm) has no "
                                 "usable frames")
            _, result = process_point(use.counts, s.frame_time_s, s.bin_span, s.dwell_s, ctx,
                                      frame_flags=ap.frames.flags, rules=rules)
            index = s.index if s.index >= 0 else order.setdefault(
                round(s.wavelength_nm, 6), len(order))
            row = assembler.add(index, s.accumulation, result, point_blank)
            emit(subscribers, "event", PointEvent(
                seq, index, s.accumulation, ctx, ap.frames, result, row, point_blank,
                assembler.spectrum(arc.stream), frame_time_s=s.frame_time_s,
                dwell_s=s.dwell_s, bin_span=s.bin_span))
        extra: dict[str, Any] = dict(arc.extra)
        if arc.exit_status == "abort":
            extra["interrupted"] = True
        extra["reprocessed"] = {"date": utc_now_iso(), "archive": str(path)}
        spec = assembler.spectrum(arc.stream, **extra)
        emit(subscribers, "stop", RunStop("success", "", arc.stream, spec))
    return spec
