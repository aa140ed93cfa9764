"""CD scans end to end on the simulated instrument in its transmission geometry: the real
firmware, the virtual USB link and the bench, through cplscope.plans.cd_scan."""
import io

import pytest

import cplscope
from cplscope.science.cd import CDCalibration
from cplscope.plans.cd_scan import cd_reprocess, cd_scan, scan_wavelengths
from cplscope.data.cd_spectrum import CDSpectrum
from cplscope.sim.bench import Bench
from twin import CD, calibrated



@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def baseline(home, tmp_path_factory):
    path = tmp_path_factory.mktemp("cd") / "solvent.csv"
    with cplscope.connect("sim", sample="solvent", seed=31, **CD) as inst:
        cd_scan(calibrated(inst), 426, 446, 20, dwell_s=60, output=path, sample="solvent")
    return path


def test_scan_recovers_sign_and_size_of_g_abs(baseline, tmp_path):
    out = tmp_path / "r.csv"
    log = io.StringIO()
    docs = []
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=32, **CD) as inst:
        spec = cd_scan(calibrated(inst), 426, 446, 20, target_sigma_g_abs=1e-3,
                       max_dwell_s=300, baseline=baseline, output=out, progress=log,
                       sample="R-Cs4PbBr6", archive=tmp_path / "r.h5",
                       sinks=[lambda name, doc: docs.append(name)])
    bench = Bench("R-Cs4PbBr6", seed=0, geometry="cd")
    for p in spec:
        truth = bench.cd_truth(p.wavelength_nm, "solvent")
        assert p.flags == ()
        assert p.sigma_g_abs <= 1e-3 and p.dwell_s <= 300
        assert abs(p.g_abs - truth.g_abs) < 4 * p.sigma_g_abs
        assert abs(p.absorbance - truth.absorbance) < 4 * p.sigma_absorbance + 0.01
    assert spec[0].g_abs > 5e-3 and spec[1].g_abs < -5e-3      # the couplet's two lobes
    back = CDSpectrum.read_csv(out)
    assert len(back) == 2 and back.metadata["mode"] == "cd"
    assert back.metadata["sample"] == "R-Cs4PbBr6"
    assert back.metadata["baseline"] == str(baseline)
    assert back.metadata["cd_calibration"]["cd_sign"] == 1
    assert log.getvalue().count("\n") == 2 and "g_abs" in log.getvalue()
    # the same document stream as a CPL scan, and a raw archive the CD spectrum comes back from
    assert docs == ["start", "event", "event", "stop"]
    again = cd_reprocess(tmp_path / "r.h5")          # every digit, as the scan had it
    assert [p.as_dict() for p in again] == [p.as_dict() for p in spec]
    again.metadata = back.metadata
    assert again.to_csv_text() == out.read_text()     # and the same file


def test_baseline_scan_and_argument_checks(baseline):
    base = CDSpectrum.read_csv(baseline)
    assert [p.flags for p in base] == [("no_baseline",)] * 2
    assert all(p.intensity > 5e5 for p in base)        # the lamp through the solvent cell
    assert scan_wavelengths(446, 426, 20).tolist() == [446.0, 426.0]
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=33, **CD) as inst:
        with pytest.raises(ValueError, match="no point at 430 nm"):
            cd_scan(inst, 426, 434, 4, dwell_s=1, baseline=baseline)
        with pytest.raises(ValueError, match="needs a baseline"):
            cd_scan(inst, 426, 446, 20, target_sigma_g_abs=1e-3)
        with pytest.raises(ValueError, match="exactly one of dwell_s"):
            cd_scan(inst, 426, 426, 1, dwell_s=1, target_sigma_delta_a=1e-4)
        with pytest.raises(ValueError, match="step must be > 0"):
            cd_scan(inst, 426, 446, 0, dwell_s=1)


def test_scan_applies_the_cd_calibration(baseline):
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=34, **CD) as inst:
        spec = cd_scan(calibrated(inst), 426, 426, 1, dwell_s=60, baseline=baseline,
                       cd_calibration=CDCalibration(-1, 2.0, 0.0, "test"))
    truth = Bench("R-Cs4PbBr6", seed=0, geometry="cd").cd_truth(426.0, "solvent")
    p = spec[0]
    # ΔA = −2·ΔA_raw − ΔA_baseline: the baseline (its own CD ≈ 0) is in the same convention
    assert abs(p.delta_a - (-2.0) * truth.delta_a) < 4 * p.sigma_delta_a
    assert spec.metadata["cd_calibration"]["cd_scale"] == 2.0


def test_baseline_cd_is_put_into_the_scans_convention():
    from cplscope.plans.cd_scan import _baseline_conversion

    base = CDSpectrum(metadata={"cd_calibration": {"cd_sign": 1, "cd_scale": 1.0}})
    assert _baseline_conversion(base, CDCalibration(-1, 2.0)) == -2.0
    same = CDSpectrum(metadata={"cd_calibration": {"cd_sign": -1, "cd_scale": 2.0}})
    assert _baseline_conversion(same, CDCalibration(-1, 2.0)) == 1.0
    assert _baseline_conversion(CDSpectrum(), CDCalibration(-1, 2.0)) == 1.0


def test_adaptive_dwell_stops_at_the_maximum_and_says_so(home):
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=35, **CD) as inst:
        spec = cd_scan(calibrated(inst), 426, 426, 1, target_sigma_delta_a=1e-7,
                       max_dwell_s=3.0)
    p = spec[0]
    assert "dwell_limit" in p.flags and p.dwell_s == pytest.approx(3.0, abs=0.25)
    assert p.sigma_delta_a > 1e-7
