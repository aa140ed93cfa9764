"""Wavelength scans: a plan that emits documents (accumulations, adaptive dwell, live callback,
raw archive, Ctrl-C safety)."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..settings.calibration import Blank, Calibration
from ..data.documents import DarkEvent, PointEvent, RunStart, RunStop, Sink, SpectrumAssembler, emit
from ..data.sinks import ArchiveSink, CallbackSink, CsvSink, ProgressSink
from . import planning
from ..science.frames import FrameSet
from .planning import BudgetPlan
from .survey import Survey
from .survey import survey as run_survey
from .point import (
    DEFAULT_MAX_DWELL_S,
    Dark,
    PointMeasurement,
    measure,
    measure_dark,
    retardation_in_force,
)
from ..science.results import FlagRules
from ..data.spectrum import Spectrum, run_metadata

__all__ = ["ScanInterrupted", "scan", "scan_wavelengths"]

log = logging.getLogger(__name__)


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan. ``spectrum`` holds every point completed before it (a valid
    partial result, also written to the CSV and archive when those were asked for)."""

    def __init__(self, spectrum: Spectrum) -> None:
        super().__init__("scan interrupted; the partial spectrum is in .spectrum")
        self.spectrum = spectrum


def scan_wavelengths(start: float, stop: float, step: float) -> np.ndarray:
    """The wavelengths (nm) of a scan from ``start`` to ``stop`` inclusive in ``step`` nm
    (a descending scan when stop < start)."""
    for name, v in (("start", start), ("stop", stop), ("step", step)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number of nm, got {v!r}")
    if not step > 0:
        raise ValueError(f"step must be > 0 nm, got {step!r}")
    n = int(math.floor(abs(stop - start) / step + 1e-9)) + 1
    sign = 1.0 if stop >= start else -1.0
    return np.round(start + sign * step * np.arange(n), 9)


def scan(inst, start: float, stop: float, step: float, *, dwell_s: float | None = None,
         target_sigma: float | None = None, max_dwell_s: float = DEFAULT_MAX_DWELL_S,
         accumulations: int = 1, dark: Dark | bool = True, dark_dwell_s: float = 10.0,
         calibration: Calibration | None = None, blank: Blank | None = None,
         callback: Callable[[PointMeasurement, int, int], None] | None = None,
         output: str | Path | None = None, archive: str | Path | None = None,
         progress: bool = False, sample: str = "", rules: FlagRules = FlagRules(),
         settings: dict[str, Any] | None = None, skip_hopeless: bool = False,
         overwrite: bool = False, sinks: Sequence[Sink] = (),
         time_budget_s: float | None = None, survey: bool | float = False,
         survey_callback: Callable[[Survey], None] | None = None,
         _resume: Any = None) -> Spectrum:
    """Scan the emission monochromator and measure g_lum at every wavelength.

    The scan is a plan that emits documents (:mod:`cplscope.data.documents`): a run start, a dark
    per accumulation, an optional survey, an event per point and a run stop. The CSV, the
    raw archive, the progress bar, the callback and any ``sinks`` subscribe to them.

    Args:
        start, stop, step: wavelengths in nm (both ends included).
        dwell_s: fixed counting time per point (s), or
        target_sigma: adaptive dwell: count each point until σ_g ≤ target_sigma, at most
            ``max_dwell_s`` s (flag ``dwell_limit`` when the limit ends it).
        accumulations: repeated scans, combined point by point with inverse-variance weights
            (then the blank is subtracted once).
        dark: True: measure the dark counts (shutter closed, ``dark_dwell_s`` s) before each
            accumulation; a :class:`~cplscope.plans.point.Dark` to reuse; False: none.
        calibration: default ``inst.calibration``.
        blank: a :class:`cplscope.settings.calibration.Blank` to subtract (default: the calibration's
            blank, if any and if it covers the scan).
        callback: called as ``callback(point, index, accumulation)`` after every point.
        output: CSV path, rewritten after every point (a partial file is always valid).
        archive: HDF5 raw-archive path, appended after every point.
        progress: show a tqdm progress bar.
        sample: sample name for the metadata.
        settings: extra settings for the metadata.
        skip_hopeless: stop a point once its target σ is out of reach (flag ``hopeless``).
        overwrite: replace an existing archive.
        sinks: further document subscribers, ``sink(name, document)``.
        time_budget_s: plan the counting time of the whole scan (s, survey included): a
            survey pass measures every point briefly, then the rest of the budget goes where
            it lowers Σσ_g² over the emitting points most (:class:`cplscope.plans.planning.
            BudgetPlan`, revised after every point; no-emission points get nothing more).
            With ``target_sigma`` a point also stops once it reaches the target. Needs
            ``accumulations=1``.
        survey: a quick pass before the scan (True: 1 s per point; a number: its dwell in
            s) that predicts nonlinear points, no-emission points and the scan's duration
            (``survey_callback`` receives the :class:`cplscope.plans.survey.Survey` before the long
            scan starts; raise from it to cancel). Its frames start every point, so it costs
            no photons.

    Returns:
        The combined :class:`~cplscope.data.spectrum.Spectrum`.

    Raises:
        ScanInterrupted: on Ctrl-C, with the partial spectrum (already saved).
    """
    wavelengths = scan_wavelengths(start, stop, step)
    if int(accumulations) < 1:
        raise ValueError(f"accumulations must be ≥ 1, got {accumulations!r}")
    if time_budget_s is not None:
        if not (math.isfinite(time_budget_s) and time_budget_s > 0):
            raise ValueError(f"the time budget must be > 0 s, got {time_budget_s!r}")
        if int(accumulations) != 1:
            raise ValueError("a time budget plans one pass over the band: use accumulations=1 "
                             "(or no budget)")
        if dwell_s is not None:
            raise ValueError("give a time budget or a fixed dwell_s, not both")
    elif (dwell_s is None) == (target_sigma is None):
        raise ValueError("give either dwell_s (s per point), target_sigma (adaptive dwell) or "
                         "a time budget")
    cal = calibration if calibration is not None else inst.calibration
    if archive is not None and inst.mode == "analog":
        raise ValueError("the raw archive holds counting frames; in analog mode save the "
                         "spectrum CSV (output=) and leave archive=None")
    if (survey or time_budget_s is not None) and inst.mode == "analog":
        raise ValueError("the survey and the time budget work in counting mode")
    if cal.is_default:
        log.warning("instrument %s is not calibrated: A0, φ0 and the handedness are defaults, "
                    "so g_lum has an unknown sign and scale. Run `cplscope calibrate`.",
                    cal.serial)
    resume: Any = _resume
    blank_spec = blank if blank is not None else cal.blank
    if resume is not None:
        blank_spec = resume.blank
    elif blank_spec is not None and not blank_spec.covers(wavelengths):
        log.warning("the blank does not cover %g–%g nm: not subtracted", wavelengths.min(),
                    wavelengths.max())
        blank_spec = None
    status = inst.status()
    ret = retardation_in_force(inst)
    run_settings = {
        "start_nm": float(start), "stop_nm": float(stop), "step_nm": float(step),
        "bins": status.get("bins"), "periods": status.get("periods"),
        "dwell_s": dwell_s, "target_sigma_g": target_sigma, "max_dwell_s": max_dwell_s,
        "accumulations": int(accumulations), "a0_tracking": ret.tracking,
        "a0_commanded_rad": ret.commanded_rad if math.isfinite(ret.commanded_rad) else None,
        "hv_volts": status.get("hv_set_volts"),
        "skip_hopeless": bool(skip_hopeless), "mode": inst.mode,
        "dark": "measured" if dark is True else "given" if dark else "none",
        "dark_dwell_s": float(dark_dwell_s),
        "time_budget_s": time_budget_s, "survey": survey,
        **(settings or {})}
    meta = (resume.metadata if resume is not None else
            run_metadata(identify=inst.info(), calibration=cal, sample=sample or "unknown",
                         settings=run_settings, blank_applied=blank_spec is not None))
    subscribers: list[Sink] = []
    if archive is not None:
        subscribers.append(ArchiveSink(archive, overwrite=overwrite,
                                       append=resume is not None))
    if output is not None:
        subscribers.append(CsvSink(output))
    progress_sink = ProgressSink() if progress else None
    if progress_sink is not None:
        subscribers.append(progress_sink)
    if callback is not None:
        subscribers.append(CallbackSink(callback))
    subscribers.extend(sinks)
    n_bins = int(status.get("bins") or 16)
    start_doc = RunStart.new(meta, wavelengths.tolist(), accumulations=int(accumulations),
                             n_bins=n_bins, calibration=cal, blank=blank_spec, rules=rules)
    assembler = SpectrumAssembler(meta, rules)
    extra_meta: dict[str, Any] = dict(resume.extra) if resume is not None else {}
    seq = 0
    done: set[tuple[int, int]] = set()
    if resume is not None:
        seq = resume.replay(assembler)
        done = resume.done
        extra_meta["resumed"] = extra_meta.get("resumed", 0) + 1
    plan: BudgetPlan | None = None

    def point_event(i: int, acc: int, point: PointMeasurement) -> None:
        nonlocal seq
        assert point.raw_result is not None and point.context is not None
        b = blank_spec.at(float(wavelengths[i])) if blank_spec is not None else None
        row = assembler.add(i, acc, point.raw_result, b)
        seq += 1
        frames = point.frames
        if plan is not None:
            extra_meta["plan"] = plan.report()
        emit(subscribers, "event", PointEvent(
            seq, i, acc, point.context,
            frames.all_received() if hasattr(frames, "all_received") else frames,
            point.raw_result, row, b, assembler.spectrum(_stream(inst), **extra_meta), point,
            frame_time_s=getattr(frames, "frame_time_s", math.nan),
            dwell_s=point.raw_result.dwell_s, bin_span=getattr(frames, "span", 1.0),
            budget_left_s=plan.remaining_s if plan is not None else math.nan))

    try:
        emit(subscribers, "start", start_doc)
        for acc in range(int(accumulations)):
            todo = [i for i in range(len(wavelengths)) if (i, acc) not in done]
            if not todo:
                continue
            if resume is not None and acc in resume.darks:
                dark_now: Dark | None = resume.darks[acc]
                source = f"dark:{resume.dark_index[acc]}"
            elif isinstance(dark, Dark):
                dark_now, source = dark, "given"
            elif dark:
                measured = measure_dark(inst, dark_dwell_s)
                assert isinstance(measured, Dark)
                dark_now = measured
                index = resume.next_dark if resume is not None else acc
                source = f"dark:{index}"
                emit(subscribers, "dark", DarkEvent(acc, index, dark_now))
            else:
                dark_now, source = None, "none"
            common: dict[str, Any] = dict(calibration=cal, dark=dark_now, rules=rules,
                                          accumulation=acc, dark_source=source)
            prior: dict[int, FrameSet] = {}
            if survey or time_budget_s is not None:
                frame_s = inst.frame_time_s()
                survey_dwell_s = (planning.survey_dwell(time_budget_s, len(todo), frame_s)
                                  if time_budget_s is not None
                                  else (1.0 if survey is True else float(survey)))
                sv = run_survey(inst, [float(wavelengths[i]) for i in todo],
                                dwell_s=survey_dwell_s, dark=dark_now, calibration=cal,
                                rules=rules, target_sigma=target_sigma,
                                max_dwell_s=max_dwell_s,
                                min_dwell_s=max(1.0, 0.02 * max_dwell_s), dark_source=source)
                extra_meta["survey"] = sv.as_dict()
                emit(subscribers, "survey", sv)
                if survey_callback is not None:
                    survey_callback(sv)
                prior = {i: sv.points[k].frames for k, i in enumerate(todo)}
                if time_budget_s is not None:
                    plan = BudgetPlan(sv.planner_points(), time_budget_s, frame_s=frame_s,
                                      max_dwell_s=max_dwell_s)
            for k, i in enumerate(todo):
                wl = float(wavelengths[i])
                if plan is not None:
                    grant = plan.next_dwell(k)
                    if target_sigma is not None:
                        grant = min(grant, _needed_s(prior[i], sv.points[k], target_sigma,
                                                     frame_s))
                    if grant > 0:
                        inst.move_to(wl)
                    point = measure(inst, dwell_s=grant, prior=prior[i], wavelength_nm=wl,
                                    stopped="budget", **common)
                    plan.record(k, max(point.result.dwell_s - prior[i].dwell_s, 0.0),
                                point.result.sigma_g)
                else:
                    inst.move_to(wl)
                    point = measure(inst, dwell_s=dwell_s, target_sigma=target_sigma,
                                    max_dwell_s=max_dwell_s, wavelength_nm=wl,
                                    skip_hopeless=skip_hopeless, prior=prior.get(i),
                                    **common)
                point_event(i, acc, point)
    except KeyboardInterrupt as exc:
        spec = assembler.spectrum(_stream(inst), interrupted=True, **extra_meta)
        _stop(subscribers, "abort", "interrupted (Ctrl-C)", spec, extra_meta)
        raise ScanInterrupted(spec) from exc
    except BaseException as exc:
        spec = assembler.spectrum(_stream(inst), **extra_meta)
        _stop(subscribers, "fail", f"{type(exc).__name__}: {exc}", spec, extra_meta)
        raise
    spec = assembler.spectrum(_stream(inst), **extra_meta)
    _stop(subscribers, "success", "", spec, extra_meta)
    return spec


def _needed_s(prior: FrameSet, surveyed: PointMeasurement, target: float,
              frame_s: float) -> float:
    """Extra dwell (s, whole frames) the survey predicts for reaching ``target``."""
    r = surveyed.result
    if not (math.isfinite(r.sigma_g) and r.sigma_g > 0):
        return math.inf
    need = prior.dwell_s * ((r.sigma_g / target) ** 2 - 1.0)
    return max(0.0, math.ceil(need / frame_s - 1e-9) * frame_s)


def _stop(subscribers: Sequence[Sink], status: str, reason: str, spec: Spectrum,
          extra: dict[str, Any]) -> None:
    try:
        emit(subscribers, "stop", RunStop(status, reason, dict(spec.metadata.get("stream") or {})
                                          or None, spec, extra=dict(extra)))
    except Exception:
        if status == "success":
            raise
        log.exception("a sink failed while the run stopped (%s)", reason)


def _stream(inst) -> dict[str, int]:
    return inst.health().as_dict()
