"""The sinks cplscope subscribes to a run's documents (:mod:`cplscope.data.documents`): the
spectrum CSV, the raw archive, a progress bar and a lab script's callback.

The file sinks say what they hold safely (:meth:`CsvSink.safe`, :meth:`ArchiveSink.safe`), so
that a run that stops on a full disk can say where its points are."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..util.files import write_text_atomic
from .archive import Archive, ArchiveWriter, PointSettings, journal_path

__all__ = ["ArchiveSink", "CallbackSink", "CsvSink", "ProgressSink", "TimeBinsSink"]


class CsvSink:
    """Rewrites the spectrum CSV atomically after every point and at the end. A run that
    stops before its first point leaves no CSV (and an existing one untouched)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows = 0

    def __call__(self, name: str, doc: Any) -> None:
        if name == "start":
            _remove_stale_temporaries(self.path)
        if name == "event" or (name == "stop" and (len(doc.spectrum) or self.rows)):
            doc.spectrum.write_csv(self.path)
            self.rows = len(doc.spectrum)

    def safe(self) -> tuple[int, Path] | None:
        """(points, file) the CSV holds as last written, or None before the first."""
        return (self.rows, self.path) if self.rows else None


def _remove_stale_temporaries(path: Path) -> None:
    """The temporary files of ``path``'s atomic rewrites that a killed run left behind."""
    folder = path.parent if str(path.parent) else Path(".")
    for stale in folder.glob(f".{path.name}*.tmp"):
        stale.unlink(missing_ok=True)


