"""CD spectrum CSV: layout, round trip, metadata, baseline look-up and malformed files."""
import math

import numpy as np
import pytest

from cplscope.science.cd import CD_COLUMNS, CD_CSV_COLUMNS, FLAG_OPAQUE, CDPointResult
from cplscope.data.cd_spectrum import CD_MARKER, CDSpectrum, cd_metadata

NAN = float("nan")


def pt(lam, *, a=0.5, da=2e-3, flags=(), rate=4e5):
    return CDPointResult(lam, a, 1e-3, da, 1e-4, da / a, 2e-4, 32980 * da, 1e-4, 1.02, 100,
                         4.0, flags, 2e-4, rate, 60.0)


def spectrum():
    meta = cd_metadata({"date": "2026-12-01T09:00:00Z", "sample": "R-Cs4PbBr6",
                        "settings": {"bins": 16, "target_sigma_g_abs": 5e-4}},
                       cd_calibration={"cd_sign": -1, "cd_scale": 1.02}, baseline="solvent.csv")
    opaque = CDPointResult(270.0, *([NAN] * 8), 1.1, 100, 4.0, (FLAG_OPAQUE,), NAN, 90.0, 3.0)
    return CDSpectrum([opaque, pt(426.0), pt(446.0, da=-2e-3, flags=("linear_dichroism",))],
                      meta)


def test_csv_layout_columns_and_metadata(tmp_path):
    path = spectrum().write_csv(tmp_path / "r.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CD_CSV_COLUMNS) and lines[1] == CD_MARKER
    assert CD_CSV_COLUMNS[:13] == (
        "wavelength_nm", "absorbance", "sigma_absorbance", "delta_a", "sigma_delta_a", "g_abs",
        "sigma_g_abs", "ellipticity_mdeg", "linear_dichroism", "chi2_red", "n_frames",
        "dwell_s", "flags") == CD_COLUMNS
    assert '# mode = "cd"' in lines
    assert "# cd_calibration.cd_sign = -1" in lines
    assert '# baseline = "solvent.csv"' in lines
    assert '# units.ellipticity = "mdeg"' in lines
    data = np.genfromtxt(path, names=True, comments="#", delimiter=",", dtype=None,
                         encoding="utf-8")
    assert data["wavelength_nm"].tolist() == [270.0, 426.0, 446.0]
    assert math.isnan(data["delta_a"][0]) and data["delta_a"][1] == 2e-3


def test_round_trip_keeps_every_value_nan_and_flag(tmp_path):
    spec = spectrum()
    back = CDSpectrum.read_csv(spec.write_csv(tmp_path / "r.csv"))
    assert back.metadata["mode"] == "cd" and back.metadata["settings"]["bins"] == 16
    assert back.metadata["cd_calibration"] == {"cd_sign": -1, "cd_scale": 1.02}
    for a, b in zip(spec, back):
        for name in CD_CSV_COLUMNS:
            x, y = getattr(a, name), getattr(b, name)
            if isinstance(x, float) and math.isnan(x):
                assert math.isnan(y), name
            elif isinstance(x, float):      # written to its resolution (σ/200 or finer)
                assert y == pytest.approx(x, rel=5e-3), name
            else:
                assert x == y, name
    np.testing.assert_array_equal(back.g_abs[1:], spec.g_abs[1:])
    assert back.has_flag(FLAG_OPAQUE).tolist() == [True, False, False]
    assert back.sigma_ellipticity_mdeg[1] == pytest.approx(3.298)


def test_baseline_lookup():
    spec = spectrum()
    b = spec.baseline_at(426.0000001)
    assert (b.rate_cps, b.sigma_rate_cps, b.delta_a) == (4e5, 60.0, 2e-3)
    with pytest.raises(ValueError, match="no point at 427 nm.*270–446 nm, 3 points"):
        spec.baseline_at(427.0)
    with pytest.raises(ValueError, match="baseline at 270 nm is opaque"):
        spec.baseline_at(270.0)


def test_malformed_files_are_named(tmp_path):
    cpl = tmp_path / "cpl.csv"
    cpl.write_text("wavelength_nm,intensity,i_left,i_right,delta_i,g_lum,sigma_g\n")
    with pytest.raises(ValueError, match="not a cplscope CD spectrum CSV.*CPL spectrum"):
        CDSpectrum.read_csv(cpl)
    good = spectrum().write_csv(tmp_path / "r.csv")
    text = good.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(text[:-1] + ["446.0,0.5,1e-3"]) + "\n")
    with pytest.raises(ValueError, match=r"short.csv:\d+: 3 cells but the header has 16"):
        CDSpectrum.read_csv(tmp_path / "short.csv")
    (tmp_path / "meta.csv").write_text("\n".join(text[:3] + ["# bad = {not json"] + text[3:]))
    with pytest.raises(ValueError, match="metadata value is not JSON"):
        CDSpectrum.read_csv(tmp_path / "meta.csv")
    with pytest.raises(ValueError, match="cannot read cplscope CD spectrum CSV"):
        CDSpectrum.read_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="no column 'g_lum'"):
        spectrum().column("g_lum")
