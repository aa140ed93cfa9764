"""The CLI's options and their checks, shared by every subcommand.

Every subcommand that talks to an instrument runs unchanged on a real board (``--device
usb`` or ``usb://SERIAL``) and on the simulated instrument (``--sim --sample NAME``).

Every option is checked before the instrument is touched, in the CLI's own names: numbers by
their argparse types (negative numbers such as ``--target-sigma -1e-4`` parse, and are refused
with the option's name), then the checks each option group registers on its subparser
(:func:`add_check`) run in :func:`cplscope.cli.main.main` before the subcommand. A new option group declares
its options and its check in one function, as :func:`device_options`,
:func:`dwell_options`, :func:`range_options` and :func:`output_options` do. Mistakes end
with exit status 2 and one message that names the option or file and says what to do. The
options a board limits (HV, wavelengths and the A0 they need, bins, dwell times in frames,
the guard's count rate) are checked against what the board reports, right after connecting
and before anything is set or measured (:func:`cplscope.cli.session.check_board_limits`).
"""
from __future__ import annotations

import argparse
import difflib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..protocol.ranges import PERIODS

EXIT_USAGE = 2

EXIT_INTERRUPTED = 130

DEFAULT_SAMPLE = "R-Cs4PbBr6"

DEFAULT_MAX_DWELL_S = 300.0  # = cplscope.plans.point.DEFAULT_MAX_DWELL_S, for scan and point

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


Check = Callable[[argparse.Namespace], None]


def number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def positive(unit: str) -> Callable[[str], float]:
    """A type for a number > 0 in ``unit``."""
    return _bounded(lambda x: x > 0, f"> 0{unit}", "positive number")


def non_negative(unit: str) -> Callable[[str], float]:
    """A type for a number ≥ 0 in ``unit``."""
    return _bounded(lambda x: x >= 0, f"≥ 0{unit}", "non-negative number")


def _bounded(ok: Callable[[float], bool], bound: str, kind: str) -> Callable[[str], float]:
    """A type for a number that passes ``ok`` (the message says it ``must be {bound}``)."""
    def parse(text: str) -> float:
        x = number(text)
        if not ok(x):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return x
    parse.__name__ = kind
    return parse


def int_at_least(low: int) -> Callable[[str], int]:
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


def int_in(low: int, high: int, what: str) -> Callable[[str], int]:
    """A type for an integer from ``low`` to ``high``, ``what`` the range stands for."""
    def parse(text: str) -> int:
        n = int_at_least(low)(text)
        if n > high:
            raise argparse.ArgumentTypeError(f"{what} {low}–{high}, got {text}")
        return n
    parse.__name__ = "integer"
    return parse


def bins(text: str) -> int:
    n = int_at_least(2)(text)
    if n > 64 or n & (n - 1):
        raise argparse.ArgumentTypeError(f"must be a power of 2 from 2 to 64, got {text}")
    return n


def duration(text: str) -> float:
    from ..plans.planning import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0 s, got {text!r}")
    return value


