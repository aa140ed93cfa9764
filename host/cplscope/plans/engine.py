"""The scan engine: one plan for every measurement mode.

A scan moves the monochromator over a grid of wavelengths and measures every point, once
per accumulation. The engine does, for every mode (:mod:`cplscope.plans.modes`): the dark
before each accumulation, an optional survey, the time planning (a target σ with a maximum
dwell and ``skip_hopeless``, or a time budget), the documents of the run
(:mod:`cplscope.data.documents`: run start, darks, survey, one event per point, run stop) to
which the CSV, the archive, the progress bar and the figure subscribe, and resuming a run
from its archive. A mode supplies only what differs: the figure of merit, the result of a
point, the spectrum's rows and its reference (blank or baseline).

::

    run_scan ─► start ─► for each accumulation: dark ─► [survey ─► budget plan]
                          ─► for each point: move ─► measure_point ─► event ─► stop
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.documents import DarkEvent, PointEvent, RunStart, RunStop, Sink
from ..data.spectrum import run_metadata
from ..science.lamp import LampDrift, LampReading, frame_times_s
from ..settings.calibration import Calibration
from ..util.files import DiskFullError, is_disk_full
from . import planning
from .outputs import check_free_space, located_disk_full
from .planning import BudgetPlan
from ..science.emission import sigma_sqrt_m
from .detection import Analog, detection_for
from .point import check_time_bins, DEFAULT_MAX_DWELL_S, AnalogDark, Dark, PointMeasurement, measure_dark
from .point import measure_point, reevaluate, retardation_in_force
from .survey import Survey
from .survey import survey as run_survey

__all__ = ["ScanInterrupted", "ScanSettings", "check_archive", "run_scan", "scan_wavelengths"]

log = logging.getLogger(__name__)

#: The dark's dwell (s) when the scan needs no more, and the first part of a longer one.
DARK_MIN_S = 10.0
#: An undecided point's time-budget grant is measured in this many parts, and ends early
#: once its data exclude the signal that matters (the rest goes back to the plan).
UNDECIDED_CHUNKS = 4


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan. ``spectrum`` holds every point completed before it (a valid
    partial result, also written to the CSV and archive when those were asked for)."""

    def __init__(self, spectrum: Any) -> None:
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


