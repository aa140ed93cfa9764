"""Spectrum: CSV layout readable by numpy/pandas, round trip, partial files, accumulation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cplscope.settings.calibration import default_calibration
from cplscope.science.results import CSV_COLUMNS, FLAG_NO_EMISSION, PointResult
from cplscope.data.spectrum import FLAG_SCATTER, MARKER, Spectrum, combine, run_metadata

IDENTIFY = dict(implementation="cplscope", board="sim", firmware_version="0.1.0",
                protocol_version=1, serial="SIM-0001")


def meta(**stream):
    return run_metadata(identify=IDENTIFY, calibration=default_calibration("SIM-0001"),
                        sample="R-Cs4PbBr6 NCs, toluene", stream=stream or None,
                        settings=dict(bins=16, periods=500, target_sigma_g=1e-4, max_dwell_s=60.0,
                                      accumulations=1, a0_tracking=True),
                        date="2024-05-01T12:00:00+00:00")


def point(wl, g=1e-3, sigma_g=1e-4, intensity=1e6, sigma_i=1e3, u=0.0, sigma_u=1e-4,
          dwell=1.0, flags=(), chi2=1.0, frames=100):
    d = intensity * g / 2
    return PointResult(wl, intensity, (intensity + d) / 2, (intensity - d) / 2, d, g, sigma_g,
                       u, sigma_u, chi2, frames, dwell, tuple(flags), sigma_i)


def sample_spectrum() -> Spectrum:
    nan = float("nan")
    pts = [point(430.0), point(438.0, g=-6e-4, flags=("misfit", "overload")),
           PointResult(600.0, 3.0, nan, nan, nan, nan, nan, nan, nan, 1.1, 100, 1.0,
                       (FLAG_NO_EMISSION,), 2.0)]
    return Spectrum(pts, meta(frames=300, rejected=1, missing=2, reconnects=0))


def assert_points_equal(a: PointResult, b: PointResult):
    for (k, x), y in zip(a.as_dict().items(), b.as_dict().values()):
        if isinstance(x, float):
            assert (math.isnan(x) and math.isnan(y)) or x == y, k
        else:
            assert x == y, k


def test_csv_round_trip_keeps_points_and_metadata_exactly(tmp_path):
    spec = sample_spectrum()
    back = Spectrum.read_csv(spec.write_csv(tmp_path / "r.csv"))
    assert back.metadata == spec.metadata
    assert len(back) == len(spec)
    for a, b in zip(spec, back):
        assert_points_equal(a, b)


def test_csv_values_are_written_to_their_resolution(tmp_path):
    """Issue 25: no 6.000000000000001. A value with a σ keeps σ's 3rd significant digit,
    σ keeps 3 significant digits, dwell and wavelength 6 decimals; what is dropped is far
    below the noise."""
    rng = np.random.default_rng(25)
    pts = []
    for k in range(200):
        g, sg = rng.normal(6e-4, 2e-4), rng.uniform(1e-5, 1e-2)
        i, si = rng.uniform(10.0, 2e6), rng.uniform(0.5, 200.0)
        d = i * g / 2
        pts.append(PointResult(400.0 + 0.1 * k, i, (i + d) / 2, (i - d) / 2, d, g, sg,
                               rng.normal(0, 1e-3), rng.uniform(1e-5, 1e-2),
                               rng.uniform(0.8, 1.2), 30, sum([0.2] * 30), (), si, 1,
                               rng.uniform(0, 50)))
    spec = Spectrum(pts, meta())
    assert spec.points[0].dwell_s != 6.0                # 30 frames of 0.2 s, in memory
    text = spec.write_csv(tmp_path / "r.csv").read_text()
    rows = [line.split(",") for line in text.splitlines()[1:] if not line.startswith("#")]
    assert len(rows) == 200
    assert all(row[CSV_COLUMNS.index("dwell_s")] == "6.0" for row in rows)
    back = Spectrum.read_csv(tmp_path / "r.csv")
    for a, b in zip(spec, back):
        assert b.dwell_s == 6.0 and b.wavelength_nm == round(a.wavelength_nm, 6)
        for value, sigma in (("g_lum", "sigma_g"), ("linear", "sigma_linear"),
                             ("intensity", "sigma_intensity")):
            x, y, s = getattr(a, value), getattr(b, value), getattr(a, sigma)
            assert abs(y - x) <= 0.005 * s * (1 + 1e-9), value     # ≤ σ/200
            assert getattr(b, sigma) == pytest.approx(s, rel=5e-3), sigma
            assert len(f"{getattr(b, sigma):.6e}".split("e")[0].rstrip("0").replace(".", "")
                       .lstrip("-")) <= 3, sigma
        assert abs(b.delta_i - a.delta_i) <= 0.005 * a.intensity * a.sigma_g / 2 * (1 + 1e-9)
        assert b.chi2_red == pytest.approx(a.chi2_red, rel=1e-3)
    assert max(len(c) for row in rows for c in row) <= 12   # short cells, no float noise


def test_flags_are_kept_in_one_fixed_order():
    """Issue 25: `flicker;dwell_limit` and `dwell_limit;flicker` were both written."""
    from cplscope.science.results import FLAG_ORDER, ordered_flags

    a = point(430.0, flags=("flicker", "dwell_limit"))
    b = point(432.0, flags=("dwell_limit", "flicker", "dwell_limit"))
    c = point(434.0, flags=("zeta_custom", "overload", "alpha_custom", "misfit"))
    assert a.flags == b.flags == ("flicker", "dwell_limit")
    assert c.flags == ("misfit", "overload", "alpha_custom", "zeta_custom")
    assert ordered_flags(reversed(FLAG_ORDER)) == FLAG_ORDER
    text = Spectrum([a, b, c], meta()).to_csv_text()
    assert text.count("flicker;dwell_limit") == 2 and "dwell_limit;flicker" not in text


def test_csv_reads_with_numpy_genfromtxt(tmp_path):
    path = sample_spectrum().write_csv(tmp_path / "s.csv")
    data = np.genfromtxt(path, names=True, comments="#", delimiter=",")
    assert data.dtype.names == CSV_COLUMNS
    assert data["wavelength_nm"].tolist() == [430.0, 438.0, 600.0]
    assert data["g_lum"][1] == -6e-4 and np.isnan(data["g_lum"][2])
    text = np.genfromtxt(path, names=True, comments="#", delimiter=",", dtype=None,
                         encoding="utf-8")
    assert text["flags"].tolist() == ["", "misfit;overload", "no_emission"]


def test_csv_reads_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    path = sample_spectrum().write_csv(tmp_path / "s.csv")
    df = pd.read_csv(path, comment="#")
    assert list(df.columns) == list(CSV_COLUMNS)
    assert df["g_lum"].isna().tolist() == [False, False, True]


def test_file_layout_header_first_then_metadata_then_rows(tmp_path):
    lines = sample_spectrum().write_csv(tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert lines[1] == MARKER
    assert '# stream.missing = 2' in lines and '# instrument.serial = "SIM-0001"' in lines
    assert lines[-1].startswith("600.0,3.0,nan,")


def test_columns_as_arrays_and_flag_masks():
    spec = sample_spectrum()
    assert spec.g_lum.dtype == np.float64 and spec.n_frames.dtype == np.int64
    np.testing.assert_array_equal(spec.wavelength_nm, [430.0, 438.0, 600.0])
    np.testing.assert_array_equal(spec.has_flag(FLAG_NO_EMISSION), [False, False, True])
    assert spec.flags[1] == ("misfit", "overload")
    with pytest.raises(ValueError, match="no column"):
        spec.column("g")


def test_partial_scan_written_after_every_point_is_always_a_valid_file(tmp_path):
    path = tmp_path / "scan.csv"
    spec = Spectrum(metadata=meta())
    try:
        for i, wl in enumerate(np.arange(420.0, 460.0, 2.0)):
            if i == 7:
                raise KeyboardInterrupt          # the user presses Ctrl-C
            spec.append(point(float(wl)))
            spec.write_csv(path)
            assert len(Spectrum.read_csv(path)) == i + 1
    except KeyboardInterrupt:
        pass
    back = Spectrum.read_csv(path)
    assert len(back) == 7 and back.wavelength_nm[-1] == 432.0
    assert len(np.genfromtxt(path, names=True, comments="#", delimiter=",")) == 7
    assert [p.name for p in tmp_path.iterdir()] == ["scan.csv"]


def test_empty_spectrum_is_a_valid_file(tmp_path):
    back = Spectrum.read_csv(Spectrum(metadata=meta()).write_csv(tmp_path / "e.csv"))
    assert len(back) == 0 and back.metadata["sample"] == "R-Cs4PbBr6 NCs, toluene"


def test_malformed_rows_and_metadata_are_reported_with_line_numbers(tmp_path):
    path = sample_spectrum().write_csv(tmp_path / "s.csv")
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines + ["440.0,1.0"]) + "\n")
    with pytest.raises(ValueError, match=rf"bad.csv:{len(lines) + 1}: 2 cells"):
        Spectrum.read_csv(bad)
    with pytest.raises(ValueError, match="metadata key"):
        Spectrum([], {"a.b": 1}).to_csv_text()
    with pytest.raises(ValueError, match="lacks"):
        run_metadata(identify={"board": "sim"}, calibration=default_calibration("X"),
                     sample="s", settings={})
    with pytest.raises(ValueError, match="reconnects"):
        Spectrum().set_stream({"frames": 1, "rejected": 0, "missing": 0})


def test_combine_is_inverse_variance_for_g_and_pooled_for_intensity():
    """Four scans with different σ per scan: combined pulls are standard normal and σ is
    1/sqrt(Σ 1/σ_i²)."""
    rng = np.random.default_rng(21)
    wl = np.arange(400.0, 600.0, 0.5)                  # 400 wavelengths
    g_true = 5e-3 * np.sin(wl / 20.0)
    sig = np.array([1e-3, 2e-3, 0.5e-3, 3e-3])
    dwell = np.array([1.0, 2.0, 4.0, 0.5])
    scans = []
    for k in range(4):
        g = g_true + sig[k] * rng.standard_normal(wl.size)
        scans.append(Spectrum([point(float(w), g=float(x), sigma_g=sig[k],
                                     intensity=1e5 * (k + 1), sigma_i=10.0 * (k + 1),
                                     dwell=dwell[k], frames=10 * (k + 1))
                               for w, x in zip(wl, g)], meta(frames=10, rejected=k, missing=0,
                                                             reconnects=0)))
    comb = combine(scans)
    assert len(comb) == wl.size and (comb.accumulations == 4).all()
    expected_sigma = 1 / math.sqrt(np.sum(1 / sig**2))
    np.testing.assert_allclose(comb.sigma_g, expected_sigma, rtol=1e-12)
    pulls = (comb.g_lum - g_true) / comb.sigma_g
    assert abs(pulls.mean()) < 3 / math.sqrt(wl.size)
    assert abs(pulls.std(ddof=1) - 1) < 3 / math.sqrt(2 * wl.size)
    intensity = np.sum(1e5 * np.arange(1, 5) * dwell) / dwell.sum()
    np.testing.assert_allclose(comb.intensity, intensity)
    np.testing.assert_allclose(comb.delta_i, comb.intensity * comb.g_lum / 2)
    assert (comb.dwell_s == dwell.sum()).all() and (comb.n_frames == 100).all()
    assert comb.metadata["accumulations"] == 4 and comb.metadata["stream"]["rejected"] == 6
    # consistent scans: the scatter flag fires at about its tail rate (1e-3) only
    assert comb.has_flag(FLAG_SCATTER).sum() <= 3


def test_combine_flags_scatter_merges_flags_and_accepts_partial_scans():
    a = Spectrum([point(430.0), point(432.0, flags=("dwell_limit",)), point(434.0)], meta())
    b = Spectrum([point(430.0, g=1e-3 + 2e-3), point(432.0, flags=("overload",))], meta())
    comb = combine([a, b])
    assert comb.accumulations.tolist() == [2, 2, 1]
    assert FLAG_SCATTER in comb[0].flags                   # 2e-3 apart, σ = 1e-4 each
    assert comb[1].flags == ("dwell_limit", "overload")
    assert comb[2].g_lum == 1e-3


def test_combine_reevaluates_emission_significance():
    nan = float("nan")
    dark = PointResult(700.0, 1.0, nan, nan, nan, nan, nan, nan, nan, 1.0, 10, 1.0,
                       (FLAG_NO_EMISSION,), 1.0)
    comb = combine([Spectrum([dark]), Spectrum([dark])])
    assert comb[0].flags == (FLAG_NO_EMISSION,) and math.isnan(comb[0].g_lum)
    with pytest.raises(ValueError, match="at least one"):
        combine([])