def fault(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--fault takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault {key}: {value!r} is not a number") from None


def add_check(p: argparse.ArgumentParser, check: Check) -> None:
    """Run ``check(args)`` before this subcommand (in the order added); it raises
    :class:`CliError` on a mistake."""
    checks = p.get_default("checks")
    if checks is None:
        checks = []
        p.set_defaults(checks=checks)
    if check not in checks:
        checks.append(check)


def run_checks(args: argparse.Namespace) -> None:
    for check in getattr(args, "checks", None) or ():
        check(args)


def device_options(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--fault", type=fault, action="append", default=[], metavar="KEY=VALUE",
                   help="simulated fault, repeatable: corrupt, drop, stall (fractions of "
                        "frames, 0 to 0.05), disconnect_at, reconnect_after (instrument s)")
    g.add_argument("--seed", type=int_at_least(0), default=None,
                   help="seed of the simulated instrument's noise: the same seed and options "
                        "repeat a run exactly (default: a fresh seed each run, printed and "
                        "kept in the run's metadata)")
    g.add_argument("--bins", type=bins, default=16, help="phase bins B (2…64, power of 2)")
    g.add_argument("--periods", type=int_in(*PERIODS, "PEM periods per frame: every "
                                                      "instrument allows"),
                   default=None,
                   help="PEM periods per frame K (default 10000 counting: 0.2 s at 50 kHz; "
                        "5000 analog: 0.1 s)")
    g.add_argument("--hv", type=non_negative(" V"), default=800.0,
                   help="PMT high voltage, V (800)")
    g.add_argument("--calibration", type=Path, default=None,
                   help="calibration file (default: the one stored for the board's serial)")
    g.add_argument("--retardation", type=positive(" rad"), default=None, metavar="RAD",
                   help="PEM peak retardation A0, rad (default for counting: the A0 that "
                        "minimizes σ(g) per photon for --bins, 1.907 rad at 16 bins)")
    stored = " (default: the instrument's, `cplscope limits`)"
    for flag, unit, metavar, what in (
            ("--linear-rate", " counts/s", "CPS", "counting head's linear range for this run: "
             "points above it are kept and flagged nonlinear"),
            ("--max-rate", " counts/s", "CPS", "damage limit for this run: the board's guard "
             "cuts the HV above it"),
            ("--max-high-fraction", "", "F", "the photon input's high time per 0.5-ms window "
             "above which the board's guard cuts the HV (a stuck or paralyzed input), "
             "0.01 … 0.99; the board's 0.5 if none is stored")):
        g.add_argument(flag, type=positive(unit), default=None, metavar=metavar,
                       help=what + stored)
    add_check(p, check_instrument)


def detection_options(p: argparse.ArgumentParser) -> None:
    """--mode: photon counting or the analog (ADC) path, for the commands that measure."""
    p.add_argument("--mode", choices=("counting", "analog"), default="counting",
                   help="detection: photon counting (default) or the analog path (the PMT "
                        "current sampled by the ADC, for light too bright to count; its own "
                        "calibration: `cplscope calibrate --mode analog`)")
    add_check(p, check_detection)


_GATING_HELP = {
    "--pulse-rate": "pulse the excitation at HZ (the board's trigger output, or an external "
                    "laser with --trigger external) and count only inside the --gate after "
                    "each pulse",
    "--gate": "the gate after each pulse, s: e.g. 50e-6:2e-3 counts from 50 µs to 2.05 ms "
              "(lanthanide emission without the short-lived background)",
    "--time-bins": "cut the gate into N contiguous time bins (1 … 32): the spectrum uses the "
                   "whole gate, and OUTPUT.timebins.csv gets g(t) and I(t) per wavelength, "
                   "OUTPUT.timebins.decay.csv the decay fit",
    "--decay-components": "exponential components of the decay fit with --time-bins (1)",
    "--trigger": "internal (default): the board drives the trigger output; external: a "
                 "laser's sync on the board's sync input, at --pulse-rate",
    "--trigger-width": "the trigger pulse's width, s (internal trigger; default 10 µs or a "
                       "tenth of the pulse period)",
}


def gating_options(p: argparse.ArgumentParser) -> None:
    """--pulse-rate and --gate: gated counting under pulsed excitation."""
    g = p.add_argument_group("time-gated counting (pulsed excitation)")
    kinds: dict[str, dict[str, Any]] = {
        "--pulse-rate": {"type": positive(" Hz"), "default": None, "metavar": "HZ"},
        "--gate": {"default": None, "metavar": "DELAY:WIDTH"},
        "--time-bins": {"type": int, "default": 1, "metavar": "N"},
        "--decay-components": {"type": int, "choices": (1, 2), "default": 1},
        "--trigger": {"choices": ("internal", "external"), "default": "internal"},
        "--trigger-width": {"type": positive(" s"), "default": None, "metavar": "S"},
    }
    for flag, kw in kinds.items():
        g.add_argument(flag, help=_GATING_HELP[flag], **kw)
    add_check(p, check_gating)


def check_gating(args: argparse.Namespace) -> None:
    """The gating, checked before connecting; sets ``args.gating`` (None: continuous)."""
    from ..protocol.gating import Gating, parse_gate

    rate, gate = getattr(args, "pulse_rate", None), getattr(args, "gate", None)
    args.gating = None
    bins = getattr(args, "time_bins", 1)
    if not 1 <= bins <= 32:
        raise CliError(f"--time-bins must be 1 … 32, got {bins}")
    if rate is None and gate is None:
        if getattr(args, "trigger_width", None) is not None or \
                getattr(args, "trigger", "internal") != "internal" or bins != 1:
            raise CliError("--trigger, --trigger-width and --time-bins set up pulsed "
                           "excitation: give --pulse-rate HZ and --gate DELAY:WIDTH too")
        return
    if rate is None or gate is None:
        raise CliError("gated counting needs both --pulse-rate HZ and --gate DELAY:WIDTH "
                       "(seconds, e.g. --pulse-rate 200 --gate 50e-6:2e-3)")
    if getattr(args, "mode", "counting") == "analog":
        raise CliError("--pulse-rate/--gate count photons in a gate: photon counting only, "
                       "not --mode analog")
    planned = [o for o, d in (("--target-sigma", "target_sigma"), ("--time-budget",
                                                                   "time_budget"),
                              ("--survey", "survey")) if getattr(args, d, None) is not None]
    if bins > 1 and planned:
        raise CliError(f"--time-bins {bins} with {', '.join(planned)}: time bins are measured "
                       "with a fixed --dwell (the adaptive dwell, the survey and the time "
                       "budget plan on frames of one gate)")
    try:
        delay, width = parse_gate(gate)
        args.gating = Gating(pulse_rate_hz=float(rate), delay_s=delay, width_s=width / bins,
                             gates=bins, trigger=args.trigger,
                             trigger_width_s=args.trigger_width)
    except ValueError as exc:
        raise CliError(f"--pulse-rate {rate:g} --gate {gate}: {exc}") from None


def check_detection(args: argparse.Namespace) -> None:
    """What analog mode cannot do, refused before connecting."""
    if getattr(args, "mode", "counting") != "analog":
        return
    if hasattr(args, "no_dark") and not measures_dark(args):
        raise CliError("--mode analog needs the dark (the front end's offset, which would "
                       "otherwise count as light and pull g towards 0): drop --no-dark / "
                       "--dark-dwell 0")
    used = [o for o, v in (("--survey", getattr(args, "survey", None)),
                           ("--time-budget", getattr(args, "time_budget", None)),
                           ("--archive", getattr(args, "archive", None)),
                           ("--resume", getattr(args, "resume", None))) if v is not None]
    if used:
        raise CliError(f"{', '.join(used)}: counting mode only. In analog mode σ comes from "
                       "the scatter of a point's few frames, too noisy to plan time on, and "
                       "the raw archive holds counting frames (docs/estimator.md, \"Analog "
                       "mode\"); use --dwell or --target-sigma and --output")
    if getattr(args, "dead_time", None) is not None:
        raise CliError("--dead-time is the counting head's: drop it with --mode analog")


def check_instrument(args: argparse.Namespace) -> None:
    """Sample, sample file, faults, device address and calibration file; sets
    ``args.sample_name`` (a built-in sample's canonical name, or the sample file)."""
    faults = dict(args.fault)
    if not args.sim:
        used = [opt for opt, value in (("--sample", args.sample),
                                       ("--sample-file", args.sample_file),
                                       ("--fault", faults),
                                       ("--seed", args.seed is not None)) if value]
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
            args.sample_name = checked_sample_file(args.sample_file)
        else:
            args.sample = canonical_sample(args.sample or DEFAULT_SAMPLE)
            args.sample_name = args.sample
        from ..sim.faults import check_link_faults

        keys = [key for key, _ in args.fault]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise CliError(f"--fault {', '.join(twice)} given more than once; give each fault "
                           "once")
        try:
            check_link_faults(faults)
        except ValueError as exc:
            raise CliError(f"--fault: {exc}") from None
        if args.seed is None:
            from ..util.seeds import fresh_seed

            args.seed, args.seed_drawn = fresh_seed(), True
    if getattr(args, "retardation", None) is not None and args.retardation > math.pi:
        raise CliError(f"--retardation {args.retardation:g}: the peak retardation A0 must be "
                       "in (0, π] rad (π/2 = 1.571 is quarter-wave)")
    high = getattr(args, "max_high_fraction", None)
    if high is not None and not 0.01 <= high <= 0.99:
        raise CliError(f"--max-high-fraction {high:g}: give 0.01 … 0.99 (at 1 the guard could "
                       "never trip: no window is more than 100 % high)")
    linear, damage = getattr(args, "linear_rate", None), getattr(args, "max_rate", None)
    if linear is not None and damage is not None and damage < linear:
        raise CliError(f"--max-rate {damage:g} is below --linear-rate {linear:g}: the damage "
                       "limit must be at or above the linear range")
    if args.calibration is not None:
        check_input_file(args.calibration, "--calibration",
                          "give a file written by `cplscope calibrate`, or leave the option "
                          "out to use the calibration stored for the instrument")
        from ..settings.calibration import Calibration

        try:
            Calibration.load(args.calibration)
        except (OSError, ValueError) as exc:
            raise CliError(f"--calibration {args.calibration}: {exc}") from None


#: The subcommands that measure: on the simulated instrument they say which noise seed they
#: drew.
MEASURING_COMMANDS = frozenset({"scan", "point", "dark", "calibrate", "cd"})


def seed_note(args: argparse.Namespace) -> str | None:
    """The line that tells how to repeat a simulated measurement whose seed was drawn (None
    when the user gave --seed, measures a real board or does not measure)."""
    if not getattr(args, "seed_drawn", False) or args.command not in MEASURING_COMMANDS:
        return None
    return (f"# simulated instrument: noise seed {args.seed} (recorded in the run's metadata; "
            f"repeat this run exactly with --seed {args.seed})")


def canonical_sample(name: str) -> str:
    """The library's spelling of a simulated sample name (any letter case)."""
    from ..sim.samples import list_samples

    names = list_samples()
    folded = {n.casefold(): n for n in names}
    if name.casefold() in folded:
        return folded[name.casefold()]
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    hint = f"did you mean {folded[close[0]]}? " if close else ""
    raise CliError(f"--sample {name!r} is not a simulated sample; {hint}`cplscope samples` "
                   "lists them, and --sample-file FILE.json reads your own")


def checked_sample_file(path: Path) -> str:
    check_input_file(path, "--sample-file",
                      "give the path of a sample JSON file (format: docs/simulator.md)")
    from ..sim.samples import sample_from_file

    try:
        sample_from_file(path)
    except ValueError as exc:
        raise CliError(f"--sample-file: {exc}; the format is in docs/simulator.md") from None
    return str(path)


def check_input_file(path: Path, option: str, what_to_do: str) -> None:
    """A readable file, or a CliError naming ``option`` (may be empty) and the file."""
    label = f"{option} {path}" if option else str(path)
    if not path.exists():
        raise CliError(f"{label}: no such file; {what_to_do}")
    if not path.is_file():
        raise CliError(f"{label} is not a file; {what_to_do}")
    if not os.access(path, os.R_OK):
        raise CliError(f"{label}: no permission to read it; {what_to_do}")


def dwell_options(p: argparse.ArgumentParser, *, cd: bool = False) -> None:
    """--target-sigma / --dwell (one of them) with --max-dwell and the dark measurement.
    ``cd``: the targets of a CD scan, --target-sigma (σ of g_abs) or --target-sigma-delta-a
    (σ of ΔA)."""
    if cd:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--dwell", type=positive(" s"), default=None,
                       help="fixed dwell per point, s")
        g.add_argument("--target-sigma", type=positive(""), default=None,
                       metavar="SIGMA_G_ABS",
                       help="adaptive dwell: count each point until σ(g_abs) ≤ this (needs "
                            "--baseline)")
        g.add_argument("--target-sigma-delta-a", type=positive(""), default=None,
                       metavar="SIGMA_DA",
                       help="adaptive dwell: until σ(ΔA) ≤ this (also for a baseline scan)")
    else:
        p.add_argument("--target-sigma", type=positive(""), default=None, metavar="SIGMA_G",
                       help="adaptive dwell: count each point until σ(g_lum) ≤ this")
        p.add_argument("--dwell", type=positive(" s"), default=None,
                       help="fixed dwell per point, s")
    p.add_argument("--max-dwell", type=positive(" s"), default=DEFAULT_MAX_DWELL_S,
                   help=f"maximum dwell per point with a target, s ({DEFAULT_MAX_DWELL_S:g})")
    p.add_argument("--no-dark", action="store_true", help="do not measure dark counts")
    p.add_argument("--dark-dwell", type=non_negative(" s"), default=None,
                   help="dark measurement before each accumulation, s (default: what the "
                        "scan needs: 10 s, and up to the longest dwell when the faintest "
                        "signal that matters needs a quieter dark; 0: none, as --no-dark)")
    add_check(p, check_dwell)


