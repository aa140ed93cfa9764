"""JASCO-style CSV export: header block, XYDATA rows, NaN handling."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cplscope.data.export import jasco_text, write_jasco_csv
from cplscope.science.results import FLAG_NO_EMISSION, PointResult
from cplscope.data.spectrum import Spectrum

META = {"date": "2024-05-01T12:34:56+00:00", "sample": "R-Cs4PbBr6, toluene",
        "instrument": {"board": "sim", "firmware_version": "0.1.0", "serial": "SIM-1"},
        "units": {"intensity": "cps"}}


def spectrum() -> Spectrum:
    nan = math.nan
    pts = []
    for wl in np.arange(430.0, 440.0, 2.0):
        i, g = 1e6 * (1 + (wl - 430) / 10), 6e-4 * (wl - 434)
        d = i * g / 2
        pts.append(PointResult(float(wl), i, (i + d) / 2, (i - d) / 2, d, g, 1e-4, 0.0, 1e-4,
                               1.0, 100, 1.0))
    pts.append(PointResult(440.0, 3.0, nan, nan, nan, nan, nan, nan, nan, 1.0, 100, 1.0,
                           (FLAG_NO_EMISSION,), 2.0))
    return Spectrum(pts, META)


def parse(text: str):
    head, _, body = text.partition("XYDATA\r\n")
    header = dict(line.split(",", 1) for line in head.split("\r\n") if line)
    rows = [[float(v) for v in line.split(",")] for line in body.split("\r\n") if line]
    return header, np.array(rows)


def test_header_and_rows_follow_the_jasco_layout(tmp_path):
    path = write_jasco_csv(spectrum(), tmp_path / "r.csv")
    raw = path.read_bytes()
    assert b"\r\n" in raw
    header, rows = parse(raw.decode())
    assert list(header)[:3] == ["TITLE", "DATA TYPE", "ORIGIN"]
    assert header["TITLE"] == "R-Cs4PbBr6; toluene"          # no stray delimiter
    assert header["XUNITS"] == "NANOMETERS"
    assert header["YUNITS"] == "CPL DELTA I [cps]" and header["Y2UNITS"] == "DC [cps]"
    assert header["Y3UNITS"] == "GLUM"
    assert header["DATE"] == "24/05/01" and header["TIME"] == "12:34:56"
    assert header["NPOINTS"] == "6" and float(header["DELTAX"]) == 2.0
    assert float(header["FIRSTX"]) == 430.0 and float(header["LASTX"]) == 440.0
    spec = spectrum()
    assert rows.shape == (6, 4)
    np.testing.assert_allclose(rows[:, 0], spec.wavelength_nm)
    np.testing.assert_allclose(rows[:, 1], spec.delta_i, rtol=1e-9)
    np.testing.assert_allclose(rows[:, 3], spec.g_lum, rtol=1e-9)
    assert np.isnan(rows[-1, 1]) and np.isnan(rows[-1, 3]) and rows[-1, 2] == 3.0
    finite = spec.delta_i[np.isfinite(spec.delta_i)]
    assert float(header["MAXY"]) == pytest.approx(finite.max())
    assert float(header["MINY"]) == pytest.approx(finite.min())


def test_single_quantity_and_dropping_points_without_emission():
    header, rows = parse(jasco_text(spectrum(), ["g_lum"], drop_nan=True, title="S"))
    assert header["TITLE"] == "S" and "Y2UNITS" not in header
    assert header["NPOINTS"] == "5" and rows.shape == (5, 2) and np.isfinite(rows).all()


def test_bad_requests_raise():
    with pytest.raises(ValueError, match="cannot export"):
        jasco_text(spectrum(), ["g"])
    with pytest.raises(ValueError, match="at least one"):
        jasco_text(spectrum(), [])
    with pytest.raises(ValueError, match="no points"):
        jasco_text(Spectrum(), ["g_lum"])
