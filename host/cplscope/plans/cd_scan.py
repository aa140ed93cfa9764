"""CD scans for lab scripts: the scan engine (:mod:`cplscope.plans.engine`) in the
transmission mode.

    import cplscope
    from cplscope.plans.cd_scan import cd_scan

    opts = {"bench_options": {"geometry": "cd"}}           # the twin's transmission geometry
    with cplscope.connect("sim", sample="solvent", **opts) as inst:
        inst.prepare(bins=16, periods=10000, hv_volts=800)
        base = cd_scan(inst, 400, 460, 2, dwell_s=30, output="solvent.csv")
    with cplscope.connect("sim", sample="R-Cs4PbBr6", **opts) as inst:
        inst.prepare(bins=16, periods=10000, hv_volts=800)
        spec = cd_scan(inst, 400, 460, 2, target_sigma_g_abs=5e-4, max_dwell_s=300,
                       baseline=base, output="r-cd.csv")

A baseline scan is the same call on the solvent (or the empty cell) without a baseline. A CD
scan has everything a CPL scan has: darks, a survey, a time budget, ``skip_hopeless``,
accumulations, the raw archive, resume (:func:`cplscope.plans.resume.resume_scan`) and
reprocessing (:func:`cplscope.plans.reprocess.cd_reprocess`); the physics is
:func:`cplscope.science.cd.cd_point` (docs/cd.md).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any, TextIO

from ..data.cd_spectrum import CDSpectrum
from ..data.documents import Sink
from ..demod import Estimate
from ..science.cd import BaselinePoint, CDCalibration, CDPointResult, CDRules
from ..science.lamp import LampMonitor
from .engine import ScanSettings, check_archive, run_scan, scan_wavelengths
from .modes import Transmission, _baseline_conversion
from .outputs import run_sinks
from .point import DEFAULT_MAX_DWELL_S, measure_point
from .reprocess import cd_reprocess
from .survey import Survey

__all__ = ["cd_reprocess", "cd_scan", "measure_cd_point", "scan_wavelengths"]

_KEEP = (_baseline_conversion,)   # re-exported for lab scripts that convert baselines


def cd_calibration_of(inst: Any, given: CDCalibration | None) -> CDCalibration:
    """The CD calibration to use: ``given``, else the instrument calibration's, else the
    identity (stated as uncalibrated)."""
    if given is not None:
        return given
    stored = getattr(inst.calibration, "cd", None)
    if isinstance(stored, CDCalibration):
        return stored
    if isinstance(stored, dict):
        return CDCalibration.from_dict(stored)
    return CDCalibration(source="uncalibrated: cd_sign = +1, cd_scale = 1 (fit CSA to set)")


def measure_cd_point(
    inst: Any, wavelength_nm: float, *,
    dwell_s: float | None = None,
    target_sigma_delta_a: float | None = None,
    target_sigma_g_abs: float | None = None,
    max_dwell_s: float = DEFAULT_MAX_DWELL_S,
    baseline: BaselinePoint | None = None,
    cd_calibration: CDCalibration | None = None,
    rules: CDRules = CDRules(),
    dark: Any = None,
) -> tuple[CDPointResult, Estimate]:
    """Move to ``wavelength_nm`` and measure one CD point.

    With ``dwell_s``: count that long. With a target σ (of ΔA, or of g_abs, which needs a
    baseline): count until the σ is reached or ``max_dwell_s`` is spent (then the point is
    flagged ``dwell_limit``); an opaque point stops at once (more light will not come).
    ``dark`` is a dark measurement of the instrument (``inst.measure_dark(...)``), or None
    for no dark counts.

    Returns:
        (the point, the estimate of all its frames).

    Raises:
        ValueError: on a missing or contradictory dwell/target, or a g_abs target without a
            baseline.
    """
    target = _check_dwell(dwell_s, target_sigma_delta_a, target_sigma_g_abs, max_dwell_s)
    wl = float(inst.move_to(float(wavelength_nm)))
    mode = Transmission(calibration=cd_calibration_of(inst, cd_calibration),
                        baseline={round(wl, 6): baseline} if baseline is not None else {},
                        rules=rules,
                        merit="g_abs" if target_sigma_g_abs is not None else "delta_a")
    m = measure_point(inst, mode, dwell_s=dwell_s, target=target, max_dwell_s=max_dwell_s,
                      dark=dark, wavelength_nm=wl)
    assert m.estimate is not None
    return m.product, m.estimate


def _check_dwell(dwell_s: float | None, target_sigma_delta_a: float | None,
                 target_sigma_g_abs: float | None, max_dwell_s: float) -> float | None:
    """The target σ (None with a fixed dwell), after checking that exactly one of the three
    is given and all are positive."""
    targets = [x for x in (dwell_s, target_sigma_delta_a, target_sigma_g_abs) if x is not None]
    if len(targets) != 1:
        raise ValueError("give exactly one of dwell_s, target_sigma_delta_a and "
                         "target_sigma_g_abs")
    for name, value in (("dwell_s", dwell_s), ("target_sigma_delta_a", target_sigma_delta_a),
                        ("target_sigma_g_abs", target_sigma_g_abs), ("max_dwell_s", max_dwell_s)):
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return target_sigma_delta_a if target_sigma_delta_a is not None else target_sigma_g_abs


def cd_scan(
    inst: Any, start: float, stop: float, step: float, *,
    dwell_s: float | None = None,
    target_sigma_delta_a: float | None = None,
    target_sigma_g_abs: float | None = None,
    max_dwell_s: float = DEFAULT_MAX_DWELL_S,
    baseline: None | CDSpectrum | str | PathLike[str] = None,
    output: str | PathLike[str] | None = None,
    progress: bool | TextIO = False,
    cd_calibration: CDCalibration | None = None,
    rules: CDRules = CDRules(),
    dark: Any = None,
    dark_dwell_s: float = 10.0,
    sample: str | None = None,
    callback: Callable[[CDPointResult, int, CDSpectrum], Any] | None = None,
    archive: str | PathLike[str] | None = None,
    overwrite: bool = False,
    sinks: Sequence[Sink] = (),
    accumulations: int = 1,
    skip_hopeless: bool = False,
    time_budget_s: float | None = None,
    survey: bool | float = False,
    survey_callback: Callable[[Survey], None] | None = None,
    settings: dict[str, Any] | None = None,
    lamp: LampMonitor | None = LampMonitor(),
) -> CDSpectrum:
    """Measure a CD spectrum from ``start`` to ``stop`` nm in ``step``-nm steps.

    Args:
        inst: a connected, prepared instrument (``inst.prepare()``: counting mode, HV, A0,
            shutter open) in the CD light path.
        start, stop, step: the wavelength grid, nm.
        dwell_s: fixed counting time per point, s; or
        target_sigma_delta_a: count each point until σ(ΔA) reaches this; or
        target_sigma_g_abs: until σ(g_abs) reaches this (needs ``baseline``).
        max_dwell_s: the most counting time a point may take with a target, s.
        baseline: a baseline scan (a :class:`CDSpectrum` or the path of its CSV) on the same
            grid, or None: then A and g_abs are NaN (``no_baseline``) — which is what a
            baseline scan itself is.
        output: CSV file, rewritten atomically after every point.
        progress: True (stderr) or a text stream: one line per point.
        cd_calibration: CD sign and scale; None = the instrument calibration's ``cd`` if it
            has one, else the identity (stated in the metadata).
        rules: flag thresholds (:class:`~cplscope.science.cd.CDRules`).
        dark: None: no dark counts; True: measure them (lamp shutter closed,
            ``dark_dwell_s`` s) before each accumulation; or a dark measurement
            (``inst.measure_dark(...)``) to reuse.
        sample: the sample's name for the metadata (default: the simulated sample, if any).
        callback: called with (the wavelength's row, index, spectrum so far) after each point.
        archive: raw archive (:mod:`cplscope.data.archive`) of every frame with each
            point's context, written as the scan goes; :func:`cd_reprocess` recomputes the CD
            spectrum from it (e.g. with another baseline), and
            :func:`cplscope.plans.resume.resume_scan` finishes an interrupted scan.
        overwrite: replace an existing CSV or archive (otherwise FileExistsError, raised
            before anything is measured).
        sinks: document subscribers: the same run-start / event / run-stop documents as a
            CPL scan (:mod:`cplscope.data.documents`); an event's ``result`` is the point in
            the binned model's terms (g = 2v), its ``row`` the CD row.
        accumulations, skip_hopeless, time_budget_s, survey, survey_callback: as for
            :func:`cplscope.plans.scan.scan`, with the target σ in place of σ_g.
        settings: extra settings for the metadata (e.g. the simulator's seed).
        lamp: how the scan watches its lamp (:class:`~cplscope.science.lamp.LampMonitor`,
            default: a 2-s reading at the longest wavelength every 60 s): A is corrected for
            the lamp's drift and σ(A) holds it (docs/cd.md, "Lamp drift"). None: not watched
            (σ(A) is photon noise alone; the metadata says so).

    Returns:
        The :class:`CDSpectrum` (also in ``output``).

    Raises:
        ValueError: on a bad grid, dwell or target, or a baseline without a point at one of
            the scan's wavelengths (checked before the first move).
        ScanInterrupted: on Ctrl-C (a KeyboardInterrupt), with the partial spectrum;
            ``output`` is complete up to the last finished point.
    """
    target = None
    if time_budget_s is None or dwell_s is not None or target_sigma_delta_a is not None \
            or target_sigma_g_abs is not None:
        target = _check_dwell(dwell_s, target_sigma_delta_a, target_sigma_g_abs, max_dwell_s)
    plan = ScanSettings(start, stop, step, dwell_s=dwell_s, target=target,
                        max_dwell_s=max_dwell_s, accumulations=accumulations,
                        dark=dark if dark is not None else False, dark_dwell_s=dark_dwell_s,
                        skip_hopeless=skip_hopeless, time_budget_s=time_budget_s,
                        survey=survey)
    plan.check()
    check_archive(inst, archive)
    mode = replace(_mode(inst, plan, baseline, cd_calibration, rules,
                         "g_abs" if target_sigma_g_abs is not None else "delta_a"), lamp=lamp)
    stream = sys.stderr if progress is True else (progress or None)
    extra: list[Sink] = []
    if stream is not None:
        extra.append(_ProgressLines(stream))
    if callback is not None:
        extra.append(_RowCallback(callback))
    return run_scan(inst, mode, plan, sample=sample if sample is not None else
                    _sample_name(inst), survey_callback=survey_callback,
                    extra_settings=settings,
                    sinks=run_sinks(output=output, archive=archive, overwrite=overwrite,
                                    sinks=[*extra, *sinks]))


def _mode(inst: Any, plan: ScanSettings, baseline: Any, cd_calibration: CDCalibration | None,
          rules: CDRules, merit: str) -> Transmission:
    cal = cd_calibration_of(inst, cd_calibration)
    if baseline is None:
        return Transmission(calibration=cal, rules=rules, merit=merit)
    base = baseline if isinstance(baseline, CDSpectrum) else CDSpectrum.read_csv(Path(baseline))
    measured_in = (base.metadata.get("settings") or {}).get("mode")
    if measured_in in ("counting", "analog") and measured_in != inst.mode:
        raise ValueError(f"the baseline was measured in {measured_in} mode and this scan is in "
                         f"{inst.mode} mode: its rates are in other units (counts/s against "
                         "ADC counts), so A would be meaningless. Measure the baseline in "
                         f"{inst.mode} mode")
    return Transmission.with_baseline(base, label=_baseline_label(baseline, base),
                                      wavelengths_nm=plan.wavelengths_nm.tolist(),
                                      calibration=cal, rules=rules, merit=merit)


class _ProgressLines:
    """One line per point to a text stream."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.n = 0

    def __call__(self, name: str, doc: Any) -> None:
        if name == "start":
            self.n = len(doc.wavelengths_nm) * doc.accumulations
        elif name == "event" and doc.measurement is not None:
            p = doc.row
            flags = f"  [{', '.join(p.flags)}]" if p.flags else ""
            print(f"{doc.seq_num}/{self.n} {p.wavelength_nm:8.2f} nm  A = {p.absorbance:.4f}  "
                  f"θ = {p.ellipticity_mdeg:+.2f} ± {p.sigma_ellipticity_mdeg:.2f} mdeg  "
                  f"g_abs = {p.g_abs:+.2e} ± {p.sigma_g_abs:.1e}  {p.dwell_s:.1f} s{flags}",
                  file=self.stream, flush=True)


class _RowCallback:
    """``callback(row, index, spectrum)`` after every live point."""

    def __init__(self, callback: Callable[..., Any]) -> None:
        self.callback = callback

    def __call__(self, name: str, doc: Any) -> None:
        if name == "event" and doc.measurement is not None:
            self.callback(doc.row, doc.index, doc.spectrum)


def _sample_name(inst: Any) -> str:
    sim = getattr(inst, "sim", None) or getattr(inst, "_sim", None)
    name = getattr(sim, "sample", None)
    return str(name) if name else "unknown"


def _baseline_label(given: Any, base: CDSpectrum) -> str:
    if isinstance(given, (str, PathLike)):
        return str(given)
    sample = base.metadata.get("sample")
    return f"CD spectrum of {sample}" if sample else "CD spectrum"
