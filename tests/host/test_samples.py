"""Sample library of the simulated bench: built-in values, slit convolution, user files."""
import json
import math

import numpy as np
import pytest

from cplscope.sim.samples import Sample, list_samples, load_sample, sample_from_file, slit_kernel

PAPER_SAMPLES = ["R-Cs4PbBr6", "S-Cs4PbBr6", "N-Cs4PbBr6", "CsPbBr3"]
REQUIRED = PAPER_SAMPLES + ["Eu(facam)3", "linear-polarizer-45", "circular-polarizer-L",
                            "circular-polarizer-R", "blank"]


def _good_dict(**overrides):
    data = {
        "name": "test",
        "wavelength_nm": [400.0, 450.0, 500.0, 550.0],
        "emission": [0.0, 1.0, 0.5, 0.0],
        "g_lum": [0.0, 1e-3, -1e-3, 0.0],
        "linear": [0.0, 0.1, 0.0, 0.0],
        "peak_rate_cps": 1e6,
    }
    data.update(overrides)
    return data


def _peak_and_halfwidth(sample, lo, hi):
    lam = np.arange(lo, hi, 0.01)
    e = sample.spectrum(lam)[0]
    peak = lam[np.argmax(e)]
    above = lam[e >= 0.5 * e.max()]
    return peak, above[-1] - above[0], e.max()


def test_library_lists_and_loads_every_required_sample():
    names = list_samples()
    assert set(REQUIRED) <= set(names)
    for name in names:
        s = load_sample(name)
        assert isinstance(s, Sample) and s.name == name
        assert load_sample(name.upper()) is s  # case-insensitive, built once


def test_paper_samples_are_labelled_with_their_assumptions():
    for name in ("R-Cs4PbBr6", "S-Cs4PbBr6", "CsPbBr3"):
        s = load_sample(name)
        assert "10.1039/d4qi01006j" in s.description
        assert s.assumptions, f"{name} must list its assumed parameters"


def test_r_cs4pbbr6_line_shape_and_g():
    r = load_sample("R-Cs4PbBr6")
    peak, fwhm, top = _peak_and_halfwidth(r, 400, 480)
    assert peak == pytest.approx(438.0, abs=0.02)
    assert fwhm == pytest.approx(18.0, abs=0.05)
    assert top == pytest.approx(1.0)
    peak2, fwhm2, top2 = _peak_and_halfwidth(r, 485, 530)
    assert peak2 == pytest.approx(504.0, abs=0.02)
    assert fwhm2 == pytest.approx(20.0, abs=0.05)
    assert top2 == pytest.approx(0.03, rel=1e-3)
    assert r.truth(438.0).g_lum == pytest.approx(6e-4, rel=1e-9)
    # The 504 nm band carries g = 0, so g falls to ~0 where that band dominates.
    assert abs(r.truth(504.0).g_lum) < 1e-9
    assert r.peak_rate_cps == pytest.approx(1.5e6)


def test_r_and_s_are_mirror_images():
    r, s = load_sample("R-Cs4PbBr6"), load_sample("S-Cs4PbBr6")
    lam = np.linspace(400.0, 560.0, 321)
    tr, ts = r.truth(lam, 2.0), s.truth(lam, 2.0)
    np.testing.assert_array_equal(tr.emission, ts.emission)
    np.testing.assert_allclose(ts.g_lum, -tr.g_lum, rtol=0, atol=1e-18)
    assert np.max(tr.g_lum) == pytest.approx(6e-4, rel=1e-6)


def test_achiral_and_dark_samples():
    c = load_sample("CsPbBr3")
    peak, fwhm, _ = _peak_and_halfwidth(c, 470, 550)
    assert peak == pytest.approx(510.0, abs=0.02) and fwhm == pytest.approx(20.0, abs=0.05)
    assert c.truth(510.0).g_lum == 0.0
    for name in ("N-Cs4PbBr6", "blank"):
        t = load_sample(name).truth(np.array([438.0, 510.0, 613.0]))
        assert np.all(t.emission == 0)
        assert np.all(np.isnan(t.g_lum)), "no emission must give no g, not a number"