def measures_dark(args: argparse.Namespace) -> bool:
    """Whether the command measures the dark (--no-dark and --dark-dwell 0 say no)."""
    return not (args.no_dark or args.dark_dwell == 0)


def target_of(args: argparse.Namespace) -> float | None:
    """The scan's target σ, whichever option gave it."""
    return next((v for v in (getattr(args, "target_sigma", None),
                             getattr(args, "target_sigma_delta_a", None)) if v is not None),
                None)


def check_dwell(args: argparse.Namespace) -> None:
    targets = [f"--{n.replace('_', '-')}" for n in ("dwell", "target_sigma",
                                                    "target_sigma_delta_a", "time_budget")
               if getattr(args, n, None) is not None]
    if getattr(args, "resume", None) is not None:
        if targets:
            raise CliError(f"--resume continues the scan with the settings in its archive: "
                           f"drop {', '.join(targets)}")
        return
    target = target_of(args)
    budget = getattr(args, "time_budget", None)
    if budget is not None:
        if args.dwell is not None:
            raise CliError("give --time-budget or --dwell, not both (a budget plans the dwell "
                           "of every point)")
        if getattr(args, "accumulations", 1) != 1:
            raise CliError("--time-budget plans one pass over the band: drop --accumulations")
    elif len(targets) != 1:
        what = ("--target-sigma (σ of g_abs), --target-sigma-delta-a, --dwell or "
                "--time-budget" if hasattr(args, "target_sigma_delta_a") else
                "--target-sigma (adaptive dwell), --dwell (s per point) or, for scan, "
                "--time-budget")
        raise CliError(f"give {what}, one of them")
    if getattr(args, "skip_hopeless", False) and target is None:
        raise CliError("--skip-hopeless needs --target-sigma (a point is hopeless when it "
                       "cannot reach the target within --max-dwell)")
    if args.target_sigma is not None and args.target_sigma >= 2:
        raise CliError(f"--target-sigma {args.target_sigma:g}: σ(g) targets are below 2 "
                       "(g lies in −2…+2; typical targets 1e-4…1e-3)")


