"""Spectra: rows of :class:`~cplscope.science.results.PointResult` with run metadata, CSV I/O and
accumulation (docs/data-files.md).

The CSV layout is chosen so that both ``numpy.genfromtxt(path, names=True, comments="#",
delimiter=",")`` and ``pandas.read_csv(path, comment="#")`` read it: the column header is the
first line (genfromtxt takes its names from the first line, even a comment), the metadata
follows as ``# key = <JSON value>`` comment lines, then one data row per point.
:meth:`Spectrum.write_csv` replaces the file atomically, so calling it after every point of a
scan leaves a complete, valid file however the scan ends.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..util.clock import utc_now_iso
from ..util.files import write_text_atomic
from ..settings.calibration import Calibration
from ..science.results import CSV_COLUMNS, FLAG_SCATTER, FlagRules, PointResult, combine_points

__all__ = ["CPL_TABLE", "FLAG_SCATTER", "MARKER", "STREAM_KEYS", "Spectrum", "TableFormat",
           "combine", "read_table", "run_metadata", "table_text"]

#: Second line of every spectrum CSV; identifies the format.
MARKER = "# cplscope spectrum, format 1"
#: Stream-health counters every run records (docs/data-files.md).
STREAM_KEYS = ("frames", "rejected", "missing", "reconnects")

_INSTRUMENT_KEYS = ("implementation", "board", "firmware_version", "protocol_version", "serial")
_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_META_LINE = re.compile(r"#\s*([A-Za-z0-9_.-]+)\s*=\s?(.*)\Z")
_INT_COLUMNS = frozenset({"n_frames", "accumulations"})


def run_metadata(
    *,
    identify: Mapping[str, Any],
    calibration: Calibration,
    sample: str | Mapping[str, Any],
    settings: Mapping[str, Any],
    stream: Mapping[str, int] | None = None,
    date: str | None = None,
    blank_applied: bool = False,
    intensity_unit: str = "cps",
) -> dict[str, Any]:
    """The run metadata dict shared by spectrum CSVs and raw archives.

    Args:
        identify: the IDENTIFY reply (``implementation``, ``board``, ``firmware_version``,
            ``protocol_version``, ``serial``; extra keys are kept).
        calibration: the calibration in force (its blank arrays are not copied here).
        sample: the sample's name or a dict describing it.
        settings: acquisition settings, e.g. ``bins``, ``periods``, ``target_sigma_g``,
            ``max_dwell_s``, ``accumulations``, ``a0_tracking``.
        stream: stream-health counters; at least ``frames``, ``rejected`` (corrupt),
            ``missing`` (sequence gaps) and ``reconnects``. None at the start of a run.
        date: ISO 8601 UTC start time; now when None.
        blank_applied: whether the points had a blank subtracted.
        intensity_unit: unit of the intensity columns (``"cps"`` for photon counting).

    Raises:
        ValueError: when IDENTIFY keys or stream counters are missing.
    """
    missing = [k for k in _INSTRUMENT_KEYS if k not in identify]
    if missing:
        raise ValueError(f"identify lacks {missing}: pass the IDENTIFY reply of the instrument")
    cal = {k: v for k, v in calibration.to_dict().items()
           if k not in ("format", "version", "blank")}
    cal["blank_applied"] = bool(blank_applied)
    meta: dict[str, Any] = {
        "date": date or utc_now_iso(),
        "uid": uuid.uuid4().hex,
        "instrument": dict(identify),
        "calibration": cal,
        "sample": sample if isinstance(sample, str) else dict(sample),
        "settings": dict(settings),
        "units": {"wavelength": "nm", "intensity": intensity_unit, "dwell": "s"},
    }
    if stream is not None:
        meta["stream"] = _stream(stream)
    return meta


def _stream(stream: Mapping[str, int]) -> dict[str, int]:
    missing = [k for k in STREAM_KEYS if k not in stream]
    if missing:
        raise ValueError(f"stream health lacks {missing}; every run records {list(STREAM_KEYS)}")
    return {k: int(v) for k, v in stream.items()}


@dataclass
class PointRows:
    """Points in scan order with the run metadata (a nested dict of JSON values): what a CPL
    :class:`Spectrum` and a CD spectrum (:class:`cplscope.data.cd_spectrum.CDSpectrum`) share.
    Each CSV column is an array (:meth:`column`)."""

    points: list[Any] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the point type, its CSV columns and those of them that are integers
    POINT: ClassVar[type] = object
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    INT_COLUMNS: ClassVar[frozenset[str]] = frozenset()

    def append(self, point: Any) -> None:
        """Add one point at the end."""
        if not isinstance(point, self.POINT):
            raise ValueError(f"expected a {self.POINT.__name__}, got {type(point).__name__}")
        self.points.append(point)

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.points)

    def __getitem__(self, i: int) -> Any:
        return self.points[i]

    def column(self, name: str) -> np.ndarray:
        """One CSV column as a numpy array (float, or int for counts; ``flags`` as an object
        array of tuples)."""
        if name not in self.COLUMNS:
            raise ValueError(f"no column {name!r}; columns are {', '.join(self.COLUMNS)}")
        values = [getattr(p, name) for p in self.points]
        if name == "flags":
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        return np.array(values, dtype=np.int64 if name in self.INT_COLUMNS else np.float64)

    def has_flag(self, flag: str) -> np.ndarray:
        """Boolean array: which points carry ``flag``."""
        return np.array([flag in p.flags for p in self.points], dtype=bool)


@dataclass
class Spectrum(PointRows):
    """An ordered list of CPL points (:class:`~cplscope.science.results.PointResult`) with the
    run metadata (a nested dict of JSON values)."""

    points: list[PointResult] = field(default_factory=list)
    POINT: ClassVar[type] = PointResult
    COLUMNS: ClassVar[tuple[str, ...]] = CSV_COLUMNS
    INT_COLUMNS: ClassVar[frozenset[str]] = _INT_COLUMNS

    def set_stream(self, stream: Mapping[str, int]) -> None:
        """Record the stream-health counters (``frames``, ``rejected``, ``missing``,
        ``reconnects``, …) in the metadata."""
        self.metadata["stream"] = _stream(stream)

    @property
    def wavelength_nm(self) -> np.ndarray:
        """Wavelengths, nm."""
        return self.column("wavelength_nm")

    @property
    def intensity(self) -> np.ndarray:
        """I = I_L + I_R (cps for photon counting)."""
        return self.column("intensity")

    @property
    def sigma_intensity(self) -> np.ndarray:
        """Standard uncertainty of ``intensity``."""
        return self.column("sigma_intensity")

    @property
    def i_left(self) -> np.ndarray:
        """I_L (cps)."""
        return self.column("i_left")

    @property
    def i_right(self) -> np.ndarray:
        """I_R (cps)."""
        return self.column("i_right")

    @property
    def delta_i(self) -> np.ndarray:
        """ΔI = I_L − I_R (cps); NaN at ``no_emission`` points."""
        return self.column("delta_i")

    @property
    def g_lum(self) -> np.ndarray:
        """g_lum; NaN at ``no_emission`` points."""
        return self.column("g_lum")

    @property
    def sigma_g(self) -> np.ndarray:
        """Standard uncertainty of ``g_lum``."""
        return self.column("sigma_g")

    @property
    def linear(self) -> np.ndarray:
        """u = U/I, reduced linear polarization."""
        return self.column("linear")

    @property
    def sigma_linear(self) -> np.ndarray:
        """Standard uncertainty of ``linear``."""
        return self.column("sigma_linear")

    @property
    def chi2_red(self) -> np.ndarray:
        """Reduced χ² of each point's fit."""
        return self.column("chi2_red")

    @property
    def n_frames(self) -> np.ndarray:
        """Frames used per point."""
        return self.column("n_frames")

    @property
    def dwell_s(self) -> np.ndarray:
        """Counting time per point, s."""
        return self.column("dwell_s")

    @property
    def accumulations(self) -> np.ndarray:
        """Scans averaged into each point."""
        return self.column("accumulations")

    @property
    def flags(self) -> list[tuple[str, ...]]:
        """Flags of each point."""
        return [p.flags for p in self.points]

    # --- CSV ----------------------------------------------------------------------------

    def to_csv_text(self) -> str:
        """The CSV file's text (see the module docstring for the layout)."""
        return table_text(CPL_TABLE, self.points, self.metadata)

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the spectrum to ``path`` atomically (temporary file, fsync, rename): a crash
        or Ctrl-C leaves the previous complete file, never a torn one. Returns the path."""
        target = Path(path)
        text = self.to_csv_text()
        write_text_atomic(target, text)
        return target

    @classmethod
    def read_csv(cls, path: str | os.PathLike[str]) -> Spectrum:
        """Read a file written by :meth:`write_csv` (points and metadata).

        Raises ValueError naming the file and line when the header or a row is malformed.
        """
        points, meta = read_table(CPL_TABLE, path)
        return cls(points, meta)


# --- the CSV table codec, shared by every spectrum kind --------------------------------------

@dataclass(frozen=True)
class TableFormat:
    """How one kind of spectrum is written as CSV: column header first, then ``marker``,
    the metadata as ``# key = JSON`` lines, one row per point.

    Attributes:
        marker: the second line, naming the format.
        columns: the columns in file order (the row type's field names).
        required: the columns a file must have to be read as this kind.
        int_columns: the columns written as integers.
        row_type: the point dataclass, built from a row's cells.
        what: what the file is, for error messages ("cplscope spectrum CSV").
        hint: extra advice when the header lacks columns, given the header.
        resolution: how each float column is rounded when written (:func:`rounded`):
            ``("decimals", n)``, ``("digits", n)`` significant digits, or
            ``("sigma", f)`` with ``f(row)`` the value's standard uncertainty: the value is
            then written to the 3rd significant digit of its σ. Columns not listed keep
            every digit.
    """

    marker: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    int_columns: frozenset[str]
    row_type: Any
    what: str
    hint: Any = None
    resolution: Mapping[str, tuple[str, Any]] = field(default_factory=dict)


def table_text(fmt: TableFormat, rows: Iterable[Any], metadata: Mapping[str, Any]) -> str:
    """The CSV text of ``rows`` with ``metadata`` in format ``fmt``."""
    lines = [",".join(fmt.columns), fmt.marker]
    for key, value in _flatten(metadata):
        lines.append(f"# {key} = {json.dumps(value, ensure_ascii=False)}")
    for p in rows:
        lines.append(",".join(_cell(fmt, name, getattr(p, name), p) for name in fmt.columns))
    return "\n".join(lines) + "\n"


def read_table(fmt: TableFormat, path: str | os.PathLike[str]) -> tuple[list[Any], dict[str, Any]]:
    """The rows and the metadata of a CSV file in format ``fmt``.

    Raises ValueError naming the file and line when it cannot be read, is not of this kind,
    or a header, metadata line or row is malformed.
    """
    p = Path(path)
    meta_flat: list[tuple[str, Any]] = []
    header: list[str] | None = None
    points: list[Any] = []
    try:
        fh = open(p, encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {fmt.what} {str(p)!r}: {exc.strerror or exc}") from exc
    with fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                m = _META_LINE.match(line)
                if m:
                    try:
                        meta_flat.append((m.group(1), json.loads(m.group(2))))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{p}:{lineno}: metadata value is not JSON "
                                         f"({exc}): {line!r}") from None
                continue
            if header is None:
                header = [c.strip() for c in line.split(",")]
                missing = [c for c in fmt.required if c not in header]
                if missing:
                    hint = fmt.hint(header) if fmt.hint is not None else ""
                    raise ValueError(f"{p}:{lineno}: header lacks column(s) {missing}; "
                                     f"not a {fmt.what}{hint}")
                continue
            points.append(_parse_row(fmt, line, header, p, lineno))
    if header is None:
        raise ValueError(f"{p}: no header row; not a {fmt.what}")
    return points, _unflatten(meta_flat)


def _cell(fmt: TableFormat, name: str, value: Any, row: Any) -> str:
    if name == "flags":
        return ";".join(value)
    if name in fmt.int_columns:
        return str(int(value))
    return repr(written_value(fmt, name, value, row))   # shortest form; NaN as 'nan'


def written_value(fmt: TableFormat, name: str, value: Any, row: Any) -> float:
    """The float column ``name`` of ``row`` as format ``fmt`` writes it: rounded to its
    resolution (what the CSV holds, for copies of a run that must equal it)."""
    rule = fmt.resolution.get(name)
    x = float(value)
    if rule is not None:
        kind, arg = rule
        x = rounded(x, **{kind: arg(row) if kind == "sigma" else arg})
    return x


#: Significant digits of σ that a value is written to (sigma rule of :func:`rounded`).
SIGMA_DIGITS = 3


def rounded(x: float, *, decimals: int | None = None, digits: int | None = None,
            sigma: float | None = None) -> float:
    """``x`` rounded to its resolution: to ``decimals`` decimal places, to ``digits``
    significant digits, or to the :data:`SIGMA_DIGITS`-th significant digit of its standard
    uncertainty ``sigma`` (6 significant digits when σ is not finite and > 0). The digits
    dropped are far below the noise (≤ σ/2000), so nothing a reader can use is lost, and a
    dwell of 6 s is written 6.0, not 6.000000000000001."""
    if not math.isfinite(x) or x == 0.0:
        return x
    if decimals is not None:
        return round(x, decimals)
    if sigma is not None:
        if math.isfinite(sigma) and sigma > 0:
            return round(x, SIGMA_DIGITS - 1 - math.floor(math.log10(sigma)))
        digits = 6
    if digits is None:
        raise ValueError("give decimals, digits or sigma")
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _parse_row(fmt: TableFormat, line: str, header: list[str], path: Path, lineno: int) -> Any:
    cells = line.split(",")
    if len(cells) != len(header):
        raise ValueError(f"{path}:{lineno}: {len(cells)} cells but the header has "
                         f"{len(header)} columns")
    row = dict(zip(header, (c.strip() for c in cells)))
    kwargs: dict[str, Any] = {}
    try:
        for name in fmt.columns:
            if name not in row:
                continue
            text = row[name]
            if name == "flags":
                kwargs[name] = tuple(f for f in text.split(";") if f)
            elif name in fmt.int_columns:
                kwargs[name] = int(text)
            else:
                kwargs[name] = float(text)
        return fmt.row_type(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}:{lineno}: {exc}") from None


def _flatten(meta: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in meta.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError(f"metadata key {prefix + str(key)!r} must be letters, digits, '_' "
                             "or '-' (dots separate nesting levels in the CSV header)")
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"metadata {prefix}{key} is not JSON-serializable: {exc}") from None
            yield prefix + key, value


def _unflatten(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"metadata key {key!r} conflicts with a value at {part!r}")
            node = child
        node[leaf] = value
    return out


def _sigma_delta_i(p: PointResult) -> float:
    """σ of ΔI = I·g/2 (and the scale of I_L, I_R), cps."""
    return 0.5 * abs(p.intensity) * p.sigma_g


#: How each float column of a spectrum CSV is rounded (:func:`rounded`).
CPL_RESOLUTION: dict[str, tuple[str, Any]] = {
    "wavelength_nm": ("decimals", 6), "dwell_s": ("decimals", 6),
    "intensity": ("sigma", lambda p: p.sigma_intensity),
    "i_left": ("sigma", _sigma_delta_i), "i_right": ("sigma", _sigma_delta_i),
    "delta_i": ("sigma", _sigma_delta_i),
    "g_lum": ("sigma", lambda p: p.sigma_g), "linear": ("sigma", lambda p: p.sigma_linear),
    "sigma_g": ("digits", SIGMA_DIGITS), "sigma_linear": ("digits", SIGMA_DIGITS),
    "sigma_intensity": ("digits", SIGMA_DIGITS),
    "chi2_red": ("digits", 4), "emission_z": ("digits", 4), "exclusion_z": ("digits", 4),
}

#: The CPL spectrum CSV (docs/data-files.md).
CPL_TABLE = TableFormat(MARKER, CSV_COLUMNS, CSV_COLUMNS[:13], _INT_COLUMNS, PointResult,
                        "cplscope spectrum CSV",
                        lambda header: (" (this looks like a CD spectrum: use "
                                        "`cplscope cd-plot`, or cplscope.data.cd_spectrum."
                                        "CDSpectrum in Python)")
                        if "delta_a" in header else "", CPL_RESOLUTION)


# --- accumulation -----------------------------------------------------------------------

def combine(spectra: Sequence[Spectrum], *, rules: FlagRules = FlagRules(),
            wavelength_decimals: int = 6) -> Spectrum:
    """Average repeated scans point by point (wavelengths equal to ``wavelength_decimals``
    decimals of a nm; a wavelength missing from some scans, e.g. a Ctrl-C'ed one, is averaged
    over the scans that have it).

    Each wavelength's points are combined by :func:`cplscope.science.results.combine_points`
    (inverse-variance g and u, dwell-weighted intensity, flags re-evaluated, ``scatter`` when
    the scans disagree). The scans are treated as independent: a blank is one measurement
    whose σ does not average down, so combine scans measured without a blank and subtract it
    afterwards (:func:`cplscope.science.results.subtract_blank`), as :func:`cplscope.plans.scan.scan` does.

    Metadata: the first spectrum's, with ``accumulations`` (the number of scans) and the
    ``stream`` counters summed when every scan has them.
    """
    if not spectra:
        raise ValueError("combine needs at least one spectrum")
    groups: dict[float, list[PointResult]] = {}
    for spec in spectra:
        for p in spec.points:
            groups.setdefault(round(p.wavelength_nm, wavelength_decimals), []).append(p)
    points = [combine_points(g, rules) for g in groups.values()]
    meta = copy.deepcopy(spectra[0].metadata)
    meta["accumulations"] = len(spectra)
    streams = [s.metadata.get("stream") for s in spectra]
    counters = [s for s in streams if isinstance(s, Mapping)]
    if len(counters) == len(streams):
        keys = set.intersection(*(set(s) for s in counters))
        meta["stream"] = {k: sum(int(s[k]) for s in counters) for k in sorted(keys)}
    return Spectrum(points, meta)
