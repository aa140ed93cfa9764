"""Resuming an interrupted scan from its raw archive (``cplscope scan --resume``,
``cplscope cd --resume``).

The archive holds the scan's settings, calibration, mode (CPL with its blank, or CD with its
baseline and CD calibration), flag rules, darks and every point measured so far with its
context. :func:`resume_scan` replays those points through the point pipeline, measures only
the missing ones with the same engine (:mod:`cplscope.plans.engine`), and appends them to
the same archive, so the result is the spectrum one uninterrupted run gives.
"""
from __future__ import annotations

import math

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.archive import Archive, ArchivedPoint
from ..data.documents import Sink
from ..science.frames import GatedFrameSet
from ..science.lamp import frame_times_s
from ..science.pipeline import process_point
from ..science.results import frame_health_flags
from .detection import whole_turns
from .engine import ScanSettings, run_scan
from .modes import mode_from_metadata
from .outputs import run_sinks
from .point import DEFAULT_MAX_DWELL_S, Dark

__all__ = ["replay_point", "resume_scan"]


def replay_point(ap: ArchivedPoint, mode: Any, ctx: Any = None) -> tuple[Any, Any, tuple]:
    """An archived point through the point pipeline again: (estimate, binned result, frame
    health flags), under its stored context or ``ctx``."""
    s = ap.settings
    ctx = ctx if ctx is not None else s.context()
    use = ap.frames.select(ap.frames.usable)
    if isinstance(use, GatedFrameSet) and use.n_gates > 1:
        # time bins: fitted as the run fitted them, on whole turns through the bins
        whole = whole_turns(use, ctx.dead_time_s)
        est, result = process_point(whole.counts, whole.frame_time_s, whole.span,
                                    whole.dwell_s, ctx, frame_flags=ap.frames.flags,
                                    rules=mode.binned_rules)
    else:
        est, result = process_point(use.counts, s.frame_time_s, s.bin_span, s.dwell_s, ctx,
                                    frame_flags=ap.frames.flags, rules=mode.binned_rules)
    return est, result, tuple(frame_health_flags(ap.frames.flags))


class ArchivedRun:
    """What an interrupted scan's archive says: its settings, mode, the points it has, its
    darks."""

    def __init__(self, path: str | Path, inst: Any) -> None:
        self.path = Path(path)
        with Archive.open(self.path) as arc:
            if arc.version < 2 or not arc.plan:
                raise ValueError(f"{self.path} was written by an older cplscope and does not "
                                 "record its plan: it cannot be resumed (reprocess it instead)")
            self.metadata = dict(arc.metadata)
            self.settings = dict(self.metadata.get("settings") or {})
            self.calibration = arc.calibration
            self.mode = mode_from_metadata(self.metadata, rules=arc.rules, blank=arc.blank)
            self.extra = {k: v for k, v in (arc.extra or {}).items() if k != "interrupted"}
            self.points = list(arc)
            darks = arc.darks
            #: what a damaged archive lost: those points are measured again
            self.lost = list(arc.lost)
        serial = str(inst.info()["serial"])
        owner = str(self.metadata.get("instrument", {}).get("serial", ""))
        if owner != serial:
            raise ValueError(f"{self.path} was measured on instrument {owner!r}, this is "
                             f"{serial!r}: resume a scan on the instrument that started it")
        if self.settings.get("time_budget_s") is not None:
            raise ValueError(f"{self.path} is a time-budget scan: its plan cannot be resumed; "
                             "reprocess it, or scan the missing range again")
        if self.calibration is None:
            raise ValueError(f"{self.path} stores no calibration: it cannot be resumed")
        self.done = {(p.settings.index, p.settings.accumulation) for p in self.points}
        self.darks: dict[int, Dark] = {}
        self.dark_index: dict[int, int] = {}
        for p in self.points:
            src = p.settings.dark_source
            if src.startswith("dark:"):
                idx = int(src.split(":", 1)[1])
                if idx < len(darks):
                    self.darks[p.settings.accumulation] = _dark_of(darks[idx])
                    self.dark_index[p.settings.accumulation] = idx
        self.next_dark = len(darks)

    def replay(self, assembler: Any, mode: Any) -> int:
        """Feed the archived points into ``assembler`` through the pipeline; returns the
        number of points."""
        for ap in self.points:
            s = ap.settings
            est, result, health = replay_point(ap, mode)
            correction = s.blank if mode.name == "cpl" else mode.correction_at(s.wavelength_nm)
            assembler.add(s.index, s.accumulation, result, correction, estimate=est,
                          health=health, extra_flags=s.context().extra_flags,
                          times_s=frame_times_s(ap.frames.select(ap.frames.usable)))
        return len(self.points)

    def scan_settings(self) -> ScanSettings:
        st = self.settings
        return ScanSettings(
            float(st["start_nm"]), float(st["stop_nm"]), float(st["step_nm"]),
            dwell_s=st.get("dwell_s"), target=st.get(self.mode.target_name),
            max_dwell_s=float(st.get("max_dwell_s") or DEFAULT_MAX_DWELL_S),
            accumulations=int(st.get("accumulations") or 1),
            dark=st.get("dark", "measured") != "none",
            dark_dwell_s=float(st.get("dark_dwell_s") or 10.0),
            skip_hopeless=bool(st.get("skip_hopeless")), survey=st.get("survey") or False)


