"""The ``cplscope`` command line: scan, point, dark, calibrate, reprocess, plot, info, flash.

Every subcommand that talks to an instrument runs unchanged on a real board (``--device
usb`` or ``usb://SERIAL``) and on the simulated instrument (``--sim --sample NAME``).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("cplscope")

EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


# --- instrument options ------------------------------------------------------------------

def _fault(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--fault takes KEY=VALUE, got {text!r}")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault {key}: {value!r} is not a number") from None


def _device_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("instrument")
    g.add_argument("--sim", action="store_true",
                   help="use the simulated instrument (bench + firmware in MicroPython)")
    g.add_argument("--device", default="usb",
                   help="real board: 'usb' (first found) or 'usb://SERIAL' (default: usb)")
    g.add_argument("--sample", default=None,
                   help="simulated sample name (see `cplscope samples`); default R-Cs4PbBr6")
    g.add_argument("--sample-file", type=Path, default=None,
                   help="simulated sample from a JSON file (docs/simulator.md)")
    g.add_argument("--fault", type=_fault, action="append", default=[], metavar="KEY=VALUE",
                   help="simulated fault, repeatable: corrupt, drop, stall (fractions), "
                        "disconnect_at, reconnect_after (instrument s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the simulated bench (0)")
    g.add_argument("--bins", type=int, default=16, help="phase bins B (2…64, power of 2)")
    g.add_argument("--periods", type=int, default=10000,
                   help="PEM periods per frame K (default 10000: 0.2 s at 50 kHz)")
    g.add_argument("--hv", type=float, default=800.0, help="PMT high voltage, V (800)")
    g.add_argument("--calibration", type=Path, default=None,
                   help="calibration file (default: the one stored for the board's serial)")


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
    """Connect; with ``ready`` also set up counting, HV and A0 and open the shutter (an
    inspecting command such as ``info`` leaves the instrument as it is)."""
    import cplscope
    from .calibration import Calibration, load_for

    faults = dict(args.fault)
    if args.sim:
        if args.sample and args.sample_file:
            raise CliError("give --sample or --sample-file, not both")
        sample = str(args.sample_file) if args.sample_file else (args.sample or "R-Cs4PbBr6")
        inst = cplscope.connect("sim", sample=sample, faults=faults or None, seed=args.seed)
        args.sample_name = sample
    else:
        if faults or args.sample or args.sample_file:
            raise CliError("--fault, --sample and --sample-file need --sim")
        inst = cplscope.connect(args.device)
        args.sample_name = getattr(args, "label", None) or "unknown"
    try:
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

            prepare(inst, bins=args.bins, periods=args.periods, hv_volts=args.hv)
    except BaseException:
        inst.close()
        raise
    return _Session(inst, ready)


def _print_point(point) -> None:
    r = point.result if hasattr(point, "result") else point
    flags = ";".join(r.flags) or "-"
    print(f"{r.wavelength_nm:8.2f} nm  I = {r.intensity:11.4g} cps  g = {r.g_lum:+.3e} ± "
          f"{r.sigma_g:.1e}  u = {r.linear:+.3f}  χ² = {r.chi2_red:.2f}  "
          f"{r.dwell_s:7.1f} s  {flags}")


# --- subcommands -------------------------------------------------------------------------

def cmd_scan(args: argparse.Namespace) -> int:
    from .export import write_jasco_csv
    from .plot import plot_cpl
    from .scan import ScanInterrupted

    if (args.dwell is None) == (args.target_sigma is None):
        raise CliError("give --target-sigma (adaptive dwell) or --dwell (s per point)")
    output = args.output or Path("spectrum.csv")
    with _connect(args) as inst:
        def live(point, i, acc):
            if args.verbose:
                _print_point(point)

        status = 0
        try:
            spec = inst.scan(args.start, args.stop, args.step, dwell_s=args.dwell,
                             target_sigma=args.target_sigma, max_dwell_s=args.max_dwell,
                             accumulations=args.accumulations, dark=not args.no_dark,
                             dark_dwell_s=args.dark_dwell, callback=live, output=output,
                             archive=args.archive, progress=not args.quiet,
                             sample=args.sample_name,
                             settings={"hv_volts": args.hv, "seed": args.seed if args.sim
                                       else None})
        except ScanInterrupted as exc:
            spec = exc.spectrum
            print(f"\ninterrupted: {len(spec)} points kept in {output}", file=sys.stderr)
            status = EXIT_INTERRUPTED
        health = inst.health()
    print(f"# {len(spec)} points -> {output}; frames {health.frames}, rejected "
          f"{health.rejected}, missing {health.missing}, reconnects {health.reconnects}")
    if args.plot and len(spec):
        plot_cpl(spec, args.plot, labels=[args.sample_name])
        print(f"# figure -> {args.plot}")
    if args.jasco and len(spec):
        write_jasco_csv(spec, args.jasco)
        print(f"# JASCO-style export -> {args.jasco}")
    return status


def cmd_point(args: argparse.Namespace) -> int:
    if (args.dwell is None) == (args.target_sigma is None):
        raise CliError("give --target-sigma (adaptive dwell) or --dwell (s)")
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


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibrate_run import calibrate, calibrate_simulated, store_blank
    from .spectrum import Spectrum

    if args.blank is not None:
        cal = store_blank(Spectrum.read_csv(args.blank), path=args.calibration)
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


def cmd_reprocess(args: argparse.Namespace) -> int:
    from .archive import reprocess
    from .calibration import Calibration
    from .plot import plot_cpl

    cal = Calibration.load(args.calibration) if args.calibration else None
    spec = reprocess(args.archive, cal)
    out = args.output or args.archive.with_suffix(".reprocessed.csv")
    spec.write_csv(out)
    print(f"# {len(spec)} points -> {out}")
    if args.plot:
        plot_cpl(spec, args.plot)
        print(f"# figure -> {args.plot}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import mirror_report, plot_cpl
    from .spectrum import Spectrum

    specs = [Spectrum.read_csv(p) for p in args.csv]
    labels = args.label or None
    mirror = None
    if args.mirror:
        if len(specs) != 2:
            raise CliError("--mirror needs exactly two spectra (R then S)")
        mirror = mirror_report(specs[0], specs[1])
        print(mirror.text())
    plot_cpl(specs, args.output, labels=labels, mirror=mirror or False)
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


def cmd_flash(args: argparse.Namespace) -> int:
    from .sim.launcher import SimLaunchError, find_firmware

    try:
        firmware = find_firmware()
    except SimLaunchError as exc:
        raise CliError(str(exc)) from None
    mpremote = shutil.which("mpremote")
    if mpremote is None and not args.dry_run:
        raise CliError("mpremote is not installed: pip install 'cplscope[board]'")
    base = [mpremote or "mpremote"] + (["connect", args.port] if args.port else [])
    steps = [base + ["mip", "install", "usb-device"]]
    for sub in ("cpl", "board"):
        files = sorted(p for p in (firmware / sub).glob("*.py") if p.name != "sim.py")
        steps.append(base + ["mkdir", f":{sub}"])
        steps += [base + ["cp", str(f), f":{sub}/{f.name}"] for f in files]
    steps.append(base + ["cp", str(firmware / "main.py"), ":main.py"])
    steps.append(base + ["reset"])
    for cmd in steps:
        print("+ " + " ".join(cmd))
        if not args.dry_run:
            rc = subprocess.call(cmd)
            if rc != 0 and "mkdir" not in cmd:
                raise CliError(f"{' '.join(cmd[:3])}… failed with status {rc}")
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

def _dwell_options(p: argparse.ArgumentParser, max_default: float) -> None:
    p.add_argument("--target-sigma", type=float, default=None,
                   help="adaptive dwell: count until σ(g_lum) ≤ this")
    p.add_argument("--dwell", type=float, default=None, help="fixed dwell per point, s")
    p.add_argument("--max-dwell", type=float, default=max_default,
                   help=f"maximum dwell per point with --target-sigma, s ({max_default:g})")
    p.add_argument("--no-dark", action="store_true", help="do not measure dark counts")
    p.add_argument("--dark-dwell", type=float, default=10.0, help="dark measurement, s (10)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cplscope", description="Circularly polarized luminescence spectrometer control. "
        "Add --sim to any instrument command to use the simulated instrument.")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every point")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("scan", help="measure a g_lum spectrum")
    _device_options(p)
    p.add_argument("--start", type=float, required=True, help="first wavelength, nm")
    p.add_argument("--stop", type=float, required=True, help="last wavelength, nm")
    p.add_argument("--step", type=float, required=True, help="step, nm")
    _dwell_options(p, 300.0)
    p.add_argument("--accumulations", type=int, default=1, help="repeated scans, averaged")
    p.add_argument("--output", type=Path, default=None, help="CSV file (spectrum.csv)")
    p.add_argument("--archive", type=Path, default=None, help="HDF5 raw archive of all frames")
    p.add_argument("--plot", type=Path, default=None, help="figure file (.png, .svg, .pdf)")
    p.add_argument("--jasco", type=Path, default=None, help="also export JASCO-style CSV")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("point", help="measure g_lum at one wavelength")
    _device_options(p)
    p.add_argument("--wavelength", type=float, required=True, help="nm")
    _dwell_options(p, 600.0)
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    p.set_defaults(func=cmd_point)

    p = sub.add_parser("dark", help="measure dark counts (shutter closed)")
    _device_options(p)
    p.add_argument("--dwell", type=float, default=10.0, help="s (10)")
    p.set_defaults(func=cmd_dark)

    p = sub.add_parser("calibrate", help="A0, φ0 and handedness; stored per instrument")
    _device_options(p)
    p.add_argument("--dwell", type=float, default=20.0, help="s per step (20)")
    p.add_argument("--wavelength", type=float, default=500.0, help="nm (500)")
    p.add_argument("--reference-sign", type=int, choices=(1, -1), default=1,
                   help="sign of the handedness reference's g (+1: left-circular polarizer)")
    p.add_argument("--dead-time", type=float, default=None,
                   help="counting head dead time from its datasheet, s (e.g. 18e-9)")
    p.add_argument("--blank", type=Path, default=None, metavar="CSV",
                   help="store this achiral reference's spectrum as the blank (baseline) that "
                        "scans of the same instrument subtract from g")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("reprocess", help="recompute a spectrum from a raw archive")
    p.add_argument("archive", type=Path)
    p.add_argument("--calibration", type=Path, default=None, help="new calibration file")
    p.add_argument("--output", type=Path, default=None, help="CSV file")
    p.add_argument("--plot", type=Path, default=None, help="figure file")
    p.set_defaults(func=cmd_reprocess)

    p = sub.add_parser("plot", help="CPL figure of one or more spectrum CSVs")
    p.add_argument("csv", type=Path, nargs="+")
    p.add_argument("--output", type=Path, required=True, help="figure file (.png/.svg/.pdf)")
    p.add_argument("--label", action="append", default=[], help="legend label, repeatable")
    p.add_argument("--mirror", action="store_true",
                   help="R/S mirror-symmetry report of two spectra")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("info", help="identify the board, status, calibration, stream health")
    _device_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("samples", help="list the simulated samples")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("flash", help="copy the firmware to a board with mpremote")
    p.add_argument("--port", default=None, help="serial port of the board's REPL (auto)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("demo", help="the g_lum estimator on generated photon counts")
    p.add_argument("--g", type=float, default=6e-4)
    p.add_argument("--rate", type=float, default=2e6, help="peak count rate, cps")
    p.add_argument("--dwell", type=float, default=300.0, help="s per point")
    p.add_argument("--bins", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"cplscope {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, RuntimeError, OSError, TimeoutError) as exc:
        print(f"cplscope {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
