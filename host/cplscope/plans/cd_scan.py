"""CD scans for lab scripts: move, count, fit, write the CD spectrum CSV point by point.

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

A baseline scan is the same call on the solvent (or the empty cell) without a baseline. The
scan uses only the instrument's ``move_to``, ``acquire``, ``status`` and ``calibration``, and
:func:`cplscope.demod.estimate`; the physics is :func:`cplscope.science.cd.cd_point` (docs/cd.md).
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, TextIO

from ..science.cd import BaselinePoint, CDCalibration, CDPointResult, CDRules, cd_point
from ..data.cd_spectrum import CDSpectrum, cd_metadata
from ..demod import Estimate
from ..data.documents import PointEvent, RunStart, RunStop, Sink, SpectrumAssembler, emit
from ..data.sinks import ArchiveSink
from ..science.frames import FrameSet
from .point import point_context, retardation_in_force
from ..science.pipeline import PointContext, estimate_frames, process_point
from ..science.results import FlagRules, frame_health_flags
from .scan import scan_wavelengths
from ..data.spectrum import run_metadata

__all__ = ["cd_reprocess", "cd_scan", "measure_cd_point", "scan_wavelengths"]

#: Shortest acquisition of the adaptive dwell, s of counting time.
MIN_CHUNK_S = 1.0


def _cd_calibration(inst: Any, given: CDCalibration | None) -> CDCalibration:
    if given is not None:
        return given
    stored = getattr(inst.calibration, "cd", None)
    if isinstance(stored, CDCalibration):
        return stored
    if isinstance(stored, dict):
        return CDCalibration.from_dict(stored)
    return CDCalibration(source="uncalibrated: cd_sign = +1, cd_scale = 1 (fit CSA to set)")


def _load_baseline(baseline: None | CDSpectrum | str | PathLike[str]) -> CDSpectrum | None:
    if baseline is None or isinstance(baseline, CDSpectrum):
        return baseline
    return CDSpectrum.read_csv(Path(baseline))


def _measure(inst: Any, wavelength_nm: float, *, dwell_s: float | None,
             target_sigma_delta_a: float | None, target_sigma_g_abs: float | None,
             max_dwell_s: float, baseline: BaselinePoint | None, cal: CDCalibration,
             rules: CDRules, dark: Any) -> tuple[CDPointResult, Estimate, FrameSet, PointContext]:
    wl = float(inst.move_to(float(wavelength_nm)))
    ret = retardation_in_force(inst)
    source = "given" if dark is not None else "none"
    state: dict[str, Any] = {"frames": FrameSet.from_frames([])}

    def once(duration: float, stopped: str) -> tuple[CDPointResult, Estimate]:
        state["frames"] = state["frames"].extend(inst.acquire(duration_s=duration))
        fs: FrameSet = state["frames"]
        ctx = point_context(wl, inst.calibration, ret, dark, fs, dark_source=source,
                            stopped=stopped)
        state["ctx"] = ctx
        est = estimate_frames(fs.counts, fs.frame_time_s, fs.span, ctx)
        health = frame_health_flags([f.flags for f in fs.received])
        return cd_point(est, wl, fs.dwell_s, baseline=baseline, calibration=cal, rules=rules,
                        frame_flags=health), est

    def done(point: CDPointResult, est: Estimate):
        return point, est, state["frames"], state["ctx"]

    if dwell_s is not None:
        return done(*once(float(dwell_s), "dwell"))
    target = float(target_sigma_delta_a if target_sigma_delta_a is not None
                   else target_sigma_g_abs)  # type: ignore[arg-type]
    key = "sigma_delta_a" if target_sigma_delta_a is not None else "sigma_g_abs"
    spent, chunk = 0.0, min(MIN_CHUNK_S, float(max_dwell_s))
    while True:
        point, est = once(chunk, "target")
        spent = point.dwell_s
        sigma = float(getattr(point, key))
        if point.has("opaque") or point.has("no_absorbance"):
            return done(point, est)
        if math.isfinite(sigma) and sigma <= target:
            return done(point, est)
        left = float(max_dwell_s) - spent
        if left <= 1e-9:
            return done(_with_flag(point, "dwell_limit"), est)
        need = spent * ((sigma / target) ** 2 - 1.0) * 1.05 if math.isfinite(sigma) else spent
        chunk = min(max(need, MIN_CHUNK_S), left)


def measure_cd_point(
    inst: Any, wavelength_nm: float, *,
    dwell_s: float | None = None,
    target_sigma_delta_a: float | None = None,
    target_sigma_g_abs: float | None = None,
    max_dwell_s: float = 300.0,
    baseline: BaselinePoint | None = None,
    cd_calibration: CDCalibration | None = None,
    rules: CDRules = CDRules(),
    dark: Any = None,
) -> tuple[CDPointResult, Estimate]:
    """Move to ``wavelength_nm`` and measure one CD point.

    With ``dwell_s``: count that long. With a target σ (of ΔA, or of g_abs, which needs a
    baseline): count in chunks until the σ is reached or ``max_dwell_s`` is spent (then the
    point is flagged ``dwell_limit``); each chunk is sized from σ ∝ 1/√t, and an opaque point
    stops at once (more light will not come). ``dark`` is a dark measurement of the
    instrument (``inst.measure_dark(...)``: anything with ``per_frame(t)`` and
    ``sigma_per_frame(t)``), or None for no dark counts.

    Returns:
        (the point, the estimate of all its frames).

    Raises:
        ValueError: on a missing or contradictory dwell/target, or a g_abs target without a
            baseline.
    """
    _check_dwell(dwell_s, target_sigma_delta_a, target_sigma_g_abs, max_dwell_s)
    if target_sigma_g_abs is not None and baseline is None:
        raise ValueError("a target σ(g_abs) needs a baseline (g_abs = ΔA/A): give a baseline "
                         "scan, or use target_sigma_delta_a")
    cal = _cd_calibration(inst, cd_calibration)
    point, est, _, _ = _measure(inst, wavelength_nm, dwell_s=dwell_s,
                                target_sigma_delta_a=target_sigma_delta_a,
                                target_sigma_g_abs=target_sigma_g_abs, max_dwell_s=max_dwell_s,
                                baseline=baseline, cal=cal, rules=rules, dark=dark)
    return point, est


def _check_dwell(dwell_s: float | None, target_sigma_delta_a: float | None,
                 target_sigma_g_abs: float | None, max_dwell_s: float) -> None:
    targets = [x for x in (dwell_s, target_sigma_delta_a, target_sigma_g_abs) if x is not None]
    if len(targets) != 1:
        raise ValueError("give exactly one of dwell_s, target_sigma_delta_a and "
                         "target_sigma_g_abs")
    for name, value in (("dwell_s", dwell_s), ("target_sigma_delta_a", target_sigma_delta_a),
                        ("target_sigma_g_abs", target_sigma_g_abs), ("max_dwell_s", max_dwell_s)):
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def _with_flag(point: CDPointResult, flag: str) -> CDPointResult:
    return replace(point, flags=point.flags + (flag,)) if flag not in point.flags else point


def cd_scan(
    inst: Any, start: float, stop: float, step: float, *,
    dwell_s: float | None = None,
    target_sigma_delta_a: float | None = None,
    target_sigma_g_abs: float | None = None,
    max_dwell_s: float = 300.0,
    baseline: None | CDSpectrum | str | PathLike[str] = None,
    output: str | PathLike[str] | None = None,
    progress: bool | TextIO = False,
    cd_calibration: CDCalibration | None = None,
    rules: CDRules = CDRules(),
    dark: Any = None,
    sample: str | None = None,
    callback: Callable[[CDPointResult, int, CDSpectrum], Any] | None = None,
    archive: str | PathLike[str] | None = None,
    overwrite: bool = False,
    sinks: Sequence[Sink] = (),
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
        dark: a dark measurement (``inst.measure_dark(...)``), or None.
        sample: the sample's name for the metadata (default: the simulated sample, if any).
        callback: called with (point, index, spectrum so far) after each point.
        archive: HDF5 raw archive (:mod:`cplscope.data.archive`) of every frame with each point's
            context, written as the scan goes; :func:`cd_reprocess` recomputes the CD
            spectrum from it (e.g. with another baseline).
        overwrite: replace an existing archive.
        sinks: document subscribers: the scan emits the same run-start / event / run-stop
            documents as a CPL scan (:mod:`cplscope.data.documents`); an event's ``result`` is the
            point in the binned model's terms (g = 2v) and ``measurement`` its
            :class:`~cplscope.science.cd.CDPointResult`.

    Returns:
        The :class:`CDSpectrum` (also in ``output``). A KeyboardInterrupt leaves ``output``
        complete up to the last finished point and propagates.

    Raises:
        ValueError: on a bad grid, dwell or target, or a baseline without a point at one of
            the scan's wavelengths (checked before the first move).
    """
    grid = scan_wavelengths(start, stop, step)
    _check_dwell(dwell_s, target_sigma_delta_a, target_sigma_g_abs, max_dwell_s)
    base = _load_baseline(baseline)
    if base is not None:
        for wl in grid:
            base.baseline_at(float(wl))     # every wavelength present and not opaque
    if target_sigma_g_abs is not None and base is None:
        raise ValueError("a target σ(g_abs) needs a baseline (g_abs = ΔA/A): give a baseline "
                         "scan, or use target_sigma_delta_a")
    cal = _cd_calibration(inst, cd_calibration)
    name = sample if sample is not None else _sample_name(inst)
    settings = {"start_nm": float(start), "stop_nm": float(stop), "step_nm": float(step),
                "dwell_s": dwell_s, "target_sigma_delta_a": target_sigma_delta_a,
                "target_sigma_g_abs": target_sigma_g_abs, "max_dwell_s": float(max_dwell_s),
                "dark": "given" if dark is not None else "none",
                "rules": {"min_snr": rules.min_snr, "max_absorbance": rules.max_absorbance,
                          "min_absorbance_snr": rules.min_absorbance_snr,
                          "ld_nsigma": rules.ld_nsigma}}
    meta = run_metadata(identify=inst.info(), calibration=inst.calibration, sample=name,
                        settings=settings)
    meta = cd_metadata(meta, cd_calibration=cal.to_dict(),
                       baseline=_baseline_label(baseline, base))
    spec = CDSpectrum(metadata=meta)
    stream = sys.stderr if progress is True else (progress or None)
    conv = _baseline_conversion(base, cal)
    subscribers: list[Sink] = []
    if archive is not None:
        subscribers.append(ArchiveSink(archive, overwrite=overwrite))
    subscribers.extend(sinks)
    status = inst.status()
    emit(subscribers, "start", RunStart.new(
        meta, grid.tolist(), accumulations=1, n_bins=int(status.get("bins") or 16),
        calibration=inst.calibration, blank=None, rules=_BINNED_RULES))
    binned = SpectrumAssembler(meta, _BINNED_RULES)
    try:
        for i, wl in enumerate(grid):
            b = base.baseline_at(float(wl)) if base is not None else None
            if b is not None and conv != 1.0:
                b = BaselinePoint(b.rate_cps, b.sigma_rate_cps, conv * b.delta_a,
                                  abs(conv) * b.sigma_delta_a)
            point, _, frames, ctx = _measure(
                inst, float(wl), dwell_s=dwell_s, target_sigma_delta_a=target_sigma_delta_a,
                target_sigma_g_abs=target_sigma_g_abs, max_dwell_s=max_dwell_s, baseline=b,
                cal=cal, rules=rules, dark=dark)
            spec.append(point)
            if output is not None:
                spec.write_csv(output)
            if subscribers:
                if point.has("dwell_limit"):
                    ctx = replace(ctx, extra_flags=("dwell_limit",))
                _, raw = process_point(frames.counts, frames.frame_time_s, frames.span,
                                       frames.dwell_s, ctx,
                                       frame_flags=[f.flags for f in frames.received],
                                       rules=_BINNED_RULES)
                row = binned.add(i, 0, raw, None)
                emit(subscribers, "event", PointEvent(
                    i + 1, i, 0, ctx, frames.all_received(), raw, row, None,
                    binned.spectrum(), point, frame_time_s=frames.frame_time_s,
                    dwell_s=frames.dwell_s, bin_span=frames.span))
            if stream is not None:
                print(_progress_line(point, i, len(grid)), file=stream, flush=True)
            if callback is not None:
                callback(point, i, spec)
    except BaseException as exc:
        status_text = "abort" if isinstance(exc, KeyboardInterrupt) else "fail"
        emit(subscribers, "stop", RunStop(status_text, f"{type(exc).__name__}: {exc}",
                                          inst.health().as_dict(), binned.spectrum()))
        raise
    emit(subscribers, "stop", RunStop("success", "", inst.health().as_dict(),
                                      binned.spectrum()))
    return spec


