"""What ``cplscope scan`` and ``cplscope cd`` share: connecting, resuming, the live output,
Ctrl-C, the figure and the closing summary. Each passes the call that starts its scan."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .lab import lab_sinks
from .options import EXIT_INTERRUPTED
from .session import open_session, print_point

#: ``measure(inst, sinks, survey_callback)`` starts the scan and returns its spectrum.
Measure = Callable[[Any, list, Callable[[Any], None]], Any]


def run_scan_command(args: argparse.Namespace, sim_options: dict[str, Any] | None = None,
                     measure: Measure | None = None) -> tuple[int, Any]:
    """Connect, run ``measure`` (or resume ``args.resume``), report; (the exit status, the
    spectrum)."""
    from ..plans.engine import ScanInterrupted

    if args.resume is not None:
        _settings_of_resumed_run(args)
    stack = ExitStack()
    lab = lab_sinks(args, stack, f"cplscope {args.command}")   # --live, --tiled: before connecting
    with stack, open_session(args, sim_options=sim_options) as inst:
        def show_survey(survey: Any) -> None:
            # the prediction the user decides on: its own lines above the progress bar,
            # also with -q
            from tqdm import tqdm

            tqdm.write(survey.summary(), file=sys.stderr)

        plot = []
        if args.plot:   # (matplotlib is imported only for a scan that draws its figure)
            from ..plot.sink import PlotSink

            plot.append(PlotSink(args.plot, labels=[args.sample_name],
                                 overwrite=bool(args.overwrite)))
        plot += lab + _time_bin_files(args)
        status = 0
        try:
            if args.resume is not None:
                spec = inst.resume(args.resume, output=args.output, progress=not args.quiet,
                                   callback=_live(args), sinks=plot,
                                   overwrite=bool(args.overwrite))
            else:
                assert measure is not None
                spec = measure(inst, plot, show_survey)
        except ScanInterrupted as exc:
            spec = exc.spectrum
            print(f"\ninterrupted: {len(spec)} points kept in {args.output}", file=sys.stderr)
            status = EXIT_INTERRUPTED
        health = inst.health()
    print(f"# {len(spec)} points -> {args.output}; frames {health.frames}, rejected "
          f"{health.rejected}, missing {health.missing}, reconnects {health.reconnects}")
    if args.plot and len(spec):
        print(f"# figure -> {args.plot}")
    return status, spec


def _time_bin_files(args: argparse.Namespace) -> list[Any]:
    """A time-bin run's g(t), I(t) and decay-fit CSVs beside its spectrum's (a resumed run's
    with the archived points first)."""
    gating = getattr(args, "gating", None)
    if gating is None or gating.gates < 2:
        return []
    from ..data.sinks import TimeBinsSink

    given = "decay_components" in (getattr(args, "given", None) or ())
    sink = TimeBinsSink(time_bins_path(Path(args.output)),
                        args.decay_components if args.resume is None or given else None)
    if args.resume is not None:
        sink.replay(args.resume)
    return [sink]


def time_bins_path(output: Path) -> Path:
    """Where the g(t) and I(t) of a spectrum CSV ``output`` go: ``OUT.timebins.csv``."""
    return output.with_name(output.stem + ".timebins" + output.suffix)


def _live(args: argparse.Namespace) -> Callable[..., None]:
    def live(point: Any, i: int, acc: int) -> None:
        if args.verbose and point.product is None:
            print_point(point)
    return live


def _settings_of_resumed_run(args: argparse.Namespace) -> None:
    """The instrument is set up as the interrupted run was."""
    rs = getattr(args, "resume_settings", {})
    for key, opt in (("bins", "bins"), ("periods", "periods"), ("hv_volts", "hv")):
        if rs.get(key) is not None:
            setattr(args, opt, rs[key])
    commanded = rs.get("a0_commanded_rad")
    if commanded is not None:        # the A0 whose command, through the archive's
        cal = getattr(args, "resume_calibration", None)    # calibration, is the run's
        args.retardation = commanded * (cal.retardation_scale if cal is not None else 1.0)
    if rs.get("gating"):             # a gated scan goes on gated, as the board ran it
        from ..protocol.gating import Gating

        args.gating = Gating.from_config(rs["gating"])