def scan_options(p: argparse.ArgumentParser) -> None:
    """What a scan adds to a point: accumulations and the planning of its time."""
    p.add_argument("--accumulations", type=int_at_least(1), default=1,
                   help="repeated scans, averaged (1)")
    g = p.add_argument_group("planning")
    g.add_argument("--time-budget", type=duration, default=None, metavar="DURATION",
                   help="counting time of the whole scan (30min, 2h, 1h30m, 900s): a survey, "
                        "then the time goes where it lowers the spectrum's Σσ² most; "
                        "points with nothing to measure get only the survey")
    g.add_argument("--survey", type=positive(" s"), nargs="?", const=1.0, default=None,
                   metavar="SECONDS",
                   help="a quick pass first (1 s per point, or SECONDS) that predicts "
                        "nonlinear and empty points and the scan's duration; its frames start "
                        "every point")
    g.add_argument("--skip-hopeless", action="store_true",
                   help="with a target σ: stop a point as soon as it cannot reach the "
                        "target within --max-dwell (flag hopeless)")
    g.add_argument("--resume", type=Path, default=None, metavar="ARCHIVE",
                   help="continue an interrupted scan from its --archive (its settings, "
                        "calibration and darks; the points it has are kept)")


def range_options(p: argparse.ArgumentParser) -> None:
    """--start, --stop, --step of a wavelength scan (nm)."""
    p.add_argument("--start", type=positive(" nm"), default=None,
                   help="first wavelength, nm (required)")
    p.add_argument("--stop", type=positive(" nm"), default=None,
                   help="last wavelength, nm (required)")
    p.add_argument("--step", type=positive(" nm"), default=None, help="step, nm (required)")
    add_check(p, check_range)


