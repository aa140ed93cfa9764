"""The calibration procedure (measurement model §7): A0 and φ0 from a linear polarizer,
then the handedness from a reference of known sign, stored per instrument serial."""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .calibration import Blank, Calibration, load_for
from ._clock import utc_now_iso
from .measure import calibrate_handedness, calibrate_retardation, measure_dark

__all__ = ["A0_COMMAND", "SIM_DEAD_TIME_S", "blank_from_spectrum", "calibrate",
           "calibrate_simulated", "default_retardation", "prepare", "store_blank"]

log = logging.getLogger(__name__)

#: Dead time of the simulated counting head, as its "datasheet" states it (s).
SIM_DEAD_TIME_S = 18e-9
#: A0 the instrument is told to hold while it is calibrated; the calibration records what
#: that really gives (its ratio to the command is the PEM's drive calibration).
A0_COMMAND = math.pi / 2


def default_retardation(bins: int = 16, phase_offset_rad: float = 0.0) -> float:
    """The counting mode's default A0 (rad): the one that minimizes σ_g per detected photon
    for ``bins`` equal phase bins (:func:`cplscope.demod.retardation.optimal_retardation`,
    1.907 rad for B = 16, about 7 % fewer photons than π/2 for the same σ_g). Analog mode
    keeps its own default, π/2 (docs/estimator.md explains why)."""
    from .demod.retardation import optimal_retardation

    return optimal_retardation(int(bins), phase_offset_rad)


def prepare(inst, *, bins: int = 16, periods: int = 10000, hv_volts: float = 800.0,
            a0_rad: float | None = None, open_shutter: bool = True) -> None:
    """Put the instrument in counting mode, ready to measure: B bins, K periods per frame,
    PMT HV (V), A0 (rad) held constant across wavelengths, shutter open.

    ``a0_rad`` None: :func:`default_retardation` for ``bins``. The retardation command is
    corrected by the calibration's scale, so the PEM really produces ``a0_rad``. The board's
    overload guard is set to the instrument's damage limit (:mod:`cplscope.limits`), and its
    stored monochromator settings (:mod:`cplscope.mono_config`) are sent before it homes."""
    inst.configure_counting(bins=bins, periods=periods)
    _apply_mono_config(inst)
    limits = getattr(inst, "rate_limits", None)
    if limits is not None:
        inst.set_limits(max_count_rate_cps=limits.damage_cps)
    if _apply_hv_model(inst) != "counting_head":  # a counting head is powered by its model
        inst.set_hv(hv_volts)
    target = default_retardation(bins, _phase_offset(inst)) if a0_rad is None else float(a0_rad)
    scale = _scale(inst)
    inst.set_retardation(min(target / scale, math.pi))
    if open_shutter:
        inst.open_shutter()


def _apply_hv_model(inst) -> str:
    """Send the instrument's stored HV model (:mod:`cplscope.board_settings`); its kind."""
    from .board_settings import apply_hv_model

    if getattr(inst, "info", None) is None or not hasattr(inst, "configure_hv_model"):
        return "supply"
    return apply_hv_model(inst).kind


def _apply_mono_config(inst) -> None:
    """Send the instrument's stored monochromator settings (:mod:`cplscope.mono_config`)."""
    from .mono_config import load_mono_config

    info = getattr(inst, "info", None)
    if info is None:
        return
    config = load_mono_config(str(info()["serial"]))
    if config:
        inst.configure_monochromator(**config)


def _phase_offset(inst) -> float:
    cal = getattr(inst, "calibration", None)
    return float(cal.phase_offset_rad) if cal is not None else 0.0


def _scale(inst) -> float:
    cal = getattr(inst, "calibration", None)
    return float(cal.retardation_scale) if cal is not None else 1.0


