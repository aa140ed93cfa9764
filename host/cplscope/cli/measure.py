"""The measuring subcommands: ``scan``, ``point``, ``dark`` and ``calibrate``."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .options import (CliError, add_check, check_input_file, detection_options, gating_options,
                      device_options, dwell_options, measures_dark, non_negative, output_options,
                      positive, range_options, scan_options)
from .lab import lab_options
from .scanning import _live, run_scan_command
from .session import open_session, print_point


def cmd_scan(args: argparse.Namespace) -> int:
    from ..data.export import write_jasco_csv
    from ..util.files import DiskFullError

    def measure(inst, sinks, survey_callback):
        settings = {"seed": args.seed if args.sim else None}
        if args.gating is not None and args.gating.gates > 1:
            settings["decay_components"] = args.decay_components
        return inst.scan(args.start, args.stop, args.step, dwell_s=args.dwell,
                         target_sigma=args.target_sigma, max_dwell_s=args.max_dwell,
                         accumulations=args.accumulations, dark=measures_dark(args),
                         dark_dwell_s=args.dark_dwell, callback=_live(args),
                         output=args.output, archive=args.archive, progress=not args.quiet,
                         sample=args.sample_name, overwrite=args.overwrite,
                         time_budget_s=args.time_budget,
                         survey=args.survey if args.survey is not None else False,
                         survey_callback=survey_callback, skip_hopeless=args.skip_hopeless,
                         settings=settings, sinks=sinks)

    status, spec = run_scan_command(args, measure=measure)
    if args.jasco and len(spec):
        try:
            write_jasco_csv(spec, args.jasco, ("delta_i", "intensity", "g_lum", "sigma_g"),
                            overwrite=bool(args.overwrite))
        except DiskFullError as exc:
            safe = args.resume or args.archive
            raise DiskFullError(exc.path, points=len(spec), safe_in=safe or args.output,
                                resume=safe, complete=True) from None
        print(f"# JASCO-style export -> {args.jasco}")
    return status


def _check_point(args: argparse.Namespace) -> None:
    args.wavelengths_nm = [args.wavelength]
    args.wavelength_options = "--wavelength"


def cmd_point(args: argparse.Namespace) -> int:
    with open_session(args) as inst:
        inst.move_to(args.wavelength)
        dark = inst.measure_dark(args.dark_dwell if args.dark_dwell is not None else 10.0) \
            if measures_dark(args) else None
        point = inst.measure(dwell_s=args.dwell, target_sigma=args.target_sigma,
                             max_dwell_s=args.max_dwell, dark=dark)
    print_point(point)
    if args.json:
        print(json.dumps(point.result.as_dict(), default=float))
    return 0


def cmd_dark(args: argparse.Namespace) -> int:
    with open_session(args) as inst:
        dark = inst.measure_dark(args.dwell)
    if args.mode == "analog":
        print(f"dark level (the front end's offset): {dark.level:.3f} ± {dark.sigma:.3f} ADC "
              f"counts over {dark.dwell_s:.1f} s; noise {dark.noise:.3f} ADC counts per frame "
              f"of {dark.frame_periods} PEM periods ({dark.n_frames} frames)")
        return 0
    print(f"dark: {dark.total_rate_cps:.2f} ± {math.sqrt((dark.sigma_rate_cps**2).sum()):.2f} "
          f"cps over {dark.dwell_s:.1f} s")
    print("per bin (cps): " + " ".join(f"{r:.3g}" for r in dark.rate_cps))
    return 0


def _check_calibration_wavelength(args: argparse.Namespace) -> None:
    args.wavelengths_nm = [args.wavelength]
    args.wavelength_options = "--wavelength"


def _check_blank(args: argparse.Namespace) -> None:
    if args.blank is not None:
        check_input_file(args.blank, "--blank", "give the spectrum CSV of an achiral "
                          "reference measured with `cplscope scan --output`")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..data.spectrum import Spectrum
    from ..plans.calibrate import calibrate, calibrate_simulated, kept_parts, store_blank

    if args.blank is not None:
        try:
            blank = Spectrum.read_csv(args.blank)
        except (UnicodeDecodeError, ValueError) as exc:
            raise CliError(f"--blank {args.blank} is not a spectrum CSV ({exc}); give one "
                           "written by `cplscope scan --output`") from None
        cal = store_blank(blank, path=args.calibration)
        n = len(cal.blank.g) if cal.blank is not None else 0
        print(f"# blank of {n} points stored in the calibration of {cal.serial}")
        return 0
    keep = dict(keep_blank=not args.drop_blank, keep_cd=not args.drop_cd)
    if args.sim:
        cal = calibrate_simulated(seed=args.seed, dwell_s=args.dwell, mode=args.mode, **keep)
    else:
        args.auto_calibrate = False
        with open_session(args) as inst:
            input("Put the linear polarizer at +45° in the beam, then press Enter ")
            cal = calibrate(inst, dwell_s=args.dwell, wavelength_nm=args.wavelength,
                            reference_sign=args.reference_sign, dead_time_s=args.dead_time,
                            swap_sample=lambda msg: input(msg + ", then press Enter "),
                            mode=args.mode, **keep)
    print(json.dumps(cal.to_dict(), indent=1))
    kept = kept_parts(cal)
    if kept:
        print(f"# kept from the stored calibration: {' and '.join(kept)} "
              "(--drop-blank, --drop-cd leave them out)", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    """Add this module's subcommands to ``sub`` (the subparsers of ``cplscope``)."""
    p = sub.add_parser("scan", help="measure a g_lum spectrum")
    device_options(p)
    range_options(p)
    dwell_options(p)
    scan_options(p)
    detection_options(p)
    gating_options(p)
    lab_options(p)
    output_options(p, csv="spectrum.csv", archive=True, plot=True, jasco=True)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("point", help="measure g_lum at one wavelength")
    device_options(p)
    p.add_argument("--wavelength", type=positive(" nm"), required=True, help="nm")
    dwell_options(p)
    detection_options(p)
    gating_options(p)
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    add_check(p, _check_point)
    p.set_defaults(func=cmd_point)

    p = sub.add_parser("dark", help="measure dark counts (shutter closed)")
    device_options(p)
    detection_options(p)
    gating_options(p)
    p.add_argument("--dwell", type=positive(" s"), default=10.0, help="s (10)")
    p.set_defaults(func=cmd_dark)

    p = sub.add_parser("calibrate", help="A0, φ0 and handedness; stored per instrument")
    device_options(p)
    detection_options(p)
    p.add_argument("--dwell", type=positive(" s"), default=20.0, help="s per step (20)")
    p.add_argument("--wavelength", type=positive(" nm"), default=500.0, help="nm (500)")
    p.add_argument("--reference-sign", type=int, choices=(1, -1), default=1,
                   help="sign of the handedness reference's g (+1: left-circular polarizer)")
    p.add_argument("--dead-time", type=non_negative(" s"), default=None,
                   help="counting head dead time from its datasheet, s (e.g. 18e-9)")
    p.add_argument("--blank", type=Path, default=None, metavar="CSV",
                   help="store this achiral reference's spectrum as the blank (baseline) that "
                        "scans of the same instrument subtract from g")
    p.add_argument("--drop-blank", action="store_true",
                   help="leave out the stored blank (kept by default)")
    p.add_argument("--drop-cd", action="store_true",
                   help="leave out the stored CD sign and scale (kept by default)")
    add_check(p, _check_blank)
    add_check(p, _check_calibration_wavelength)
    p.set_defaults(func=cmd_calibrate)
