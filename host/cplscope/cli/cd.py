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

from .options import CliError, device_options, non_negative, output_options, positive
from .session import Session, check_board_limits

__all__ = ["add_parsers", "run"]

EXIT_INTERRUPTED = 130


# options of the CD subcommands that take a number > 0 (unit), or ≥ 0 (dark dwell: 0 = none)
_CD_POSITIVE = {"start": " nm", "stop": " nm", "step": " nm", "dwell": " s",
                "target_sigma": "", "target_sigma_delta_a": "", "max_dwell": " s",
                "max_absorbance": "", "concentration": " mol/L", "path": " cm"}

_CD_NON_NEGATIVE = {"dark_dwell": " s"}


def add_parsers(sub: Any) -> None:
    """Add ``cd``, ``cd-plot`` and ``cd-calibrate`` to ``sub`` (the subparsers of
    ``cplscope``); their plain-float options get the checked types of the other subcommands,
    so that a negative dwell is refused before the instrument is touched."""
    before = set(sub.choices)
    _add_parsers(sub)
    for name in set(sub.choices) - before:
        for action in sub.choices[name]._actions:
            if action.type is not float:
                continue
            if action.dest in _CD_POSITIVE:
                action.type = positive(_CD_POSITIVE[action.dest])
            elif action.dest in _CD_NON_NEGATIVE:
                action.type = non_negative(_CD_NON_NEGATIVE[action.dest])


