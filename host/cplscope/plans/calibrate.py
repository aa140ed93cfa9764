"""The calibration procedure (measurement model §7): A0 and φ0 from a linear polarizer,
then the handedness from a reference of known sign, stored per instrument serial."""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..demod.calibrate import fit_handedness, fit_retardation_analog
from ..protocol.gating import Gating
from ..settings.calibration import AnalogCalibration, Blank, Calibration, load_for
from ..util.clock import utc_now_iso
from .point import calibrate_handedness, calibrate_retardation, measure_dark

__all__ = ["A0_COMMAND", "ANALOG_A0", "ANALOG_FRAME_PERIODS", "SIM_DEAD_TIME_S",
           "blank_from_spectrum", "calibrate", "calibrate_analog", "calibrate_simulated",
           "default_retardation", "kept_parts", "prepare", "store_blank"]

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
    from ..demod.retardation import optimal_retardation

    return optimal_retardation(int(bins), phase_offset_rad)


#: The analog mode's default A0 (rad): the 1f lock-in's convention, π/2 (docs/estimator.md).
ANALOG_A0 = math.pi / 2
#: The analog mode's default frame: 5000 PEM periods (0.1 s at 50 kHz), so that a 1-s point
#: has the 10 frames an analog σ needs to be useful (docs/estimator.md).
ANALOG_FRAME_PERIODS = 5000


def prepare(inst, *, bins: int = 16, periods: int | None = None, hv_volts: float = 800.0,
            a0_rad: float | None = None, open_shutter: bool = True,
            mode: str = "counting", gating: Gating | None = None) -> None:
    """Put the instrument in ``mode`` (``"counting"``, ``"analog"`` or ``"gated"``: photon
    counting in the gate(s) of ``gating`` after each excitation pulse), ready to measure: B
    bins, K periods per frame, PMT HV (V), A0 (rad) held constant across wavelengths,
    shutter open.

    ``periods`` None: 10000 for counting, :data:`ANALOG_FRAME_PERIODS` for analog (where the
    board streams raw ADC blocks and the host bins them into ``bins`` × ``periods`` frames).
    ``a0_rad`` None: :func:`default_retardation` for ``bins`` (counting), π/2 (analog). The
    retardation command is corrected by the scale of the mode's calibration
    (:meth:`~cplscope.settings.calibration.Calibration.for_mode`), so the PEM really produces
    ``a0_rad``. The board's overload guard is set to the instrument's damage limit
    (:mod:`cplscope.settings.rate_limits`), and its stored monochromator settings
    (:mod:`cplscope.settings.monochromator`) are sent before it homes."""
    if mode not in ("counting", "analog", "gated"):
        raise ValueError(f"mode must be 'counting', 'analog' or 'gated', got {mode!r}")
    if (mode == "gated") != (gating is not None):
        raise ValueError("gated mode needs the gating (pulse rate and gate), and only gated "
                         "mode takes it" if gating is None else
                         f"a gating applies to mode 'gated', not {mode!r}")
    if mode == "gated":
        assert gating is not None
        inst.configure_gated(gating, bins=bins, periods=periods or 10000)
    elif mode == "analog":
        inst.analog_binning = (int(bins), int(periods or ANALOG_FRAME_PERIODS))
        inst.configure_analog()
    else:
        inst.configure_counting(bins=bins, periods=periods or 10000)
    _apply_mono_config(inst)
    limits = getattr(inst, "rate_limits", None)
    if limits is not None:
        inst.set_limits(max_count_rate_cps=limits.damage_cps,
                        max_high_fraction=limits.high_fraction)
    if _apply_hv_model(inst) != "counting_head":  # a counting head is powered by its model
        inst.set_hv(hv_volts)
    if a0_rad is not None:
        target = float(a0_rad)
    else:
        target = ANALOG_A0 if mode == "analog" else default_retardation(bins,
                                                                          _phase_offset(inst))
    scale = _scale(inst, mode)
    inst.set_retardation(min(target / scale, math.pi))
    if open_shutter:
        inst.open_shutter()


