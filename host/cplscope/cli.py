"""The ``cplscope`` command line: scan, point, dark, calibrate, reprocess, plot, info, flash.

Every subcommand that talks to an instrument runs unchanged on a real board (``--device
usb`` or ``usb://SERIAL``) and on the simulated instrument (``--sim --sample NAME``).

Every option is checked before the instrument is touched, in the CLI's own names: numbers by
their argparse types (negative numbers such as ``--target-sigma -1e-4`` parse, and are refused
with the option's name), then the checks each option group registers on its subparser
(:func:`_add_check`) run in :func:`main` before the subcommand. A new option group declares
its options and its check in one function, as :func:`_device_options`,
:func:`_dwell_options`, :func:`_range_options` and :func:`_output_options` do. Mistakes end
with exit status 2 and one message that names the option or file and says what to do; the
only check that needs the instrument is the scan range against the monochromator's, made
right after connecting, before anything is measured.
"""
from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("cplscope")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_SAMPLE = "R-Cs4PbBr6"
DEFAULT_MAX_DWELL_S = 300.0  # = cplscope.measure.DEFAULT_MAX_DWELL_S, for scan and point
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


Check = Callable[[argparse.Namespace], None]


# --- option types: argparse names the option in their messages ----------------------------

def _number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def _positive(unit: str) -> Callable[[str], float]:
    """A type for a number > 0 in ``unit``."""
    def parse(text: str) -> float:
        x = _number(text)
        if not x > 0:
            raise argparse.ArgumentTypeError(f"must be > 0{unit}, got {text}")
        return x
    parse.__name__ = "positive number"
    return parse


def _non_negative(unit: str) -> Callable[[str], float]:
    """A type for a number ≥ 0 in ``unit``."""
    def parse(text: str) -> float:
        x = _number(text)
        if x < 0:
            raise argparse.ArgumentTypeError(f"must be ≥ 0{unit}, got {text}")
        return x
    parse.__name__ = "non-negative number"
    return parse


