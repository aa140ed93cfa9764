"""Analog accumulations combined with a calibrated σ (issue 21): σ estimated from a few frames
carries its degrees of freedom through PointResult and combine_points, and the combined pull
follows Student's t at the reported dof.

Two Monte Carlos, fixed seeds. End to end: synthetic analog frames through the real estimator
(``estimate(noise="gaussian")``), the point pipeline and ``combine_points``. The combining
alone, vectorised inputs: accumulations drawn from the sampling distribution the estimator
states (ĝ ~ N(g, σ²), σ̂² ~ σ²·χ²_ν/ν, independent), many more trials. A pull p with
reported dof ν is mapped to the normal score of equal tail, z = Φ⁻¹(F_t(p; ν)); calibrated σ
gives z ~ N(0, 1). Tolerances: 4 standard errors of the mean (1/√N) and of the SD
(1/√(2N)) of N normal scores. Run with ``-s`` for the figures in docs/estimator.md.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cplscope.demod import estimate
from cplscope.demod.bins import bin_layout
from cplscope.science.results import (
    FLAG_FEW_FRAMES,
    FLAG_SCATTER,
    PointResult,
    combine_points,
    point_from_estimate,
    subtract_blank,
)

A0, PHI0, B = math.pi / 2, 0.3, 16
OFFSET = 100.0          # ADC counts, the front end's bias
FRAME_S = 0.1           # s per frame (5000 PEM periods at 50 kHz)
G_TRUE = 0.05


def accumulation(rng: np.random.Generator, n_frames: int, *, level: float = 200.0,
                 noise: float = 2.0, flicker: float = 0.01, dark_frames: int = 50
                 ) -> PointResult:
    """One analog accumulation: ``n_frames`` frames of B bin means (signal ``level`` ADC
    counts above the offset, white noise ``noise`` per bin per frame, common-mode flicker),
    after its own dark of ``dark_frames`` frames, fitted and turned into a PointResult."""
    lay = bin_layout(B, A0, PHI0, 1.0)
    shape = 1.0 + 0.5 * G_TRUE * B * lay.s
    gain = 1.0 + flicker * rng.standard_normal((n_frames, 1))
    frames = OFFSET + level * gain * shape + noise * rng.standard_normal((n_frames, B))
    dark_means = (OFFSET + noise * rng.standard_normal((dark_frames, B))).mean(axis=1)
    dark, dark_sd = dark_means.mean(), dark_means.std(ddof=1) / math.sqrt(dark_frames)
    est = estimate(frames, A0, phase_offset=PHI0, dark=dark, dark_sigma=dark_sd,
                   noise="gaussian")
    return point_from_estimate(est, 500.0, n_frames * FRAME_S)


def combined_scores(seed: int, trials: int, frames: tuple[int, ...],
                    levels: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """(pulls, dofs, normal scores) of ``trials`` combined points of accumulations with
    ``frames`` frames each (and signal ``levels``)."""
    rng = np.random.default_rng(seed)
    levels = levels or (200.0,) * len(frames)
    pulls, dofs, old = np.empty(trials), np.empty(trials), np.empty(trials)
    for i in range(trials):
        acc = [accumulation(rng, f, level=lv) for f, lv in zip(frames, levels)]
        point = combine_points(acc)
        pulls[i] = (point.g_lum - G_TRUE) / point.sigma_g
        dofs[i] = point.dof_sigma
        old[i] = old_rule_pulls([acc])[0]
    z = stats.norm.ppf(stats.t.cdf(pulls, dofs))
    print(f"\n{len(frames)} × {frames[0]} frames, old rule: pull SD {old.std(ddof=1):.3f}")
    return pulls, dofs, z


def old_rule_pulls(sets: list[list[PointResult]]) -> np.ndarray:
    """Pulls of the rule before issue 21: 1/σ̂² weights, σ taken as exact."""
    g = np.array([[p.g_lum for p in acc] for acc in sets])
    w = 1.0 / np.array([[p.sigma_g for p in acc] for acc in sets]) ** 2
    return (np.sum(w * g, axis=1) / w.sum(axis=1) - G_TRUE) * np.sqrt(w.sum(axis=1))


def check_normal(z: np.ndarray) -> None:
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n), z.mean()
    assert abs(z.std(ddof=1) - 1.0) < 4 / math.sqrt(2 * n), z.std(ddof=1)


@pytest.mark.parametrize("frames, seed, trials", [((5, 5, 5), 211, 1000),
                                                  ((10, 10, 10), 212, 500)])
def test_few_frame_accumulations_combine_to_a_calibrated_sigma(frames, seed, trials):
    """3 × 5 frames (old code: pull SD 1.96) and 3 × 10 (old: 1.25), end to end. The
    reported dof is about Σ(F − 1): the raw pull SD is that of Student's t, √(ν/(ν − 2))."""
    pulls, dofs, z = combined_scores(seed, trials, frames)
    nu = float(np.median(dofs))
    print(f"\n{len(frames)} × {frames[0]} frames: pull mean {pulls.mean():+.3f} SD "
          f"{pulls.std(ddof=1):.3f} (Student t at the median dof {nu:.1f}: "
          f"{math.sqrt(nu / (nu - 2)):.3f}); normal score mean {z.mean():+.3f} SD "
          f"{z.std(ddof=1):.3f}")
    check_normal(z)
    expected = sum(f - 1 for f in frames)
    assert 0.6 * expected < nu <= expected * 1.05
    # the 95 % interval ±t_{0.975}(ν)·σ covers 95 %: binomial SE √(0.05·0.95/N)
    cover = np.mean(np.abs(pulls) <= stats.t.ppf(0.975, dofs))
    assert abs(cover - 0.95) < 4 * math.sqrt(0.05 * 0.95 / pulls.size), cover