@dataclass(frozen=True)
class ScanSettings:
    """What a scan measures and for how long.

    Attributes:
        start_nm, stop_nm, step_nm: the wavelength grid, nm (both ends included).
        dwell_s: fixed counting time per point, s; or
        target: adaptive dwell: count each point until the mode's figure of merit (σ_g for
            CPL, σ(ΔA) or σ(g_abs) for CD) reaches this, at most ``max_dwell_s``.
        max_dwell_s: the most counting time a point may take, s.
        accumulations: repeated passes over the grid, combined point by point.
        dark: True: measure the dark (shutter closed, ``dark_dwell_s``) before each
            accumulation; a dark measurement to reuse; False: none.
        dark_dwell_s: s of the dark measurement; None (default): as long as the scan needs
            (:func:`cplscope.plans.planning.dark_dwell_needed`: 10 s for a bright scan, up
            to the longest a point may count when the signal that matters is faint, so that
            the dark's own noise does not hide it).
        skip_hopeless: stop a point once its target is out of reach within ``max_dwell_s``.
        time_budget_s: plan the counting time of the whole scan (s, survey included).
        survey: a quick pass first (True: 1 s per point; a number: its dwell, s).
    """

    start_nm: float
    stop_nm: float
    step_nm: float
    dwell_s: float | None = None
    target: float | None = None
    max_dwell_s: float = DEFAULT_MAX_DWELL_S
    accumulations: int = 1
    dark: Any = True
    dark_dwell_s: float | None = None
    skip_hopeless: bool = False
    time_budget_s: float | None = None
    survey: bool | float = False

    @property
    def wavelengths_nm(self) -> np.ndarray:
        return scan_wavelengths(self.start_nm, self.stop_nm, self.step_nm)

    def check(self) -> None:
        """Raise a ValueError naming the setting when the scan cannot run as asked."""
        scan_wavelengths(self.start_nm, self.stop_nm, self.step_nm)
        if int(self.accumulations) < 1:
            raise ValueError(f"accumulations must be ≥ 1, got {self.accumulations!r}")
        if self.time_budget_s is not None:
            if not (math.isfinite(self.time_budget_s) and self.time_budget_s > 0):
                raise ValueError(f"the time budget must be > 0 s, got {self.time_budget_s!r}")
            if int(self.accumulations) != 1:
                raise ValueError("a time budget plans one pass over the band: use "
                                 "accumulations=1 (or no budget)")
            if self.dwell_s is not None:
                raise ValueError("give a time budget or a fixed dwell_s, not both")
        elif (self.dwell_s is None) == (self.target is None):
            raise ValueError("give either dwell_s (s per point), a target σ (adaptive dwell) "
                             "or a time budget")
        if not (math.isfinite(self.max_dwell_s) and self.max_dwell_s > 0):
            raise ValueError(f"the maximum dwell must be > 0 s, got {self.max_dwell_s!r}")
        if self.dark is True and self.dark_dwell_s is not None and not (
                math.isfinite(self.dark_dwell_s) and self.dark_dwell_s > 0):
            raise ValueError(f"the dark dwell must be > 0 s, got {self.dark_dwell_s!r}")

    @property
    def surveys(self) -> bool:
        return bool(self.survey) or self.time_budget_s is not None

    def horizon_s(self, survey_dwell_s: float = 0.0) -> float:
        """The longest a point may count, s (the signal that matters is judged against it)."""
        if self.dwell_s is None:
            return float(self.max_dwell_s)
        return float(self.dwell_s) + survey_dwell_s

    def as_metadata(self, mode: Any, status: dict[str, Any], ret: Any,
                    detection: str) -> dict[str, Any]:
        """The run metadata's ``settings``: these settings in ``mode``, with the board's
        ``status`` and retardation ``ret`` at the start."""
        return {
            "start_nm": float(self.start_nm), "stop_nm": float(self.stop_nm),
            "step_nm": float(self.step_nm), "bins": status.get("bins"),
            "periods": status.get("periods"), "dwell_s": self.dwell_s,
            mode.target_name: self.target, "max_dwell_s": self.max_dwell_s,
            "accumulations": int(self.accumulations), "a0_tracking": ret.tracking,
            "a0_commanded_rad": (ret.commanded_rad if math.isfinite(ret.commanded_rad)
                                 else None),
            "hv_volts": status.get("hv_set_volts"),
            "skip_hopeless": bool(self.skip_hopeless), "mode": detection,
            "dark": ("measured" if self.dark is True else "given" if self.dark is not False
                     and self.dark is not None else "none"),
            "dark_dwell_s": (float(self.dark_dwell_s) if self.dark_dwell_s is not None
                             else None),
            "time_budget_s": self.time_budget_s, "survey": self.survey}


def run_scan(inst: Any, mode: Any, settings: ScanSettings, *,
             calibration: Calibration | None = None, sinks: Sequence[Sink] = (),
             sample: str = "", extra_settings: dict[str, Any] | None = None,
             survey_callback: Callable[[Survey], None] | None = None,
             resume: Any = None) -> Any:
    """Scan in ``mode`` as ``settings`` ask; every document goes to ``sinks``.

    Returns the spectrum (:class:`~cplscope.data.spectrum.Spectrum` for CPL,
    :class:`~cplscope.data.cd_spectrum.CDSpectrum` for CD).

    Raises:
        ScanInterrupted: on Ctrl-C, with the partial spectrum (the sinks have it).
    """
    settings.check()
    mode.check_grid(settings.wavelengths_nm.tolist())
    _check_detection(inst, settings)
    run = _Run(inst, mode, settings, calibration, list(sinks), resume)
    run.open(sample, extra_settings)
    try:
        run.emit("start", run.start_doc())
        run.check_space()
        for acc in range(int(settings.accumulations)):
            todo = run.todo(acc)
            if todo:
                run.accumulation(acc, todo, survey_callback)
    except KeyboardInterrupt as exc:
        spec = run.spectrum(interrupted=True)
        run.stop("abort", "interrupted (Ctrl-C)", spec)
        raise ScanInterrupted(spec) from exc
    except BaseException as exc:
        run.stop("fail", f"{type(exc).__name__}: {exc}", run.spectrum())
        if is_disk_full(exc):
            raise run.disk_full(exc) from None
        raise
    spec = run.spectrum()
    try:
        run.stop("success", "", spec)
    except OSError as exc:
        if is_disk_full(exc):
            raise run.disk_full(exc, complete=True) from None
        raise
    return spec


