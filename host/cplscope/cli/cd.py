"""The ``cplscope cd`` subcommands: a CD spectrum, its figure, and the CD sign and scale from
a CSA standard (docs/cd.md).

    cplscope cd --sim --sample solvent --start 300 --stop 460 --step 2 --dwell 30 \\
        --output solvent.csv
    cplscope cd --sim --sample R-Cs4PbBr6 --start 300 --stop 460 --step 2 \\
        --target-sigma 5e-4 --max-dwell 300 --baseline solvent.csv --output r.csv --plot r.png
    cplscope cd-plot r.csv s.csv --mirror --output pair.png
    cplscope cd-calibrate csa.csv --save cd-cal.json     # then: cplscope cd --cd-calibration …

``--sim`` puts the simulated bench in its transmission (CD) geometry. Hook into the main
parser with :func:`add_parser` (it adds the three subcommands, each with ``func=run``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..util.files import write_text_atomic
from .options import (CliError, add_check, check_archive_input, check_input_file,
                      check_output_path, detection_options, device_options, dwell_options,
                      measures_dark, non_negative, output_options, positive, range_options,
                      run_checks, scan_options)
from .lab import lab_options
from .scanning import run_scan_command

__all__ = ["add_parsers", "run"]

EXIT_INTERRUPTED = 130


def add_parsers(sub: Any) -> None:
    """Add ``cd``, ``cd-reprocess``, ``cd-plot`` and ``cd-calibrate`` to ``sub`` (the
    subparsers of ``cplscope``)."""
    p = sub.add_parser(
        "cd", help="measure a CD spectrum (ΔA, A, g_abs, ellipticity) in transmission",
        description="CD spectrum through the lamp → polarizer → PEM → sample → PMT path. "
                    "Measure the solvent first (no --baseline), then the sample with "
                    "--baseline. With --sim the simulated bench is in the CD geometry. "
                    "The options are those of `cplscope scan`.")
    device_options(p)
    range_options(p)
    dwell_options(p, cd=True)
    scan_options(p)
    detection_options(p)
    lab_options(p)
    p.add_argument("--baseline", type=Path, default=None, metavar="CSV",
                   help="a `cplscope cd` scan of the solvent/cell on the same grid")
    p.add_argument("--cd-calibration", type=Path, default=None, metavar="JSON",
                   help="CD sign and scale from `cplscope cd-calibrate` (default: the "
                        "instrument calibration's, else +1 and 1)")
    p.add_argument("--max-absorbance", type=positive(""), default=3.0,
                   help="points above this absorbance are flagged opaque (3)")
    g = p.add_argument_group("lamp drift (docs/cd.md)")
    g.add_argument("--lamp-every", type=non_negative(" s"), default=60.0, metavar="SECONDS",
                   help="read the lamp at the reference wavelength every SECONDS of measuring "
                        "(60; 0: never, and σ(A) leaves the lamp's drift out)")
    g.add_argument("--lamp-dwell", type=positive(" s"), default=5.0, metavar="SECONDS",
                   help="dwell of a lamp reading, s (5)")
    g.add_argument("--lamp-reference", type=positive(" nm"), default=None, metavar="NM",
                   help="the wavelength read (default: the scan's longest, where an "
                        "absorbing sample usually transmits most)")
    output_options(p, csv="cd.csv", archive=True, plot=True)
    add_check(p, check_cd)
    p.set_defaults(func=run, cd_action="scan")

    p = sub.add_parser(
        "cd-reprocess", help="recompute a CD spectrum from the raw archive of `cplscope cd`")
    p.add_argument("archive", type=Path, help="archive written by `cplscope cd --archive`")
    p.add_argument("--baseline", type=Path, default=None, metavar="CSV",
                   help="baseline CD spectrum (default: the one the scan used)")
    output_options(p, csv_required=True)
    p.set_defaults(func=run, cd_action="reprocess")

    p = sub.add_parser("cd-plot", help="CD figure of one or more CD spectrum CSVs")
    p.add_argument("csv", type=Path, nargs="+")
    output_options(p, figure=True)
    p.add_argument("--label", action="append", default=[], help="legend label, repeatable")
    p.add_argument("--mirror", action="store_true",
                   help="R/S mirror-symmetry report of two spectra's g_abs")
    p.add_argument("--delta-a", action="store_true", help="CD panel in ΔA instead of mdeg")
    p.set_defaults(func=run, cd_action="plot")

    p = sub.add_parser(
        "cd-calibrate", help="CD sign and scale from a CD spectrum of the CSA standard",
        description="Fit ΔA at 290.5 nm of a `cplscope cd` spectrum of ammonium "
                    "d-10-camphorsulfonate against the accepted Δε = +2.36 M⁻¹cm⁻¹.")
    p.add_argument("csv", type=Path, help="CD spectrum of CSA across 290.5 nm (and 285 nm)")
    p.add_argument("--concentration", type=float, default=None, metavar="MOL_L",
                   help="CSA concentration, mol/L (default: from the absorbance at 285 nm)")
    p.add_argument("--path", type=float, default=1.0, help="cell path length, cm (1)")
    p.add_argument("--no-store", action="store_true",
                   help="do not store the fit with the instrument's calibration")
    p.add_argument("--save", type=Path, default=None, metavar="JSON",
                   help="write the CD calibration here (for `cplscope cd --cd-calibration`)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the --save file if it exists (otherwise it is refused)")
    add_check(p, _check_save)
    p.set_defaults(func=run, cd_action="calibrate")


def _check_save(args: argparse.Namespace) -> None:
    if args.save is not None:
        check_output_path(args.save, "--save", (), overwrite=args.overwrite)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand that :func:`add_parser` set up; returns the exit status."""
    action = getattr(args, "cd_action", None)
    if action == "scan":
        return _scan(args)
    if action == "plot":
        return _plot(args)
    if action == "calibrate":
        return _calibrate(args)
    if action == "reprocess":
        return _reprocess(args)
    raise ValueError(f"not a CD subcommand: {action!r}")