def sampled_accumulations(rng: np.random.Generator, trials: int, frames: tuple[int, ...],
                          sigma_per_frame: tuple[float, ...]) -> list[list[PointResult]]:
    """``trials`` sets of accumulations drawn from the estimator's sampling distribution:
    σ_i = sigma_per_frame_i/√F_i, ĝ_i ~ N(g, σ_i²), σ̂_i² ~ σ_i²·χ²(F_i − 1)/(F_i − 1)."""
    f = np.asarray(frames, dtype=float)
    sigma = np.asarray(sigma_per_frame) / np.sqrt(f)
    g = G_TRUE + sigma * rng.standard_normal((trials, f.size))
    s = sigma * np.sqrt(rng.chisquare(f - 1, (trials, f.size)) / (f - 1))
    return [[PointResult(500.0, 200.0, 100.0, 100.0, 0.0, float(g[i, k]), float(s[i, k]), 0.0,
                         0.01, 1.0, int(f[k]), f[k] * FRAME_S, emission_z=30.0,
                         dof_sigma=f[k] - 1) for k in range(f.size)] for i in range(trials)]


@pytest.mark.parametrize("frames, sigma_per_frame", [
    ((20, 20, 20), (0.01, 0.01, 0.01)),
    ((5, 10, 20), (0.01, 0.02, 0.01)),      # unequal dwell, the second at half the light
])
def test_combining_is_calibrated_for_equal_and_unequal_accumulations(frames, sigma_per_frame):
    """3 × 20 frames, and accumulations of 5, 10 and 20 frames of which one saw half the
    light (a bleached sample, a dimmed lamp): the dwell weights are then not optimal, but σ
    and its Welch–Satterthwaite dof stay honest. The old rule (1/σ̂² weights, σ taken as
    exact) fails the same check on the same draws (3 × 20: pull SD 1.12)."""
    rng = np.random.default_rng(216)
    sets = sampled_accumulations(rng, 4000, frames, sigma_per_frame)
    rows = [combine_points(acc) for acc in sets]
    pulls = np.array([(r.g_lum - G_TRUE) / r.sigma_g for r in rows])
    dofs = np.array([r.dof_sigma for r in rows])
    z = stats.norm.ppf(stats.t.cdf(pulls, dofs))
    print(f"\n{frames} frames, σ per frame {sigma_per_frame}: pull SD "
          f"{pulls.std(ddof=1):.3f}, normal score mean {z.mean():+.3f} SD {z.std(ddof=1):.3f}, "
          f"median dof {np.median(dofs):.1f}")
    check_normal(z)
    old = old_rule_pulls(sets)
    print(f"old rule: pull SD {old.std(ddof=1):.3f}")
    with pytest.raises(AssertionError):
        check_normal(old)