def _apply_hv_model(inst) -> str:
    """Send the instrument's stored HV model (:mod:`cplscope.settings.hv_model`); its kind."""
    from ..settings.hv_model import apply_hv_model

    if getattr(inst, "info", None) is None or not hasattr(inst, "configure_hv_model"):
        return "supply"
    return apply_hv_model(inst).kind


def _apply_mono_config(inst) -> None:
    """Send the instrument's stored monochromator settings (:mod:`cplscope.settings.monochromator`)."""
    from ..settings.monochromator import load_mono_config

    info = getattr(inst, "info", None)
    if info is None:
        return
    config = load_mono_config(str(info()["serial"]))
    if config:
        inst.configure_monochromator(**config)


def _phase_offset(inst) -> float:
    cal = getattr(inst, "calibration", None)
    return float(cal.phase_offset_rad) if cal is not None else 0.0


def _scale(inst, mode: str = "counting") -> float:
    cal = getattr(inst, "calibration", None)
    return float(cal.for_mode(mode).retardation_scale) if cal is not None else 1.0


def calibrate(inst, *, dwell_s: float = 20.0, wavelength_nm: float = 500.0,
              reference_sign: int = 1, dead_time_s: float | None = None,
              swap_sample: Callable[[str], Any] | None = None,
              handedness_inst=None, save: bool = True, keep_blank: bool = True,
              keep_cd: bool = True, mode: str = "counting",
              reference_g: float = 2.0) -> Calibration:
    """Run both calibration steps and return (and by default store) the calibration.

    What these steps do not measure is kept from the instrument's stored calibration: the
    blank (unless ``keep_blank`` is False) and the CD sign and scale (unless ``keep_cd`` is
    False); :func:`kept_parts` says what was kept. ``mode="analog"`` calibrates the analog
    path on its own (:func:`calibrate_analog`) and stores it next to the counting constants,
    which it leaves as they are; a counting calibration keeps the stored analog constants.

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
        keep_blank, keep_cd: keep the stored blank and CD calibration.
        mode: ``"counting"`` or ``"analog"``.
        reference_g: analog mode: the reference's |g| when no counting calibration is there
            to measure it (2 for an ideal circular polarizer).
    """
    if mode == "analog":
        return calibrate_analog(inst, dwell_s=dwell_s, wavelength_nm=wavelength_nm,
                                reference_sign=reference_sign, swap_sample=swap_sample,
                                handedness_inst=handedness_inst, save=save,
                                reference_g=reference_g)
    if mode != "counting":
        raise ValueError(f"mode must be 'counting' or 'analog', got {mode!r}")
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
    other = _reference_instrument(inst, handedness_inst, swap_sample)
    if handedness_inst is not None:
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
        a0_command_rad=A0_COMMAND, analog=old.analog)
    cal = _keep_stored(old, cal, keep_blank=keep_blank, keep_cd=keep_cd)
    inst.calibration = cal
    if save:
        path = cal.save()
        log.info("calibration of %s saved to %s", serial, path)
    return cal


def _keep_stored(old: Calibration, new: Calibration, *, keep_blank: bool,
                 keep_cd: bool) -> Calibration:
    """``new`` with the blank and CD calibration of ``old`` (the same instrument's), as
    asked."""
    if old.is_default or old.serial != new.serial:
        return new
    carry: dict[str, Any] = {}
    if keep_blank and old.blank is not None:
        carry["blank"] = old.blank
        if old.handedness != new.handedness:
            log.warning("the handedness changed (%+d → %+d): the kept blank was measured with "
                        "the other one; measure the blank again (`cplscope calibrate --blank "
                        "CSV`) or drop it (--drop-blank)", old.handedness, new.handedness)
    if keep_cd and old.cd is not None:
        carry["cd"] = old.cd
    if not carry:
        return new
    kept = " and ".join("the blank" if k == "blank" else "the CD calibration" for k in carry)
    note = f"{new.note}; kept {kept} of the calibration of {old.date}"
    return dataclasses.replace(new, note=note, **carry)