def calibrate(inst, *, dwell_s: float = 20.0, wavelength_nm: float = 500.0,
              reference_sign: int = 1, dead_time_s: float | None = None,
              swap_sample: Callable[[str], Any] | None = None,
              handedness_inst=None, save: bool = True) -> Calibration:
    """Run both calibration steps and return (and by default store) the calibration.

    Args:
        inst: the instrument, with a linear polarizer at +45° in the beam.
        dwell_s: counting time of each step, s.
        wavelength_nm: where to calibrate (A0 is held constant across wavelengths).
        reference_sign: sign of the handedness reference's true g_lum (+1 for left-circular
            light, e.g. ``circular-polarizer-L``).
        dead_time_s: the counting head's dead time from its datasheet (s); default: keep the
            stored value.
        swap_sample: called with a message when the user must put in the handedness
            reference (a real instrument); None when ``handedness_inst`` is given.
        handedness_inst: a second instrument (the simulator with the reference sample).
        save: store the result under the instrument's serial.
    """
    serial = str(inst.info()["serial"])
    old = inst.calibration
    tau = float(dead_time_s if dead_time_s is not None else old.dead_time_s)
    _prepare_for_calibration(inst)
    inst.move_to(wavelength_nm)
    dark = measure_dark(inst, min(dwell_s, 10.0))
    inst.open_shutter()
    a0, phi0, fit = calibrate_retardation(inst, dwell_s=dwell_s, dark=dark, dead_time_s=tau)
    log.info("A0 = %.4f ± %.4f rad, φ0 = %.4f ± %.4f rad (mod π), χ²_red %.2f",
             a0, fit.sigma_a0, phi0, fit.sigma_phase, fit.chi2_red)
    other = handedness_inst if handedness_inst is not None else inst
    if handedness_inst is None:
        if swap_sample is None:
            raise ValueError("the handedness step needs the reference in the beam: pass "
                             "swap_sample (a prompt) or handedness_inst")
        swap_sample("Put the handedness reference (e.g. a left-circular polarizer) in the "
                    "beam instead of the linear polarizer")
    else:
        _prepare_for_calibration(other)
        other.move_to(wavelength_nm)
        dark = measure_dark(other, min(dwell_s, 10.0))
        other.open_shutter()
    hand = calibrate_handedness(other, expected_sign=reference_sign, a0_rad=a0,
                                phase_offset_rad=phi0, dwell_s=dwell_s, dark=dark,
                                dead_time_s=tau)
    cal = Calibration(
        a0_rad=a0, phase_offset_rad=phi0, handedness=hand.handedness,
        dead_time_s=tau,
        serial=serial, date=utc_now_iso(), source="linear-polarizer+circular-polarizer",
        reference_wavelength_nm=float(wavelength_nm), sigma_a0_rad=fit.sigma_a0,
        sigma_phase_offset_rad=fit.sigma_phase,
        note=f"A0 commanded {A0_COMMAND:.6f} rad; retardation fit χ²_red {fit.chi2_red:.3f}; "
             f"handedness reference g {hand.g_measured:+.4f} ± {hand.sigma_g:.1e}",
        a0_command_rad=A0_COMMAND)
    inst.calibration = cal
    if save:
        path = cal.save()
        log.info("calibration of %s saved to %s", serial, path)
    return cal


def _prepare_for_calibration(inst) -> None:
    """Counting mode at the calibration's own A0 command (uncorrected: the fit measures
    what the command gives), shutter closed."""
    inst.configure_counting(bins=16, periods=10000)
    inst.set_hv(800.0)
    inst.set_retardation(A0_COMMAND)


def calibrate_simulated(*, seed: int = 0, dwell_s: float = 20.0, save: bool = True,
                        **sim_options: Any) -> Calibration:
    """Calibrate the simulated instrument the way a user calibrates a real one: with the
    ``linear-polarizer-45`` sample, then ``circular-polarizer-L`` for the handedness."""
    from .connection import connect

    with connect("sim", sample="linear-polarizer-45", seed=seed, **sim_options) as lin, \
            connect("sim", sample="circular-polarizer-L", seed=seed + 1, **sim_options) as circ:
        return calibrate(lin, dwell_s=dwell_s, reference_sign=1,
                         dead_time_s=SIM_DEAD_TIME_S, handedness_inst=circ, save=save)


def blank_from_spectrum(spectrum) -> Blank:
    """The blank (g_lum of an achiral reference against λ) from a spectrum measured without
    blank subtraction; points without a finite g (``no_emission``) are left out."""
    if spectrum.metadata.get("calibration", {}).get("blank_applied"):
        raise ValueError("this spectrum already had a blank subtracted: measure the achiral "
                         "reference without a blank")
    ok = np.isfinite(spectrum.g_lum) & np.isfinite(spectrum.sigma_g)
    if ok.sum() < 2:
        raise ValueError("the reference spectrum has fewer than 2 points with emission: it "
                         "cannot serve as a blank")
    order = np.argsort(spectrum.wavelength_nm[ok])
    return Blank(spectrum.wavelength_nm[ok][order], spectrum.g_lum[ok][order],
                 spectrum.sigma_g[ok][order])


def store_blank(spectrum, *, path=None) -> Calibration:
    """Add the blank from ``spectrum`` to the stored calibration of the instrument that
    measured it (its serial is in the spectrum's metadata) and save it."""
    serial = str(spectrum.metadata.get("instrument", {}).get("serial", ""))
    if not serial:
        raise ValueError("the spectrum does not say which instrument measured it")
    cal = load_for(serial, path)
    if cal.is_default:
        raise ValueError(f"instrument {serial} is not calibrated yet: run `cplscope calibrate` "
                         "before storing a blank")
    cal = dataclasses.replace(cal, blank=blank_from_spectrum(spectrum), date=utc_now_iso(),
                              note=(cal.note + "; " if cal.note else "")
                              + f"blank from {spectrum.metadata.get('sample', 'a reference')}")
    cal.save(path)
    return cal