def check_range(args: argparse.Namespace) -> None:
    """The scan's wavelengths (``args.wavelengths_nm``), checked against the monochromator's
    range once connected."""
    resume = getattr(args, "resume", None)
    if resume is not None:
        given = [f"--{n}" for n in ("start", "stop", "step") if getattr(args, n) is not None]
        if given:
            raise CliError(f"--resume continues the scan over the wavelengths in its archive: "
                           f"drop {', '.join(given)}")
        from ..data.archive import Archive, archive_exists
        from ..plans.scan import scan_wavelengths

        if not archive_exists(resume):
            raise CliError(f"--resume {resume}: no such archive; give the file the "
                           "interrupted scan wrote with --archive")
        try:
            with Archive.open(resume) as arc:
                kind = "cd" if arc.metadata.get("mode") == "cd" else "scan"
                if kind != args.command:
                    raise CliError(f"--resume {resume} is the archive of a `cplscope {kind}` "
                                   f"run: resume it with `cplscope {kind} --resume {resume}`")
                st = arc.metadata.get("settings", {})
                args.wavelengths_nm = scan_wavelengths(st["start_nm"], st["stop_nm"],
                                                       st["step_nm"])
                args.resume_settings = dict(st)
                args.resume_metadata = dict(arc.metadata)
                args.resume_calibration = arc.calibration
                check_resume_options(args, arc)
        except (OSError, ValueError, KeyError) as exc:
            raise CliError(f"--resume {resume}: {exc}") from None
        args.wavelength_options = "--resume"
        return
    missing = [f"--{n}" for n in ("start", "stop", "step") if getattr(args, n) is None]
    if missing:
        raise CliError(f"give {', '.join(missing)} (nm), e.g. --start 400 --stop 560 --step 2")
    from ..plans.scan import scan_wavelengths

    args.wavelengths_nm = scan_wavelengths(args.start, args.stop, args.step)
    args.wavelength_options = "--start/--stop"


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The options (their ``dest``) that ``argv`` gives explicitly, as opposed to defaults:
    ``argv`` parsed again by ``parser`` (a fresh one, which this changes) with every default
    suppressed."""
    def suppress(p: argparse.ArgumentParser) -> None:
        p._defaults.clear()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    suppress(sub)
            elif action.dest != "help":
                action.default = argparse.SUPPRESS
    suppress(parser)
    try:
        return set(vars(parser.parse_args(list(argv))))
    except SystemExit:
        return set()


#: What --resume checks against the archive: (dest, option, the archive's value from its
#: metadata and settings). An option given explicitly must agree with it.
_RESUMED: tuple[tuple[str, str, Callable[[dict, dict], Any]], ...] = (
    ("seed", "--seed", lambda m, st: st.get("seed")),
    ("bins", "--bins", lambda m, st: st.get("bins")),
    ("periods", "--periods", lambda m, st: st.get("periods")),
    ("hv", "--hv", lambda m, st: st.get("hv_volts")),
    ("accumulations", "--accumulations", lambda m, st: st.get("accumulations")),
    ("max_dwell", "--max-dwell", lambda m, st: st.get("max_dwell_s")),
    ("skip_hopeless", "--skip-hopeless", lambda m, st: st.get("skip_hopeless")),
    ("survey", "--survey", lambda m, st: st.get("survey") or None),
    ("max_absorbance", "--max-absorbance",
     lambda m, st: (m.get("cd_rules") or {}).get("max_absorbance")),
)


def check_resume_options(args: argparse.Namespace, arc: Any) -> None:
    """--resume measures what its archive says, nothing else: an option given explicitly
    that contradicts the archive (sample, seed, bins, periods, HV, dark, accumulations, dwell
    limit, retardation, calibration, linear range, …) is refused, naming both values; the
    simulated instrument gets the archive's sample and seed."""
    given = getattr(args, "given", None)
    if given is None:             # called without main(): nothing was given explicitly
        given = set()
    meta = arc.metadata
    st = meta.get("settings") or {}
    wrong: list[str] = []

    def differs(ours: Any, theirs: Any) -> bool:
        if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
            return not math.isclose(float(ours), float(theirs), rel_tol=1e-9, abs_tol=1e-12)
        return ours != theirs

    gating = [f"--{d.replace('_', '-')}" for d in ("pulse_rate", "gate", "time_bins",
                                                    "trigger", "trigger_width") if d in given]
    if gating:
        wrong.append(f"{', '.join(gating)} (the archive's gating: "
                     f"{_shown(st.get('gating'))}; --resume takes it from the archive)")
    sample = meta.get("sample")
    known = isinstance(sample, str) and sample not in ("", "unknown")
    if known and given & {"sample", "sample_file"} and differs(str(args.sample_name),
                                                               str(sample)):
        wrong.append(f"--sample {args.sample_name} (the archive's: {sample})")
    for dest, option, theirs_of in _RESUMED:
        if dest not in given or not hasattr(args, dest):
            continue
        theirs = theirs_of(meta, st)
        ours = getattr(args, dest)
        if theirs is None and ours in (False, None):
            continue
        if theirs is None or differs(ours, theirs):
            wrong.append(f"{option} {_shown(ours)} (the archive's: {_shown(theirs)})")
    if given & {"no_dark", "dark_dwell"}:
        ours_dark = "measured" if measures_dark(args) else "none"
        if ours_dark != st.get("dark", "measured"):
            wrong.append(f"{'--no-dark' if args.no_dark else '--dark-dwell 0'} (the archive's "
                         f"scan measured the dark: {st.get('dark')})")
        elif "dark_dwell" in given and ours_dark == "measured" and differs(
                args.dark_dwell, st.get("dark_dwell_s")):
            wrong.append(f"--dark-dwell {args.dark_dwell:g} (the archive's: "
                         f"{_shown(st.get('dark_dwell_s'))})")
    cal = arc.calibration
    if "retardation" in given and args.retardation is not None:
        commanded = st.get("a0_commanded_rad")
        ours = (min(args.retardation / cal.retardation_scale, math.pi)
                if cal is not None else None)
        if commanded is None or ours is None or differs(ours, commanded):
            wrong.append(f"--retardation {args.retardation:g} (the archive's scan commanded "
                         f"{_shown(commanded)} rad)")
    if "calibration" in given and args.calibration is not None:
        from ..settings.calibration import Calibration

        theirs_cal = cal.to_dict() if cal is not None else None
        if Calibration.load(args.calibration).to_dict() != theirs_cal:
            wrong.append(f"--calibration {args.calibration} (the archive stores the "
                         "calibration its scan used)")
    if "linear_rate" in given and args.linear_rate is not None and differs(
            args.linear_rate, arc.rules.nonlinear_rate_cps):
        wrong.append(f"--linear-rate {args.linear_rate:g} (the archive's: "
                     f"{arc.rules.nonlinear_rate_cps:g})")
    if wrong:
        raise CliError(f"--resume {args.resume} continues the scan its archive recorded, and "
                       f"these options contradict it: {'; '.join(wrong)}. Drop them (the scan "
                       "takes the archive's values), or start a new scan")
    if args.sim and not given & {"sample", "sample_file"}:
        if not known:
            raise CliError(f"--resume {args.resume}: the archive does not record which "
                           f"simulated sample its scan measured ({sample!r}); give --sample "
                           "NAME (or --sample-file) with that sample")
        _sample_of_archive(args, str(sample))
    if args.sim and "seed" not in given and isinstance(st.get("seed"), int):
        args.seed = st["seed"]