def _error(message: str) -> Exception:
    return CliError(message)


#: The simulated bench in the CD light path (lamp → polarizer → PEM → sample → PMT).
CD_GEOMETRY = {"bench_options": {"geometry": "cd"}}


def check_cd(args: argparse.Namespace) -> None:
    """The CD options that the shared ones do not cover: a g_abs target needs a baseline;
    the baseline and the CD calibration are readable files."""
    if getattr(args, "resume", None) is not None:
        given = [o for o, v in (("--baseline", args.baseline),
                                ("--cd-calibration", args.cd_calibration)) if v is not None]
        if given:
            raise CliError(f"--resume continues the scan with its own baseline and CD "
                           f"calibration: drop {', '.join(given)}")
        return
    if args.target_sigma is not None and args.baseline is None:
        raise _error("--target-sigma is σ(g_abs) and needs --baseline (g_abs = ΔA/A); for a "
                     "baseline scan use --dwell or --target-sigma-delta-a")
    args.cd_cal = None
    if args.cd_calibration is not None:
        check_input_file(args.cd_calibration, "--cd-calibration",
                         "give the file `cplscope cd-calibrate --save` wrote")
        from ..science.cd import CDCalibration

        try:
            args.cd_cal = CDCalibration.from_dict(json.loads(args.cd_calibration.read_text()))
        except (OSError, ValueError) as exc:
            raise _error(f"--cd-calibration {args.cd_calibration}: {exc}") from None
    if args.baseline is not None:
        check_input_file(args.baseline, "--baseline", "give the CD spectrum CSV of the "
                         "solvent that `cplscope cd --output` wrote")


