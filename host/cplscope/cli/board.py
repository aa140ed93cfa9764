"""The board's subcommands: ``info``, ``limits``, ``mono``, ``hv-model``, ``udev-rule`` and
``flash``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .options import CliError, device_options, int_at_least, non_negative, positive
from .session import open_session


def cmd_info(args: argparse.Namespace) -> int:
    args.auto_calibrate = False
    with open_session(args, ready=False) as inst:
        info = inst.info()
        out = {"instrument": info, "status": inst.status(),
               "calibration": inst.calibration.to_dict(),
               "usb": {"idVendor": f"{inst.device.idVendor:04x}",
                       "idProduct": f"{inst.device.idProduct:04x}",
                       "serial_number": inst.device.serial_number},
               "stream": inst.health().as_dict()}
    print(json.dumps(out, indent=1, default=str))
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    """Show the instrument's stored count-rate limits, or store new ones."""
    from ..settings.rate_limits import limits_path, save_limits

    args.auto_calibrate = False
    with open_session(args, ready=False) as inst:
        serial = str(inst.info()["serial"])
        limits = inst.rate_limits
        if any(getattr(args, k) is not None
               for k in ("linear_rate", "max_rate", "max_high_fraction")):
            path = save_limits(serial, limits)
            print(f"# limits of {serial} stored in {path}")
        else:
            print(f"# limits of {serial} ({limits_path(serial)})")
    print(f"linear range  {limits.linear_cps:.4g} counts/s  (points above: kept, flagged "
          "nonlinear)")
    print(f"damage limit  {limits.damage_cps:.4g} counts/s  (the board's guard cuts the HV)")
    high = ("the board's default" if limits.high_fraction is None
            else f"{limits.high_fraction:.3g}")
    print(f"high time     {high}  (fraction of a 0.5-ms window the photon input may be high: "
          "above it the guard cuts the HV)")
    return 0


def cmd_mono(args: argparse.Namespace) -> int:
    """Show the monochromator settings, or store new ones for this instrument."""
    from ..settings.monochromator import MONO_KEYS, mono_config_path, save_mono_config

    given = {k: getattr(args, k) for k in MONO_KEYS if getattr(args, k) is not None}
    args.auto_calibrate = False
    with open_session(args, ready=False) as inst:
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
    from ..board.udev import rules_text

    sys.stdout.write(rules_text())
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    """Update the board's firmware (:mod:`cplscope.board.flash`)."""
    import cplscope

    from ..board.flash import FlashError, flash

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
    from ..settings.calibration import CalibrationError
    from ..settings.hv_model import HvModel, hv_model_path, load_hv_model, save_hv_model

    args.auto_calibrate = False
    with open_session(args, ready=False) as inst:
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


def add_parsers(sub: Any) -> None:
    """Add this module's subcommands to ``sub`` (the subparsers of ``cplscope``)."""
    p = sub.add_parser("info", help="identify the board, status, calibration, stream health")
    device_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("limits", help="the counting head's linear-range and damage count "
                       "rates and the photon input's high-time limit, stored per instrument (give "
                       "--linear-rate/--max-rate/--max-high-fraction to set)")
    device_options(p)
    p.set_defaults(func=cmd_limits)

    p = sub.add_parser("mono", help="the monochromator's settings, stored per instrument")
    device_options(p)
    p.add_argument("--steps-per-nm", type=positive(" steps/nm"), default=None)
    p.add_argument("--home-nm", type=non_negative(" nm"), default=None,
                   help="wavelength at the home switch, nm")
    p.add_argument("--backlash-steps", type=int_at_least(0), default=None)
    p.add_argument("--min-nm", type=non_negative(" nm"), default=None)
    p.add_argument("--max-nm", type=positive(" nm"), default=None)
    p.set_defaults(func=cmd_mono)

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
    p.add_argument("--wait", type=positive(" s"), default=30.0,
                   help="s to wait for the board after each restart (default 30)")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("hv-model", help="the detector's HV model (supply, module, "
                       "counting_head), stored per instrument")
    device_options(p)
    p.add_argument("kind", nargs="?", choices=("supply", "module", "counting_head"),
                   default=None, help="store and send this kind (default: show the stored one)")
    p.add_argument("--max-volts", type=positive(" V"), default=None)
    p.add_argument("--min-volts", type=non_negative(" V"), default=None)
    p.add_argument("--volts-per-control-v", type=positive(" V/V"), default=None)
    p.add_argument("--monitor", action=argparse.BooleanOptionalAction, default=None,
                   help="an HV monitor is wired to GP27 (ADC1)")
    p.add_argument("--settle-ms", type=int_at_least(0), default=None)
    p.set_defaults(func=cmd_hv_model)
