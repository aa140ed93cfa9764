"""The ``cplscope`` command line: the parser, and :func:`main`, which checks every option before
the subcommand runs."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import board, cd, demo, files, lab, measure
from .options import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    explicit_dests,
    global_options,
    join_negative_values,
    run_checks,
    seed_note,
)

log = logging.getLogger("cplscope")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cplscope", description="Circularly polarized luminescence spectrometer control. "
        "Add --sim to any instrument command to use the simulated instrument.")
    global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in (measure, files, board, demo, cd, lab):
        module.add_parsers(sub)
    for subparser in sub.choices.values():
        global_options(subparser, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 failed, 2 a usage mistake,
    130 interrupted)."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    joined = join_negative_values(raw, parser)
    try:
        args = parser.parse_args(joined)
    except SystemExit as exc:  # argparse has printed the usage mistake (or --help)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.given = explicit_dests(build_parser(), joined)   # what the user typed, not defaults
    args.verbose = bool(getattr(args, "verbose", False))
    args.quiet = bool(getattr(args, "quiet", False))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    measured = False      # once past the checks, a simulated run says how to repeat it
    try:
        run_checks(args)
        measured = True
        return int(args.func(args) or 0)
    except CliError as exc:
        measured = False
        print(f"cplscope {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, RuntimeError, OSError, TimeoutError) as exc:
        measured = False      # a failed run ends with its one line of error
        print(f"cplscope {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        note = seed_note(args) if measured else None
        if note:
            print(note, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
