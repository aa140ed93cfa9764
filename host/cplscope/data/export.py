"""Export in the layout of a JASCO Spectra Manager CSV ("JASCO-style"; docs/data-files.md).

JASCO's exports are a block of ``KEY,VALUE`` header lines (``TITLE``, ``DATA TYPE``,
``ORIGIN``, ``DATE`` as yy/mm/dd, ``TIME``, ``SPECTROMETER/DATA SYSTEM``, ``DELTAX``,
``XUNITS``, ``YUNITS`` and ``Y2UNITS``/``Y3UNITS`` for extra channels such as CD's HT voltage,
``FIRSTX``, ``LASTX``, ``NPOINTS``, ``FIRSTY``, ``MAXY``, ``MINY``), a line ``XYDATA`` and then
one ``x,y[,y2,…]`` row per point. This module writes that layout so that software reading
JASCO CSVs can import cplscope spectra. It is a faithful approximation built from published
example files, not JASCO's specification: ``ORIGIN`` says cplscope, the Y units are cplscope's
(ΔI and DC in counts/s, not mdeg and volts), and points without emission hold ``nan`` unless
dropped.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import __version__
from ..util.files import check_new_file, write_text_atomic
from .spectrum import Spectrum

__all__ = ["JASCO_QUANTITIES", "jasco_text", "write_jasco_csv"]

#: Exportable quantities -> YUNITS label; ``{unit}`` is the spectrum's intensity unit.
JASCO_QUANTITIES: dict[str, str] = {
    "delta_i": "CPL DELTA I [{unit}]",
    "intensity": "DC [{unit}]",
    "g_lum": "GLUM",
    "sigma_g": "SIGMA GLUM",
    "i_left": "I LEFT [{unit}]",
    "i_right": "I RIGHT [{unit}]",
    "linear": "LINEAR U",
}


def jasco_text(spectrum: Spectrum, quantities: Sequence[str] = ("delta_i", "intensity", "g_lum"),
               *, title: str | None = None, drop_nan: bool = False) -> str:
    """The JASCO-style CSV text of ``spectrum``: x = wavelength (nm), one Y column per
    quantity (first is ``YUNITS``, then ``Y2UNITS``, ``Y3UNITS``, …).

    Args:
        quantities: names from :data:`JASCO_QUANTITIES`.
        title: ``TITLE`` (default: the sample name from the metadata).
        drop_nan: leave out rows where a Y value is NaN (``no_emission`` points) instead of
            writing ``nan``, for readers that accept numbers only.

    Raises:
        ValueError: on an unknown quantity, no quantities, or an empty spectrum.
    """
    if not quantities:
        raise ValueError("choose at least one quantity to export")
    unknown = [q for q in quantities if q not in JASCO_QUANTITIES]
    if unknown:
        raise ValueError(f"cannot export {unknown}; choose from {', '.join(JASCO_QUANTITIES)}")
    if len(spectrum) == 0:
        raise ValueError("the spectrum has no points to export")
    meta = spectrum.metadata
    x = spectrum.wavelength_nm
    ys = np.column_stack([spectrum.column(q) for q in quantities])
    if drop_nan:
        keep = np.all(np.isfinite(ys), axis=1)
        x, ys = x[keep], ys[keep]
        if not x.size:
            raise ValueError("every point has a NaN in the chosen quantities (no emission?)")
    unit = str(meta.get("units", {}).get("intensity", "cps"))
    sample = meta.get("sample", "")
    if title is None:
        title = sample if isinstance(sample, str) else str(sample.get("name", ""))
    date = _date(meta.get("date"))
    inst = meta.get("instrument", {})
    steps = np.diff(x)
    uniform = steps.size > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9)
    first = ys[:, 0]
    finite = first[np.isfinite(first)]
    header: list[tuple[str, str]] = [
        ("TITLE", _clean(title)),
        ("DATA TYPE", "CIRCULARLY POLARIZED LUMINESCENCE"),
        ("ORIGIN", "cplscope"),
        ("OWNER", ""),
        ("DATE", date.strftime("%y/%m/%d") if date else ""),
        ("TIME", date.strftime("%H:%M:%S") if date else ""),
        ("SPECTROMETER/DATA SYSTEM", _clean(
            f"cplscope {__version__}, board {inst.get('board', '?')}, firmware "
            f"{inst.get('firmware_version', '?')}, serial {inst.get('serial', '?')}")),
        ("RESOLUTION", ""),
        ("DELTAX", _num(steps[0]) if uniform else ""),
        ("XUNITS", "NANOMETERS"),
    ]
    for i, q in enumerate(quantities):
        header.append(("YUNITS" if i == 0 else f"Y{i + 1}UNITS",
                       JASCO_QUANTITIES[q].format(unit=unit)))
    header += [
        ("FIRSTX", _num(x[0])), ("LASTX", _num(x[-1])), ("NPOINTS", str(x.size)),
        ("FIRSTY", _num(first[0])),
        ("MAXY", _num(finite.max()) if finite.size else ""),
        ("MINY", _num(finite.min()) if finite.size else ""),
    ]
    lines = [f"{k},{v}" for k, v in header] + ["XYDATA"]
    lines += [",".join([_num(xi)] + [_num(v) for v in row]) for xi, row in zip(x, ys)]
    return "\r\n".join(lines) + "\r\n"


def write_jasco_csv(spectrum: Spectrum, path: str | os.PathLike[str],
                    quantities: Sequence[str] = ("delta_i", "intensity", "g_lum"), *,
                    title: str | None = None, drop_nan: bool = False,
                    overwrite: bool = False) -> Path:
    """Write :func:`jasco_text` to ``path`` (CRLF line ends, as Windows software writes them)
    atomically; an existing file is refused unless ``overwrite``. For one file per
    quantity, call once per quantity. Returns the path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        DiskFullError: no room for it (nothing is left behind).
    """
    check_new_file(path, overwrite=overwrite)
    return write_text_atomic(path, jasco_text(spectrum, quantities, title=title,
                                              drop_nan=drop_nan))


def _num(v: float) -> str:
    return "nan" if math.isnan(v) else f"{float(v):.10g}"


def _clean(text: str) -> str:
    """Header values must stay on one line and not add columns."""
    return " ".join(str(text).replace(",", ";").split())


def _date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