def _sample_of_archive(args: argparse.Namespace, sample: str) -> None:
    """The simulated sample the archive's scan measured."""
    try:
        args.sample, args.sample_file = canonical_sample(sample), None
        args.sample_name = args.sample
    except CliError:
        if Path(sample).is_file():
            args.sample, args.sample_file = None, Path(sample)
            args.sample_name = sample
        else:
            raise CliError(f"--resume {args.resume}: the archive's sample {sample!r} is "
                           "neither a simulated sample nor a sample file that exists; give "
                           "--sample-file FILE.json with the sample it measured") from None


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def output_options(p: argparse.ArgumentParser, *, csv: str | None = None,
                    csv_required: bool = False, archive: bool = False, plot: bool = False,
                    figure: bool = False, jasco: bool = False) -> None:
    """The files a subcommand writes, and ``--overwrite``. ``csv`` is the --output CSV's
    default name; ``figure`` makes --output a figure file (``cplscope plot``, which picks
    its default itself)."""
    outputs: list[tuple[str, str, tuple[str, ...]]] = []
    if figure:
        p.add_argument("--output", type=Path, default=None,
                       help="figure file (.png, .svg, .pdf); default: a window where there "
                            "is a display, else NAME.png next to the first CSV")
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
    add_check(p, check_outputs)


