"""Connecting the CLI to an instrument: one session per subcommand, with the options that
need a board checked right after connecting."""
from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

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
        apply_rate_limits(inst, args)
        wanted = getattr(args, "wavelengths_nm", None)
        if wanted is not None and len(wanted):
            check_monochromator_range(inst, wanted, getattr(args, "wavelength_options",
                                                             "--start/--stop"))
        serial = str(inst.info()["serial"])
        if args.calibration is not None:
            inst.calibration = Calibration.load(args.calibration, expected_serial=serial)
        elif args.sim and getattr(args, "auto_calibrate", True):
            auto_calibrate_simulated(inst, serial, args)
        if ready:
            from ..plans.calibrate import prepare

            prepare(inst, bins=args.bins, periods=args.periods, hv_volts=args.hv,
                    a0_rad=getattr(args, "retardation", None),
                    mode=getattr(args, "mode", "counting"))
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
    """--linear-rate / --max-rate for this run (not stored; `cplscope limits` stores)."""
    linear, damage = getattr(args, "linear_rate", None), getattr(args, "max_rate", None)
    if linear is None and damage is None:
        return
    try:
        inst.set_rate_limits(linear_cps=linear, damage_cps=damage, save=False)
    except ValueError as exc:
        raise CliError(f"--linear-rate/--max-rate: {exc}") from None


def check_monochromator_range(inst, wavelengths_nm: Sequence[float], options: str) -> None:
    """Refuse wavelengths outside the monochromator's configured range (before any move)."""
    config = inst.configure_monochromator()  # no arguments: the configuration in force
    lo, hi = config.get("min_nm"), config.get("max_nm")
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