def _dark_of(arc_dark: Any) -> Dark:
    """A counting :class:`Dark` from an archived dark (its frames; the level as stored)."""
    frames = arc_dark.frames.select(arc_dark.frames.usable)
    t = frames.dwell_s
    total = frames.counts.sum(axis=0, dtype=np.float64)
    return Dark(rate_cps=total / t, sigma_rate_cps=np.sqrt(np.maximum(total, 1.0)) / t,
                dwell_s=t, frames=frames)


def resume_scan(inst: Any, archive: str | Path, *, output: str | Path | None = None,
                progress: bool = False, callback: Callable[..., None] | None = None,
                sinks: Sequence[Sink] = (), overwrite: bool = False) -> Any:
    """Continue an interrupted or aborted scan (CPL or CD) from its raw archive.

    The settings, calibration, mode (blank; baseline and CD calibration), flag rules and the
    darks come from the archive; the points it holds are taken as they are (never measured
    again) and the missing ones are measured and appended to the same archive, so the result
    is the spectrum one uninterrupted run gives. The instrument must be the one that started
    the scan, set up the same way (bins, periods, HV, retardation:
    :meth:`cplscope.Instrument.prepare`). An archive whose run was killed (only its journal
    is there) resumes the same way. ``output`` may be the scan's own CSV (it is rewritten);
    another existing file is refused unless ``overwrite``.

    Returns:
        The spectrum (a :class:`~cplscope.data.spectrum.Spectrum`, or a
        :class:`~cplscope.data.cd_spectrum.CDSpectrum` for a CD scan).
    """
    r = ArchivedRun(archive, inst)
    st = r.settings
    status = inst.status()
    for key, option in (("bins", "bins"), ("periods", "periods"), ("hv_volts", "hv")):
        ours, theirs = status.get("hv_set_volts" if key == "hv_volts" else key), st.get(key)
        if theirs is not None and ours != theirs:
            raise ValueError(f"the scan in {archive} used {key} = {theirs}, the instrument "
                             f"has {ours}: configure it as the scan was (--{option} "
                             f"{theirs}); a resumed scan never measures under other "
                             "settings than its archive's")
    _check_gating(inst, st, archive)
    _check_retardation(inst, st, r, archive)
    return run_scan(inst, r.mode, r.scan_settings(), calibration=r.calibration,
                    sample=str(r.metadata.get("sample", "")), resume=r,
                    sinks=run_sinks(output=output, archive=archive, append=True,
                                    overwrite=overwrite, run=r.metadata,
                                    progress=progress, callback=callback, sinks=sinks))



def _check_retardation(inst: Any, st: dict[str, Any], r: ArchivedRun,
                       archive: str | Path) -> None:
    """The instrument holds the A0 the archived scan commanded (rad), or ValueError."""
    theirs = st.get("a0_commanded_rad")
    ours = inst.retardation().commanded_rad
    if theirs is not None and not math.isclose(ours, float(theirs), rel_tol=1e-9):
        scale = r.calibration.retardation_scale if r.calibration is not None else 1.0
        raise ValueError(f"the scan in {archive} commanded A0 = {float(theirs):.6g} rad, the "
                         f"instrument holds {ours:.6g} rad: set it as the scan did (with the "
                         f"archive's calibration, Instrument.prepare(a0_rad="
                         f"{float(theirs) * scale:.6g}); `cplscope scan --resume` does it); a "
                         "resumed scan never measures under other settings than its archive's")


def _check_gating(inst: Any, st: dict[str, Any], archive: Any) -> None:
    """A gated scan resumes only gated the same way, a continuous one only continuous."""
    theirs = st.get("gating")
    ours = getattr(inst, "gating", None)
    mode = st.get("mode")
    if mode is not None and mode != getattr(inst, "mode", "counting"):
        raise ValueError(f"the scan in {archive} was measured in {mode} mode, the instrument "
                         f"is in {getattr(inst, 'mode', 'counting')} mode: prepare it as the "
                         "scan was (inst.prepare(mode=..., gating=...))")
    if theirs is None and ours is None:
        return
    from ..protocol.gating import Gating

    same = (theirs is not None and ours is not None
            and all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) if isinstance(a, float)
                    else a == b for a, b in zip(Gating.from_config(theirs).as_dict().values(),
                                                ours.as_dict().values())))
    if not same:
        raise ValueError(f"the scan in {archive} was gated as {theirs}, the instrument as "
                         f"{None if ours is None else ours.as_dict()}: prepare it with the "
                         "archive's gating; a resumed scan never measures under other "
                         "settings than its archive's")