def check_outputs(args: argparse.Namespace) -> None:
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
        from ..plans.outputs import same_run_csv

        same_run = (resume is not None and dest == "output"
                    and same_run_csv(path, getattr(args, "resume_metadata", None)))
        check_output_path(path, option, suffixes, overwrite=args.overwrite or same_run)
        if dest == "archive" and not args.overwrite:
            from ..data.archive_format import journal_path

            if journal_path(path).exists():
                raise CliError(f"{option} {path}: {journal_path(path)} exists (the journal of "
                               f"a run that did not end); finish that run with `--resume "
                               f"{path}`, or pass --overwrite to replace it")
        key = path.resolve()
        if key in seen:
            raise CliError(f"{seen[key]} and {option} are the same file {path}; give each "
                           "output its own name")
        seen[key] = option


def check_output_path(path: Path, option: str, suffixes: Sequence[str], *,
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


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_archive_input(path: Path, written_by: str) -> Path:
    """An archive to read: its HDF5 file, or the journal of a run that did not end (the
    archive's path is returned either way); a CliError naming the file otherwise."""
    from ..data.archive import archive_exists
    from ..data.archive_format import archive_path, journal_path

    path = archive_path(path)
    if not archive_exists(path):
        raise CliError(f"{path}: no such file; give the raw archive that `{written_by}` "
                       "wrote")
    if journal_path(path).exists():
        return path
    check_input_file(path, "", f"give the raw archive that `{written_by}` wrote")
    if not is_hdf5(path):
        raise CliError(f"{path} is not an HDF5 raw archive; give the file that "
                       f"`{written_by}` wrote (a spectrum CSV is plotted with `cplscope "
                       "plot`)")
    return path


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def read_spectrum_csv(path: Path):
    """The CPL spectrum in ``path`` (:func:`cplscope.data.readers.read_cpl_file`: a spectrum
    CSV, a JASCO-style export or a plain CSV), or a CliError naming the file and saying what
    `cplscope plot` reads."""
    from ..data.readers import WHAT_PLOT_READS, read_cpl_file

    check_input_file(path, "", WHAT_PLOT_READS)
    try:
        return read_cpl_file(path)
    except UnicodeDecodeError:
        raise CliError(f"{path} is not a text file: {WHAT_PLOT_READS}") from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        text = str(exc)
        raise CliError(text if str(path) in text else f"{path}: {text}") from None


def global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-v and -q, accepted before and after the subcommand (a subcommand's copy leaves
    the value given before it alone unless given itself)."""
    default: Any = False if top else argparse.SUPPRESS
    if "--verbose" not in p._option_string_actions:
        p.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="print every point")
    if "--quiet" not in p._option_string_actions:
        p.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="no progress bar")


def value_options(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings, of every subcommand, that take one value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                found |= value_options(subparser)
        elif action.option_strings and action.nargs is None:
            found.update(action.option_strings)
    return found


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def join_negative_values(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--opt -1e-4`` → ``--opt=-1e-4``: argparse takes a value such as -1e-4 for an option
    and says "expected one argument"; joined, it reaches the option's type, which refuses it
    with a message that says why."""
    takes_value = value_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out.extend(argv[i:])
            break
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if (tok in takes_value and nxt is not None and nxt.startswith("-")
                and is_number(nxt)):
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out