def _scan(args: argparse.Namespace) -> int:
    from ..plans.cd_scan import cd_scan
    from ..science.cd import CDRules

    if not hasattr(args, "wavelengths_nm"):   # called without main()'s checks
        run_checks(args)
    if args.resume is not None:
        return run_scan_command(args, CD_GEOMETRY)[0]

    def measure(inst, sinks, survey_callback):
        return cd_scan(inst, args.start, args.stop, args.step, dwell_s=args.dwell,
                       target_sigma_delta_a=args.target_sigma_delta_a,
                       target_sigma_g_abs=args.target_sigma, max_dwell_s=args.max_dwell,
                       baseline=args.baseline, output=args.output,
                       progress=not getattr(args, "quiet", False), cd_calibration=args.cd_cal,
                       dark=True if measures_dark(args) else None,
                       dark_dwell_s=args.dark_dwell,
                       sample=args.sample_name,
                       rules=CDRules(max_absorbance=args.max_absorbance),
                       archive=args.archive, overwrite=bool(args.overwrite),
                       accumulations=args.accumulations, skip_hopeless=args.skip_hopeless,
                       time_budget_s=args.time_budget,
                       survey=args.survey if args.survey is not None else False,
                       survey_callback=survey_callback, sinks=sinks, lamp=_lamp(args),
                       settings={"seed": args.seed if args.sim else None})

    return run_scan_command(args, CD_GEOMETRY, measure)[0]


def _lamp(args: argparse.Namespace) -> Any:
    from ..science.lamp import LampMonitor

    if not args.lamp_every:
        return None
    return LampMonitor(every_s=args.lamp_every, dwell_s=args.lamp_dwell,
                       reference_nm=args.lamp_reference)


def _reprocess(args: argparse.Namespace) -> int:
    from ..plans.cd_scan import cd_reprocess
    from ..plans.reprocess import ArchiveKindError
    from .files import report_recovery

    if args.output is None:
        raise _error("give --output, the CD spectrum CSV to write")
    args.archive = check_archive_input(args.archive, "cplscope cd --archive")
    try:
        spec = cd_reprocess(args.archive, baseline=args.baseline)
    except ArchiveKindError as exc:
        raise _error(str(exc)) from None
    report_recovery(spec, args.archive)
    spec.write_csv(args.output)
    print(f"# {len(spec)} points -> {args.output}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..data.cd_spectrum import CDSpectrum
    from ..plot.cd import cd_mirror_report, plot_cd

    specs = [CDSpectrum.read_csv(p) for p in args.csv]
    if args.output is None:
        from .files import default_figure

        default_figure(args)
    labels = args.label or None
    if labels is not None and len(labels) != len(specs):
        raise _error(f"{len(labels)} --label for {len(specs)} files")
    report = None
    if args.mirror:
        if len(specs) != 2:
            raise _error("--mirror needs exactly two spectra (R then S)")
        report = cd_mirror_report(specs[0], specs[1])
        print(report.text())
    plot_cd(specs, args.output, labels=labels, mirror=report or False,
            cd_unit="delta_a" if args.delta_a else "mdeg")
    print(f"# figure -> {args.output}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from ..data.cd_spectrum import CDSpectrum
    from ..science.cd import CDCalibration, fit_csa

    spec = CDSpectrum.read_csv(args.csv)
    applied = spec.metadata.get("cd_calibration")
    used = CDCalibration()
    if isinstance(applied, dict):
        used = CDCalibration(int(applied.get("cd_sign", 1)), float(applied.get("cd_scale", 1.0)))
    fit = fit_csa(spec, concentration_mol_l=args.concentration, path_cm=args.path,
                  applied=used)
    print(fit.text())
    serial = str(spec.metadata.get("instrument", {}).get("serial", ""))
    if serial and not args.no_store:
        import dataclasses

        from ..settings.calibration import load_for
        cal = load_for(serial)
        if cal.is_default:
            print(f"# instrument {serial} has no calibration yet (run `cplscope calibrate`): "
                  "the CD calibration was not stored with it", file=sys.stderr)
        else:
            dataclasses.replace(cal, cd=fit.calibration.to_dict()).save()
            print(f"# CD calibration stored with the calibration of instrument {serial}; "
                  "`cplscope cd` applies it")
    if args.save is not None:
        write_text_atomic(args.save, json.dumps(fit.calibration.to_dict(), indent=2) + "\n")
        print(f"# CD calibration -> {args.save} (use: cplscope cd --cd-calibration "
              f"{args.save})")
    return 0
