"""Wavelength scans: accumulations, adaptive dwell, live callback, raw archive, Ctrl-C safety."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .archive import ArchiveWriter, PointSettings
from .calibration import Calibration
from .measure import Dark, PointMeasurement, measure, measure_dark
from .results import FlagRules
from .spectrum import Spectrum, combine, run_metadata

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
         target_sigma: float | None = None, max_dwell_s: float = 600.0,
         accumulations: int = 1, dark: Dark | bool = True, dark_dwell_s: float = 10.0,
         calibration: Calibration | None = None, blank: Any = None,
         callback: Callable[[PointMeasurement, int, int], None] | None = None,
         output: str | Path | None = None, archive: str | Path | None = None,
         progress: bool = False, sample: str = "", rules: FlagRules = FlagRules(),
         settings: dict[str, Any] | None = None) -> Spectrum:
    """Scan the emission monochromator and measure g_lum at every wavelength.

    Args:
        start, stop, step: wavelengths in nm (both ends included).
        dwell_s: fixed counting time per point (s), or
        target_sigma: adaptive dwell: count each point until σ_g ≤ target_sigma, at most
            ``max_dwell_s`` s (flag ``dwell_limit`` when the limit ends it).
        accumulations: repeated scans, combined point by point with inverse-variance weights.
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
    run_settings = {
        "start_nm": float(start), "stop_nm": float(stop), "step_nm": float(step),
        "bins": status.get("bins"), "periods": status.get("periods"),
        "dwell_s": dwell_s, "target_sigma_g": target_sigma, "max_dwell_s": max_dwell_s,
        "accumulations": int(accumulations), "a0_tracking": True,
        "dark": "measured" if dark is True else "given" if dark else "none",
        **(settings or {})}
    meta = run_metadata(identify=inst.info(), calibration=cal, sample=sample or "unknown",
                        settings=run_settings, blank_applied=blank_spec is not None)
    scans: list[Spectrum] = []
    writer = (ArchiveWriter(archive, n_bins=int(status.get("bins") or 16), metadata=meta,
                            calibration=cal, rules=rules) if archive is not None else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(wavelengths) * int(accumulations), unit="pt", desc="scan")
    def result() -> Spectrum:
        done = [s for s in scans if len(s)]
        spec = combine(done, rules=rules) if done else Spectrum(metadata=dict(meta))
        spec.metadata.update({k: v for k, v in meta.items() if k != "accumulations"})
        spec.metadata["accumulations_done"] = len(done)
        spec.set_stream(_stream(inst))
        return spec

    def save(spec: Spectrum) -> None:
        if output is not None:
            spec.write_csv(output)

    try:
        for acc in range(int(accumulations)):
            current = Spectrum(metadata=dict(meta))
            scans.append(current)
            dark_now = dark if isinstance(dark, Dark) else (
                measure_dark(inst, dark_dwell_s) if dark else None)
            dark_index = -1
            if writer is not None and isinstance(dark_now, Dark):
                dark_index = writer.add_dark(dark_now.frames, source="shutter-closed",
                                             frame_time_s=dark_now.frames.frame_time_s)
            for i, wl in enumerate(wavelengths):
                inst.move_to(float(wl))
                b = blank_spec.at(float(wl)) if blank_spec is not None else None
                point = measure(inst, dwell_s=dwell_s, target_sigma=target_sigma,
                                max_dwell_s=max_dwell_s, calibration=cal, dark=dark_now,
                                rules=rules, blank=b, wavelength_nm=float(wl))
                current.append(point.result)
                if writer is not None:
                    writer.add_point(point.frames.received, PointSettings(
                        wavelength_nm=float(wl), a0_rad=cal.a0_rad,
                        phase_offset_rad=cal.phase_offset_rad,
                        frame_time_s=point.frames.frame_time_s, dwell_s=point.frames.dwell_s,
                        handedness=cal.handedness, bin_span=point.frames.bin_span,
                        dead_time_s=cal.dead_time_s, dark=point.dark,
                        dark_source=f"dark:{dark_index}" if dark_index >= 0 else "none",
                        accumulation=acc, blank_g=b[0] if b else math.nan,
                        blank_sigma=b[1] if b else math.nan), point.result)
                save(result())
                if callback is not None:
                    callback(point, i, acc)
                if bar is not None:
                    r = point.result
                    bar.set_postfix_str(f"{r.wavelength_nm:g} nm  g={r.g_lum:+.1e}±{r.sigma_g:.0e}"
                                        f"  {r.dwell_s:.0f} s", refresh=False)
                    bar.update(1)
    except KeyboardInterrupt as exc:
        spec = result()
        spec.metadata["interrupted"] = True
        save(spec)
        _close(writer, inst, bar)
        raise ScanInterrupted(spec) from exc
    except BaseException:
        _close(writer, inst, bar)
        raise
    spec = result()
    save(spec)
    _close(writer, inst, bar)
    return spec


def _stream(inst) -> dict[str, int]:
    return inst.health().as_dict()


def _close(writer: ArchiveWriter | None, inst, bar) -> None:
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close(stream=_stream(inst))