def _int_at_least(low: int) -> Callable[[str], int]:
    """A type for an integer ≥ ``low``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {low}, got {text}")
        return n
    parse.__name__ = "integer"
    return parse


def _bins(text: str) -> int:
    n = _int_at_least(2)(text)
    if n > 64 or n & (n - 1):
        raise argparse.ArgumentTypeError(f"must be a power of 2 from 2 to 64, got {text}")
    return n


def _duration(text: str) -> float:
    from .planning import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0 s, got {text!r}")
    return value


def _fault(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--fault takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault {key}: {value!r} is not a number") from None


# --- checks that run before the subcommand ------------------------------------------------

def _add_check(p: argparse.ArgumentParser, check: Check) -> None:
    """Run ``check(args)`` before this subcommand (in the order added); it raises
    :class:`CliError` on a mistake."""
    checks = p.get_default("checks")
    if checks is None:
        checks = []
        p.set_defaults(checks=checks)
    if check not in checks:
        checks.append(check)


def _run_checks(args: argparse.Namespace) -> None:
    for check in getattr(args, "checks", None) or ():
        check(args)


# --- instrument options ------------------------------------------------------------------

def _device_options(p: argparse.ArgumentParser) -> None:
    """The options of every subcommand that talks to an instrument, and their check."""
    g = p.add_argument_group("instrument")
    g.add_argument("--sim", action="store_true",
                   help="use the simulated instrument (bench + firmware in MicroPython)")
    g.add_argument("--device", default="usb",
                   help="real board: 'usb' (first found) or 'usb://SERIAL' (default: usb)")
    g.add_argument("--sample", default=None,
                   help=f"simulated sample name (see `cplscope samples`; any letter case); "
                        f"default {DEFAULT_SAMPLE}")
    g.add_argument("--sample-file", type=Path, default=None,
                   help="simulated sample from a JSON file (docs/simulator.md)")
    g.add_argument("--fault", type=_fault, action="append", default=[], metavar="KEY=VALUE",
                   help="simulated fault, repeatable: corrupt, drop, stall (fractions), "
                        "disconnect_at, reconnect_after (instrument s)")
    g.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="seed of the simulated bench (0)")
    g.add_argument("--bins", type=_bins, default=16, help="phase bins B (2…64, power of 2)")
    g.add_argument("--periods", type=_int_at_least(1), default=10000,
                   help="PEM periods per frame K (default 10000: 0.2 s at 50 kHz)")
    g.add_argument("--hv", type=_non_negative(" V"), default=800.0,
                   help="PMT high voltage, V (800)")
    g.add_argument("--calibration", type=Path, default=None,
                   help="calibration file (default: the one stored for the board's serial)")
    g.add_argument("--retardation", type=_positive(" rad"), default=None, metavar="RAD",
                   help="PEM peak retardation A0, rad (default for counting: the A0 that "
                        "minimizes σ(g) per photon for --bins, 1.907 rad at 16 bins)")
    g.add_argument("--linear-rate", type=_positive(" counts/s"), default=None, metavar="CPS",
                   help="counting head's linear range for this run: points above it are "
                        "kept and flagged nonlinear (default: the instrument's, "
                        "`cplscope limits`)")
    g.add_argument("--max-rate", type=_positive(" counts/s"), default=None, metavar="CPS",
                   help="damage limit for this run: the board's guard cuts the HV above it "
                        "(default: the instrument's, `cplscope limits`)")
    _add_check(p, _check_instrument)


def _check_instrument(args: argparse.Namespace) -> None:
    """Sample, sample file, faults, device address and calibration file; sets
    ``args.sample_name`` (a built-in sample's canonical name, or the sample file)."""
    faults = dict(args.fault)
    if not args.sim:
        used = [opt for opt, value in (("--sample", args.sample),
                                       ("--sample-file", args.sample_file),
                                       ("--fault", faults)) if value]
        if used:
            raise CliError(f"{', '.join(used)} need --sim (the simulated instrument); a real "
                           "board is measured with --device")
        if not (args.device == "usb" or (args.device.startswith("usb://")
                                         and len(args.device) > len("usb://"))):
            raise CliError(f"--device {args.device!r}: give 'usb' (the first board found) or "
                           "'usb://SERIAL' (`cplscope info` shows a board's serial)")
        args.sample_name = getattr(args, "label", None) or "unknown"
    else:
        if args.sample and args.sample_file:
            raise CliError("give --sample or --sample-file, not both")
        if args.sample_file is not None:
            args.sample_name = _checked_sample_file(args.sample_file)
        else:
            args.sample = _canonical_sample(args.sample or DEFAULT_SAMPLE)
            args.sample_name = args.sample
        from .sim.faults import Faults

        try:
            Faults().updated(faults)
        except ValueError as exc:
            raise CliError(f"--fault: {exc}") from None
    if getattr(args, "retardation", None) is not None and args.retardation > math.pi:
        raise CliError(f"--retardation {args.retardation:g}: the peak retardation A0 must be "
                       "in (0, π] rad (π/2 = 1.571 is quarter-wave)")
    linear, damage = getattr(args, "linear_rate", None), getattr(args, "max_rate", None)
    if linear is not None and damage is not None and damage < linear:
        raise CliError(f"--max-rate {damage:g} is below --linear-rate {linear:g}: the damage "
                       "limit must be at or above the linear range")
    if args.calibration is not None:
        _check_input_file(args.calibration, "--calibration",
                          "give a file written by `cplscope calibrate`, or leave the option "
                          "out to use the calibration stored for the instrument")
        from .calibration import Calibration

        try:
            Calibration.load(args.calibration)
        except (OSError, ValueError) as exc:
            raise CliError(f"--calibration {args.calibration}: {exc}") from None


def _canonical_sample(name: str) -> str:
    """The library's spelling of a simulated sample name (any letter case)."""
    from .sim.samples import list_samples

    names = list_samples()
    folded = {n.casefold(): n for n in names}
    if name.casefold() in folded:
        return folded[name.casefold()]
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    hint = f"did you mean {folded[close[0]]}? " if close else ""
    raise CliError(f"--sample {name!r} is not a simulated sample; {hint}`cplscope samples` "
                   "lists them, and --sample-file FILE.json reads your own")


def _checked_sample_file(path: Path) -> str:
    _check_input_file(path, "--sample-file",
                      "give the path of a sample JSON file (format: docs/simulator.md)")
    from .sim.samples import sample_from_file

    try:
        sample_from_file(path)
    except ValueError as exc:
        raise CliError(f"--sample-file: {exc}; the format is in docs/simulator.md") from None
    return str(path)


def _check_input_file(path: Path, option: str, what_to_do: str) -> None:
    """A readable file, or a CliError naming ``option`` (may be empty) and the file."""
    label = f"{option} {path}" if option else str(path)
    if not path.exists():
        raise CliError(f"{label}: no such file; {what_to_do}")
    if not path.is_file():
        raise CliError(f"{label} is not a file; {what_to_do}")
    if not os.access(path, os.R_OK):
        raise CliError(f"{label}: no permission to read it; {what_to_do}")


class _Session:
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


def _connect(args: argparse.Namespace, *, ready: bool = True):
    """Connect; check the wavelengths the command will visit (``args.wavelengths_nm``)
    against the monochromator's range before anything is measured; with ``ready`` also set
    up counting, HV and A0 and open the shutter (an inspecting command such as ``info``
    leaves the instrument as it is)."""
    import cplscope
    from .calibration import Calibration, load_for

    if not hasattr(args, "sample_name"):  # called without main()'s checks
        _check_instrument(args)
    faults = dict(args.fault)
    if args.sim:
        sample = str(args.sample_file) if args.sample_file else args.sample
        inst = cplscope.connect("sim", sample=sample, faults=faults or None, seed=args.seed)
    else:
        inst = cplscope.connect(args.device)
    try:
        from .calibrate_run import _apply_mono_config

        _apply_mono_config(inst)
        _apply_rate_limits(inst, args)
        wanted = getattr(args, "wavelengths_nm", None)
        if wanted is not None and len(wanted):
            _check_monochromator_range(inst, wanted, getattr(args, "wavelength_options",
                                                             "--start/--stop"))
        serial = str(inst.info()["serial"])
        if args.calibration is not None:
            inst.calibration = Calibration.load(args.calibration, expected_serial=serial)
        elif args.sim and load_for(serial).is_default and getattr(args, "auto_calibrate", True):
            from .calibrate_run import calibrate_simulated

            print(f"# no calibration stored for the simulated instrument {serial}: calibrating "
                  "it with its linear and circular polarizer samples", file=sys.stderr)
            inst.calibration = calibrate_simulated(seed=args.seed)
        if ready:
            from .calibrate_run import prepare

            prepare(inst, bins=args.bins, periods=args.periods, hv_volts=args.hv,
                    a0_rad=getattr(args, "retardation", None))
    except BaseException:
        inst.close()
        raise
    return _Session(inst, ready)


def _apply_rate_limits(inst, args: argparse.Namespace) -> None:
    """--linear-rate / --max-rate for this run (not stored; `cplscope limits` stores)."""
    linear, damage = getattr(args, "linear_rate", None), getattr(args, "max_rate", None)
    if linear is None and damage is None:
        return
    try:
        inst.set_rate_limits(linear_cps=linear, damage_cps=damage, save=False)
    except ValueError as exc:
        raise CliError(f"--linear-rate/--max-rate: {exc}") from None


def _check_monochromator_range(inst, wavelengths_nm: Sequence[float], options: str) -> None:
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


def _print_point(point) -> None:
    r = point.result if hasattr(point, "result") else point
    flags = ";".join(r.flags) or "-"
    print(f"{r.wavelength_nm:8.2f} nm  I = {r.intensity:11.4g} cps  g = {r.g_lum:+.3e} ± "
          f"{r.sigma_g:.1e}  u = {r.linear:+.3f}  χ² = {r.chi2_red:.2f}  "
          f"{r.dwell_s:7.1f} s  {flags}")


# --- dwell and wavelength options ---------------------------------------------------------

def _dwell_options(p: argparse.ArgumentParser) -> None:
    """--target-sigma / --dwell (one of them) with --max-dwell and the dark measurement."""
    p.add_argument("--target-sigma", type=_positive(""), default=None, metavar="SIGMA_G",
                   help="adaptive dwell: count each point until σ(g_lum) ≤ this")
    p.add_argument("--dwell", type=_positive(" s"), default=None,
                   help="fixed dwell per point, s")
    p.add_argument("--max-dwell", type=_positive(" s"), default=DEFAULT_MAX_DWELL_S,
                   help=f"maximum dwell per point with --target-sigma, s "
                        f"({DEFAULT_MAX_DWELL_S:g})")
    p.add_argument("--no-dark", action="store_true", help="do not measure dark counts")
    p.add_argument("--dark-dwell", type=_positive(" s"), default=10.0,
                   help="dark measurement, s (10)")
    _add_check(p, _check_dwell)


def _check_dwell(args: argparse.Namespace) -> None:
    if getattr(args, "resume", None) is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("dwell", "target_sigma", "time_budget")
                 if getattr(args, n, None) is not None]
        if given:
            raise CliError(f"--resume continues the scan with the settings in its archive: "
                           f"drop {', '.join(given)}")
        return
    budget = getattr(args, "time_budget", None)
    if budget is not None:
        if args.dwell is not None:
            raise CliError("give --time-budget or --dwell, not both (a budget plans the dwell "
                           "of every point)")
        if getattr(args, "accumulations", 1) != 1:
            raise CliError("--time-budget plans one pass over the band: drop --accumulations")
    elif (args.dwell is None) == (args.target_sigma is None):
        raise CliError("give --target-sigma (adaptive dwell), --dwell (s per point) or, for "
                       "scan, --time-budget, one of them")
    if getattr(args, "skip_hopeless", False) and args.target_sigma is None:
        raise CliError("--skip-hopeless needs --target-sigma (a point is hopeless when it "
                       "cannot reach the target within --max-dwell)")
    if args.target_sigma is not None and args.target_sigma >= 2:
        raise CliError(f"--target-sigma {args.target_sigma:g}: σ(g_lum) targets are below 2 "
                       "(g_lum lies in −2…+2; typical targets 1e-4…1e-3)")


