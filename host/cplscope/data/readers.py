"""Reading a CPL spectrum from the files a user has: cplscope's own spectrum CSV, its
JASCO-style export, or a plain CSV with a header (docs/data-files.md, "Files `cplscope plot`
reads").

:func:`read_cpl_file` tells the kinds apart by their content, not by the file name, and says
in its error what the file is and what it can read: an HDF5 raw archive (recompute the
spectrum with ``cplscope reprocess``), a CD spectrum (``cplscope cd-plot``), a binary file,
or a CSV without the columns it needs.

A plain CSV is comma-, semicolon- or tab-separated text with one header line; lines that
start with ``#`` are comments. Columns are found by name, in any letter case:

| quantity | column names |
|---|---|
| wavelength, nm (required) | ``wavelength``, ``wavelength_nm``, ``lambda``, ``wl``, ``nm`` |
| g_lum (required) | ``g_lum``, ``glum``, ``g`` |
| σ(g_lum) | ``sigma_g``, ``sigma_glum``, ``sigma``, ``err``, ``error``, ``g_err``, ``sd`` |
| total intensity | ``intensity``, ``total``, ``i``, ``dc``, ``pl`` |
| ΔI = I_L − I_R | ``delta_i``, ``cpl``, ``di`` |

Without σ, the figure draws g as a line without error bars or band means.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from ..science.results import PointResult
from .spectrum import MARKER, Spectrum

__all__ = ["PLAIN_COLUMNS", "SpectrumFileError", "WHAT_PLOT_READS", "read_cpl_file"]

#: One sentence on the files :func:`read_cpl_file` reads, for error messages.
WHAT_PLOT_READS = ("`cplscope plot` reads spectrum CSVs (`cplscope scan --output`), their "
                   "JASCO-style export (`--jasco`) and plain CSVs with a header holding the "
                   "columns wavelength,g_lum (and sigma_g, intensity when you have them)")

#: Accepted column names of a plain CSV (lower case), per quantity.
PLAIN_COLUMNS: dict[str, tuple[str, ...]] = {
    "wavelength_nm": ("wavelength_nm", "wavelength", "lambda", "wl", "nm", "wavelength (nm)",
                      "wavelength/nm", "lambda_nm"),
    "g_lum": ("g_lum", "glum", "g"),
    "sigma_g": ("sigma_g", "sigma_glum", "sigma", "err", "error", "g_err", "sd", "sigma_g_lum"),
    "intensity": ("intensity", "total", "i", "dc", "pl", "total_intensity"),
    "delta_i": ("delta_i", "cpl", "di"),
}

_SHOWN = {"wavelength_nm": "wavelength", "g_lum": "g_lum"}

#: JASCO-style Y units (cplscope.data.export) → the quantity they hold.
_JASCO_UNITS = {"CPL DELTA I": "delta_i", "DC": "intensity", "GLUM": "g_lum",
                "SIGMA GLUM": "sigma_g", "I LEFT": "i_left", "I RIGHT": "i_right",
                "LINEAR U": "linear"}

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CD_MARKER = "# cplscope cd spectrum"
_NAN = math.nan


class SpectrumFileError(ValueError):
    """A file :func:`read_cpl_file` cannot read as a CPL spectrum; the message names the file,
    says what it is and what to do."""


def read_cpl_file(path: str | os.PathLike[str]) -> Spectrum:
    """The CPL spectrum in ``path``: a cplscope spectrum CSV, a JASCO-style export or a plain
    CSV (module docstring). A file without cplscope metadata gets ``sample`` = its name and
    ``source`` = its format.

    Raises:
        SpectrumFileError: the file is something else (an archive, a CD spectrum, binary) or
            lacks the columns; the message names the file.
        OSError: it cannot be opened.
    """
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(4096)
    if head.startswith(_HDF5_SIGNATURE):
        raise SpectrumFileError(
            f"{p} is an HDF5 raw archive, not a spectrum CSV: {WHAT_PLOT_READS}; recompute "
            f"the spectrum from the archive with `cplscope reprocess {p} --plot FIGURE.png`")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:    # not just a character cut at the 4096th byte
            raise SpectrumFileError(f"{p} is not a text file: {WHAT_PLOT_READS}") from None
        text = head[:exc.start].decode("utf-8")
    lines = text.splitlines()
    if len(lines) > 1 and lines[1].startswith(_CD_MARKER):
        raise SpectrumFileError(f"{p} is a CD spectrum (`cplscope cd`): plot it with "
                                f"`cplscope cd-plot {p}`")
    if len(lines) > 1 and lines[1].startswith(MARKER):
        return Spectrum.read_csv(p)
    if any(line.strip().upper() == "XYDATA" for line in lines) or (
            lines and lines[0].upper().startswith("TITLE,")):
        return _read_jasco(p)
    return _read_plain(p)


def _read_jasco(p: Path) -> Spectrum:
    header: dict[str, str] = {}
    rows: list[list[str]] = []
    in_data = False
    with open(p, encoding="utf-8", newline="") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if not in_data:
                if line.upper() == "XYDATA":
                    in_data = True
                    continue
                key, _, value = line.partition(",")
                header[key.strip().upper()] = value.strip()
            else:
                rows.append([c.strip() for c in line.split(",")])
    units = [header[k] for k in ("YUNITS", *(f"Y{i}UNITS" for i in range(2, 10)))
             if k in header]
    names = []
    for unit in units:
        name = _JASCO_UNITS.get(unit.split("[")[0].strip().upper())
        names.append(name)
    if "g_lum" not in names:
        raise SpectrumFileError(
            f"{p}: a JASCO-style file without a GLUM column (its Y units: "
            f"{', '.join(units) or 'none'}): {WHAT_PLOT_READS}")
    columns: dict[str, list[float]] = {"wavelength_nm": []}
    columns.update({n: [] for n in names if n})
    for lineno, row in enumerate(rows, 1):
        if len(row) != len(names) + 1:
            raise SpectrumFileError(f"{p}: XYDATA row {lineno} has {len(row)} values, the "
                                    f"header announces {len(names) + 1}")
        try:
            columns["wavelength_nm"].append(float(row[0]))
            for name, cell in zip(names, row[1:]):
                if name:
                    columns[name].append(float(cell))
        except ValueError:
            raise SpectrumFileError(f"{p}: XYDATA row {lineno} is not numbers: "
                                    f"{','.join(row)!r}") from None
    meta: dict[str, Any] = {"sample": header.get("TITLE") or p.stem,
                            "source": {"file": p.name, "format": "JASCO-style CSV"}}
    date = _jasco_date(header.get("DATE", ""), header.get("TIME", ""))
    if date:
        meta["date"] = date
    unit = next((u.partition("[")[2].rstrip("]").strip() for u in units
                 if _JASCO_UNITS.get(u.split("[")[0].strip().upper()) == "intensity"), "")
    meta["units"] = {"wavelength": "nm", "intensity": unit or "a.u."}
    return _spectrum(columns, meta)


def _jasco_date(day: str, time: str) -> str:
    """ISO 8601 from a JASCO ``DATE`` (yy/mm/dd) and ``TIME`` (hh:mm:ss); "" if absent."""
    parts = day.split("/")
    if len(parts) != 3 or not all(x.isdigit() for x in parts):
        return ""
    yy, mm, dd = (int(x) for x in parts)
    return f"{2000 + yy if yy < 100 else yy:04d}-{mm:02d}-{dd:02d}" + (f"T{time}" if time
                                                                      else "")


def _read_plain(p: Path) -> Spectrum:
    with open(p, encoding="utf-8", newline="") as f:
        body = [line for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        raise SpectrumFileError(f"{p} holds no data: {WHAT_PLOT_READS}")
    try:
        dialect = csv.Sniffer().sniff(body[0], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(body, delimiter=delimiter)
    header = [c.strip().lower() for c in next(reader)]
    found = {q: next((header.index(n) for n in names if n in header), None)
             for q, names in PLAIN_COLUMNS.items()}
    missing = [q for q in ("wavelength_nm", "g_lum") if found[q] is None]
    if missing:
        shown = ",".join(header[:8]) + (",…" if len(header) > 8 else "")
        raise SpectrumFileError(
            f"{p}: its header ({shown}) has no {' and no '.join(_SHOWN[m] for m in missing)} "
            "column: "
            f"{WHAT_PLOT_READS}")
    columns: dict[str, list[float]] = {q: [] for q, i in found.items() if i is not None}
    for lineno, row in enumerate(reader, 2):
        if not any(c.strip() for c in row):
            continue
        try:
            for q, i in found.items():
                if i is not None:
                    cell = row[i].strip() if i < len(row) else ""
                    columns[q].append(float(cell) if cell else _NAN)
        except ValueError:
            raise SpectrumFileError(f"{p}: data line {lineno} is not numbers in the columns "
                                    f"{', '.join(columns)}: {delimiter.join(row)!r}") from None
    return _spectrum(columns, {"sample": p.stem, "source": {"file": p.name,
                                                            "format": "plain CSV"}})


def _spectrum(columns: dict[str, list[float]], metadata: dict[str, Any]) -> Spectrum:
    """Points from the columns read; what a file does not give is NaN."""
    n = len(columns["wavelength_nm"])
    get = {q: columns.get(q, [_NAN] * n) for q in ("intensity", "g_lum", "sigma_g",
                                                   "delta_i", "i_left", "i_right", "linear")}
    points = []
    for k in range(n):
        intensity, g = get["intensity"][k], get["g_lum"][k]
        delta = get["delta_i"][k]
        if math.isnan(delta) and not math.isnan(intensity):
            delta = intensity * g / 2.0
        i_left, i_right = get["i_left"][k], get["i_right"][k]
        if math.isnan(i_left) and not math.isnan(intensity):
            i_left, i_right = (intensity + delta) / 2.0, (intensity - delta) / 2.0
        points.append(PointResult(columns["wavelength_nm"][k], intensity, i_left, i_right, delta,
                                  g, get["sigma_g"][k], get["linear"][k], _NAN, _NAN, 0, _NAN))
    metadata.setdefault("units", {"wavelength": "nm", "intensity": "a.u."})
    return Spectrum(points, metadata)