def cd_reprocess(archive: str | PathLike[str], *,
                 baseline: None | CDSpectrum | str | PathLike[str] = None,
                 cd_calibration: CDCalibration | None = None,
                 rules: CDRules = CDRules()) -> CDSpectrum:
    """Recompute a CD spectrum from the raw archive of a :func:`cd_scan`, through the same
    point pipeline (each point's stored context), with a ``baseline`` and CD calibration
    (default: the ones the scan recorded in its metadata, when the baseline is a file)."""
    from ..data.archive import Archive

    with Archive.open(archive) as arc:
        meta = dict(arc.metadata)
        if meta.get("mode") != "cd":
            raise ValueError(f"{archive} is not the archive of a CD scan (mode "
                             f"{meta.get('mode')!r}); use `cplscope reprocess` for CPL runs")
        given = baseline if baseline is not None else meta.get("baseline")
        base = _load_baseline(given) if given else None
        stored = meta.get("cd_calibration")
        cal = cd_calibration or (CDCalibration.from_dict(stored) if isinstance(stored, dict)
                                 else CDCalibration())
        conv = _baseline_conversion(base, cal)
        spec = CDSpectrum(metadata=meta)
        for ap in arc:
            s = ap.settings
            use = ap.frames.select(ap.frames.usable)
            est, _ = process_point(use.counts, s.frame_time_s, s.bin_span, s.dwell_s,
                                   s.context(), frame_flags=ap.frames.flags,
                                   rules=_BINNED_RULES)
            b = base.baseline_at(s.wavelength_nm) if base is not None else None
            if b is not None and conv != 1.0:
                b = BaselinePoint(b.rate_cps, b.sigma_rate_cps, conv * b.delta_a,
                                  abs(conv) * b.sigma_delta_a)
            health = frame_health_flags(ap.frames.flags)
            point = cd_point(est, s.wavelength_nm, s.dwell_s, baseline=b, calibration=cal,
                             rules=rules, frame_flags=health)
            spec.append(_with_flag(point, "dwell_limit") if "dwell_limit" in s.extra_flags
                        else point)
    spec.metadata["reprocessed"] = {"archive": str(archive)}
    return spec


