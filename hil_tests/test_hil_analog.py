"""Analog mode end to end: raw ADC blocks with reference edges, phase-binned on the host
(`cplscope.demod.phase_bin`) and estimated from the frame scatter
(`estimate(noise="gaussian")`), on an instrument calibrated in counting mode.

Tolerances as in test_hil_accuracy.py: 4σ for single numbers, so that a correct instrument
fails with a probability of about 1e-4 per assertion; linear polarization gets 0.02 on top
for the calibration's own precision and the analog path's offset between the ADC and the
reference timer, which the counting-mode φ0 does not include.
"""
from __future__ import annotations

from typing import Any

import pytest

from .conftest import truth_of
from .test_hil_accuracy import calibrated

pytestmark = pytest.mark.calibrated

WAVELENGTH_NM = 438.0


def analog_point(open_instrument, hil, setup, sample: str, seed: int,
                 dwell_s: float) -> tuple[Any, dict[str, float]]:
    """(point, truth) of one calibrated analog measurement at WAVELENGTH_NM; prints both."""
    inst = calibrated(open_instrument, setup, sample, WAVELENGTH_NM, seed)
    info = inst.configure_analog()
    print(f"\nanalog mode: {info}")
    dark = inst.measure_dark(dwell_s=5.0)
    point = inst.measure(dwell_s=dwell_s, dark=dark)
    truth = truth_of(hil, inst, WAVELENGTH_NM)
    r = point.result
    print(f"u {r.linear:.4f} ± {r.sigma_linear:.1e}, g {r.g_lum:+.3e} ± {r.sigma_g:.1e}, "
          f"truth {truth}, {r.n_frames} frames, flags {r.flags}")
    return point, truth


@pytest.mark.truth("linear-polarizer-45")
def test_analog_linear_polarizer_gives_u_one_and_no_g(open_instrument, hil,
                                                      calibrated_setup) -> None:
    point, truth = analog_point(open_instrument, hil, calibrated_setup, "linear-polarizer-45",
                                31, dwell_s=5.0)
    r = point.result
    assert point.estimate.noise == "gaussian"
    assert r.n_frames >= 40            # 5 s of 5000-period frames at 50 kHz: 50
    assert abs(r.linear - truth["linear"]) < 4 * r.sigma_linear + 0.02, r.linear
    assert abs(r.g_lum - truth["g_lum"]) < 4 * r.sigma_g, (r.g_lum, r.sigma_g)


@pytest.mark.truth("R-Cs4PbBr6")
def test_analog_enantiomer_matches_truth(open_instrument, hil, calibrated_setup) -> None:
    point, truth = analog_point(open_instrument, hil, calibrated_setup, "R-Cs4PbBr6", 32,
                                dwell_s=30.0)
    r = point.result
    assert "no_emission" not in r.flags
    assert abs(r.g_lum - truth["g_lum"]) < 4 * r.sigma_g, (r.g_lum, r.sigma_g, truth)