def test_europium_standard_signs():
    eu = load_sample("Eu(facam)3")
    t = eu.truth(np.array([595.0, 613.0]), 1.0)
    assert t.g_lum[0] == pytest.approx(-0.8, rel=1e-6)
    assert t.g_lum[1] == pytest.approx(0.4, rel=1e-6)
    assert t.emission[1] > t.emission[0] > 0


@pytest.mark.parametrize("name, u, g", [
    ("linear-polarizer-45", 1.0, 0.0),
    ("circular-polarizer-L", 0.0, 2.0),
    ("circular-polarizer-R", 0.0, -2.0),
])
def test_polarizer_references(name, u, g):
    t = load_sample(name).truth(np.array([400.0, 550.0, 700.0]), 2.0)
    np.testing.assert_allclose(t.linear, u)
    np.testing.assert_allclose(t.g_lum, g)
    assert np.all(t.emission > 0.9)


def test_slit_kernel_is_a_unit_area_triangle():
    for w in (0.3, 2.0, 7.0):
        x, k = slit_kernel(w)
        assert k.sum() == pytest.approx(1.0, abs=1e-14)
        assert np.all(np.abs(x) < w)
        assert np.sum(k * x) == pytest.approx(0.0, abs=1e-14)
        # Second moment of a triangle of half-base w: w²/6.
        assert np.sum(k * x**2) == pytest.approx(w * w / 6, rel=1e-12)
    with pytest.raises(ValueError, match="bandpass_nm"):
        slit_kernel(-1.0)


@pytest.mark.parametrize("bandpass", [0.5, 2.0, 6.0])
def test_slit_convolution_preserves_total_emission(bandpass):
    eu = load_sample("Eu(facam)3")  # narrow lines: the hardest case for the quadrature
    lam = np.arange(560.0, 650.0, 0.01)
    total_point = np.trapezoid(eu.spectrum(lam)[0], lam)
    total_slit = np.trapezoid(eu.truth(lam, bandpass).emission, lam)
    assert total_slit == pytest.approx(total_point, rel=1e-6)


def test_slit_gives_emission_weighted_g_analytic_step():
    # Emission 1 (g = +1) below 500 nm and 3 (g = −1) above: a symmetric slit centred on 500
    # nm sees both halves equally, so emission = 2 and g = (1·1 + 3·(−1))/4 = −0.5.
    lam = [400.0, 499.9999, 500.0, 600.0]
    s = Sample.from_dict(_good_dict(wavelength_nm=lam, emission=[1, 1, 3, 3],
                                    g_lum=[1, 1, -1, -1], linear=[0, 0, 0, 0]))
    t = s.truth(500.0, 4.0)
    assert t.emission == pytest.approx(2.0, rel=1e-4)
    assert t.g_lum == pytest.approx(-0.5, rel=1e-4)
    # Far from the step the slit sees one side only.
    assert s.truth(450.0, 4.0).g_lum == pytest.approx(1.0)


def test_slit_g_matches_brute_force_integration():
    eu = load_sample("Eu(facam)3")
    w = 5.0
    for centre in (597.0, 604.0, 611.0):
        x = np.linspace(-w, w, 200001)
        tri = 1 - np.abs(x) / w
        e, g, _ = eu.spectrum(centre + x)
        expected_g = np.trapezoid(e * g * tri, x) / np.trapezoid(e * tri, x)
        expected_e = np.trapezoid(e * tri, x) / w
        t = eu.truth(centre, w)
        # Gauss–Legendre on the piecewise-linear table (kinks every 0.02 nm): ~1e-6 relative.
        assert t.g_lum == pytest.approx(expected_g, rel=1e-5, abs=1e-9)
        assert t.emission == pytest.approx(expected_e, rel=1e-5)


def test_zero_bandpass_is_point_sampling():
    r = load_sample("R-Cs4PbBr6")
    lam = np.array([430.0, 438.0, 450.0])
    np.testing.assert_allclose(r.truth(lam, 0.0).emission, r.spectrum(lam)[0])