class _Run:
    """The state of one run of :func:`run_scan`."""

    def __init__(self, inst: Any, mode: Any, settings: ScanSettings,
                 calibration: Calibration | None, sinks: list[Sink], resume: Any) -> None:
        self.inst, self.mode, self.settings, self.sinks = inst, mode, settings, sinks
        detection = detection_for(inst).calibration_mode
        self.cal = (calibration if calibration is not None else inst.calibration).for_mode(
            detection)
        self.wavelengths = settings.wavelengths_nm
        self.resume = resume
        self.extra: dict[str, Any] = dict(resume.extra) if resume is not None else {}
        self.seq = 0
        self.darks_measured = 0
        self.plan: BudgetPlan | None = None
        self.matter: float | None = None
        if self.cal.is_default:
            log.warning("instrument %s is not calibrated: A0, φ0 and the handedness are "
                        "defaults, so the result has an unknown sign and scale. Run "
                        "`cplscope calibrate`.", self.cal.serial)
        elif self.cal.mode != detection:
            log.warning("instrument %s has no %s calibration: the scan uses the %s one, so the "
                        "analog front end's phase lag and gain are not corrected (g can be off "
                        "by a few %%). Run `cplscope calibrate --mode %s`.", self.cal.serial,
                        detection, self.cal.mode, detection)

    def open(self, sample: str, extra_settings: dict[str, Any] | None) -> None:
        """The run's metadata and its assembler (with the resumed points replayed)."""
        status = self.inst.status()
        self.n_bins = int(status.get("bins") or 16)
        if self.resume is not None:
            self.metadata = self.resume.metadata
        else:
            run_settings = {**self.settings.as_metadata(
                self.mode, status, retardation_in_force(self.inst), self.inst.mode),
                **(extra_settings or {})}
            gating = getattr(self.inst, "gating", None)
            if gating is not None:  # gated counting: the pulses and gates, as the board runs them
                run_settings["gating"] = gating.as_dict()
            blank = getattr(self.mode, "blank", None)
            self.metadata = self.mode.metadata(run_metadata(
                identify=self.inst.info(), calibration=self.cal, sample=sample or "unknown",
                settings=run_settings, blank_applied=blank is not None))
        self.assembler = self.mode.assembler(self.metadata)
        self.lamp = _LampWatch(self)
        if self.resume is not None:
            self.seq = self.resume.replay(self.assembler, self.mode)
            self.extra["resumed"] = self.extra.get("resumed", 0) + 1

    def emit(self, name: str, doc: Any) -> None:
        """Send a document to every sink, in order."""
        for sink in self.sinks:
            _send(sink, name, doc)

    def check_space(self) -> None:
        """Warn before a scan whose archive may not fit on its disk."""
        try:
            frame_s = float(self.inst.frame_time_s())
        except Exception:  # noqa: BLE001 - a board that cannot say: no prediction
            return
        n = sum(len(self.todo(acc)) for acc in range(int(self.settings.accumulations)))
        check_free_space(self.sinks, self.settings, n_points=n, frame_s=frame_s,
                         n_bins=self.n_bins)

    def disk_full(self, exc: BaseException, complete: bool = False) -> DiskFullError:
        """``exc`` as the one-line error that says how many points are safe where."""
        return located_disk_full(exc, self.sinks, command="cd" if self.mode.name == "cd"
                                 else "scan", complete=complete)

    def start_doc(self) -> RunStart:
        return RunStart.new(self.metadata, self.wavelengths.tolist(),
                            accumulations=int(self.settings.accumulations),
                            n_bins=self.n_bins, calibration=self.cal,
                            blank=getattr(self.mode, "blank", None),
                            rules=self.mode.binned_rules)

    def todo(self, acc: int) -> list[int]:
        done = self.resume.done if self.resume is not None else set()
        return [i for i in range(len(self.wavelengths)) if (i, acc) not in done]

    def accumulation(self, acc: int, todo: list[int],
                     survey_callback: Callable[[Survey], None] | None) -> None:
        """Measure the points ``todo`` of accumulation ``acc``: the dark, the survey (the
        dark then measured longer if the survey shows the scan needs it), the points."""
        dark, source, fresh = self.dark(acc)
        common = dict(calibration=self.cal, dark=dark, accumulation=acc, dark_source=source)
        sv = self.survey(todo, common) if self.settings.surveys else None
        if fresh is not None:
            dark = common["dark"] = self.settle_dark(dark, sv)
            self.emit("dark", DarkEvent(acc, fresh, dark))
        self.matter = self.matter_rate(dark, sv)
        self.note_sensitivity(dark, sv)
        if sv is not None:
            sv = self.publish(sv, dark, survey_callback)
        self.lamp.plan(len(todo))
        self.lamp.read(acc, common)
        for k, i in enumerate(todo):
            if k and self.lamp.due():
                self.lamp.read(acc, common)
            point = self.point(i, k, sv, common)
            self.event(i, acc, point)
        self.lamp.read(acc, common)

    def dark(self, acc: int) -> tuple[Dark | AnalogDark | None, str, int | None]:
        """The dark of accumulation ``acc``, how the points refer to it, and its index in
        the run when it was measured now (its event is emitted once it is final)."""
        r, given = self.resume, self.settings.dark
        if r is not None and acc in r.darks:
            return r.darks[acc], f"dark:{r.dark_index[acc]}", None
        if isinstance(given, (Dark, AnalogDark)):
            return given, "given", None
        if given is True:
            dwell = self.settings.dark_dwell_s
            dark = measure_dark(self.inst, dwell if dwell is not None else DARK_MIN_S)
            index = (r.next_dark if r is not None else 0) + self.darks_measured
            self.darks_measured += 1
            return dark, f"dark:{index}", index
        return None, "none", None

    def settle_dark(self, dark: Any, sv: Survey | None) -> Any:
        """The dark measured longer when the scan needs it (dark_dwell_s None): as long as
        a signal that matters needs to stand clear of the dark's noise."""
        st = self.settings
        if st.dark_dwell_s is not None or not self.judges(dark):
            return dark
        horizon = st.horizon_s(sv.dwell_s if sv is not None else 0.0)
        intent = self.matter_rate(dark, sv, dark_error=False)
        assert intent is not None
        rules = self.mode.rules
        need = planning.dark_dwell_needed(intent, dark.total_rate_cps, horizon,
                                          span=dark.frames.span, minimum_s=DARK_MIN_S,
                                          z=rules.snr_min + rules.exclude_z)
        more = need - dark.dwell_s
        if more < 0.5 * self.inst.frame_time_s():
            return dark
        log.info("measuring the dark %.0f s longer (%.0f s in all): the scan's faintest "
                 "signal that matters, %.3g counts/s, needs it", more, need, intent)
        more_dark = measure_dark(self.inst, more)
        assert isinstance(more_dark, Dark)
        return dark.pooled(more_dark.frames)

    def judges(self, dark: Any) -> bool:
        """Whether the scan judges its points against a signal that matters (counting,
        CPL, a measured dark)."""
        return isinstance(dark, Dark) and getattr(self.mode, "splits", False) \
            and self.inst.mode in ("counting", "gated") and dark.frames is not None

    def matter_rate(self, dark: Any, sv: Survey | None, dark_error: bool = True
                    ) -> float | None:
        """The signal that matters for this accumulation (counts/s), or None when the
        points work it out themselves."""
        if not self.judges(dark):
            return None
        st = self.settings
        span = dark.frames.span
        k = sigma_sqrt_m(self.n_bins, retardation_in_force(self.inst).a0_rad(self.cal),
                         self.cal.phase_offset_rad, span)
        return planning.rate_that_matters(
            horizon_s=st.horizon_s(sv.dwell_s if sv is not None else 0.0),
            dark_cps=dark.total_rate_cps,
            sigma_dark_cps=dark.sigma_total_rate_cps if dark_error else 0.0,
            sigma_sqrt_m=k, target=st.target, span=span, snr_min=self.mode.rules.snr_min,
            peak_cps=sv.peak_signal_cps() if sv is not None else math.nan)

    def note_sensitivity(self, dark: Any, sv: Survey | None) -> None:
        """What the run could detect and judged against, for its metadata."""
        if self.matter is None or not isinstance(dark, Dark):
            return
        horizon = self.settings.horizon_s(sv.dwell_s if sv is not None else 0.0)
        self.extra["sensitivity"] = {
            "matter_cps": float(self.matter),
            "faintest_detectable_cps": planning.faintest_detectable_cps(
                horizon, dark.total_rate_cps, dark.sigma_total_rate_cps,
                dark.frames.span if dark.frames is not None else 1.0,
                self.mode.rules.snr_min),
            "horizon_s": horizon, "dark_cps": dark.total_rate_cps, "dark_dwell_s": dark.dwell_s}

    def survey(self, todo: list[int], common: dict[str, Any]) -> Survey:
        """The quick pass over ``todo`` (judged as the scan will judge its points)."""
        st = self.settings
        self.frame_s = self.inst.frame_time_s()
        dwell = (planning.survey_dwell(st.time_budget_s, len(todo), self.frame_s)
                 if st.time_budget_s is not None
                 else (1.0 if st.survey is True else float(st.survey)))
        return run_survey(self.inst, [float(self.wavelengths[i]) for i in todo], dwell_s=dwell,
                          target_sigma=st.target, max_dwell_s=st.horizon_s(dwell),
                          min_dwell_s=max(1.0, 0.02 * st.max_dwell_s), mode=self.mode,
                          linear_cps=self._linear_cps(), **common)

    def publish(self, sv: Survey, dark: Any, callback: Callable[[Survey], None] | None
                ) -> Survey:
        """The survey judged with the final dark and signal that matters, emitted, shown
        and (with a time budget) planned."""
        st = self.settings
        if self.judges(dark) and self.matter is not None:
            sv.points = [reevaluate(m, self.mode, dark=dark, matter_rate=self.matter)
                         for m in sv.points]
            sv.emitting = [self.mode.emits(m) for m in sv.points]
            sv.dark, sv.matter_cps = dark, float(self.matter)
            sv.faintest_cps = planning.faintest_detectable_cps(
                sv.horizon_s, dark.total_rate_cps, dark.sigma_total_rate_cps,
                dark.frames.span, self.mode.rules.snr_min)
        self.extra["survey"] = sv.as_dict()
        self.emit("survey", sv)
        if callback is not None:
            callback(sv)
        if st.time_budget_s is not None:
            self.plan = BudgetPlan(sv.planner_points(), st.time_budget_s, frame_s=self.frame_s,
                                   max_dwell_s=st.max_dwell_s)
        return sv

    def _linear_cps(self) -> float:
        limit = self.mode.binned_rules.nonlinear_rate_cps
        if math.isfinite(limit):
            return float(limit)
        limits = getattr(self.inst, "rate_limits", None)
        return float(getattr(limits, "linear_cps", limit))

    def point(self, i: int, k: int, sv: Survey | None,
              common: dict[str, Any]) -> PointMeasurement:
        """Measure point ``i`` (the ``k``-th of this accumulation's points)."""
        st, wl = self.settings, float(self.wavelengths[i])
        prior = sv.points[k].frames if sv is not None else None
        if self.plan is not None and prior is not None and sv is not None:
            grant = self.plan.next_dwell(k)
            if st.target is not None:
                grant = min(grant, _needed_s(prior, sv.points[k], st.target, self.frame_s))
            if grant > 0:
                self.inst.move_to(wl)
            point = measure_point(self.inst, self.mode, dwell_s=grant, prior=prior,
                                  wavelength_nm=wl, stopped="budget", planned=True,
                                  chunks=UNDECIDED_CHUNKS if sv.undetected(k) else 1,
                                  matter_rate=self.matter,
                                  relevance=(st.target, st.max_dwell_s), **common)
            self.plan.record(k, max(point.result.dwell_s - prior.dwell_s, 0.0), point.merit)
            return point
        self.inst.move_to(wl)
        return measure_point(self.inst, self.mode, dwell_s=st.dwell_s, target=st.target,
                             max_dwell_s=st.max_dwell_s, wavelength_nm=wl,
                             skip_hopeless=st.skip_hopeless, prior=prior,
                             matter_rate=self.matter,
                             relevance=(st.target, st.horizon_s(
                                 sv.dwell_s if sv is not None else 0.0)), **common)

    def event(self, i: int, acc: int, point: PointMeasurement) -> None:
        """Add the point to the spectrum and emit its event."""
        assert point.raw_result is not None and point.context is not None
        wl = float(self.wavelengths[i])
        correction = self.mode.correction_at(wl)
        frames = point.frames
        received = frames.all_received() if hasattr(frames, "all_received") else frames
        times = frame_times_s(frames)
        self.lamp.last_point_s = float(times.mean()) if times.size else math.nan
        row = self.assembler.add(i, acc, point.raw_result, correction,
                                 estimate=point.estimate, health=_health(point),
                                 extra_flags=point.context.extra_flags, times_s=times)
        self.seq += 1
        if self.plan is not None:
            self.extra["plan"] = self.plan.report()
        self.emit("event", PointEvent(
            self.seq, i, acc, point.context, received, point.raw_result, row,
            correction if isinstance(correction, tuple) else None, self.spectrum(), point,
            frame_time_s=getattr(frames, "frame_time_s", math.nan),
            dwell_s=point.raw_result.dwell_s, bin_span=getattr(frames, "span", 1.0),
            budget_left_s=self.plan.remaining_s if self.plan is not None else math.nan))

    def spectrum(self, **extra: Any) -> Any:
        return self.assembler.spectrum(self.inst.health().as_dict(), **self.extra, **extra)

    def stop(self, status: str, reason: str, spec: Any) -> None:
        doc = RunStop(status, reason, dict(spec.metadata.get("stream") or {}) or None, spec,
                      extra=dict(self.extra))
        failures = []
        for sink in self.sinks:       # every sink gets the stop, whichever failed before
            try:
                _send(sink, "stop", doc)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
        for failure in failures:
            if status == "success":
                raise failure
            if not is_disk_full(failure):   # after a full disk, the other files fail too
                log.error("a sink failed while the run stopped (%s): %s", reason, failure)


