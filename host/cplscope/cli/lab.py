"""The command line in the lab's ecosystem: ``cplscope serve`` (a local Tiled server for the
runs) and the scan options that copy a run elsewhere as it goes: ``--live [HOST:]PORT`` (the
browser view) and ``--tiled URI`` (the run in Tiled, through Bluesky's Tiled writer).

    cplscope serve                       # prints the URI to give --tiled
    cplscope scan --sim --start 400 --stop 560 --step 2 --target-sigma 2e-4 \\
        --live 8765 --tiled 'http://127.0.0.1:8000/api/v1?api_key=…'
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .options import CliError, add_check, int_at_least

__all__ = ["add_parsers", "lab_options", "lab_sinks"]


def lab_options(p: argparse.ArgumentParser) -> None:
    """--live, --live-public and --tiled of a scan, and their check."""
    g = p.add_argument_group("lab")
    g.add_argument("--live", default=None, metavar="[HOST:]PORT",
                   help="show the scan as it runs in a browser at http://127.0.0.1:PORT/ "
                        "(read-only; 0: any free port, printed); needs cplscope[live]")
    g.add_argument("--live-public", action="store_true",
                   help="let --live bind to an address beyond this machine's loopback")
    g.add_argument("--tiled", default=None, metavar="URI",
                   help="also write the run to this Tiled server (`cplscope serve` prints "
                        "the URI); needs cplscope[bluesky]")
    add_check(p, check_lab)


def _need(module: str, extra: str, option: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise CliError(f"{option} needs the {extra} extra ({module} is not installed): "
                       f"pip install 'cplscope[{extra}]'")


def check_lab(args: argparse.Namespace) -> None:
    if args.live is not None:
        from ..live.server import is_loopback, parse_address

        try:
            host, port = parse_address(args.live)
        except ValueError as exc:
            raise CliError(f"--live {exc}") from None
        if not is_loopback(host) and not args.live_public:
            raise CliError(f"--live {args.live}: the live view binds to 127.0.0.1 unless you "
                           "add --live-public (then anyone who reaches this machine sees the "
                           "scan)")
        for module in ("starlette", "uvicorn", "plotly"):
            _need(module, "live", "--live")
        args.live_address = (host, port)
    elif args.live_public:
        raise CliError("--live-public goes with --live HOST:PORT")
    if args.tiled is not None:
        for module in ("bluesky_tiled_plugins", "tiled", "event_model"):
            _need(module, "bluesky", "--tiled")


def lab_sinks(args: argparse.Namespace, stack: ExitStack, plan_name: str) -> list[Any]:
    """The sinks of --live and --tiled (the server closes with ``stack``). Connects to Tiled
    before anything is measured: a server that does not answer is a CliError."""
    sinks: list[Any] = []
    if getattr(args, "tiled", None) is not None:
        from ..bluesky.tiled import TiledSink

        try:
            sink = TiledSink(args.tiled, plan_name=plan_name)
        except ConnectionError as exc:
            raise CliError(f"--tiled: {exc}") from None
        sinks.append(sink)
        stack.callback(_report_tiled, sink)
    if getattr(args, "live", None) is not None:
        from ..live import LiveRun
        from ..live.server import LiveServer

        run = LiveRun()
        host, port = args.live_address
        try:
            server = stack.enter_context(LiveServer(run, host, port, public=args.live_public))
        except OSError as exc:
            raise CliError(f"--live {args.live}: cannot serve there ({exc}); choose another "
                           "port") from None
        print(f"# live view: {server.url}", file=sys.stderr, flush=True)
        sinks.append(run)
    return sinks


def _report_tiled(sink: Any) -> None:
    sink.close(timeout=120.0)
    if sink.failed:
        print(f"# Tiled: the run could not be written ({sink.failed}); the CSV is complete",
              file=sys.stderr)
    elif sink.run_uid:
        print(f"# run in Tiled: {sink.run_uid}")


def cmd_serve(args: argparse.Namespace) -> int:
    from ..bluesky.tiled import data_folder, serve

    folder = args.directory or data_folder()
    server = serve(folder, port=args.port)
    print(f"# Tiled catalog in {server.directory}")
    print(f"# give scans: --tiled '{server.uri}'")
    print(f"# browse: {server.web_ui_link}   (Ctrl-C stops the server)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _check_serve(args: argparse.Namespace) -> None:
    _need("tiled", "bluesky", "serve")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("serve", help="a local Tiled server for the runs (--tiled)",
                       description="Serve the runs written with --tiled from a Tiled catalog "
                                   "in your data folder, on 127.0.0.1 only.")
    p.add_argument("--port", type=int_at_least(0), default=8000,
                   help="port on 127.0.0.1 (8000; 0: any free port)")
    p.add_argument("--directory", type=Path, default=None,
                   help="the catalog's folder (default: $CPLSCOPE_HOME/tiled, else "
                        "~/.local/share/cplscope/tiled)")
    add_check(p, _check_serve)
    p.set_defaults(func=cmd_serve)
