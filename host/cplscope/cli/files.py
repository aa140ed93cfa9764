"""The subcommands that work on files: ``reprocess`` (an archive) and ``plot`` (spectrum CSVs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .options import (
    CliError,
    add_check,
    check_archive_input,
    check_input_file,
    int_at_least,
    output_options,
    read_spectrum_csv,
)


def _check_archive_input(args: argparse.Namespace) -> None:
    args.archive = check_archive_input(args.archive, "cplscope scan --archive")
    if args.output is None:
        args.output = args.archive.with_suffix(".reprocessed.csv")


def cmd_reprocess(args: argparse.Namespace) -> int:
    from ..data.sinks import TimeBinsSink
    from ..plans.reprocess import ArchiveKindError, reprocess
    from ..plot.cpl import plot_cpl
    from ..science.regate import GateError
    from .scanning import time_bins_path
    from ..settings.calibration import Calibration, CalibrationMismatch

    cal = Calibration.load(args.calibration) if args.calibration else None
    # a time-bin run's g(t), I(t) and decay fit, as its scan wrote them (not with --gate:
    # the spectrum is then one gate's)
    bins = [] if args.gate is not None else [TimeBinsSink(time_bins_path(args.output),
                                                          args.decay_components)]
    try:
        spec = reprocess(args.archive, cal, force_calibration=args.force_calibration,
                         gate=args.gate, sinks=bins)
    except (ArchiveKindError, CalibrationMismatch, GateError) as exc:
        raise CliError(str(exc).replace("force_calibration=True (--force-calibration)",
                                        "--force-calibration")) from None
    report_recovery(spec, args.archive)
    spec.write_csv(args.output)
    print(f"# {len(spec)} points -> {args.output}")
    note = spec.metadata["reprocessed"].get("gate")
    if note is not None:
        first, last = note["time_bins"]
        print(f"# re-gated: {note['delay_s']:.6g} s to {note['delay_s'] + note['width_s']:.6g} "
              f"s after each pulse (time bins {first}–{last})")
    if bins and bins[0].rows:
        print(f"# g(t), I(t) -> {bins[0].path}; decay fit -> {bins[0].decay_path}")
    if args.plot:
        plot_cpl(spec, args.plot)
        print(f"# figure -> {args.plot}")
    return 0


def report_recovery(spec: Any, archive: Path) -> None:
    """Say where the points came from when the run did not end cleanly, and what a damaged
    archive lost (on stderr, one line each)."""
    note = spec.metadata.get("reprocessed") or {}
    if note.get("from_journal"):
        print(f"# {archive}: the run did not end (it was killed, or is still going): "
              f"{len(spec)} points recovered from its journal; `--resume {archive}` finishes "
              "the scan", file=sys.stderr)
    for line in note.get("lost") or ():
        print(f"# lost: {line}", file=sys.stderr)
    forced = note.get("force_calibration")
    if forced:
        print(f"# the calibration of {forced['calibration_serial']} was applied to a run of "
              f"{forced['instrument_serial']} (--force-calibration; recorded in the "
              "metadata)", file=sys.stderr)


def _check_plot(args: argparse.Namespace) -> None:
    """The files first (what each is, and what `plot` reads), then the options, then where
    the figure goes: --output, else a window where there is a display, else NAME.png next to
    the first CSV."""
    args.spectra = [read_spectrum_csv(p) for p in args.csv]
    if args.label and len(args.label) != len(args.csv):
        raise CliError(f"--label given {len(args.label)} times for {len(args.csv)} CSV "
                       "files: give one label per file, or none")
    if args.mirror and len(args.csv) != 2:
        raise CliError("--mirror needs exactly two spectra (R then S)")
    if args.smooth is not None and (args.smooth < 3 or args.smooth % 2 == 0):
        raise CliError(f"--smooth {args.smooth}: give an odd number of points ≥ 3 (the "
                       "window is centred on each point)")
    args.show = False
    if args.output is None:
        if can_show():
            args.show = True
        else:
            default_figure(args)


def default_figure(args: argparse.Namespace) -> None:
    """``args.output``: NAME.png next to the first of ``args.csv`` (refused when it exists
    and --overwrite was not given)."""
    first = args.csv[0]
    name = "+".join(dict.fromkeys(p.stem for p in args.csv)) + ".png"
    args.output = first.parent / name
    if args.output.exists() and not args.overwrite:
        raise CliError(f"no display to show the figure in, and {args.output} (the "
                       f"figure's default name, next to {first.name}) exists: pass "
                       "--overwrite to replace it, or --output FILE.png")


def can_show() -> bool:
    """Whether matplotlib can open a window here (an interactive backend: a display and a
    GUI toolkit; MPLBACKEND=Agg or a headless machine says no)."""
    from matplotlib import pyplot as plt
    from matplotlib.backends import BackendFilter, backend_registry

    return plt.get_backend().lower() not in backend_registry.list_builtin(
        BackendFilter.NON_INTERACTIVE)


def cmd_plot(args: argparse.Namespace) -> int:
    from ..plot.cpl import mirror_report, plot_cpl

    specs = args.spectra
    labels = args.label or None
    mirror = None
    if args.mirror:
        try:
            mirror = mirror_report(specs[0], specs[1])
        except ValueError as exc:
            raise CliError(f"--mirror: {exc}") from None
        print(mirror.text())
    if args.show:
        from matplotlib import pyplot as plt

        window = plt.figure(num=f"cplscope plot {' '.join(p.name for p in args.csv)}")
        plot_cpl(specs, labels=labels, mirror=mirror or False, smooth_points=args.smooth,
                 figure=window)
        print("# figure in a window (close it to finish; --output FILE.png saves it)")
        plt.show()
        return 0
    plot_cpl(specs, args.output, labels=labels, mirror=mirror or False,
             smooth_points=args.smooth)
    print(f"# figure -> {args.output}")
    return 0


def _gate(text: str) -> tuple[float, float]:
    """``--gate DELAY:WIDTH`` (s) of reprocess."""
    from ..protocol.gating import parse_gate

    try:
        return parse_gate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_reprocess_calibration(args: argparse.Namespace) -> None:
    if args.gate is not None and args.decay_components is not None:
        raise CliError("--decay-components fits the decay of a time-bin run's bins; with "
                       "--gate the spectrum is one gate's: give one or the other")
    if args.force_calibration and args.calibration is None:
        raise CliError("--force-calibration applies a --calibration file: give one")
    if args.calibration is not None:
        check_input_file(args.calibration, "--calibration",
                          "give a calibration file written by `cplscope calibrate`")
        from ..settings.calibration import Calibration

        try:
            Calibration.load(args.calibration)
        except (OSError, ValueError) as exc:
            raise CliError(f"--calibration {args.calibration}: {exc}") from None


def add_parsers(sub: Any) -> None:
    """Add this module's subcommands to ``sub`` (the subparsers of ``cplscope``)."""
    p = sub.add_parser("reprocess", help="recompute a spectrum from a raw archive")
    p.add_argument("archive", type=Path, help="HDF5 raw archive (`cplscope scan --archive`)")
    p.add_argument("--calibration", type=Path, default=None, help="new calibration file")
    p.add_argument("--force-calibration", action="store_true",
                   help="apply a --calibration of another instrument (another serial) anyway; "
                        "the result's metadata records it")
    p.add_argument("--gate", type=_gate, default=None, metavar="DELAY:WIDTH",
                   help="re-gate a time-bin run (--time-bins N) offline: the spectrum through "
                        "the gate from DELAY to DELAY + WIDTH after each pulse (s, as scan's "
                        "--gate), made of the whole time bins it covers; its ends must fall "
                        "on bin edges inside the measured bins")
    p.add_argument("--decay-components", type=int, choices=(1, 2), default=None,
                   help="exponential components of a time-bin run's decay fit (default: the "
                        "scan's)")
    add_check(p, _check_reprocess_calibration)
    output_options(p, csv_required=True, plot=True)
    p.set_defaults(func=cmd_reprocess)
    # the default CSV name follows the archive: set before the output check runs
    p.get_default("checks").insert(0, _check_archive_input)

    p = sub.add_parser("plot", help="CPL figure of one or more spectrum CSVs",
                       description="The CPL figure of spectrum CSVs written by `cplscope scan "
                                   "--output`, their JASCO-style export (--jasco), or plain "
                                   "CSVs with the columns wavelength,g_lum[,sigma_g,"
                                   "intensity]. Without --output it opens a window where "
                                   "there is a display, else it writes NAME.png next to the "
                                   "first CSV. A CD spectrum is plotted with `cplscope "
                                   "cd-plot`.")
    p.add_argument("csv", type=Path, nargs="+",
                   help="spectrum CSV (`cplscope scan --output`), JASCO-style export or "
                        "plain wavelength,g_lum,sigma_g CSV")
    add_check(p, _check_plot)
    output_options(p, figure=True)
    p.add_argument("--label", action="append", default=[], help="legend label, repeatable")
    p.add_argument("--mirror", action="store_true",
                   help="R/S mirror-symmetry report of two spectra")
    p.add_argument("--smooth", type=int_at_least(1), default=None, metavar="POINTS",
                   help="also draw g_lum smoothed over this many points (odd, ≥ 3; the "
                        "figure states the window)")
    p.set_defaults(func=cmd_plot)
