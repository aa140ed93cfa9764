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


# --- absorption data (CD geometry) ----------------------------------------------------------------

from cplscope.sim.samples import (CSA_CONCENTRATION_M, CSA_DELTA_EPS_192,  # noqa: E402
                                  CSA_DELTA_EPS_290, CSA_EPS_285, Absorption)

CD_LAM = np.arange(250.0, 600.0, 0.1)


def _solute(name, lam=CD_LAM):
    """(A, ΔA) of a built-in's solute: its table minus the solvent cell's."""
    ab, sv = load_sample(name).absorption, load_sample("solvent").absorption
    a = np.interp(lam, ab.wavelength_nm, ab.absorbance) - np.interp(
        lam, sv.wavelength_nm, sv.absorbance)
    return a, np.interp(lam, ab.wavelength_nm, ab.delta_a)


def _cd_dict(**overrides):
    data = {"name": "cd-only", "wavelength_nm": [300.0, 400.0, 500.0],
            "absorbance": [0.5, 1.0, 0.2], "delta_a": [1e-3, -2e-3, 0.0]}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_paper_samples_have_their_absorption_bands():
    def peak(name, lo, hi):
        a, _ = _solute(name)
        win = (CD_LAM >= lo) & (CD_LAM <= hi)
        return CD_LAM[win][np.argmax(a[win])], a[win].max()

    for name in ("R-Cs4PbBr6", "S-Cs4PbBr6"):
        for centre in (313.0, 436.0):
            at, top = peak(name, centre - 10, centre + 10)
            assert at == pytest.approx(centre, abs=0.6) and 0.3 <= top <= 1.5
    at, top = peak("N-Cs4PbBr6", 300, 330)
    assert at == pytest.approx(313.0, abs=0.6) and 0.3 <= top <= 1.5
    assert _solute("N-Cs4PbBr6")[0][np.argmin(abs(CD_LAM - 436))] < 0.1  # no 436-nm exciton
    at, top = peak("CsPbBr3", 478, 495)
    assert at == pytest.approx(485.0, abs=1.5) and 0.3 <= top <= 1.5
    # the UV band edge makes the Cs4PbBr6 samples opaque (A > 3) below ~275 nm
    assert _solute("R-Cs4PbBr6", np.array([265.0]))[0][0] > 3.0


def test_r_and_s_are_mirror_images_with_the_papers_g_abs():
    lam = np.arange(300.0, 450.0, 0.05)
    a_r, d_r = _solute("R-Cs4PbBr6", lam)
    a_s, d_s = _solute("S-Cs4PbBr6", lam)
    np.testing.assert_allclose(a_r, a_s, rtol=1e-14)
    g_r, g_s = d_r / a_r, d_s / a_s
    assert g_r.max() == pytest.approx(8.5e-3, rel=1e-3)
    assert g_s.min() == pytest.approx(-8.8e-3, rel=1e-3)
    np.testing.assert_allclose(g_s, -g_r * 8.8 / 8.5, rtol=1e-12, atol=1e-18)
    # bisignate on the 436-nm exciton: + on the blue side, − on the red side for R
    assert d_r[np.argmin(abs(lam - 428))] > 0 > d_r[np.argmin(abs(lam - 444))]


@pytest.mark.parametrize("name", ["N-Cs4PbBr6", "CsPbBr3", "solvent", "blank"])
def test_achiral_samples_have_no_cd(name):
    ab = load_sample(name).absorption
    assert np.all(ab.delta_a == 0) and np.all(ab.linear_dichroism == 0)


def test_solvent_is_a_small_flat_baseline():
    ab = load_sample("solvent").absorption
    vis = (ab.wavelength_nm >= 230) & (ab.wavelength_nm <= 900)
    assert np.ptp(ab.absorbance[vis]) < 1e-3 and 0 < ab.absorbance[vis].max() < 0.1
    assert not load_sample("solvent").has_emission


def test_csa_standard_has_the_accepted_bands():
    c = CSA_CONCENTRATION_M
    lam = np.array([192.5, 285.0, 290.5])
    for name, path in (("CSA", 1.0), ("CSA-1mm", 0.1)):
        a, d = _solute(name, lam)
        assert d[2] == pytest.approx(CSA_DELTA_EPS_290 * c * path, rel=1e-9)
        assert d[0] == pytest.approx(CSA_DELTA_EPS_192 * c * path, rel=1e-3)
        assert d[0] / d[2] == pytest.approx(-2.00, abs=0.01)
        assert a[1] == pytest.approx(CSA_EPS_285 * c * path, rel=0.01)
    # the 1-cm cell is opaque at 192.5 nm, the 1-mm one is not
    assert _solute("CSA", lam)[0][0] > 3 > _solute("CSA-1mm", lam)[0][0] > 0.3


