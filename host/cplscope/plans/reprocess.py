"""Reprocessing: a plan that recomputes a spectrum from a raw archive's frames through the
same point pipeline, mode and document stream as the run.

:func:`reprocess` does it for a CPL archive (with a new calibration or blank if given),
:func:`cd_reprocess` for a CD archive (with a new baseline or CD calibration if given); each
refuses the other kind.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..data.archive import Archive, ArchivedPoint
from ..data.cd_spectrum import CDSpectrum
from ..data.documents import PointEvent, RunStart, RunStop, Sink, emit
from ..data.spectrum import Spectrum
from ..science.cd import CDCalibration, CDRules
from ..protocol.gating import Gating
from ..science.frames import GatedFrameSet
from ..science.lamp import frame_times_s
from ..science.pipeline import PointContext
from ..science.regate import GateError, Regate, choose_bins, regated_point
from ..science.results import (
    FLAG_DWELL_LIMIT,
    FLAG_FLICKER,
    FLAG_LINEAR_POL,
    FLAG_LINEAR_UNKNOWN,
    FLAG_MISFIT,
    FLAG_NO_EMISSION,
    FLAG_SCATTER,
    FLAG_UNDETECTED,
    FlagRules,
    frame_health_flags,
)
from ..settings.calibration import Blank, Calibration, CalibrationMismatch
from ..util.clock import utc_now_iso
from .modes import Emission, Transmission, mode_from_metadata
from .resume import replay_point

__all__ = ["ArchiveKindError", "cd_reprocess", "reprocess"]


class ArchiveKindError(ValueError):
    """An archive of the other kind: a CD scan's given to the CPL reprocessing or resume,
    or a CPL scan's to the CD one."""

#: Flags the pipeline derives from the frames and the context; reprocessing recomputes them
#: and keeps any other flag a stored result carries.
DERIVED_FLAGS = frozenset({FLAG_NO_EMISSION, FLAG_UNDETECTED, FLAG_LINEAR_POL,
                            FLAG_LINEAR_UNKNOWN, FLAG_MISFIT, FLAG_FLICKER, FLAG_SCATTER, "saturated", "overload", "mono_moving",
                            "overrun", "pem_unlocked", "nonlinear"})


def reprocess(path: str | os.PathLike[str], calibration: Calibration | None = None,
              blank: Blank | None = None, *, rules: FlagRules | None = None,
              sinks: Sequence[Sink] = (), force_calibration: bool = False,
              gate: tuple[float, float] | None = None) -> Spectrum:
    """Recompute a CPL spectrum from an archive's frames, through the same point pipeline
    and document stream as the run (one row per wavelength, accumulations combined, the blank
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
        force_calibration: apply a ``calibration`` of another instrument (another serial)
            anyway; the metadata records it (``reprocessed.force_calibration``).
        gate: ``(delay_s, width_s)``: re-gate a time-bin run (``--time-bins N``) offline: the
            spectrum through the gate from ``delay_s`` to ``delay_s + width_s`` after each
            pulse (s), made of the contiguous whole time bins it covers, each corrected for
            the dead time at its own in-gate rate before they are summed
            (:mod:`cplscope.science.regate`). Its ends must fall on bin edges (within
            :data:`~cplscope.science.regate.EDGE_TOLERANCE` of a bin) inside the measured
            bins. Each point's ``dwell_s`` is then the time its gate's bins were counted.

    Returns:
        A :class:`Spectrum` whose metadata notes the reprocessing (``reprocessed``: date,
        archive, the gate made with ``gate`` and its bins, and what could not be read from a
        damaged archive, ``lost``).

    Raises:
        ArchiveKindError: for the archive of a CD scan (:func:`cd_reprocess` reads those).
        CalibrationMismatch: ``calibration`` is another instrument's (without
            ``force_calibration``).
        GateError: ``gate`` for an archive without time bins (continuous excitation, or one
            gate), or a gate its bins cannot make (the message names the nearest ones).
        ValueError: the archive cannot be read (the message names the file).
    """
    with Archive.open(path) as arc:
        if arc.metadata.get("mode") == "cd":
            raise ArchiveKindError(
                f"{arc.path} is the archive of a CD scan: reprocess it with `cplscope "
                "cd-reprocess` (cplscope.plans.reprocess.cd_reprocess)")
        old = arc.calibration
        if calibration is not None and old is None:
            raise ValueError(f"{path} stores no calibration, so a new one cannot be applied "
                             "relative to it")
        forced = _check_serial(arc, calibration, force_calibration)
        regate = _regate_of(arc, gate) if gate is not None else None
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
        mode = Emission(rules=rules or arc.rules, blank=use_blank or arc.blank)
        own_blank = calibration is None and blank is None
        job = _Reprocessing(arc, mode, meta, calibration, old,
                            None if own_blank else (use_blank, True), forced, regate)
        return job.run(sinks)