def _range_options(p: argparse.ArgumentParser) -> None:
    """--start, --stop, --step of a wavelength scan (nm)."""
    p.add_argument("--start", type=_positive(" nm"), default=None,
                   help="first wavelength, nm (required)")
    p.add_argument("--stop", type=_positive(" nm"), default=None,
                   help="last wavelength, nm (required)")
    p.add_argument("--step", type=_positive(" nm"), default=None, help="step, nm (required)")
    _add_check(p, _check_range)


def _check_range(args: argparse.Namespace) -> None:
    """The scan's wavelengths (``args.wavelengths_nm``), checked against the monochromator's
    range once connected."""
    resume = getattr(args, "resume", None)
    if resume is not None:
        given = [f"--{n}" for n in ("start", "stop", "step") if getattr(args, n) is not None]
        if given:
            raise CliError(f"--resume continues the scan over the wavelengths in its archive: "
                           f"drop {', '.join(given)}")
        _check_input_file(resume, "--resume", "give the archive (--archive) of the "
                          "interrupted scan")
        if not _is_hdf5(resume):
            raise CliError(f"--resume {resume}: not an HDF5 archive; give the file the "
                           "interrupted scan wrote with --archive")
        from .archive import Archive
        from .scan import scan_wavelengths

        try:
            with Archive.open(resume) as arc:
                st = arc.metadata.get("settings", {})
                args.wavelengths_nm = scan_wavelengths(st["start_nm"], st["stop_nm"],
                                                       st["step_nm"])
                args.resume_settings = dict(st)
                args.resume_date = arc.metadata.get("date")
        except (OSError, ValueError, KeyError) as exc:
            raise CliError(f"--resume {resume}: {exc}") from None
        args.wavelength_options = "--resume"
        return
    missing = [f"--{n}" for n in ("start", "stop", "step") if getattr(args, n) is None]
    if missing:
        raise CliError(f"give {', '.join(missing)} (nm), e.g. --start 400 --stop 560 --step 2")
    from .scan import scan_wavelengths

    args.wavelengths_nm = scan_wavelengths(args.start, args.stop, args.step)
    args.wavelength_options = "--start/--stop"


