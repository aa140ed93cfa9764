"""CPL wavelength scans: :func:`scan`, the scan engine (:mod:`cplscope.plans.engine`) in the
emission mode, with the options a lab script gives."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..data.documents import Sink
from ..data.spectrum import Spectrum
from ..science.results import FlagRules
from ..settings.calibration import Blank, Calibration
from .engine import ScanInterrupted, ScanSettings, check_archive, run_scan, scan_wavelengths
from .modes import Emission
from .outputs import run_sinks
from .point import DEFAULT_MAX_DWELL_S, Dark, PointMeasurement
from .survey import Survey

__all__ = ["ScanInterrupted", "scan", "scan_wavelengths"]

log = logging.getLogger(__name__)


def scan(inst, start: float, stop: float, step: float, *, dwell_s: float | None = None,
         target_sigma: float | None = None, max_dwell_s: float = DEFAULT_MAX_DWELL_S,
         accumulations: int = 1, dark: Dark | bool = True, dark_dwell_s: float | None = None,
         calibration: Calibration | None = None, blank: Blank | None = None,
         callback: Callable[[PointMeasurement, int, int], None] | None = None,
         output: str | Path | None = None, archive: str | Path | None = None,
         progress: bool = False, sample: str = "", rules: FlagRules = FlagRules(),
         settings: dict[str, Any] | None = None, skip_hopeless: bool = False,
         overwrite: bool = False, sinks: Sequence[Sink] = (),
         time_budget_s: float | None = None, survey: bool | float = False,
         survey_callback: Callable[[Survey], None] | None = None) -> Spectrum:
    """Scan the emission monochromator and measure g_lum at every wavelength.

    The scan is a plan that emits documents (:mod:`cplscope.data.documents`): a run start, a
    dark per accumulation, an optional survey, an event per point and a run stop. The CSV,
    the raw archive, the progress bar, the callback and any ``sinks`` subscribe to them.

    Args:
        start, stop, step: wavelengths in nm (both ends included).
        dwell_s: fixed counting time per point (s), or
        target_sigma: adaptive dwell: count each point until σ_g ≤ target_sigma, at most
            ``max_dwell_s`` s (flag ``dwell_limit`` when the limit ends it).
        accumulations: repeated scans, combined point by point with inverse-variance weights
            (then the blank is subtracted once).
        dark: True: measure the dark counts (shutter closed, ``dark_dwell_s`` s) before each
            accumulation; a :class:`~cplscope.plans.point.Dark` to reuse; False: none.
        dark_dwell_s: s; None (default): as long as the scan needs, 10 s for a bright scan
            and up to the longest a point may count when the faintest signal that matters
            would otherwise drown in the dark's own noise
            (:func:`cplscope.plans.planning.dark_dwell_needed`).
        calibration: default ``inst.calibration``.
        blank: a :class:`cplscope.settings.calibration.Blank` to subtract (default: the
            calibration's blank, if any and if it covers the scan).
        callback: called as ``callback(point, index, accumulation)`` after every point.
        output: CSV path, rewritten after every point (a partial file is always valid).
        archive: raw-archive path: every point is durable in its journal before it counts
            (docs/data-files.md, "Durability"); the HDF5 file is built when the scan ends.
        progress: show a tqdm progress bar.
        sample: sample name for the metadata.
        settings: extra settings for the metadata.
        skip_hopeless: stop a point once its target σ is out of reach (flag ``hopeless``).
        overwrite: replace an existing CSV or archive (otherwise FileExistsError, raised
            before anything is measured).
        sinks: further document subscribers, ``sink(name, document)``.
        time_budget_s: plan the counting time of the whole scan (s, survey included): a
            survey pass measures every point briefly, then the rest of the budget goes where
            it lowers Σσ_g² over the emitting points most (:class:`cplscope.plans.planning.
            BudgetPlan`, revised after every point): points whose data exclude emission
            that matters get nothing more, undetected points get time in proportion to
            the value of finding out.
            With ``target_sigma`` a point also stops once it reaches the target. Needs
            ``accumulations=1``.
        survey: a quick pass before the scan (True: 1 s per point; a number: its dwell in
            s) that predicts nonlinear points, no-emission points and the scan's duration
            (``survey_callback`` receives the :class:`cplscope.plans.survey.Survey` before
            the long scan starts; raise from it to cancel). Its frames start every point, so
            it costs no photons.

    Returns:
        The combined :class:`~cplscope.data.spectrum.Spectrum`.

    Raises:
        ScanInterrupted: on Ctrl-C, with the partial spectrum (already saved).
        FileExistsError: ``output`` or ``archive`` exists and ``overwrite`` is False.
        DiskFullError: the disk filled up; its message says how many points are safe where.
    """
    plan = ScanSettings(start, stop, step, dwell_s=dwell_s, target=target_sigma,
                        max_dwell_s=max_dwell_s, accumulations=accumulations, dark=dark,
                        dark_dwell_s=dark_dwell_s, skip_hopeless=skip_hopeless,
                        time_budget_s=time_budget_s, survey=survey)
    plan.check()
    check_archive(inst, archive)
    cal = calibration if calibration is not None else inst.calibration
    mode = Emission(rules=rules, blank=_blank_for(blank, cal, plan))
    return run_scan(inst, mode, plan, calibration=cal, sample=sample,
                    extra_settings=settings, survey_callback=survey_callback,
                    sinks=run_sinks(output=output, archive=archive, overwrite=overwrite,
                                    progress=progress, callback=callback, sinks=sinks))


def _blank_for(given: Blank | None, cal: Calibration, plan: ScanSettings) -> Blank | None:
    """The blank to subtract: the one given, else the calibration's, if it covers the
    scan."""
    blank = given if given is not None else cal.blank
    wl = plan.wavelengths_nm
    if blank is not None and not blank.covers(wl):
        log.warning("the blank does not cover %g–%g nm: not subtracted", wl.min(), wl.max())
        return None
    return blank