def _regate_of(arc: Archive, gate: tuple[float, float]) -> Regate:
    """The time bins of ``arc`` that make ``gate`` (delay, width in s), or GateError."""
    gating = (arc.metadata.get("settings") or {}).get("gating")
    if not gating:
        raise GateError(f"{arc.path} was measured with continuous excitation (no pulses, no "
                        "gate): there are no time bins to make a gate of. A gate can be made "
                        "offline from the archive of a run with time bins (`cplscope scan "
                        "--pulse-rate HZ --gate DELAY:WIDTH --time-bins N --archive ...`)")
    g = Gating.from_config(gating)
    if g.gates < 2:
        raise GateError(f"{arc.path} was measured through one gate ({g.delay_s:.6g} s to "
                        f"{g.delay_s + g.width_s:.6g} s after each pulse): its frames hold that "
                        "gate's photons, not when each arrived, so no other gate can be made "
                        "of them. Re-gating needs a run measured in time bins (--time-bins N)")
    return choose_bins(gate[0], gate[1], g.delay_s, g.width_s, g.gates)


def _check_serial(arc: Archive, calibration: Calibration | None,
                  force: bool) -> dict[str, str] | None:
    """Refuse another instrument's calibration unless forced; what to record when forced."""
    owner = str((arc.metadata.get("instrument") or {}).get("serial", ""))
    if calibration is None or not owner or calibration.serial == owner:
        return None
    if not force:
        raise CalibrationMismatch(
            f"the calibration is instrument {calibration.serial!r}'s, but {arc.path} was "
            f"measured on {owner!r}: its A0, φ0 and handedness belong to another optical "
            "setup (possibly a flipped sign). Use that instrument's calibration, or apply this "
            "one anyway with force_calibration=True (--force-calibration); the result records "
            "that choice")
    return {"calibration_serial": calibration.serial, "instrument_serial": owner}


def cd_reprocess(archive: str | os.PathLike[str], *,
                 baseline: None | CDSpectrum | str | os.PathLike[str] = None,
                 cd_calibration: CDCalibration | None = None,
                 rules: CDRules | None = None,
                 sinks: Sequence[Sink] = ()) -> CDSpectrum:
    """Recompute a CD spectrum from the raw archive of a CD scan, through the same point
    pipeline (each point's stored context), with a ``baseline`` (a CD spectrum or its CSV)
    and CD calibration (default: the ones the scan used) and ``rules`` (default: the scan's).

    Raises:
        ValueError: for the archive of a CPL scan (:func:`reprocess` reads those).
    """
    with Archive.open(archive) as arc:
        meta = dict(arc.metadata)
        if meta.get("mode") != "cd":
            raise ArchiveKindError(
                f"{arc.path} is not the archive of a CD scan (it is a CPL scan's): reprocess "
                "it with `cplscope reprocess`")
        base = _baseline_of(baseline, meta)
        if isinstance(arc.extra.get("lamp"), dict):     # the lamp readings the run took
            meta["lamp"] = arc.extra["lamp"]
        mode = mode_from_metadata(meta, rules=arc.rules, blank=None, baseline=base,
                                  cd_calibration=cd_calibration,
                                  wavelengths_nm=(arc.plan or {}).get("wavelengths_nm") or
                                  sorted({p.settings.wavelength_nm for p in arc}))
        assert isinstance(mode, Transmission)
        if rules is not None:
            mode = replace(mode, rules=rules)
        elif not isinstance(meta.get("cd_rules"), dict) and isinstance(
                (meta.get("settings") or {}).get("rules"), dict):
            mode = replace(mode, rules=CDRules(**meta["settings"]["rules"]))
        if baseline is not None:
            meta["baseline"] = str(baseline) if not isinstance(baseline, CDSpectrum) else \
                mode.baseline_label
        return _Reprocessing(arc, mode, meta, None, arc.calibration, None, None).run(sinks)


def _baseline_of(given: Any, meta: dict[str, Any]) -> CDSpectrum | None:
    """The baseline spectrum to use: the one given, else (an archive that predates stored
    baseline points) the CSV the scan named, when it still exists."""
    if isinstance(given, CDSpectrum):
        return given
    if given is not None:
        return CDSpectrum.read_csv(Path(given))
    named = meta.get("baseline")
    if not meta.get("baseline_points") and named and named != "none" and Path(named).is_file():
        return CDSpectrum.read_csv(Path(named))
    return None