# --- output options: one overwrite policy for every file written --------------------------

def _output_options(p: argparse.ArgumentParser, *, csv: str | None = None,
                    csv_required: bool = False, archive: bool = False, plot: bool = False,
                    figure_required: bool = False, jasco: bool = False) -> None:
    """The files a subcommand writes, and ``--overwrite``. ``csv`` is the --output CSV's
    default name; ``figure_required`` makes --output the figure (``cplscope plot``)."""
    outputs: list[tuple[str, str, tuple[str, ...]]] = []
    if figure_required:
        p.add_argument("--output", type=Path, required=True,
                       help="figure file (.png, .svg, .pdf)")
        outputs.append(("output", "--output", FIGURE_SUFFIXES))
    elif csv is not None or csv_required:
        default = f" ({csv})" if csv else ""
        p.add_argument("--output", type=Path, default=None, help=f"spectrum CSV file{default}")
        outputs.append(("output", "--output", ()))
        p.set_defaults(output_default=csv)
    if archive:
        p.add_argument("--archive", type=Path, default=None,
                       help="HDF5 raw archive of all frames (.h5)")
        outputs.append(("archive", "--archive", ()))
    if plot:
        p.add_argument("--plot", type=Path, default=None, help="figure file (.png, .svg, .pdf)")
        outputs.append(("plot", "--plot", FIGURE_SUFFIXES))
    if jasco:
        p.add_argument("--jasco", type=Path, default=None, help="also export JASCO-style CSV")
        outputs.append(("jasco", "--jasco", ()))
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that exist (otherwise they are refused)")
    p.set_defaults(outputs=outputs)
    _add_check(p, _check_outputs)


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output: a writable folder that exists, a known suffix where one is needed, not
    an existing file unless --overwrite, and no two outputs the same file."""
    seen: dict[Path, str] = {}
    for dest, option, suffixes in getattr(args, "outputs", ()):
        path = getattr(args, dest)
        if path is None and dest == "output" and getattr(args, "output_default", None):
            path = Path(args.output_default)
            setattr(args, dest, path)
        if path is None:
            continue
        resume = getattr(args, "resume", None)
        if resume is not None and dest == "archive":
            raise CliError("--resume appends to its own archive: drop --archive")
        same_run = (resume is not None and dest == "output" and path.exists()
                    and _csv_date(path) == getattr(args, "resume_date", None))
        _check_output_path(path, option, suffixes, overwrite=args.overwrite or same_run)
        key = path.resolve()
        if key in seen:
            raise CliError(f"{seen[key]} and {option} are the same file {path}; give each "
                           "output its own name")
        seen[key] = option


def _csv_date(path: Path) -> Any:
    """The run date of a spectrum CSV (None when it is not one)."""
    try:
        from .spectrum import Spectrum
        return Spectrum.read_csv(path).metadata.get("date")
    except (OSError, ValueError):
        return None


def _check_output_path(path: Path, option: str, suffixes: Sequence[str], *,
                       overwrite: bool) -> None:
    if suffixes and path.suffix.lower() not in suffixes:
        raise CliError(f"{option} {path}: the figure format follows the suffix; use a name "
                       f"ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise CliError(f"{option} {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise CliError(f"{option} {path}: the folder {folder} does not exist; create it "
                       f"(mkdir -p {folder}) or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{option} {path}: no permission to write in {folder}; choose another "
                       "folder")
    if path.exists() and not overwrite:
        raise CliError(f"{option} {path} exists; pass --overwrite to replace it, or choose "
                       "another name")


# --- input files of reprocess and plot -----------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


def _read_spectrum_csv(path: Path):
    """A spectrum CSV written by ``cplscope scan``, or a CliError naming the file."""
    from .spectrum import Spectrum

    _check_input_file(path, "", "give spectrum CSV files written by `cplscope scan "
                      "--output`")
    if _is_hdf5(path):
        raise CliError(f"{path} is an HDF5 raw archive, not a spectrum CSV: plot the CSV "
                       f"that `cplscope scan --output` wrote, or recompute the spectrum with "
                       f"`cplscope reprocess {path} --plot FIGURE.png`")
    try:
        return Spectrum.read_csv(path)
    except UnicodeDecodeError:
        raise CliError(f"{path} is not a text file; `cplscope plot` expects spectrum CSV "
                       "files written by `cplscope scan --output`") from None
    except ValueError as exc:
        raise CliError(f"{exc}; `cplscope plot` expects spectrum CSV files written by "
                       "`cplscope scan --output`") from None


# --- subcommands -------------------------------------------------------------------------

def cmd_scan(args: argparse.Namespace) -> int:
    from .documents import PlotSink
    from .export import write_jasco_csv
    from .scan import ScanInterrupted

    output = args.output
    if args.resume is not None:
        rs = getattr(args, "resume_settings", {})
        for key, opt in (("bins", "bins"), ("periods", "periods"), ("hv_volts", "hv")):
            if rs.get(key) is not None:
                setattr(args, opt, rs[key])
        if rs.get("a0_commanded_rad") is not None and args.retardation is None:
            args.retardation = None      # the calibration's scale turns it into the command
    with _connect(args) as inst:
        def live(point, i, acc):
            if args.verbose:
                _print_point(point)

        def show_survey(survey):
            if not args.quiet:
                print(survey.summary(), file=sys.stderr)

        plot_sinks = ([PlotSink(args.plot, labels=[args.sample_name])]
                      if args.plot is not None else [])
        status = 0
        try:
            if args.resume is not None:
                spec = inst.resume(args.resume, output=output, progress=not args.quiet,
                                   callback=live, sinks=plot_sinks)
            else:
                spec = inst.scan(args.start, args.stop, args.step, dwell_s=args.dwell,
                                 target_sigma=args.target_sigma, max_dwell_s=args.max_dwell,
                                 accumulations=args.accumulations, dark=not args.no_dark,
                                 dark_dwell_s=args.dark_dwell, callback=live, output=output,
                                 archive=args.archive, progress=not args.quiet,
                                 sample=args.sample_name, overwrite=args.overwrite,
                                 time_budget_s=args.time_budget,
                                 survey=args.survey if args.survey is not None else False,
                                 survey_callback=show_survey,
                                 skip_hopeless=args.skip_hopeless,
                                 settings={"seed": args.seed if args.sim else None},
                                 sinks=plot_sinks)
        except ScanInterrupted as exc:
            spec = exc.spectrum
            print(f"\ninterrupted: {len(spec)} points kept in {output}", file=sys.stderr)
            status = EXIT_INTERRUPTED
        health = inst.health()
    print(f"# {len(spec)} points -> {output}; frames {health.frames}, rejected "
          f"{health.rejected}, missing {health.missing}, reconnects {health.reconnects}")
    if args.plot and len(spec):
        print(f"# figure -> {args.plot}")
    if args.jasco and len(spec):
        write_jasco_csv(spec, args.jasco)
        print(f"# JASCO-style export -> {args.jasco}")
    return status


def _check_point(args: argparse.Namespace) -> None:
    args.wavelengths_nm = [args.wavelength]
    args.wavelength_options = "--wavelength"


def cmd_point(args: argparse.Namespace) -> int:
    with _connect(args) as inst:
        inst.move_to(args.wavelength)
        dark = None if args.no_dark else inst.measure_dark(args.dark_dwell)
        point = inst.measure(dwell_s=args.dwell, target_sigma=args.target_sigma,
                             max_dwell_s=args.max_dwell, dark=dark)
    _print_point(point)
    if args.json:
        print(json.dumps(point.result.as_dict(), default=float))
    return 0


def cmd_dark(args: argparse.Namespace) -> int:
    with _connect(args) as inst:
        dark = inst.measure_dark(args.dwell)
    print(f"dark: {dark.total_rate_cps:.2f} ± {math.sqrt((dark.sigma_rate_cps**2).sum()):.2f} "
          f"cps over {dark.dwell_s:.1f} s")
    print("per bin (cps): " + " ".join(f"{r:.3g}" for r in dark.rate_cps))
    return 0


def _check_blank(args: argparse.Namespace) -> None:
    if args.blank is not None:
        _check_input_file(args.blank, "--blank", "give the spectrum CSV of an achiral "
                          "reference measured with `cplscope scan --output`")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate_run import calibrate, calibrate_simulated, store_blank
    from .spectrum import Spectrum

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
    if args.sim:
        cal = calibrate_simulated(seed=args.seed, dwell_s=args.dwell)
    else:
        args.auto_calibrate = False
        with _connect(args) as inst:
            input("Put the linear polarizer at +45° in the beam, then press Enter ")
            cal = calibrate(inst, dwell_s=args.dwell, wavelength_nm=args.wavelength,
                            reference_sign=args.reference_sign, dead_time_s=args.dead_time,
                            swap_sample=lambda msg: input(msg + ", then press Enter "))
    print(json.dumps(cal.to_dict(), indent=1))
    return 0


def _check_archive_input(args: argparse.Namespace) -> None:
    _check_input_file(args.archive, "", "give the HDF5 raw archive that `cplscope scan "
                      "--archive` wrote")
    if not _is_hdf5(args.archive):
        raise CliError(f"{args.archive} is not an HDF5 raw archive; give the file that "
                       "`cplscope scan --archive` wrote (a spectrum CSV is plotted with "
                       "`cplscope plot`)")
    if args.output is None:
        args.output = args.archive.with_suffix(".reprocessed.csv")


def cmd_reprocess(args: argparse.Namespace) -> int:
    from .archive import reprocess
    from .calibration import Calibration
    from .plot import plot_cpl

    cal = Calibration.load(args.calibration) if args.calibration else None
    spec = reprocess(args.archive, cal)
    spec.write_csv(args.output)
    print(f"# {len(spec)} points -> {args.output}")
    if args.plot:
        plot_cpl(spec, args.plot)
        print(f"# figure -> {args.plot}")
    return 0


def _check_plot(args: argparse.Namespace) -> None:
    if args.label and len(args.label) != len(args.csv):
        raise CliError(f"--label given {len(args.label)} times for {len(args.csv)} CSV "
                       "files: give one label per file, or none")
    if args.mirror and len(args.csv) != 2:
        raise CliError("--mirror needs exactly two spectra (R then S)")
    if args.smooth is not None and (args.smooth < 3 or args.smooth % 2 == 0):
        raise CliError(f"--smooth {args.smooth}: give an odd number of points ≥ 3 (the "
                       "window is centred on each point)")
    args.spectra = [_read_spectrum_csv(p) for p in args.csv]


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import mirror_report, plot_cpl

    specs = args.spectra
    labels = args.label or None
    mirror = None
    if args.mirror:
        try:
            mirror = mirror_report(specs[0], specs[1])
        except ValueError as exc:
            raise CliError(f"--mirror: {exc}") from None
        print(mirror.text())
    plot_cpl(specs, args.output, labels=labels, mirror=mirror or False,
             smooth_points=args.smooth)
    print(f"# figure -> {args.output}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    args.auto_calibrate = False
    with _connect(args, ready=False) as inst:
        info = inst.info()
        out = {"instrument": info, "status": inst.status(),
               "calibration": inst.calibration.to_dict(),
               "usb": {"idVendor": f"{inst.device.idVendor:04x}",
                       "idProduct": f"{inst.device.idProduct:04x}",
                       "serial_number": inst.device.serial_number},
               "stream": inst.health().as_dict()}
    print(json.dumps(out, indent=1, default=str))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from .sim.samples import list_samples

    for name in list_samples():
        print(name)
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    """Show the instrument's stored count-rate limits, or store new ones."""
    from .limits import limits_path, save_limits

    args.auto_calibrate = False
    with _connect(args, ready=False) as inst:
        serial = str(inst.info()["serial"])
        limits = inst.rate_limits
        if args.linear_rate is not None or args.max_rate is not None:
            path = save_limits(serial, limits)
            print(f"# limits of {serial} stored in {path}")
        else:
            print(f"# limits of {serial} ({limits_path(serial)})")
    print(f"linear range  {limits.linear_cps:.4g} counts/s  (points above: kept, flagged "
          "nonlinear)")
    print(f"damage limit  {limits.damage_cps:.4g} counts/s  (the board's guard cuts the HV)")
    return 0


