"""Wavelength scans: a plan that emits documents (accumulations, adaptive dwell, live callback,
raw archive, Ctrl-C safety)."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import Blank, Calibration
from .documents import (
    ArchiveSink,
    CallbackSink,
    CsvSink,
    DarkEvent,
    PointEvent,
    ProgressSink,
    RunStart,
    RunStop,
    Sink,
    SpectrumAssembler,
    emit,
)
from .measure import (
    DEFAULT_MAX_DWELL_S,
    Dark,
    PointMeasurement,
    measure,
    measure_dark,
    retardation_in_force,
)
from .results import FlagRules
from .spectrum import Spectrum, run_metadata

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
         overwrite: bool = False, sinks: Sequence[Sink] = ()) -> Spectrum:
    """Scan the emission monochromator and measure g_lum at every wavelength.

    The scan is a plan that emits documents (:mod:`cplscope.documents`): a run start, a dark
    per accumulation, an event per point and a run stop. The CSV, the raw archive, the
    progress bar, the callback and any ``sinks`` subscribe to them.

    Args:
        start, stop, step: wavelengths in nm (both ends included).
        dwell_s: fixed counting time per point (s), or
        target_sigma: adaptive dwell: count each point until σ_g ≤ target_sigma, at most
            ``max_dwell_s`` s (flag ``dwell_limit`` when the limit ends it).
        accumulations: repeated scans, combined point by point with inverse-variance weights
            (then the blank is subtracted once).
        dark: True: measure the dark counts (shutter closed, ``dark_dwell_s`` s) before each
            accumulation; a :class:`~cplscope.measure.Dark` to reuse; False: none.
        calibration: default ``inst.calibration``.
        blank: a :class:`cplscope.calibration.Blank` to subtract (default: the calibration's
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

    Returns:
        The combined :class:`~cplscope.spectrum.Spectrum`.

    Raises:
        ScanInterrupted: on Ctrl-C, with the partial spectrum (already saved).
    """
    wavelengths = scan_wavelengths(start, stop, step)
    if int(accumulations) < 1:
        raise ValueError(f"accumulations must be ≥ 1, got {accumulations!r}")
    if (dwell_s is None) == (target_sigma is None):
        raise ValueError("give either dwell_s (s per point) or target_sigma (adaptive dwell)")
    cal = calibration if calibration is not None else inst.calibration
    if archive is not None and inst.mode == "analog":
        raise ValueError("the raw archive holds counting frames; in analog mode save the "
                         "spectrum CSV (output=) and leave archive=None")
    if cal.is_default:
        log.warning("instrument %s is not calibrated: A0, φ0 and the handedness are defaults, "
                    "so g_lum has an unknown sign and scale. Run `cplscope calibrate`.",
                    cal.serial)
    blank_spec = blank if blank is not None else cal.blank
    if blank_spec is not None and not blank_spec.covers(wavelengths):
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
        "skip_hopeless": bool(skip_hopeless), "mode": inst.mode,
        "dark": "measured" if dark is True else "given" if dark else "none",
        **(settings or {})}
    meta = run_metadata(identify=inst.info(), calibration=cal, sample=sample or "unknown",
                        settings=run_settings, blank_applied=blank_spec is not None)
    subscribers: list[Sink] = []
    if archive is not None:
        subscribers.append(ArchiveSink(archive, overwrite=overwrite))
    if output is not None:
        subscribers.append(CsvSink(output))
    if progress:
        subscribers.append(ProgressSink())
    if callback is not None:
        subscribers.append(CallbackSink(callback))
    subscribers.extend(sinks)
    n_bins = int(status.get("bins") or 16)
    start_doc = RunStart.new(meta, wavelengths.tolist(), accumulations=int(accumulations),
                             n_bins=n_bins, calibration=cal, blank=blank_spec, rules=rules)
    assembler = SpectrumAssembler(meta, rules)
    seq = 0
    try:
        emit(subscribers, "start", start_doc)
        for acc in range(int(accumulations)):
            if isinstance(dark, Dark):
                dark_now: Dark | None = dark
                source = "given"
            elif dark:
                measured = measure_dark(inst, dark_dwell_s)
                assert isinstance(measured, Dark)
                dark_now = measured
                source = f"dark:{acc}"
                emit(subscribers, "dark", DarkEvent(acc, acc, dark_now))
            else:
                dark_now, source = None, "none"
            for i, wl in enumerate(wavelengths):
                inst.move_to(float(wl))
                b = blank_spec.at(float(wl)) if blank_spec is not None else None
                point = measure(inst, dwell_s=dwell_s, target_sigma=target_sigma,
                                max_dwell_s=max_dwell_s, calibration=cal, dark=dark_now,
                                rules=rules, wavelength_nm=float(wl), accumulation=acc,
                                skip_hopeless=skip_hopeless, dark_source=source)
                assert point.raw_result is not None and point.context is not None
                row = assembler.add(i, acc, point.raw_result, b)
                seq += 1
                frames = point.frames
                emit(subscribers, "event", PointEvent(
                    seq, i, acc, point.context,
                    frames.all_received() if hasattr(frames, "all_received") else frames,
                    point.raw_result, row, b, assembler.spectrum(_stream(inst)), point,
                    frame_time_s=getattr(frames, "frame_time_s", math.nan),
                    dwell_s=point.raw_result.dwell_s, bin_span=getattr(frames, "span", 1.0)))
    except KeyboardInterrupt as exc:
        spec = assembler.spectrum(_stream(inst), interrupted=True)
        _stop(subscribers, "abort", "interrupted (Ctrl-C)", spec)
        raise ScanInterrupted(spec) from exc
    except BaseException as exc:
        spec = assembler.spectrum(_stream(inst))
        _stop(subscribers, "fail", f"{type(exc).__name__}: {exc}", spec)
        raise
    spec = assembler.spectrum(_stream(inst))
    _stop(subscribers, "success", "", spec)
    return spec


def _stop(subscribers: Sequence[Sink], status: str, reason: str, spec: Spectrum) -> None:
    try:
        emit(subscribers, "stop", RunStop(status, reason, dict(spec.metadata.get("stream") or {})
                                          or None, spec))
    except Exception:
        if status == "success":
            raise
        log.exception("a sink failed while the run stopped (%s)", reason)


def _stream(inst) -> dict[str, int]:
    return inst.health().as_dict()