def _add_parsers(subparsers: Any) -> None:
    """Add ``cd``, ``cd-plot`` and ``cd-calibrate`` to ``subparsers`` (the object
    ``ArgumentParser.add_subparsers`` returned)."""
    p = subparsers.add_parser(
        "cd", help="measure a CD spectrum (ΔA, A, g_abs, ellipticity) in transmission",
        description="CD spectrum through the lamp → polarizer → PEM → sample → PMT path. "
                    "Measure the solvent first (no --baseline), then the sample with "
                    "--baseline. With --sim the simulated bench is in the CD geometry.")
    device_options(p)
    p.add_argument("--start", type=float, required=True, help="first wavelength, nm")
    p.add_argument("--stop", type=float, required=True, help="last wavelength, nm")
    p.add_argument("--step", type=float, required=True, help="step, nm")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--dwell", type=float, default=None, help="counting time per point, s")
    g.add_argument("--target-sigma", type=float, default=None, metavar="SIGMA_G_ABS",
                   help="count each point until σ(g_abs) reaches this (needs --baseline)")
    g.add_argument("--target-sigma-delta-a", type=float, default=None, metavar="SIGMA_DA",
                   help="count each point until σ(ΔA) reaches this (also for a baseline scan)")
    p.add_argument("--max-dwell", type=float, default=300.0,
                   help="most counting time per point with a target, s (300)")
    p.add_argument("--baseline", type=Path, default=None, metavar="CSV",
                   help="a `cplscope cd` scan of the solvent/cell on the same grid")
    p.add_argument("--dark-dwell", type=float, default=10.0,
                   help="dark measurement (lamp shutter closed) before the scan, s (10; 0: none)")
    p.add_argument("--cd-calibration", type=Path, default=None, metavar="JSON",
                   help="CD sign and scale from `cplscope cd-calibrate` (default: the "
                        "instrument calibration's, else +1 and 1)")
    p.add_argument("--max-absorbance", type=float, default=3.0,
                   help="points above this absorbance are flagged opaque (3)")
    output_options(p, csv="cd.csv", archive=True, plot=True)
    p.set_defaults(func=run, cd_action="scan")

    p = subparsers.add_parser(
        "cd-reprocess", help="recompute a CD spectrum from the raw archive of `cplscope cd`")
    p.add_argument("archive", type=Path, help="archive written by `cplscope cd --archive`")
    p.add_argument("--baseline", type=Path, default=None, metavar="CSV",
                   help="baseline CD spectrum (default: the one the scan used)")
    output_options(p, csv_required=True)
    p.set_defaults(func=run, cd_action="reprocess")

    p = subparsers.add_parser("cd-plot", help="CD figure of one or more CD spectrum CSVs")
    p.add_argument("csv", type=Path, nargs="+")
    p.add_argument("--output", type=Path, required=True, help="figure file (.png/.svg/.pdf)")
    p.add_argument("--label", action="append", default=[], help="legend label, repeatable")
    p.add_argument("--mirror", action="store_true",
                   help="R/S mirror-symmetry report of two spectra's g_abs")
    p.add_argument("--delta-a", action="store_true", help="CD panel in ΔA instead of mdeg")
    p.set_defaults(func=run, cd_action="plot")

    p = subparsers.add_parser(
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
    p.set_defaults(func=run, cd_action="calibrate")


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


def _connect_cd(args: argparse.Namespace):
    """Connect as the other instrument commands do, with the simulated bench in its CD
    geometry, and set up counting, HV, A0 and the lamp shutter."""
    import cplscope

    from ..plans.calibrate import calibrate_simulated, prepare
    from ..settings.calibration import Calibration, load_for

    faults = dict(args.fault)
    if args.sim:
        if args.sample and args.sample_file:
            raise _error("give --sample or --sample-file, not both")
        sample = str(args.sample_file) if args.sample_file else (args.sample or "R-Cs4PbBr6")
        inst = cplscope.connect("sim", sample=sample, faults=faults or None, seed=args.seed,
                                bench_options={"geometry": "cd"})
        args.sample_name = sample
    else:
        if faults or args.sample or args.sample_file:
            raise _error("--fault, --sample and --sample-file need --sim")
        inst = cplscope.connect(args.device)
        args.sample_name = "unknown"
    try:
        check_board_limits(inst, args)     # every option the board limits, before anything
        serial = str(inst.info()["serial"])
        if args.calibration is not None:
            inst.calibration = Calibration.load(args.calibration, expected_serial=serial)
        elif args.sim and load_for(serial).is_default:
            print(f"# no calibration stored for the simulated instrument {serial}: calibrating "
                  "A0 and φ0 with its linear and circular polarizer samples (the PEM is the "
                  "same in the CPL and CD light paths)", file=sys.stderr)
            inst.calibration = calibrate_simulated(seed=args.seed)
        prepare(inst, bins=args.bins, periods=args.periods, hv_volts=args.hv)
    except BaseException:
        inst.close()
        raise
    return Session(inst, True)


def _scan(args: argparse.Namespace) -> int:
    from ..plans.cd_scan import cd_scan
    from ..plot.cd import plot_cd
    from ..science.cd import CDCalibration, CDRules

    if args.target_sigma is not None and args.baseline is None:
        raise _error("--target-sigma is σ(g_abs) and needs --baseline (g_abs = ΔA/A); for a "
                     "baseline scan use --dwell or --target-sigma-delta-a")
    cd_cal = None
    if args.cd_calibration is not None:
        try:
            cd_cal = CDCalibration.from_dict(json.loads(args.cd_calibration.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise _error(f"cannot read the CD calibration {args.cd_calibration}: {exc}") \
                from None
    output = args.output or Path("cd.csv")
    status = 0
    with _connect_cd(args) as inst:
        dark = None
        if args.dark_dwell > 0:
            dark = inst.measure_dark(args.dark_dwell)
            inst.open_shutter()
        quiet = getattr(args, "quiet", False)
        try:
            spec = cd_scan(inst, args.start, args.stop, args.step, dwell_s=args.dwell,
                           target_sigma_delta_a=args.target_sigma_delta_a,
                           target_sigma_g_abs=args.target_sigma, max_dwell_s=args.max_dwell,
                           baseline=args.baseline, output=output, progress=not quiet,
                           cd_calibration=cd_cal, dark=dark, sample=args.sample_name,
                           rules=CDRules(max_absorbance=args.max_absorbance),
                           archive=args.archive,
                           overwrite=bool(getattr(args, "overwrite", False)))
        except KeyboardInterrupt:
            print(f"\ninterrupted: the points measured so far are in {output}", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(f"# {len(spec)} points -> {output}")
    if args.plot and len(spec):
        plot_cd(spec, args.plot, labels=[args.sample_name])
        print(f"# figure -> {args.plot}")
    return status


def _reprocess(args: argparse.Namespace) -> int:
    from ..plans.cd_scan import cd_reprocess

    if args.output is None:
        raise _error("give --output, the CD spectrum CSV to write")
    if not args.archive.exists():
        raise _error(f"{args.archive} does not exist: give the archive of a `cplscope cd "
                     "--archive` scan")
    spec = cd_reprocess(args.archive, baseline=args.baseline)
    spec.write_csv(args.output)
    print(f"# {len(spec)} points -> {args.output}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ..data.cd_spectrum import CDSpectrum
    from ..plot.cd import cd_mirror_report, plot_cd

    specs = [CDSpectrum.read_csv(p) for p in args.csv]
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
        args.save.write_text(json.dumps(fit.calibration.to_dict(), indent=2) + "\n",
                             encoding="utf-8")
        print(f"# CD calibration -> {args.save} (use: cplscope cd --cd-calibration "
              f"{args.save})")
    return 0