def cmd_mono(args: argparse.Namespace) -> int:
    """Show the monochromator settings, or store new ones for this instrument."""
    from .mono_config import MONO_KEYS, mono_config_path, save_mono_config

    given = {k: getattr(args, k) for k in MONO_KEYS if getattr(args, k) is not None}
    args.auto_calibrate = False
    with _connect(args, ready=False) as inst:
        serial = str(inst.info()["serial"])
        try:
            config = inst.configure_monochromator(**given)   # the board validates them
        except Exception as exc:
            raise CliError(f"the monochromator refused {given}: {exc}") from None
        if given:
            path = save_mono_config(serial, given)
            print(f"# monochromator settings of {serial} stored in {path}; every command "
                  "sends them before homing")
        else:
            print(f"# monochromator settings of {serial} ({mono_config_path(serial)})")
    for key, unit in MONO_KEYS.items():
        if key in config:
            print(f"{key:15s} {config[key]:g} {unit}")
    return 0


def cmd_udev_rule(args: argparse.Namespace) -> int:
    from .udev import rules_text

    sys.stdout.write(rules_text())
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    """Update the board's firmware (:mod:`cplscope.flash`)."""
    import cplscope

    from .flash import FlashError, flash

    def open_instrument():
        return cplscope.connect(args.device)

    try:
        flash(open_instrument=None if args.repl_only else open_instrument, port=args.port,
              usb_device_lib=Path(args.usb_device_lib) if args.usb_device_lib else None,
              wait_s=args.wait)
    except FlashError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_hv_model(args: argparse.Namespace) -> int:
    """Show the instrument's stored HV model, or store and send a new one."""
    from .board_settings import HvModel, hv_model_path, load_hv_model, save_hv_model
    from .calibration import CalibrationError

    with _connect(args, ready=False) as inst:
        serial = str(inst.info()["serial"])
        if args.kind is None:
            model = load_hv_model(serial)
            print(f"# HV model of {serial} ({hv_model_path(serial)})")
        else:
            try:
                model = HvModel(kind=args.kind, max_volts=args.max_volts,
                                min_volts=args.min_volts,
                                volts_per_control_v=args.volts_per_control_v,
                                monitor=args.monitor, settle_ms=args.settle_ms)
            except CalibrationError as exc:
                raise CliError(str(exc)) from None
            result = inst.configure_hv_model(**model.args())
            path = save_hv_model(serial, model)
            print(f"# HV model of {serial} stored in {path}; the board has: {result}")
    for k, v in model.args().items():
        print(f"{k}  {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Estimator demo on generated photon counts of a Gaussian band with constant g_lum."""
    from .demod import estimate
    from .demod.bins import bin_layout

    rng = np.random.default_rng(args.seed)
    a0, phi0, n_bins = np.pi / 2, 0.3, args.bins
    lay = bin_layout(n_bins, a0, phi0)
    frame_time = 0.01
    n_frames = int(round(args.dwell / frame_time))
    print(f"# estimator demo: g_lum = {args.g:+.1e}, 438 nm band, peak {args.rate:.2g} cps, "
          f"B = {n_bins}, {args.dwell:g} s/point")
    for wl in np.arange(410.0, 468.0, 4.0):
        rate = args.rate * np.exp(-0.5 * ((wl - 438.0) / (18.0 / 2.3548)) ** 2)
        mu = rate * frame_time * (lay.w + 0.5 * args.g * lay.s) + 20.0 * frame_time / n_bins
        e = estimate(rng.poisson(mu, size=(n_frames, n_bins)), a0, phase_offset=phi0,
                     dark=20.0 * frame_time / n_bins)
        print(f"{wl:8.1f} nm  g = {e.g_lum:+.2e} ± {e.sigma_g:.1e}  χ² = {e.chi2_red:.3f}")
    return 0


# --- parser ------------------------------------------------------------------------------

def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-v and -q, accepted before and after the subcommand (a subcommand's copy leaves
    the value given before it alone unless given itself)."""
    default: Any = False if top else argparse.SUPPRESS
    if "--verbose" not in p._option_string_actions:
        p.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="print every point")
    if "--quiet" not in p._option_string_actions:
        p.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cplscope", description="Circularly polarized luminescence spectrometer control. "
        "Add --sim to any instrument command to use the simulated instrument.")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("scan", help="measure a g_lum spectrum")
    _device_options(p)
    _range_options(p)
    _dwell_options(p)
    p.add_argument("--accumulations", type=_int_at_least(1), default=1,
                   help="repeated scans, averaged (1)")
    g = p.add_argument_group("planning")
    g.add_argument("--time-budget", type=_duration, default=None, metavar="DURATION",
                   help="counting time of the whole scan (30min, 2h, 1h30m, 900s): a survey, "
                        "then the time goes where it lowers Σσ(g)² most; no-emission points "
                        "get only the survey")
    g.add_argument("--survey", type=_positive(" s"), nargs="?", const=1.0, default=None,
                   metavar="SECONDS",
                   help="a quick pass first (1 s per point, or SECONDS) that predicts "
                        "nonlinear and empty points and the scan's duration; its frames start "
                        "every point")
    g.add_argument("--skip-hopeless", action="store_true",
                   help="with --target-sigma: stop a point as soon as it cannot reach the "
                        "target within --max-dwell (flag hopeless)")
    g.add_argument("--resume", type=Path, default=None, metavar="ARCHIVE",
                   help="continue an interrupted scan from its --archive (its settings, "
                        "calibration and darks; the points it has are kept)")
    _output_options(p, csv="spectrum.csv", archive=True, plot=True, jasco=True)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("point", help="measure g_lum at one wavelength")
    _device_options(p)
    p.add_argument("--wavelength", type=_positive(" nm"), required=True, help="nm")
    _dwell_options(p)
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    _add_check(p, _check_point)
    p.set_defaults(func=cmd_point)

    p = sub.add_parser("dark", help="measure dark counts (shutter closed)")
    _device_options(p)
    p.add_argument("--dwell", type=_positive(" s"), default=10.0, help="s (10)")
    p.set_defaults(func=cmd_dark)

    p = sub.add_parser("calibrate", help="A0, φ0 and handedness; stored per instrument")
    _device_options(p)
    p.add_argument("--dwell", type=_positive(" s"), default=20.0, help="s per step (20)")
    p.add_argument("--wavelength", type=_positive(" nm"), default=500.0, help="nm (500)")
    p.add_argument("--reference-sign", type=int, choices=(1, -1), default=1,
                   help="sign of the handedness reference's g (+1: left-circular polarizer)")
    p.add_argument("--dead-time", type=_non_negative(" s"), default=None,
                   help="counting head dead time from its datasheet, s (e.g. 18e-9)")
    p.add_argument("--blank", type=Path, default=None, metavar="CSV",
                   help="store this achiral reference's spectrum as the blank (baseline) that "
                        "scans of the same instrument subtract from g")
    _add_check(p, _check_blank)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("reprocess", help="recompute a spectrum from a raw archive")
    p.add_argument("archive", type=Path, help="HDF5 raw archive (`cplscope scan --archive`)")
    p.add_argument("--calibration", type=Path, default=None, help="new calibration file")
    _add_check(p, _check_reprocess_calibration)
    _output_options(p, csv_required=True, plot=True)
    p.set_defaults(func=cmd_reprocess)
    # the default CSV name follows the archive: set before the output check runs
    p.get_default("checks").insert(0, _check_archive_input)

    p = sub.add_parser("plot", help="CPL figure of one or more spectrum CSVs")
    p.add_argument("csv", type=Path, nargs="+", help="spectrum CSV (`cplscope scan --output`)")
    _output_options(p, figure_required=True)
    p.add_argument("--label", action="append", default=[], help="legend label, repeatable")
    p.add_argument("--mirror", action="store_true",
                   help="R/S mirror-symmetry report of two spectra")
    p.add_argument("--smooth", type=_int_at_least(1), default=None, metavar="POINTS",
                   help="also draw g_lum smoothed over this many points (odd, ≥ 3; the "
                        "figure states the window)")
    _add_check(p, _check_plot)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("info", help="identify the board, status, calibration, stream health")
    _device_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("limits", help="the counting head's linear-range and damage count "
                       "rates, stored per instrument (give --linear-rate/--max-rate to set)")
    _device_options(p)
    p.set_defaults(func=cmd_limits)

    p = sub.add_parser("mono", help="the monochromator's settings, stored per instrument")
    _device_options(p)
    p.add_argument("--steps-per-nm", type=_positive(" steps/nm"), default=None)
    p.add_argument("--home-nm", type=_non_negative(" nm"), default=None,
                   help="wavelength at the home switch, nm")
    p.add_argument("--backlash-steps", type=_int_at_least(0), default=None)
    p.add_argument("--min-nm", type=_non_negative(" nm"), default=None)
    p.add_argument("--max-nm", type=_positive(" nm"), default=None)
    p.set_defaults(func=cmd_mono)

    p = sub.add_parser("samples", help="list the simulated samples")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("udev-rule", help="print a Linux udev rule that lets users open the "
                       "board (save it under /etc/udev/rules.d/)")
    p.set_defaults(func=cmd_udev_rule)

    p = sub.add_parser("flash", help="update the board's firmware: maintenance mode, copy, "
                       "verify the SHA-256 of every file, restart (docs/build.md)")
    p.add_argument("--device", default="usb",
                   help="the running board: 'usb' (first found) or 'usb://SERIAL'")
    p.add_argument("--port", default=None, help="serial port of the board's REPL (auto)")
    p.add_argument("--usb-device-lib", default=None, metavar="PATH",
                   help="a micropython-lib checkout to copy usb-device from (default: mip "
                   "install from the network)")
    p.add_argument("--repl-only", action="store_true",
                   help="do not use the vendor interface: enter maintenance from the REPL")
    p.add_argument("--wait", type=_positive(" s"), default=30.0,
                   help="s to wait for the board after each restart (default 30)")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("hv-model", help="the detector's HV model (supply, module, "
                       "counting_head), stored per instrument")
    _device_options(p)
    p.add_argument("kind", nargs="?", choices=("supply", "module", "counting_head"),
                   default=None, help="store and send this kind (default: show the stored one)")
    p.add_argument("--max-volts", type=_positive(" V"), default=None)
    p.add_argument("--min-volts", type=_non_negative(" V"), default=None)
    p.add_argument("--volts-per-control-v", type=_positive(" V/V"), default=None)
    p.add_argument("--monitor", action=argparse.BooleanOptionalAction, default=None,
                   help="an HV monitor is wired to GP27 (ADC1)")
    p.add_argument("--settle-ms", type=_int_at_least(0), default=None)
    p.set_defaults(func=cmd_hv_model)

    p = sub.add_parser("demo", help="the g_lum estimator on generated photon counts")
    p.add_argument("--g", type=_number, default=6e-4)
    p.add_argument("--rate", type=_positive(" cps"), default=2e6, help="peak count rate, cps")
    p.add_argument("--dwell", type=_positive(" s"), default=300.0, help="s per point")
    p.add_argument("--bins", type=_bins, default=16)
    p.add_argument("--seed", type=_int_at_least(0), default=1)
    p.set_defaults(func=cmd_demo)

    _add_cd_subcommands(sub)
    for subparser in sub.choices.values():
        _global_options(subparser, top=False)
    return parser


def _check_reprocess_calibration(args: argparse.Namespace) -> None:
    if args.calibration is not None:
        _check_input_file(args.calibration, "--calibration",
                          "give a calibration file written by `cplscope calibrate`")
        from .calibration import Calibration

        try:
            Calibration.load(args.calibration)
        except (OSError, ValueError) as exc:
            raise CliError(f"--calibration {args.calibration}: {exc}") from None


# options of the CD subcommands that take a number > 0 (unit), or ≥ 0 (dark dwell: 0 = none)
_CD_POSITIVE = {"start": " nm", "stop": " nm", "step": " nm", "dwell": " s",
                "target_sigma": "", "target_sigma_delta_a": "", "max_dwell": " s",
                "max_absorbance": "", "concentration": " mol/L", "path": " cm"}
_CD_NON_NEGATIVE = {"dark_dwell": " s"}


def _add_cd_subcommands(sub: Any) -> None:
    """``cd``, ``cd-plot``, ``cd-calibrate`` from :mod:`cplscope.cli_cd`, when present; their
    plain-float options get the checked types of the other subcommands, so that a negative
    dwell is refused before the instrument is touched."""
    try:
        from . import cli_cd
    except ImportError as exc:
        if getattr(exc, "name", None) != f"{__package__}.cli_cd":
            raise
        return
    before = set(sub.choices)
    cli_cd.add_parser(sub)
    for name in set(sub.choices) - before:
        for action in sub.choices[name]._actions:
            if action.type is not float:
                continue
            if action.dest in _CD_POSITIVE:
                action.type = _positive(_CD_POSITIVE[action.dest])
            elif action.dest in _CD_NON_NEGATIVE:
                action.type = _non_negative(_CD_NON_NEGATIVE[action.dest])


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings, of every subcommand, that take one value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= _value_options(subparser)
        elif action.option_strings and action.nargs is None:
            found.update(action.option_strings)
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _join_negative_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--opt -1e-4`` → ``--opt=-1e-4``: argparse takes a value such as -1e-4 for an option
    and says "expected one argument"; joined, it reaches the option's type, which refuses it
    with a message that says why."""
    takes_value = _value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out.extend(argv[i:])
            break
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if (tok in takes_value and nxt is not None and nxt.startswith("-")
                and _is_number(nxt)):
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 failed, 2 a usage mistake,
    130 interrupted)."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(_join_negative_values(raw, parser))
    except SystemExit as exc:  # argparse has printed the usage mistake (or --help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.verbose = bool(getattr(args, "verbose", False))
    args.quiet = bool(getattr(args, "quiet", False))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        _run_checks(args)
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"cplscope {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, RuntimeError, OSError, TimeoutError) as exc:
        print(f"cplscope {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