class ArchiveSink:
    """Writes the raw archive: every frame of every dark and point, each point's context and
    result, durable after every document (:class:`~cplscope.data.archive.ArchiveWriter`)."""

    def __init__(self, path: str | os.PathLike[str], *, overwrite: bool = False,
                 append: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.append = append
        self._writer: Any = None
        self._last: Any = None

    def safe(self) -> tuple[int, Path] | None:
        """(points, file) durably in the archive so far (its journal while the run goes or
        when the HDF5 file could not be built)."""
        w = self._writer or self._last
        if w is None:
            return None
        where = journal_path(self.path) if journal_path(self.path).exists() else self.path
        return w.n_points, where

    def __call__(self, name: str, doc: Any) -> None:
        if name == "start" and self.append:
            self._writer = ArchiveWriter.reopen(self.path)
        elif name == "start":
            self._writer = ArchiveWriter(self.path, n_bins=doc.n_bins, metadata=doc.metadata,
                                         calibration=doc.calibration, rules=doc.rules,
                                         blank=doc.blank, overwrite=self.overwrite,
                                         plan={"wavelengths_nm": list(doc.wavelengths_nm),
                                               "accumulations": doc.accumulations,
                                               "uid": doc.uid})
        elif name == "dark" and self._writer is not None:
            frames = getattr(doc.dark, "frames", None)
            if frames is not None:
                self._writer.add_dark(frames, source="shutter-closed",
                                      frame_time_s=frames.frame_time_s, dark=doc.dark)
        elif name == "event" and self._writer is not None:
            s = PointSettings.from_context(doc.context, frame_time_s=doc.frame_time_s,
                                           dwell_s=doc.dwell_s, bin_span=doc.bin_span,
                                           blank=doc.blank, index=doc.index)
            self._writer.add_point(doc.frames, s, doc.result)
        elif name == "stop" and self._writer is not None:
            writer, self._writer = self._writer, None
            self._last = writer
            if writer.n_points == 0 and not self.append:
                writer.discard()          # no point measured: leave nothing behind
                return
            writer.close(stream=doc.stream, exit_status=doc.exit_status, extra=doc.extra,
                         spectrum=doc.spectrum)


class ProgressSink:
    """A tqdm progress bar over the planned points, with the last point's wavelength,
    g ± σ and dwell."""

    def __init__(self, desc: str = "scan") -> None:
        self.desc = desc
        self._bar: Any = None

    def __call__(self, name: str, doc: Any) -> None:
        if name == "start":
            from tqdm import tqdm

            self._bar = tqdm(total=len(doc.wavelengths_nm) * doc.accumulations, unit="pt",
                             desc=self.desc)
        elif name == "event" and self._bar is not None:
            left = (f"  budget left {doc.budget_left_s:.0f} s"
                    if math.isfinite(doc.budget_left_s) else "")
            self._bar.set_postfix_str(f"{_point_text(doc)}{left}", refresh=False)
            self._bar.update(1)
        elif name == "stop" and self._bar is not None:
            self._bar.close()
            self._bar = None


def _point_text(doc: Any) -> str:
    """The last point in a few characters: g ± σ for CPL, θ ± σ for CD."""
    r = doc.result
    row = doc.row
    if hasattr(row, "ellipticity_mdeg"):
        return (f"{row.wavelength_nm:g} nm  θ={row.ellipticity_mdeg:+.2f}±"
                f"{row.sigma_ellipticity_mdeg:.2f} mdeg  {r.dwell_s:.0f} s")
    return f"{r.wavelength_nm:g} nm  g={r.g_lum:+.1e}±{r.sigma_g:.0e}  {r.dwell_s:.0f} s"


class CallbackSink:
    """Calls ``callback(point, index, accumulation)`` after every live point (``point`` is
    the :class:`~cplscope.plans.point.PointMeasurement`)."""

    def __init__(self, callback: Callable[..., None]) -> None:
        self.callback = callback

    def __call__(self, name: str, doc: Any) -> None:
        if name == "event" and doc.measurement is not None:
            self.callback(doc.measurement, doc.index, doc.accumulation)


class TimeBinsSink:
    """Gated counting with several gates (time bins): after every point, g(t) and I(t) of
    each wavelength's accumulations (``PATH``, one row per gate) and the decay fit of each
    (``PATH`` with ``.decay`` before its suffix, one row per component), rewritten
    atomically. Points without time bins are skipped (and no file is written for a run
    without any). A live scan, its resume (:meth:`replay` first: the points already in the
    archive) and ``reprocess`` of its archive write the same files.

    Args:
        components: exponentials of the decay fit (1 or 2); None: the run's
            (``settings.decay_components`` of its metadata), else 1.
    """

    def __init__(self, path: str | os.PathLike[str], components: int | None = None) -> None:
        self.path = Path(path)
        self.decay_path = self.path.with_name(self.path.stem + ".decay" + self.path.suffix)
        self.components = components
        self.rows: list[str] = []
        self.fits: list[str] = []

    def __call__(self, name: str, doc: Any) -> None:
        if name == "start" and self.components is None:
            self.components = int((doc.metadata.get("settings") or {}).get(
                "decay_components") or 1)
        elif name == "event" and self.add(doc.frames, doc.context, doc.accumulation):
            self.write()
        elif name == "stop" and self.rows:
            self.write()

    def replay(self, archive: str | os.PathLike[str]) -> None:
        """Take the points of ``archive`` (a run being resumed) first, as its run measured
        them."""
        with Archive.open(archive) as arc:
            if self.components is None:
                self.components = int((arc.metadata.get("settings") or {}).get(
                    "decay_components") or 1)
            for p in arc:
                self.add(p.frames, p.settings.context(), p.settings.accumulation)

    def add(self, frames: Any, context: Any, accumulation: int) -> bool:
        """The rows of one point (its frames, usable or not, and context); False for a point
        without time bins."""
        from ..science.frames import GatedFrameSet
        from ..science.timebins import fit_decay, time_bins

        if not isinstance(frames, GatedFrameSet) or frames.n_gates < 2:
            return False
        use = frames.select(frames.usable)
        assert isinstance(use, GatedFrameSet)
        tb = time_bins(use, context)
        wl, acc = context.wavelength_nm, accumulation
        for r in tb.rows():
            self.rows.append(f"{wl:g},{acc},{r['gate']},{r['delay_s']:.6g},{r['width_s']:.6g},"
                             f"{r['rate_cps']:.6g},{r['sigma_rate_cps']:.4g},"
                             f"{r['g_lum']:.6g},{r['sigma_g']:.4g},{r['flags']}")
        n = int(self.components or 1)
        try:
            comps, chi2 = fit_decay(tb, n)
            for c, f in enumerate(comps):
                self.fits.append(f"{wl:g},{acc},{c},{f.lifetime_s:.6g},"
                                 f"{f.sigma_lifetime_s:.4g},{f.g_lum:.6g},{f.sigma_g:.4g},"
                                 f"{f.rate_cps:.6g},{f.sigma_rate_cps:.4g},{chi2:.4g},")
        except ValueError as exc:
            self.fits.append(f"{wl:g},{acc},,,,,,,,,\"{exc}\"")
        return True

    def write(self) -> None:
        """Rewrite both files (atomically) with every row so far."""
        write_text_atomic(self.path, "# g(t) and I(t) per gate: rate_cps = photons per second "
                          "of open gate\nwavelength_nm,accumulation,gate,delay_s,width_s,"
                          "rate_cps,sigma_rate_cps,g_lum,sigma_g,flags\n"
                          + "\n".join(self.rows) + "\n")
        write_text_atomic(self.decay_path, f"# decay fit, {int(self.components or 1)} "
                          "exponential component(s) per point "
                          "(cplscope.science.timebins.fit_decay)\n"
                          "wavelength_nm,accumulation,component,lifetime_s,sigma_lifetime_s,"
                          "g_lum,sigma_g,rate_cps,sigma_rate_cps,chi2_red,note\n"
                          + "\n".join(self.fits) + "\n")
