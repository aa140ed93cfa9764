"""CD spectra: rows of :class:`~cplscope.science.cd.CDPointResult` with run metadata, and their CSV
(docs/data-files.md, "CD spectrum CSV").

The layout is that of the CPL spectrum CSV (:mod:`cplscope.data.spectrum`): the column header is
the first line, the format marker the second, then the metadata as ``# key = <JSON value>``
comment lines (nested keys joined by dots; ``mode = "cd"`` says what the file is), then one
row per point. ``numpy.genfromtxt(path, names=True, comments="#", delimiter=",")`` and
``pandas.read_csv(path, comment="#")`` read it. :meth:`CDSpectrum.write_csv` replaces the file
atomically, so calling it after every point of a scan leaves a complete file however the scan
ends.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..demod import Estimate
from ..science.cd import (
    CD_COLUMNS,
    CD_CSV_COLUMNS,
    BaselinePoint,
    CDCalibration,
    CDPointResult,
    CDRules,
    baseline_from_point,
    cd_point,
    combine_cd_points,
)
from ..science.lamp import LampDrift, LampReading
from ..science.results import PointResult
from ..util.files import write_text_atomic
from .spectrum import SIGMA_DIGITS, PointRows, TableFormat, read_table, table_text

__all__ = ["CD_MARKER", "FLAG_LAMP_UNKNOWN", "CDAssembler", "CDSpectrum", "MODE",
           "cd_metadata"]

#: The run watches its lamp but had fewer than 2 usable readings when the row was made, or
#: was resumed (the two sessions' clocks are not linked): its A and σ(A) hold no lamp drift
#: (an interrupted or resumed scan, an opaque reference wavelength).
FLAG_LAMP_UNKNOWN = "lamp_unknown"

#: Second line of every CD spectrum CSV; identifies the format.
CD_MARKER = "# cplscope cd spectrum, format 1"
#: The ``mode`` metadata value of a CD spectrum.
MODE = "cd"

_INT_COLUMNS = frozenset({"n_frames"})
#: How each float column of a CD spectrum CSV is rounded (cplscope.data.spectrum.rounded).
CD_RESOLUTION: dict[str, tuple[str, Any]] = {
    "wavelength_nm": ("decimals", 6), "dwell_s": ("decimals", 6),
    "absorbance": ("sigma", lambda p: p.sigma_absorbance),
    "delta_a": ("sigma", lambda p: p.sigma_delta_a),
    "g_abs": ("sigma", lambda p: p.sigma_g_abs),
    "ellipticity_mdeg": ("sigma", lambda p: p.sigma_ellipticity_mdeg),
    "linear_dichroism": ("sigma", lambda p: p.sigma_linear_dichroism),
    "intensity": ("sigma", lambda p: p.sigma_intensity),
    "sigma_absorbance": ("digits", SIGMA_DIGITS), "sigma_delta_a": ("digits", SIGMA_DIGITS),
    "sigma_g_abs": ("digits", SIGMA_DIGITS),
    "sigma_linear_dichroism": ("digits", SIGMA_DIGITS),
    "sigma_intensity": ("digits", SIGMA_DIGITS), "chi2_red": ("digits", 4),
}
#: The CD spectrum CSV (docs/data-files.md).
CD_TABLE = TableFormat(CD_MARKER, tuple(CD_CSV_COLUMNS), tuple(CD_COLUMNS), _INT_COLUMNS,
                       CDPointResult, "cplscope CD spectrum CSV",
                       lambda header: (" (this looks like a CPL spectrum: plot it with "
                                       "`cplscope plot`, or read it with cplscope.Spectrum)")
                       if "g_lum" in header else "", CD_RESOLUTION)


@dataclass
class CDSpectrum(PointRows):
    """An ordered list of CD points with the run metadata (a nested dict of JSON values).

    The metadata of a CD run is :func:`cplscope.data.spectrum.run_metadata`'s plus ``mode = "cd"``
    and, when a baseline was applied, a ``baseline`` section; :meth:`to_csv_text` always
    writes ``mode``.
    """

    points: list[CDPointResult] = field(default_factory=list)
    POINT: ClassVar[type] = CDPointResult
    COLUMNS: ClassVar[tuple[str, ...]] = tuple(CD_CSV_COLUMNS)
    INT_COLUMNS: ClassVar[frozenset[str]] = _INT_COLUMNS

    def __getattr__(self, name: str) -> np.ndarray:
        # wavelength_nm, absorbance, delta_a, g_abs, … as arrays (every CSV column)
        if name in CD_CSV_COLUMNS and name != "flags":
            return self.column(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    @property
    def flags(self) -> list[tuple[str, ...]]:
        """Flags of each point."""
        return [p.flags for p in self.points]

    @property
    def sigma_ellipticity_mdeg(self) -> np.ndarray:
        """σ of the ellipticity, mdeg."""
        return np.array([p.sigma_ellipticity_mdeg for p in self.points], dtype=float)

    def baseline_at(self, wavelength_nm: float, *, decimals: int = 6) -> BaselinePoint:
        """This spectrum, as a baseline scan, at ``wavelength_nm`` (equal to ``decimals``
        decimals of a nm).

        Raises:
            ValueError: when the baseline has no such wavelength, or is opaque there.
        """
        key = round(float(wavelength_nm), decimals)
        for p in reversed(self.points):
            if round(p.wavelength_nm, decimals) == key:
                return baseline_from_point(p)
        have = self.column("wavelength_nm")
        span = f"{have.min():g}–{have.max():g} nm" if have.size else "no points"
        raise ValueError(f"the baseline has no point at {wavelength_nm:g} nm ({span}, "
                         f"{have.size} points): measure the baseline on the sample's grid")

    # --- CSV --------------------------------------------------------------------------------

    def to_csv_text(self) -> str:
        """The CSV file's text (see the module docstring for the layout)."""
        return table_text(CD_TABLE, self.points, {**self.metadata, "mode": MODE})

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the spectrum to ``path`` atomically (a crash leaves the previous complete
        file, never a torn one). Returns the path."""
        return write_text_atomic(Path(path), self.to_csv_text())

    @classmethod
    def read_csv(cls, path: str | os.PathLike[str]) -> CDSpectrum:
        """Read a file written by :meth:`write_csv`.

        Raises:
            ValueError: naming the file and line when it is not a CD spectrum (e.g. a CPL
                spectrum), or a header, metadata line or row is malformed.
        """
        points, meta = read_table(CD_TABLE, path)
        if meta.get("mode", MODE) != MODE:
            raise ValueError(f"{path}: metadata says mode = {meta.get('mode')!r}, not 'cd'")
        return cls(points, meta)


def cd_metadata(base: Mapping[str, Any], *, cd_calibration: Mapping[str, Any],
                baseline: str | None = None) -> dict[str, Any]:
    """``base`` (e.g. :func:`cplscope.data.spectrum.run_metadata`) with the CD sections: ``mode``,
    ``cd_calibration`` (sign, scale, source) and ``baseline`` (its source, or none)."""
    meta = dict(base)
    meta["mode"] = MODE
    meta["cd_calibration"] = dict(cd_calibration)
    meta["baseline"] = baseline if baseline is not None else "none"
    units = dict(meta.get("units", {}))
    units.update({"wavelength": "nm", "absorbance": "decadic", "ellipticity": "mdeg",
                  "dwell": "s"})
    meta["units"] = units
    return meta



def with_flags(point: CDPointResult, flags: tuple[str, ...]) -> CDPointResult:
    """``point`` with ``flags`` appended (those it lacks)."""
    new = tuple(f for f in flags if f not in point.flags)
    return replace(point, flags=point.flags + new) if new else point


class CDAssembler:
    """Builds the CD spectrum of a run from its points' estimates, the way
    :class:`~cplscope.data.documents.SpectrumAssembler` builds a CPL one: each
    accumulation's :func:`~cplscope.science.cd.cd_point` against the baseline, the
    accumulations of a wavelength combined (:func:`~cplscope.science.cd.combine_cd_points`),
    one row per wavelength in plan order.

    When the run watches its lamp (``metadata["lamp"]``, :mod:`cplscope.science.lamp`),
    every point's rate is divided by the lamp's modelled level at its time, and every row is
    worked out again as each new lamp reading refines the model (:meth:`set_lamp`). A run
    that watches its lamp but has fewer than 2 usable readings flags its rows
    ``lamp_unknown``."""

    def __init__(self, metadata: Mapping[str, Any], calibration: CDCalibration,
                 rules: CDRules) -> None:
        self.metadata = dict(metadata)
        self.calibration = calibration
        self.rules = rules
        self._inputs: dict[int, list[tuple[Any, ...]]] = {}
        self._rows: dict[int, CDPointResult] = {}
        lamp = self.metadata.get("lamp")
        self.watches_lamp = isinstance(lamp, Mapping)
        readings = lamp.get("readings", []) if isinstance(lamp, Mapping) else []
        if isinstance(lamp, Mapping) and lamp.get("resumed"):
            readings = []       # two sessions, two clocks: nothing links their readings
        self._drift = LampDrift.fit([LampReading.from_dict(r) for r in readings])

    def set_lamp(self, readings: Sequence[LampReading]) -> None:
        """The run's lamp readings so far: every row is worked out again with them."""
        self.watches_lamp = True
        self._drift = LampDrift.fit(readings)
        for index in self._inputs:
            self._rows[index] = self._row(index)

    def point(self, result: PointResult, baseline: BaselinePoint | None, *,
              estimate: Estimate, health: tuple[str, ...] = (),
              extra_flags: tuple[str, ...] = (),
              times_s: Sequence[float] = ()) -> CDPointResult:
        """One accumulation's CD point from the estimate of its frames (measured at
        ``times_s``, s of instrument time), with the flags the measurement added
        (``dwell_limit``, ``hopeless``)."""
        lamp = None
        flags = extra_flags
        if self.watches_lamp:
            if self._drift is not None and len(times_s):
                lamp = self._drift.level(times_s)
            else:
                flags = flags + (FLAG_LAMP_UNKNOWN,)
        point = cd_point(estimate, result.wavelength_nm, result.dwell_s, baseline=baseline,
                         calibration=self.calibration, rules=self.rules, frame_flags=health,
                         lamp=lamp)
        return with_flags(point, flags)

    def add(self, index: int, accumulation: int, result: PointResult,
            correction: BaselinePoint | None, *, estimate: Estimate,
            health: tuple[str, ...] = (), extra_flags: tuple[str, ...] = (),
            times_s: Sequence[float] = ()) -> CDPointResult:
        """Add one accumulation of the wavelength at ``index`` (its frames measured at
        ``times_s``); returns its row."""
        self._inputs.setdefault(index, []).append(
            (result, correction, estimate, health, extra_flags, tuple(times_s)))
        row = self._row(index)
        self._rows[index] = row
        return row

    def _row(self, index: int) -> CDPointResult:
        return combine_cd_points([
            self.point(result, correction, estimate=estimate, health=health,
                       extra_flags=extra, times_s=times)
            for result, correction, estimate, health, extra, times in self._inputs[index]])

    def spectrum(self, stream: Mapping[str, int] | None = None, **extra: Any) -> CDSpectrum:
        """The CD spectrum so far, with the stream counters and ``extra`` in its metadata."""
        meta = dict(self.metadata)
        meta.update(extra)
        if stream is not None:
            meta["stream"] = dict(stream)
        return CDSpectrum([self._rows[i] for i in sorted(self._rows)], meta)
