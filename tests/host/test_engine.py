"""One scan engine for every mode: CD gets the survey, the time budget, skip-hopeless,
accumulations, resume and reprocess from the same code as CPL (docs/architecture.md)."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

import cplscope
from cplscope.cli.main import main
from cplscope.data.archive import Archive
from cplscope.data.cd_spectrum import CDSpectrum
from cplscope.plans.cd_scan import cd_scan
from cplscope.plans.engine import ScanInterrupted
from cplscope.plans.reprocess import cd_reprocess, reprocess
from cplscope.science.cd import LN10, CDPointResult, combine_cd_points
from cplscope.sim.bench import Bench
from twin import CD, calibrated

PLANS = Path(__file__).resolve().parents[2] / "host" / "cplscope" / "plans"
GRID = ["--start", "280", "--stop", "296", "--step", "8"]


def test_no_function_of_the_plans_is_over_80_lines() -> None:
    long = []
    for path in PLANS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
                if lines > 80:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, long


@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def baseline(home, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cd") / "solvent.csv"
    with cplscope.connect("sim", sample="solvent", seed=41, **CD) as inst:
        cd_scan(calibrated(inst), 280, 296, 8, dwell_s=20, output=path, sample="solvent")
    return path


def test_a_cd_scan_with_a_time_budget_surveys_and_keeps_to_it(baseline) -> None:
    docs: list[str] = []
    with cplscope.connect("sim", sample="CSA", seed=42, **CD) as inst:
        spec = cd_scan(calibrated(inst), 280, 296, 8, target_sigma_g_abs=1e-4,
                       time_budget_s=60.0, baseline=baseline,
                       sinks=[lambda name, doc: docs.append(name)])
    assert docs[:2] == ["start", "survey"] and docs[-1] == "stop"
    total = float(spec.dwell_s.sum())
    assert total <= 60.0 + 3 * 0.2          # the budget, give or take a frame per point
    assert total > 0.8 * 60.0                # and it is spent, the target being out of reach
    plan = spec.metadata["plan"]
    assert plan["budget_s"] == 60.0
    assert spec.metadata["survey"]["points"] == 3
    truth = Bench("CSA", seed=0, geometry="cd")
    for p in spec:
        t = truth.cd_truth(p.wavelength_nm, "solvent")
        assert abs(p.delta_a - t.delta_a) < 4 * p.sigma_delta_a


def test_the_cd_cli_takes_the_scans_planning_options(baseline, tmp_path, capsys) -> None:
    out = tmp_path / "csa.csv"
    assert main(["cd", "--sim", "--sample", "CSA", "--seed", "3", *GRID, "--time-budget",
                 "1min", "--baseline", str(baseline), "--output", str(out)]) == 0
    spec = CDSpectrum.read_csv(out)
    assert len(spec) == 3 and spec.metadata["settings"]["time_budget_s"] == 60.0
    assert "survey of 3 points" in capsys.readouterr().err
    assert main(["cd", "--sim", "--sample", "CSA", *GRID, "--target-sigma-delta-a", "1e-9",
                 "--max-dwell", "4", "--skip-hopeless", "--baseline", str(baseline),
                 "--output", str(tmp_path / "h.csv")]) == 0
    assert all("hopeless" in p.flags for p in CDSpectrum.read_csv(tmp_path / "h.csv"))


def test_an_interrupted_cd_scan_resumes_and_reprocesses(baseline, tmp_path) -> None:
    h5, out = tmp_path / "cd.h5", tmp_path / "cd.csv"

    def stop_after_two(row, i, spec):
        if len(spec) == 2:
            raise KeyboardInterrupt

    with cplscope.connect("sim", sample="CSA", seed=43, **CD) as inst:
        with pytest.raises(ScanInterrupted) as info:
            cd_scan(calibrated(inst), 280, 296, 8, dwell_s=3, accumulations=2,
                    baseline=baseline, dark=True, dark_dwell_s=2, output=out, archive=h5,
                    callback=stop_after_two)
    assert len(info.value.spectrum) == 2
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output",
                 str(tmp_path / "x.csv")]) == 2          # a CD archive: `cplscope cd --resume`
    # the API's archive does not record the simulated sample: --resume asks for it
    assert main(["-q", "cd", "--sim", "--resume", str(h5), "--output", str(out)]) == 2
    assert main(["-q", "cd", "--sim", "--sample", "CSA", "--resume", str(h5), "--output",
                 str(out)]) == 0
    spec = CDSpectrum.read_csv(out)
    assert spec.wavelength_nm.tolist() == [280.0, 288.0, 296.0]
    assert spec.n_frames.min() > 0 and np.all(spec.dwell_s > 5.5)     # both accumulations
    with Archive.open(h5) as arc:
        keys = sorted((p.settings.index, p.settings.accumulation) for p in arc)
        assert keys == [(i, a) for i in range(3) for a in range(2)]
        assert arc.exit_status == "success"
    cd_reprocess(h5).write_csv(tmp_path / "again.csv")
    again = CDSpectrum.read_csv(tmp_path / "again.csv")
    assert [p.as_dict() for p in again] == [p.as_dict() for p in spec]
    with pytest.raises(ValueError, match="cd-reprocess"):
        reprocess(h5)


def test_cd_reprocess_refuses_a_cpl_archive(home, tmp_path) -> None:
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=44) as inst:
        calibrated(inst).scan(438, 438, 1, dwell_s=0.5, dark=False, archive=tmp_path / "c.h5")
    with pytest.raises(ValueError, match="not the archive of a CD scan"):
        cd_reprocess(tmp_path / "c.h5")


def _cd_point(delta_a: float, s_da: float, a: float, s_a: float, rate: float, s_rate: float,
              dwell: float = 10.0) -> CDPointResult:
    return CDPointResult(wavelength_nm=290.0, absorbance=a, sigma_absorbance=s_a,
                         delta_a=delta_a, sigma_delta_a=s_da, g_abs=delta_a / a,
                         sigma_g_abs=math.nan, ellipticity_mdeg=32980 * delta_a,
                         linear_dichroism=0.0, chi2_red=1.0, n_frames=50, dwell_s=dwell,
                         sigma_linear_dichroism=1e-3, intensity=rate, sigma_intensity=s_rate)


def test_combined_cd_accumulations_have_calibrated_sigmas() -> None:
    """K accumulations against one baseline: ΔA averages down; A keeps the baseline's
    shared error. Pulls of the combined ΔA, A and g_abs over many trials have SD 1 within
    their sampling scatter (fixed seed; 1000 trials give an SD known to ±2.2 %)."""
    rng = np.random.default_rng(7)
    true_da, true_a, i0, k = 2e-3, 0.5, 1e6, 3
    rate = i0 * 10 ** -true_a
    s_rate, s_i0, s_v = 300.0, 200.0, 4e-4
    pulls: dict[str, list[float]] = {"da": [], "a": [], "g": []}
    for _ in range(1000):
        i0_hat = i0 + rng.normal(0, s_i0)
        points = []
        for _ in range(k):
            r = rate + rng.normal(0, s_rate)
            da = true_da + rng.normal(0, s_v)
            a = -math.log10(r / i0_hat)
            s_a = math.hypot(s_rate / r, s_i0 / i0_hat) / LN10
            points.append(_cd_point(da, s_v, a, s_a, r, s_rate))
        c = combine_cd_points(points)
        assert c.dwell_s == 30.0 and c.n_frames == 150
        pulls["da"].append((c.delta_a - true_da) / c.sigma_delta_a)
        pulls["a"].append((c.absorbance - true_a) / c.sigma_absorbance)
        pulls["g"].append((c.g_abs - true_da / true_a) / c.sigma_g_abs)
    for name, values in pulls.items():
        sd = float(np.std(values, ddof=1))
        assert abs(sd - 1.0) < 0.08, (name, sd)
        assert abs(float(np.mean(values))) < 0.1, name


def test_one_accumulation_is_its_own_row_and_opaque_stays_opaque() -> None:
    p = _cd_point(1e-3, 1e-4, 0.4, 1e-3, 4e5, 200.0)
    assert combine_cd_points([p]) is p
    opaque = CDPointResult(290.0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                           math.nan, math.nan, 1.0, 50, 10.0, ("opaque",), math.nan, 3.0, 1.0)
    c = combine_cd_points([p, opaque])
    assert c.has("opaque") and math.isnan(c.delta_a)


def test_a_resumed_scan_numbers_each_new_dark(home, tmp_path) -> None:
    """Interrupted in the first of three accumulations: the resume measures two darks, and
    the points of each accumulation refer to their own."""
    h5 = tmp_path / "r.h5"

    def stop_at_second(point, i, acc):
        if i == 1:
            raise KeyboardInterrupt

    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=45) as inst:
        inst = calibrated(inst)
        with pytest.raises(ScanInterrupted):
            inst.scan(436, 440, 4, dwell_s=0.4, accumulations=3, dark_dwell_s=0.4,
                      archive=h5, callback=stop_at_second)
        inst.resume(h5)
    with Archive.open(h5) as arc:
        sources = {p.settings.accumulation: p.settings.dark_source for p in arc}
        assert sources == {0: "dark:0", 1: "dark:1", 2: "dark:2"}
        assert len(arc.darks) == 3