@dataclass
class _Reprocessing:
    """One reprocessing run: the archive's points through the pipeline, as documents."""

    arc: Archive
    mode: Any
    meta: dict[str, Any]
    calibration: Calibration | None
    old: Calibration | None
    blank: tuple[Blank | None, bool] | None
    forced: dict[str, str] | None
    regate: Regate | None = None

    def run(self, sinks: Sequence[Sink]) -> Any:
        arc, subscribers = self.arc, list(sinks)
        assembler = self.mode.assembler(self.meta)
        plan = arc.plan or {}
        emit(subscribers, "start", RunStart.new(
            self.meta, plan.get("wavelengths_nm") or [],
            accumulations=int(plan.get("accumulations") or 1), n_bins=arc.n_bins,
            calibration=self.calibration or self.old,
            blank=getattr(self.mode, "blank", None), rules=self.mode.binned_rules))
        order: dict[float, int] = {}
        for seq, ap in enumerate(arc, 1):
            s = ap.settings
            ctx = self.context(ap)
            correction = self.correction(ap)
            if ap.frames.select(ap.frames.usable).n_frames == 0:
                raise ValueError(f"{arc.path}: point {ap.index} ({s.wavelength_nm:g} nm) has "
                                 "no usable frames")
            frame_time, span = s.frame_time_s, s.bin_span
            if self.regate is None:
                est, result, health = replay_point(ap, self.mode, ctx)
            else:
                est, result, ctx, frame_time, span = self.regated(ap, ctx)
                health = tuple(frame_health_flags(ap.frames.flags))
            index = s.index if s.index >= 0 else order.setdefault(
                round(s.wavelength_nm, 6), len(order))
            row = assembler.add(index, s.accumulation, result, correction, estimate=est,
                                health=health, extra_flags=ctx.extra_flags,
                                times_s=frame_times_s(ap.frames.select(ap.frames.usable)))
            emit(subscribers, "event", PointEvent(
                seq, index, s.accumulation, ctx, ap.frames, result, row,
                correction if isinstance(correction, tuple) else None,
                assembler.spectrum(arc.stream), frame_time_s=frame_time,
                dwell_s=result.dwell_s, bin_span=span))
        extra: dict[str, Any] = dict(arc.extra)
        if arc.exit_status == "abort" or not arc.closed_cleanly:
            extra["interrupted"] = True
        note: dict[str, Any] = {"date": utc_now_iso(), "archive": str(arc.path)}
        if arc.source == "journal":
            note["from_journal"] = True      # the run did not end: killed, or still going
        if arc.lost:
            note["lost"] = list(arc.lost)
        if self.forced is not None:
            note["force_calibration"] = self.forced
        if self.regate is not None:
            note["gate"] = self.regate.as_dict()
        extra["reprocessed"] = note
        spec = assembler.spectrum(arc.stream, **extra)
        emit(subscribers, "stop", RunStop("success", "", arc.stream, spec))
        return spec

    def regated(self, ap: ArchivedPoint, ctx: PointContext) -> tuple[Any, Any, PointContext,
                                                                      float, float]:
        """The point through the gate :attr:`regate` (estimate, result, the context used,
        the gate's frame time in s and its bin span)."""
        assert self.regate is not None
        use = ap.frames.select(ap.frames.usable)
        if not isinstance(use, GatedFrameSet) or use.n_gates < 2:
            raise GateError(f"{self.arc.path}: the point at {ap.settings.wavelength_nm:g} nm "
                            "does not record its frames' time bins (an archive written before "
                            "they were kept): it cannot be re-gated")
        est, result, ctx, part = regated_point(use, ctx, self.regate,
                                               frame_flags=ap.frames.flags,
                                               rules=self.mode.binned_rules)
        return est, result, ctx, part.frame_time_s, part.span

    def context(self, ap: ArchivedPoint) -> PointContext:
        """The point's stored context, with the flags the run added kept and the new
        calibration applied."""
        s = ap.settings
        ctx = s.context()
        kept = tuple(f for f in ap.result.flags if f not in DERIVED_FLAGS
                     and not (f == FLAG_DWELL_LIMIT and math.isfinite(s.target_sigma)))
        if kept:
            ctx = replace(ctx, extra_flags=tuple(dict.fromkeys(ctx.extra_flags + kept)))
        if self.calibration is not None:
            ctx = ctx.recalibrated(self.old, self.calibration)
        return ctx

    def correction(self, ap: ArchivedPoint) -> Any:
        """The reference subtracted at the point: the run's blank or the new one (CPL), the
        baseline (CD)."""
        wl = ap.settings.wavelength_nm
        if self.mode.name == "cd":
            return self.mode.correction_at(wl)
        if self.blank is None:
            return ap.settings.blank
        blank, _ = self.blank
        return blank.at(wl) if blank is not None else None