def kept_parts(cal: Calibration) -> list[str]:
    """What a new calibration kept from the stored one, in words (for the user)."""
    out = []
    if cal.blank is not None:
        wl = cal.blank.wavelength_nm
        out.append(f"the blank ({len(wl)} points, {wl.min():g}–{wl.max():g} nm)")
    if cal.cd is not None:
        out.append(f"the CD calibration (sign {int(cal.cd.get('cd_sign', 1)):+d}, scale "
                   f"{float(cal.cd.get('cd_scale', 1.0)):g})")
    return out


def _prepare_for_calibration(inst, mode: str = "counting") -> None:
    """Counting (or analog) mode at the calibration's own A0 command (uncorrected: the fit
    measures what the command gives), shutter closed."""
    if mode == "analog":
        inst.analog_binning = (16, ANALOG_FRAME_PERIODS)
        inst.configure_analog()
    else:
        inst.configure_counting(bins=16, periods=10000)
    inst.set_hv(800.0)
    inst.set_retardation(A0_COMMAND)


def calibrate_analog(inst, *, dwell_s: float = 20.0, wavelength_nm: float = 500.0,
                     reference_sign: int = 1,
                     swap_sample: Callable[[str], Any] | None = None,
                     handedness_inst=None, save: bool = True,
                     reference_g: float = 2.0) -> Calibration:
    """The analog mode's own A0, φ0, handedness and g gain (:class:`~cplscope.settings.
    calibration.AnalogCalibration`), stored next to the counting calibration.

    The same two references as in counting mode, measured in analog mode with their dark
    (the front end's offset): A0 and φ0 from the linear polarizer at +45°
    (:func:`~cplscope.demod.calibrate.fit_retardation_analog`), the handedness from the
    circular reference, and the gain of the front end for the circular term, g_gain = g
    measured in analog mode / the reference's g. That g is measured in counting mode with the
    stored counting calibration (photon counting has no front end, and the reference's own
    purity cancels); without a counting calibration it is ``reference_sign·reference_g``
    (2 for an ideal circular polarizer). φ0(analog) − φ0(counting) is recorded as the front
    end's phase lag (plus the ADC clock's offset).
    """
    serial = str(inst.info()["serial"])
    stored = inst.calibration
    frames, dark = _analog_reference(inst, wavelength_nm, dwell_s)
    fit = fit_retardation_analog(frames.means, frames.sampled_phases, dark=dark.level)
    log.info("analog: A0 = %.4f ± %.4f rad, φ0 = %.4f ± %.4f rad (mod π), χ²_red %.2f",
             fit.a0_rad, fit.sigma_a0, fit.phase_offset_rad, fit.sigma_phase, fit.chi2_red)
    other = _reference_instrument(inst, handedness_inst, swap_sample)
    ref, ref_dark = _analog_reference(other, wavelength_nm, dwell_s)
    hand = fit_handedness(ref.means, fit.a0_rad, fit.phase_offset_rad,
                          expected_sign=reference_sign, dark=ref_dark.level,
                          dark_sigma=ref_dark.sigma, noise="gaussian",
                          sampled_phases=ref.sampled_phases)
    g_analog = hand.handedness * hand.g_measured
    if stored.is_default:
        g_ref, sigma_ref = reference_sign * float(reference_g), 0.0
        how = f"its nominal g {g_ref:+g} (no counting calibration to measure it)"
        lag = None
    else:
        g_ref, sigma_ref = _counting_g(other, stored, wavelength_nm, dwell_s)
        how = f"its g in counting mode, {g_ref:+.4f} ± {sigma_ref:.1e}"
        lag = float((fit.phase_offset_rad - stored.phase_offset_rad + math.pi / 2) % math.pi
                    - math.pi / 2)
    gain = g_analog / g_ref
    sigma_gain = abs(gain) * math.hypot(hand.sigma_g / g_analog, sigma_ref / g_ref)
    if not gain > 0:
        raise ValueError(f"the reference's g is {g_analog:+.3g} in analog mode and {g_ref:+.3g} "
                         "by reference: opposite signs, check the reference and reference_sign")
    analog = AnalogCalibration(
        a0_rad=fit.a0_rad, phase_offset_rad=fit.phase_offset_rad, handedness=hand.handedness,
        date=utc_now_iso(), source="analog: linear-polarizer+circular-polarizer",
        g_gain=float(gain), sigma_g_gain=float(sigma_gain), a0_command_rad=A0_COMMAND,
        reference_wavelength_nm=float(wavelength_nm), sigma_a0_rad=fit.sigma_a0,
        sigma_phase_offset_rad=fit.sigma_phase, phase_lag_rad=lag,
        sample_rate_hz=float(frames.sample_rate_hz),
        note=f"retardation fit χ²_red {fit.chi2_red:.3f}; handedness reference g "
             f"{g_analog:+.4f} ± {hand.sigma_g:.1e} in analog mode against {how}")
    cal = dataclasses.replace(stored, analog=analog)
    inst.calibration = cal
    if save:
        path = cal.save()
        log.info("analog calibration of %s saved to %s", serial, path)
    return cal