def _send(sink: Any, name: str, doc: Any) -> None:
    """``sink(name, doc)``; a sink that finds the disk full raises a
    :class:`~cplscope.util.files.DiskFullError` naming its file."""
    try:
        sink(name, doc)
    except DiskFullError:
        raise
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(getattr(sink, "path", None) or "an output file") from exc
        raise


#: Lamp readings an accumulation should have at least (with a fixed dwell, foreseeable).
_MIN_READINGS = 5
#: The run's first lamp reading lasts this many reading dwells.
_ANCHOR_DWELLS = 4


class _LampWatch:
    """The lamp readings of a run whose mode watches its lamp (``mode.lamp``, a
    :class:`~cplscope.science.lamp.LampMonitor`; CD): one before the first and after the
    last point of each accumulation, and one whenever ``every_s`` of measuring has passed
    since the last. They go into the run's metadata (``lamp``) and the assembler, which
    corrects every point for the lamp's drift."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.monitor = getattr(run.mode, "lamp", None)
        self.readings: list[LampReading] = []
        self.last_s = self.last_point_s = math.nan
        self.every_s = math.inf
        if self.monitor is not None and run.resume is not None:
            # the board's clock of this session does not continue the interrupted one's, so
            # no reading links the two: the resumed run's A holds no lamp correction
            self.monitor = None
            run.extra["lamp"] = {**dict(run.extra.get("lamp") or {}), "resumed": True}
            run.assembler.set_lamp([])

    def plan(self, n_points: int) -> None:
        """The interval for an accumulation of ``n_points``: ``every_s``, shorter when a
        fixed dwell foresees fewer than 5 readings (the model needs them to see the drift
        bend)."""
        if self.monitor is None:
            return
        self.every_s = self.monitor.every_s
        dwell = self.run.settings.dwell_s
        if dwell is not None:
            self.every_s = min(self.every_s, n_points * float(dwell) / (_MIN_READINGS - 1))

    def due(self) -> bool:
        """Whether the interval has passed since the last reading."""
        return (self.monitor is not None and math.isfinite(self.last_point_s)
                and not self.last_point_s - self.last_s < self.every_s)

    def read(self, acc: int, common: dict[str, Any]) -> None:
        """Take one reading (nothing when the mode does not watch its lamp)."""
        if self.monitor is None:
            return
        run = self.run
        wl = self.monitor.wavelength(run.wavelengths.tolist())
        run.inst.move_to(wl)
        # the first reading anchors every point of the run (A is relative to the lamp then):
        # its noise is common to all of them, so it counts longer
        dwell = self.monitor.dwell_s * (1 if self.readings else _ANCHOR_DWELLS)
        m = measure_point(run.inst, run.mode, dwell_s=dwell, wavelength_nm=wl, **common)
        times = frame_times_s(m.frames)
        r = m.raw_result if m.raw_result is not None else m.result
        reading = LampReading(float(times.mean()) if times.size else math.nan, r.intensity,
                              r.sigma_intensity, wl, acc)
        self.readings.append(reading)
        self.last_s = reading.time_s
        run.assembler.set_lamp(self.readings)
        drift = LampDrift.fit(self.readings)
        run.extra["lamp"] = {**self.monitor.to_dict(),
                             "readings": [x.to_dict() for x in self.readings],
                             **(drift.summary() if drift is not None else {})}


def check_archive(inst: Any, archive: Any) -> None:
    """Refuse a raw archive in analog mode (it holds counting frames)."""
    if archive is not None and detection_for(inst).name == "analog":
        raise ValueError("the raw archive holds counting frames; in analog mode save the "
                         "spectrum CSV (output=, --output) and leave the archive out")


def _check_detection(inst: Any, settings: ScanSettings) -> None:
    """What a scan in the instrument's detection mode cannot do, refused before anything is
    measured (analog mode: docs/estimator.md, "Analog mode")."""
    det = detection_for(inst)
    check_time_bins(inst, settings.dwell_s is None or bool(settings.surveys))
    if not isinstance(det, Analog):
        return
    if settings.surveys:
        raise ValueError("the survey and the time budget work in counting mode")
    if settings.dark is False or settings.dark is None:
        raise ValueError("an analog scan needs the dark level (the front end's offset, which "
                         "would otherwise count as light and pull g towards 0): use "
                         "dark=True (the CLI without --no-dark) or give an AnalogDark")
    if settings.dwell_s is not None:
        det.check_dwell(inst, float(settings.dwell_s))


def _health(point: PointMeasurement) -> tuple[str, ...]:
    from ..science.results import frame_health_flags

    frames = point.frames
    flags = ([f.flags for f in frames.received] if hasattr(frames, "received")
             else frames.block_flags)
    return tuple(frame_health_flags(flags))


def _needed_s(prior: Any, surveyed: PointMeasurement, target: float, frame_s: float) -> float:
    """Extra dwell (s, whole frames) the survey predicts for reaching ``target``."""
    sigma = surveyed.merit
    if not (math.isfinite(sigma) and sigma > 0):
        return math.inf
    need = prior.dwell_s * ((sigma / target) ** 2 - 1.0)
    return max(0.0, math.ceil(need / frame_s - 1e-9) * frame_s)
