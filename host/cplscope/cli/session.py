"""Connecting the CLI to an instrument: one session per subcommand, with the options that
need a board checked right after connecting.

When it connects, the CLI asks the board what it allows (:func:`ask_board_limits`: its HV
ceiling from SET_LIMITS, its monochromator's range from MONO_CONFIG, its PEM from PEM_CONFIG
and STATUS) and checks every option the board limits against it (:func:`check_board_limits`)
before it changes a setting, calibrates or measures: a mistake ends with exit status 2 and a
message that names the option and the range the instrument allows.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .options import CliError, check_instrument

log = logging.getLogger("cplscope")


class Session:
    """The instrument of one CLI command; leaves it safe (shutter closed, HV off) at the end
    when the command switched it on."""

    def __init__(self, inst, ready: bool) -> None:
        self.inst, self.ready = inst, ready

    def __enter__(self):
        return self.inst

    def __exit__(self, *exc: object) -> None:
        try:
            if self.ready and self.inst.transport.connected:
                self.inst.make_safe()
        except Exception as err:  # the instrument may be gone; closing matters more
            log.warning("could not make the instrument safe: %s", err)
        finally:
            self.inst.close()


def open_session(args: argparse.Namespace, *, ready: bool = True,
                 sim_options: dict | None = None):
    """Connect (with the simulator's ``sim_options``, e.g. its CD geometry); check the wavelengths the command will visit (``args.wavelengths_nm``)
    against the monochromator's range before anything is measured; with ``ready`` also set
    up counting, HV and A0 and open the shutter (an inspecting command such as ``info``
    leaves the instrument as it is)."""
    import cplscope

    from ..settings.calibration import Calibration

    if not hasattr(args, "sample_name"):  # called without main()'s checks
        check_instrument(args)
    faults = dict(args.fault)
    if args.sim:
        sample = str(args.sample_file) if args.sample_file else args.sample
        inst = cplscope.connect("sim", sample=sample, faults=faults or None, seed=args.seed,
                                **(sim_options or {}))
    else:
        inst = cplscope.connect(args.device)
    try:
        from ..plans.calibrate import _apply_mono_config

        _apply_mono_config(inst)
        check_board_limits(inst, args)
        apply_rate_limits(inst, args)
        serial = str(inst.info()["serial"])
        resumed = getattr(args, "resume_calibration", None)
        if resumed is not None:
            # the interrupted run's: the PEM is told the A0 it was told then, whatever the
            # store holds now, and the twin is not calibrated again before the points
            inst.calibration = resumed
        elif args.calibration is not None:
            try:
                inst.calibration = Calibration.load(args.calibration, expected_serial=serial)
            except ValueError as exc:
                raise CliError(f"--calibration {args.calibration}: {exc}") from None
        elif args.sim and getattr(args, "auto_calibrate", True):
            auto_calibrate_simulated(inst, serial, args)
        if ready:
            from ..plans.calibrate import prepare

            gating = getattr(args, "gating", None)
            try:
                prepare(inst, bins=args.bins, periods=args.periods, hv_volts=args.hv,
                        a0_rad=getattr(args, "retardation", None),
                        mode="gated" if gating is not None else getattr(args, "mode",
                                                                        "counting"),
                        gating=gating)
            except ValueError as exc:
                if gating is None:
                    raise
                raise CliError(f"--pulse-rate/--gate: {exc}") from None
    except BaseException:
        inst.close()
        raise
    return Session(inst, ready)


def auto_calibrate_simulated(inst, serial: str, args: argparse.Namespace) -> None:
    """Calibrate the simulated instrument, as a user would, when no calibration (for
    ``--mode analog``: no analog calibration) is stored."""
    from ..plans.calibrate import calibrate_simulated
    from ..settings.calibration import load_for

    mode = getattr(args, "mode", "counting")
    stored = load_for(serial)
    if not stored.is_default and (mode == "counting" or stored.analog is not None):
        return
    what = "an analog calibration" if not stored.is_default else "a calibration"
    print(f"# no {'analog ' if mode == 'analog' else ''}calibration stored for the simulated "
          f"instrument {serial}: making {what} with its linear and circular polarizer samples",
          file=sys.stderr)
    inst.calibration = calibrate_simulated(seed=args.seed, mode=mode)


def apply_rate_limits(inst, args: argparse.Namespace) -> None:
    """--linear-rate / --max-rate / --max-high-fraction for this run (not stored; `cplscope
    limits` stores)."""
    given = {"linear_cps": getattr(args, "linear_rate", None),
             "damage_cps": getattr(args, "max_rate", None),
             "high_fraction": getattr(args, "max_high_fraction", None)}
    if all(v is None for v in given.values()):
        return
    try:
        inst.set_rate_limits(**given, save=False)
    except ValueError as exc:
        raise CliError(f"--linear-rate/--max-rate/--max-high-fraction: {exc}") from None


@dataclass(frozen=True)
class BoardLimits:
    """What a connected board allows (asked by :func:`ask_board_limits`).

    Attributes:
        board: the IDENTIFY ``board`` name (``rp2``, ``sim``, …).
        max_hv_volts: the HV limit in force, V (SET_LIMITS).
        min_nm, max_nm: the monochromator's range, nm (MONO_CONFIG); None if not given.
        pem_hz: the PEM frequency, Hz (STATUS ``pem_period_ps`` when locked, else
            PEM_CONFIG ``frequency_hz``).
        drive_per_rad_nm: the PEM's drive calibration (PEM_CONFIG): A0 = drive/(λ·this).
    """

    board: str
    max_hv_volts: float
    min_nm: float | None
    max_nm: float | None
    pem_hz: float
    drive_per_rad_nm: float

    def max_a0_rad(self, wavelength_nm: float) -> float:
        """The largest A0 (rad) the PEM holds at ``wavelength_nm`` (nm): its drive at full
        scale."""
        from ..protocol.ranges import A0_MAX_RAD, PEM_DRIVE_MAX

        return min(A0_MAX_RAD, PEM_DRIVE_MAX / (wavelength_nm * self.drive_per_rad_nm))


def ask_board_limits(inst) -> BoardLimits:
    """Ask the connected board what it allows; changes no setting."""
    info = inst.info()
    limits = inst.limits()
    mono = inst.configure_monochromator()     # no arguments: the configuration in force
    pem = inst.configure_pem()
    period_ps = inst.status().get("pem_period_ps")
    pem_hz = (1e12 / float(period_ps) if period_ps else float(pem["frequency_hz"]))
    lo, hi = mono.get("min_nm"), mono.get("max_nm")
    return BoardLimits(str(info.get("board", "")), float(limits["max_hv_volts"]),
                       None if lo is None else float(lo), None if hi is None else float(hi),
                       pem_hz, float(pem["drive_per_rad_nm"]))


def check_board_limits(inst, args: argparse.Namespace,
                       limits: BoardLimits | None = None) -> BoardLimits:
    """Check every option the board limits (HV, wavelengths, the retardation they need,
    bins, periods, the dwell times in frames, the count-rate limit) against what the board
    allows, before anything is set or measured; raises :class:`CliError` naming the option.
    Returns the limits."""
    from ..protocol import ranges

    lim = limits or ask_board_limits(inst)
    hv = getattr(args, "hv", None)
    if hv is not None and not 0.0 <= hv <= lim.max_hv_volts:
        raise CliError(f"--hv {hv:g}: this instrument allows 0–{lim.max_hv_volts:g} V (its "
                       "HV limit); give a voltage within it")
    bins = getattr(args, "bins", None)
    if bins is not None and lim.board == "rp2" and lim.pem_hz > 0:
        most = max((b for b in ranges.COUNTING_BINS if ranges.RP2_CLOCK_HZ / (lim.pem_hz * b)
                    >= ranges.RP2_MIN_BIN_CYCLES), default=0)
        if bins > most:
            raise CliError(f"--bins {bins}: with its {lim.pem_hz / 1e3:.4g} kHz PEM this "
                           f"instrument counts at most {most} bins per period (each bin needs "
                           f"{ranges.RP2_MIN_BIN_CYCLES} cycles of its "
                           f"{ranges.RP2_CLOCK_HZ / 1e6:g} MHz clock)")
    wanted, options = _wavelengths(args)
    if wanted:
        check_monochromator_range(inst, wanted, options, lim)
        _check_retardation(inst, args, lim, max(wanted), options)
    periods = getattr(args, "periods", None)
    if periods is None and hasattr(args, "periods"):
        from ..plans.calibrate import ANALOG_FRAME_PERIODS

        periods = ANALOG_FRAME_PERIODS if getattr(args, "mode", "counting") == "analog" \
            else 10000
    if periods is not None and lim.pem_hz > 0:
        _check_dwell_times(args, periods, lim.pem_hz)
    damage = getattr(args, "max_rate", None)
    low, high = ranges.COUNT_RATE_LIMIT_CPS
    if damage is not None and not low <= damage <= high:
        raise CliError(f"--max-rate {damage:g}: this instrument's overload guard takes "
                       f"{low:g}–{high:g} counts/s")
    return lim


def _check_dwell_times(args: argparse.Namespace, periods: int, pem_hz: float) -> None:
    """Every counting time is at least one frame (K PEM periods) and at most the frames one
    acquisition may hold."""
    from ..protocol.ranges import START_FRAMES

    frame_s = periods / pem_hz
    most_s = START_FRAMES[1] * frame_s
    for option in ("dwell", "max_dwell", "dark_dwell", "survey", "time_budget"):
        value = getattr(args, option, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value == 0:
            continue            # not given, a flag, or 0 = none (cd --dark-dwell 0)
        name = f"--{option.replace('_', '-')} {value:g}"
        if value > most_s:
            raise CliError(f"{name}: one acquisition of this instrument lasts at most "
                           f"{most_s:.3g} s ({START_FRAMES[1]:.0e} frames of {frame_s:g} s)")
        if value < frame_s * (1 - 1e-9) and option != "time_budget":
            raise CliError(f"{name} s is shorter than one frame of this instrument "
                           f"({frame_s:g} s: --periods {periods} of its {pem_hz / 1e3:.4g} kHz "
                           f"PEM); give at least {frame_s:g} s, or fewer --periods")


def _wavelengths(args: argparse.Namespace) -> tuple[list[float], str]:
    """The wavelengths the command will visit (nm) and the options that set them."""
    wanted = getattr(args, "wavelengths_nm", None)
    if wanted is not None:
        return [float(w) for w in wanted], getattr(args, "wavelength_options", "--start/--stop")
    start, stop = getattr(args, "start", None), getattr(args, "stop", None)
    if isinstance(start, (int, float)) and isinstance(stop, (int, float)):
        return [float(start), float(stop)], "--start/--stop"
    return [], ""


def _check_retardation(inst, args: argparse.Namespace, lim: BoardLimits, longest_nm: float,
                       options: str) -> None:
    """The A0 the command will hold (--retardation, else the default for --bins) must be
    within the PEM's drive at the longest wavelength (the drive grows with λ)."""
    from ..plans.calibrate import A0_COMMAND, default_retardation
    from ..settings.calibration import Calibration

    cal = (Calibration.load(args.calibration) if getattr(args, "calibration", None)
           else inst.calibration)
    given = getattr(args, "retardation", None)
    a0 = given if given is not None else default_retardation(
        int(getattr(args, "bins", 16) or 16), float(cal.phase_offset_rad))
    command = a0 / float(cal.retardation_scale)      # what the PEM is told, rad
    what = (f"--retardation {given:g}" if given is not None
            else f"the default A0 {a0:.3f} rad (for --bins {getattr(args, 'bins', 16)})")
    if getattr(args, "command", None) == "calibrate":  # it holds its own, uncorrected A0
        command, what = A0_COMMAND, "the calibration's A0 command π/2"
    most = lim.max_a0_rad(longest_nm)
    if command <= most * (1 + 1e-9):
        return
    reach = most * float(cal.retardation_scale)
    longest_ok = 1.0 / (command * lim.drive_per_rad_nm)
    raise CliError(f"{what}: the PEM reaches at most A0 = {reach:.3f} rad at {longest_nm:g} nm "
                   f"(its drive at full scale); give --retardation ≤ {reach:.3f}, or keep "
                   f"{options} ≤ {math.floor(longest_ok):g} nm")


def check_monochromator_range(inst, wavelengths_nm: Sequence[float], options: str,
                              limits: BoardLimits | None = None) -> None:
    """Refuse wavelengths outside the monochromator's configured range (before any move)."""
    if limits is None:
        config = inst.configure_monochromator()  # no arguments: the configuration in force
        lo, hi = config.get("min_nm"), config.get("max_nm")
    else:
        lo, hi = limits.min_nm, limits.max_nm
    if lo is None or hi is None:
        return
    low, high = float(min(wavelengths_nm)), float(max(wavelengths_nm))
    if low < float(lo) or high > float(hi):
        span = f"{low:g} nm" if low == high else f"{low:g}–{high:g} nm"
        raise CliError(f"{options}: {span} is outside the monochromator's range "
                       f"{float(lo):g}–{float(hi):g} nm; choose wavelengths within it")


def print_point(point) -> None:
    r = point.result if hasattr(point, "result") else point
    flags = ";".join(r.flags) or "-"
    analog = math.isfinite(r.dof_sigma)
    unit = "ADC" if analog else "cps"
    dof = f" (dof {r.dof_sigma:.0f})" if analog else ""
    print(f"{r.wavelength_nm:8.2f} nm  I = {r.intensity:11.4g} {unit}  g = {r.g_lum:+.3e} ± "
          f"{r.sigma_g:.1e}{dof}  u = {r.linear:+.3f}  χ² = {r.chi2_red:.2f}  "
          f"{r.dwell_s:7.1f} s  {flags}")