def test_the_dof_travels_with_the_point_and_flags_few_frames():
    rng = np.random.default_rng(214)
    few, many = accumulation(rng, 5), accumulation(rng, 30)
    assert 3.9 < few.dof_sigma < 4.5 and FLAG_FEW_FRAMES in few.flags
    assert many.dof_sigma > 28 and FLAG_FEW_FRAMES not in many.flags
    # three few-frame accumulations pool to ≥ 9 dof: the combined row is not few_frames
    row = combine_points([accumulation(rng, 5) for _ in range(3)])
    assert row.dof_sigma > 9 and FLAG_FEW_FRAMES not in row.flags
    # the blank's σ is exact: Welch–Satterthwaite raises the dof, never lowers it
    blanked = subtract_blank(few, (0.0, few.sigma_g))
    assert blanked.dof_sigma == pytest.approx(few.dof_sigma * 4.0)
    assert FLAG_FEW_FRAMES not in blanked.flags
    assert few.coverage_factor(2.0) == pytest.approx(stats.t.ppf(stats.norm.cdf(2.0),
                                                                few.dof_sigma) / 2.0, rel=1e-9)
    # photon counting: σ is exact, inverse-variance weights, dof inf
    counted = [PointResult(500.0, 1e5, 5e4, 5e4, 0.0, g, 1e-3, 0.0, 1e-3, 1.0, 10, 1.0,
                           emission_z=50.0) for g in (1e-3, -1e-3)]
    assert math.isinf(combine_points(counted).dof_sigma)
    with pytest.raises(ValueError, match="dof_sigma"):
        PointResult(500.0, 1.0, 0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1, 1.0, dof_sigma=0.0)


def test_scatter_between_analog_accumulations_is_judged_through_student_t():
    """Five-frame accumulations that agree are not flagged ``scatter`` (a χ² on σ̂ would
    call t(4) tails disagreement); ones that disagree by far more than σ are."""
    rng = np.random.default_rng(215)
    flagged = sum(FLAG_SCATTER in combine_points([accumulation(rng, 5) for _ in range(3)]).flags
                  for _ in range(300))
    assert flagged <= 3          # misfit_tail 1e-3: expected 0.3 of 300
    a, b = accumulation(rng, 5), accumulation(rng, 5)
    far = PointResult(**{**b.as_dict(), "g_lum": b.g_lum + 40 * b.sigma_g})
    assert FLAG_SCATTER in combine_points([a, far]).flags


def test_dof_sigma_round_trips_through_the_csv_and_the_archive(tmp_path, monkeypatch):
    """Written and read back by the CSV and the raw archive; files and archives from before
    the column read as dof inf (σ exact, as photon counting always was)."""
    from cplscope.data import archive as archive_module
    from cplscope.data.spectrum import Spectrum
    from test_archive import CAL, make_frames, measure, metadata

    point = accumulation(np.random.default_rng(217), 6)
    path = tmp_path / "s.csv"
    Spectrum([point], {"sample": "x"}).write_csv(path)
    back = Spectrum.read_csv(path)[0]
    assert back.dof_sigma == point.dof_sigma and back.flags == point.flags
    old = tmp_path / "old.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cut = header.index("dof_sigma")
    old.write_text("\n".join([",".join(header[:cut])] + lines[1:-1]
                             + [",".join(lines[-1].split(",")[:cut])]) + "\n")
    assert math.isinf(Spectrum.read_csv(old)[0].dof_sigma)

    rng = np.random.default_rng(218)
    frames = make_frames(rng, 2e3, 6e-3, 20)
    settings, result = measure(frames, 440.0)
    result = PointResult(**{**result.as_dict(), "dof_sigma": 7.5})
    with archive_module.ArchiveWriter(tmp_path / "new.h5", n_bins=B, metadata=metadata(),
                                      calibration=CAL) as w:
        w.add_point(frames, settings, result)
    with archive_module.Archive.open(tmp_path / "new.h5") as arc:
        assert arc.point(0).result.dof_sigma == 7.5
    # an archive written before dof_sigma existed: its result rows lack the field
    legacy = tuple(n for n in archive_module._RESULT_FIELDS if n != "dof_sigma")
    monkeypatch.setattr(archive_module, "_RESULT_FIELDS", legacy)
    with archive_module.ArchiveWriter(tmp_path / "old.h5", n_bins=B, metadata=metadata(),
                                      calibration=CAL) as w:
        w.add_point(frames, settings, result)
    monkeypatch.undo()
    with archive_module.Archive.open(tmp_path / "old.h5") as arc:
        assert math.isinf(arc.point(0).result.dof_sigma)