#: The binned model's flag rules for the archive's point rows of a CD scan (its CPL-style
#: view; the CD flags are :class:`~cplscope.science.cd.CDRules`).
_BINNED_RULES = FlagRules(nonlinear_rate_cps=math.inf)


def _baseline_conversion(base: CDSpectrum | None, cal: CDCalibration) -> float:
    """Factor that puts the baseline's ΔA into ``cal``'s convention (1 when it was measured
    with the same CD calibration, or says nothing about it)."""
    if base is None:
        return 1.0
    meta = base.metadata.get("cd_calibration")
    if not isinstance(meta, dict):
        return 1.0
    try:
        used = CDCalibration(int(meta.get("cd_sign", 1)), float(meta.get("cd_scale", 1.0)))
    except (TypeError, ValueError):
        return 1.0
    return cal.factor / used.factor


def _progress_line(p: CDPointResult, i: int, n: int) -> str:
    flags = f"  [{', '.join(p.flags)}]" if p.flags else ""
    return (f"{i + 1}/{n} {p.wavelength_nm:8.2f} nm  A = {p.absorbance:.4f}  "
            f"θ = {p.ellipticity_mdeg:+.2f} ± {p.sigma_ellipticity_mdeg:.2f} mdeg  "
            f"g_abs = {p.g_abs:+.2e} ± {p.sigma_g_abs:.1e}  {p.dwell_s:.1f} s{flags}")


def _sample_name(inst: Any) -> str:
    sim = getattr(inst, "sim", None) or getattr(inst, "_sim", None)
    name = getattr(sim, "sample", None)
    return str(name) if name else "unknown"


def _baseline_label(given: Any, base: CDSpectrum | None) -> str | None:
    if base is None:
        return None
    if isinstance(given, (str, PathLike)):
        return str(given)
    sample = base.metadata.get("sample")
    return f"CD spectrum of {sample}" if sample else "CD spectrum"