def _reference_instrument(inst, handedness_inst, swap_sample):
    """The instrument that holds the handedness reference (after asking for it)."""
    if handedness_inst is not None:
        return handedness_inst
    if swap_sample is None:
        raise ValueError("the handedness step needs the reference in the beam: pass "
                         "swap_sample (a prompt) or handedness_inst")
    swap_sample("Put the handedness reference (e.g. a left-circular polarizer) in the "
                "beam instead of the linear polarizer")
    return inst


def _analog_reference(inst, wavelength_nm: float, dwell_s: float):
    """Analog frames of what is in the beam and their dark, at the calibration's A0 command."""
    _prepare_for_calibration(inst, "analog")
    inst.move_to(wavelength_nm)
    dark = measure_dark(inst, min(dwell_s, 10.0))
    inst.open_shutter()
    bins, periods = inst.analog_binning
    frames = inst.acquire_analog(duration_s=dwell_s, n_bins=bins, frame_periods=periods)
    frames.check()
    return frames, dark


def _counting_g(inst, cal: Calibration, wavelength_nm: float,
                dwell_s: float) -> tuple[float, float]:
    """(g, σ) of what is in the beam, in counting mode with the counting calibration."""
    from ..demod import estimate
    from .point import retardation_in_force

    _prepare_for_calibration(inst)
    inst.move_to(wavelength_nm)
    dark = measure_dark(inst, min(dwell_s, 10.0))
    inst.open_shutter()
    frames = inst.acquire(duration_s=dwell_s)
    t = frames.frame_time_s
    est = estimate(frames.counts, cal.a0_in_force(retardation_in_force(inst).nominal_rad),
                   phase_offset=cal.phase_offset_rad, dark=dark.per_frame(t),
                   dead_time=cal.dead_time_s, frame_time=t if cal.dead_time_s else None,
                   bin_span=frames.span)
    return cal.handedness * est.g_lum, est.sigma_g


def calibrate_simulated(*, seed: int = 0, dwell_s: float = 20.0, save: bool = True,
                        keep_blank: bool = True, keep_cd: bool = True,
                        mode: str = "counting", **sim_options: Any) -> Calibration:
    """Calibrate the simulated instrument the way a user calibrates a real one: with the
    ``linear-polarizer-45`` sample, then ``circular-polarizer-L`` for the handedness. The
    stored blank and CD calibration are kept unless ``keep_blank``/``keep_cd`` is False. In
    ``mode="analog"`` the counting calibration comes first when none is stored (the analog
    gain is measured against it)."""
    from ..board.connection import open_controller

    with open_controller("sim", sample="linear-polarizer-45", seed=seed, **sim_options) as lin, \
            open_controller("sim", sample="circular-polarizer-L", seed=seed + 1,
                            **sim_options) as circ:
        if mode == "counting" or lin.calibration.is_default:
            cal = calibrate(lin, dwell_s=dwell_s, reference_sign=1,
                            dead_time_s=SIM_DEAD_TIME_S, handedness_inst=circ, save=save,
                            keep_blank=keep_blank, keep_cd=keep_cd)
            if mode == "counting":
                return cal
        circ.calibration = lin.calibration
        return calibrate(lin, dwell_s=dwell_s, reference_sign=1, handedness_inst=circ,
                         save=save, mode=mode)


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