def test_absorption_truth_inverts_the_transmission_model():
    ab = Absorption(np.array([300.0, 500.0]), np.array([0.8, 0.8]), np.array([0.02, 0.02]),
                    np.array([-0.01, -0.01]))
    t = ab.truth(400.0, 2.0)
    assert t.absorbance == pytest.approx(0.8, abs=1e-12)
    assert t.delta_a == pytest.approx(0.02, abs=1e-12)
    assert t.linear_dichroism == pytest.approx(-0.01, abs=1e-12)
    assert t.v == pytest.approx(-math.tanh(math.log(10) * 0.01))
    assert t.g_abs == pytest.approx(0.025)
    # a narrow band: the slit average weights by the transmitted light
    lam = np.array([399.0, 400.0, 401.0])
    band = Absorption(lam, np.array([0.0, 1.0, 0.0]), np.zeros(3), np.zeros(3))
    x = np.linspace(-2, 2, 400001)
    slit = (1 - abs(x) / 2) / 2
    t_ref = np.sum(slit * 10.0 ** -np.clip(1 - abs(x), 0, None)) / np.sum(slit)
    # (the slit quadrature meets the table's kinks at ±1 nm inside a half: ~1e-3 accurate)
    assert band.truth(400.0, 2.0).transmittance == pytest.approx(t_ref, rel=2e-3)
    assert abs(band.truth(400.0, 2.0).transmittance - 10 ** -(2 / 3)) > 0.1  # not A(centre)
    assert band.truth(400.0, 0.0).absorbance == pytest.approx(1.0)


def test_cd_only_sample_file_loads(tmp_path):
    s = Sample.from_dict(_cd_dict())
    assert s.has_absorption and not s.has_emission and s.peak_rate_cps == 0
    np.testing.assert_array_equal(s.absorption.delta_a, [1e-3, -2e-3, 0.0])
    np.testing.assert_array_equal(s.absorption.linear_dichroism, 0.0)
    g = Sample.from_dict(_cd_dict(delta_a=None, g_abs=[2e-3, -2e-3, 0.0]))
    np.testing.assert_allclose(g.absorption.delta_a, [1e-3, -2e-3, 0.0])
    both = Sample.from_dict({**_good_dict(), "absorbance": [0.1, 0.2, 0.3, 0.4]})
    assert both.has_emission and both.has_absorption
    path = tmp_path / "cd.json"
    path.write_text(json.dumps(_cd_dict()))
    assert sample_from_file(path).absorption.absorbance[1] == 1.0


def test_builtin_with_absorption_round_trips_through_the_file_format():
    r = load_sample("R-Cs4PbBr6")
    back = Sample.from_dict(json.loads(json.dumps(r.to_dict())))
    lam = np.array([313.0, 426.3, 438.0, 446.7])
    np.testing.assert_allclose(back.absorption.truth(lam, 2.0).delta_a,
                               r.absorption.truth(lam, 2.0).delta_a, rtol=1e-12)
    np.testing.assert_allclose(back.truth(lam, 2.0).g_lum, r.truth(lam, 2.0).g_lum, rtol=1e-12)


@pytest.mark.parametrize("change, pattern", [
    ({"absorbance": None}, r"'delta_a'.*need 'absorbance'"),
    ({"g_abs": [0, 0, 0]}, r"either 'delta_a' .* or 'g_abs' .*, not both"),
    ({"absorbance": [0.5, -0.1, 0.2]}, r"'absorbance'.*-0.1 at 400.0 nm.*negative"),
    ({"delta_a": [1e-3, 2.5, 0]}, r"'delta_a'.*2.5 at 400.0 nm.*exceeds twice the absorbance"),
    ({"linear_dichroism": [0, 0, 0.5]}, r"'linear_dichroism'.*exceeds twice"),
    ({"absorbance": [0.5, 1.0]}, r"'absorbance' has 2 values but 'wavelength_nm' has 3"),
    ({"delta_a": [0, float("nan"), 0]}, r"'delta_a': element 1 is nan"),
    ({"absorbance": "high"}, r"'absorbance' must be a list of numbers"),
    ({"absorbance": None, "delta_a": None}, r"no spectra"),
    ({"emission": [0, 1, 0]}, r"missing key\(s\) 'g_lum', 'peak_rate_cps'"),
    ({"wavelength_nm": [300, 500, 400]}, r"not strictly increasing"),
])
def test_invalid_absorption_data_names_the_key_and_the_rule(change, pattern):
    data = _cd_dict()
    for key, value in change.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    with pytest.raises(ValueError, match=pattern):
        Sample.from_dict(data, source="my.json")