def test_user_file_round_trip(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(_good_dict()))
    s = load_sample(path)
    assert s.name == "test" and s.peak_rate_cps == 1e6
    t = s.truth(450.0, 0.0)
    assert (t.emission, t.g_lum, t.linear) == pytest.approx((1.0, 1e-3, 0.1))
    # to_dict writes the same format back.
    path2 = tmp_path / "again.json"
    path2.write_text(json.dumps(s.to_dict()))
    again = sample_from_file(str(path2))
    np.testing.assert_array_equal(again.g_lum, s.g_lum)


def test_linear_is_optional(tmp_path):
    data = _good_dict()
    del data["linear"]
    s = Sample.from_dict(data)
    assert np.all(s.linear == 0)


@pytest.mark.parametrize("change, pattern", [
    ({"g_lum": None}, r"missing key\(s\) 'g_lum'"),
    ({"glum": [0, 0, 0, 0]}, r"unknown key\(s\) 'glum'"),
    ({"wavelength_nm": [400, 450, 440, 550]}, r"'wavelength_nm' is not strictly increasing.*440"),
    ({"wavelength_nm": [400, 450, 450, 550]}, r"not strictly increasing"),
    ({"emission": [0, 1, 0.5]}, r"'emission' has 3 values but 'wavelength_nm' has 4"),
    ({"emission": [0, 1, -0.1, 0]}, r"'emission'.*-0.1 at 500.0 nm.*negative"),
    ({"g_lum": [0, 2.5, 0, 0]}, r"'g_lum'.*2.5.*outside −2 … 2"),
    ({"linear": [0, 0, -1.2, 0]}, r"'linear'.*-1.2.*outside −1 … 1"),
    ({"linear": [0, 0.9, 0, 0], "g_lum": [0, 1.0, 0, 0]}, r"degree of polarization above 1"),
    ({"emission": [0, float("nan"), 0, 0]}, r"'emission': element 1 is nan.*finite"),
    ({"g_lum": [0, "0.1", 0, 0]}, r"'g_lum': element 1 is '0.1'; expected a number"),
    ({"g_lum": 0.001}, r"'g_lum' must be a list of numbers"),
    ({"wavelength_nm": [500.0]}, r"'wavelength_nm' has 1 value"),
    ({"wavelength_nm": [-5, 450, 500, 550]}, r"'wavelength_nm' starts at -5"),
    ({"peak_rate_cps": True}, r"'peak_rate_cps' must be a number"),
    ({"peak_rate_cps": -1}, r"'peak_rate_cps' is -1"),
    ({"peak_rate_cps": float("inf")}, r"'peak_rate_cps' must be finite"),
    ({"name": ""}, r"'name' must be a non-empty string"),
])
def test_invalid_sample_data_names_the_key_and_the_rule(change, pattern):
    data = _good_dict()
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(ValueError, match=pattern):
        Sample.from_dict(data, source="my.json")


def test_invalid_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", ')
    with pytest.raises(ValueError, match=r"not valid JSON.*line 1"):
        load_sample(bad)
    arr = tmp_path / "list.json"
    arr.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_sample(arr)
    with pytest.raises(ValueError, match="cannot read sample file"):
        load_sample(tmp_path / "missing.json")
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(_good_dict(g_lum=[0, math.nan, 0, 0])))  # json writes NaN
    with pytest.raises(ValueError, match=r"nan\.json.*'g_lum'.*finite"):
        load_sample(nan)


def test_unknown_name_lists_the_library():
    with pytest.raises(ValueError, match=r"unknown sample 'R-CsPbBr6'.*R-Cs4PbBr6"):
        load_sample("R-CsPbBr6")


def test_truth_rejects_bad_wavelengths():
    r = load_sample("R-Cs4PbBr6")
    with pytest.raises(ValueError, match="wavelength_nm"):
        r.truth(float("nan"))
    with pytest.raises(ValueError, match="wavelength_nm"):
        r.truth(-438.0)


def test_direct_construction_is_validated():
    with pytest.raises(ValueError, match=r"sample 'x': key 'g_lum'.*outside −2 … 2"):
        Sample("x", [400.0, 500.0], [1.0, 1.0], [3.0, 0.0], [0.0, 0.0], 1e6)
    with pytest.raises(ValueError, match=r"key 'emission' must be a list of numbers"):
        Sample("x", [400.0, 500.0], ["a", 1.0], [0.0, 0.0], [0.0, 0.0], 1e6)
