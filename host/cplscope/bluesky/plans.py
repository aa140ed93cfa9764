"""Bluesky plans that run the scan engine: :func:`cpl_scan` and :func:`cd_scan` do what
``cplscope scan`` and ``cplscope cd`` do (dark, survey, time budget, skip-hopeless,
accumulations, blank or baseline), with the same engine, and emit event-model documents.

How: the engine (:func:`cplscope.plans.engine.run_scan`, through
:func:`cplscope.plans.scan.scan` and :func:`cplscope.plans.cd_scan.cd_scan`, the same calls
as the command line) runs in the device's instrument thread. Its documents come back to the
plan one at a time, and the plan hands each to the RunEngine as it arrives: the run start
as ``open_run``, a point as an event in ``primary`` (``create``/``read``/``save``), the run
stop as the ``spectrum`` stream and ``close_run`` (:mod:`cplscope.bluesky.documents` is the
mapping). So every callback sees each point live, the RunEngine numbers and validates the
documents, and Ctrl-C or ``RE.abort()`` stop the engine after the point it is measuring,
with the partial spectrum kept.
"""
# No ``from __future__ import annotations`` here: the queue server reads the plans' annotations
# as objects (``cpl: Readable`` lets it turn a device's name into the device).
import asyncio
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.protocols import Readable
from bluesky.utils import Msg

from ..data.documents import Sink
from .device import CplScope
from .documents import data_keys, start_metadata, stream_data

__all__ = ["cd_scan", "cpl_scan", "engine_plan"]

_DONE = "__done__"


def cpl_scan(cpl: Readable, start: float, stop: float, step: float, *,
             dwell_s: float | None = None, target_sigma: float | None = None,
             max_dwell_s: float = 300.0, accumulations: int = 1, dark: bool = True,
             dark_dwell_s: float = 10.0, skip_hopeless: bool = False,
             time_budget_s: float | None = None, survey: bool | float = False,
             blank: Any = None, sample: str | None = None, output: Any = None,
             archive: Any = None, overwrite: bool = False, sinks: Sequence[Callable[[str, Any], None]] = (),
             md: Mapping[str, Any] | None = None,
             gating: Any = None) -> Generator[Msg, Any, Any]:
    """A CPL scan from ``start`` to ``stop`` nm in ``step`` nm, as ``cplscope scan``.

    Args:
        cpl: a connected :class:`CplScope` (its ``hv`` is used; bins, periods and A0 as set
            on it).
        dwell_s: fixed counting time per point, s; or
        target_sigma: adaptive: count each point until σ(g_lum) reaches this, at most
            ``max_dwell_s``; and/or
        time_budget_s: the counting time of the whole scan, s (a survey first).
        accumulations: passes over the grid, combined point by point.
        dark: measure the dark (``dark_dwell_s`` s, shutter closed) before each pass.
        skip_hopeless: give up a point once its target is out of reach.
        survey: a quick pass first (True: 1 s per point, or its dwell in s).
        blank: a :class:`~cplscope.settings.calibration.Blank` to subtract (default: the
            calibration's, where it covers the scan).
        sample: the sample's name in the metadata (default: the twin's sample).
        output, archive, overwrite: the spectrum CSV and the raw HDF5 archive, written by
            the engine as the CLI writes them (``archive`` is the way to keep every frame).
        sinks: more engine sinks (they get the engine's own documents, frames included).
        md: metadata added to the start document.
        gating: a :class:`~cplscope.protocol.gating.Gating`: time-gated counting under
            pulsed excitation (as ``cplscope scan --pulse-rate --gate``), with the bins and
            periods set on ``cpl``; None: as configured.

    Returns the final spectrum as the plan's result (``RE(...).plan_result`` with
    ``RunEngine(call_returns_result=True)``).
    """
    from ..plans.scan import scan

    kw = dict(dwell_s=dwell_s, target_sigma=target_sigma, max_dwell_s=max_dwell_s,
              accumulations=accumulations, dark=dark, dark_dwell_s=dark_dwell_s,
              skip_hopeless=skip_hopeless, time_budget_s=time_budget_s, survey=survey,
              blank=blank, output=output, archive=archive, overwrite=overwrite)

    mine: list[Any] = list(sinks)

    def run(inst: Any, engine_sinks: list[Sink]) -> Any:
        if gating is not None:
            st = inst.status()
            inst.configure_gated(gating, bins=int(st.get("bins") or 16),
                                 periods=int(st.get("periods") or 10000))
        return scan(inst, start, stop, step, sample=sample or _sample_name(cpl),
                    rules=inst.flag_rules(), sinks=[*mine, *engine_sinks], **kw)

    plan_args = {"start": start, "stop": stop, "step": step, **_jsonable(kw)}
    if gating is not None:
        plan_args["gating"] = gating.as_dict()
    return (yield from engine_plan(cpl, run, plan_name="cpl_scan",
                                   md={"plan_args": plan_args, **dict(md or {})}))


def cd_scan(cpl: Readable, start: float, stop: float, step: float, *,
            dwell_s: float | None = None, target_sigma_delta_a: float | None = None,
            target_sigma_g_abs: float | None = None, max_dwell_s: float = 300.0,
            baseline: Any = None, accumulations: int = 1, dark: bool = True,
            dark_dwell_s: float = 10.0, skip_hopeless: bool = False,
            time_budget_s: float | None = None, survey: bool | float = False,
            sample: str | None = None, output: Any = None, archive: Any = None,
            overwrite: bool = False, sinks: Sequence[Callable[[str, Any], None]] = (),
            md: Mapping[str, Any] | None = None) -> Generator[Msg, Any, Any]:
    """A CD scan, as ``cplscope cd``: the instrument in the transmission light path (the
    twin: ``CplScope("sim", sample=..., bench_options={"geometry": "cd"})``). A baseline
    scan (solvent, cell) is this plan without ``baseline``; a sample's is with it (a
    :class:`~cplscope.data.cd_spectrum.CDSpectrum` or its CSV). The targets are σ(ΔA) or
    σ(g_abs); the rest as :func:`cpl_scan`."""
    from ..plans.cd_scan import cd_scan as engine_cd_scan

    kw = dict(dwell_s=dwell_s, target_sigma_delta_a=target_sigma_delta_a,
              target_sigma_g_abs=target_sigma_g_abs, max_dwell_s=max_dwell_s,
              baseline=baseline, accumulations=accumulations, dark=dark,
              dark_dwell_s=dark_dwell_s, skip_hopeless=skip_hopeless,
              time_budget_s=time_budget_s, survey=survey, output=output, archive=archive,
              overwrite=overwrite)

    mine: list[Any] = list(sinks)

    def run(inst: Any, engine_sinks: list[Sink]) -> Any:
        return engine_cd_scan(inst, start, stop, step, sample=sample or _sample_name(cpl),
                              sinks=[*mine, *engine_sinks], **kw)

    plan_args = {"start": start, "stop": stop, "step": step, **_jsonable(kw)}
    return (yield from engine_plan(cpl, run, plan_name="cd_scan",
                                   md={"plan_args": plan_args, **dict(md or {})}))


def engine_plan(cpl: Readable, run: Callable[[Any, list[Sink]], Any], *,
                plan_name: str, md: Mapping[str, Any] | None = None
                ) -> Generator[Msg, Any, Any]:
    """The plan of an engine run: ``run(instrument, sinks)`` starts the engine with ``sinks``
    (it must pass them on to :func:`~cplscope.plans.engine.run_scan`) and returns its
    spectrum. Everything the engine emits becomes event-model documents; the run's exit
    status and reason are the engine's."""
    if not isinstance(cpl, CplScope):
        raise TypeError(f"the plan measures with a cplscope.bluesky.CplScope, not {cpl!r}")
    bridge = _Bridge(cpl, run)
    readers: dict[str, _StreamReader] = {}
    try:
        yield from bps.wait_for([bridge.start])
        while True:
            name, doc = yield from _next(bridge)
            if name == _DONE:
                return bridge.result()
            if name == "start":
                yield from bps.open_run(start_metadata(doc, plan_name=plan_name, md=md))
                # the engine does not pause: a pause request (Ctrl-C) aborts the run, and
                # the engine stops after its point (resume it from its archive)
                yield from bps.clear_checkpoint()
                continue
            for item in stream_data(name, doc):
                reader = readers.setdefault(item["stream"], _StreamReader(item["stream"]))
                reader.load(item["data"], item.get("configuration"))
                yield from bps.create(item["stream"])
                yield from bps.read(reader)
                yield from bps.save()
            if name == "stop":
                yield from bps.close_run(exit_status=doc.exit_status, reason=doc.reason)
    except GeneratorExit:
        bridge.cancel()
        raise
    except BaseException:
        # RE.abort(), RE.stop(), a failed message: the engine stops at its next document
        # (it writes the partial spectrum and leaves the instrument safe); wait for it
        bridge.cancel()
        if bridge.running:
            yield from bps.wait_for([bridge.finished])
        raise


def _next(bridge: "_Bridge") -> Generator[Msg, Any, tuple[str, Any]]:
    tasks = yield from bps.wait_for([bridge.get])
    return tasks[0].result()


class _Bridge:
    """The engine in the instrument's thread, its documents in an asyncio queue of the
    RunEngine's loop; ``cancel()`` makes the engine stop (as on Ctrl-C) at its next
    document."""

    def __init__(self, cpl: CplScope, run: Callable[[Any, list[Sink]], Any]) -> None:
        self.cpl, self.run = cpl, run
        self.queue: asyncio.Queue | None = None
        self.hv = 0.0
        self._task: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.cancelled = False
        self._result: Any = None
        self._error: BaseException | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.hv = float(await self.cpl.hv.get_value())
        self._task = asyncio.ensure_future(self.cpl.link.call(self._work))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def finished(self) -> None:
        if self._task is not None:
            await asyncio.wait([self._task])

    async def get(self) -> tuple[str, Any]:
        assert self.queue is not None
        return await self.queue.get()

    def _put(self, item: tuple[str, Any]) -> None:
        assert self.loop is not None and self.queue is not None
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _sink(self, name: str, doc: Any) -> None:
        if self.cancelled and name != "stop":
            raise KeyboardInterrupt("the RunEngine stopped the plan")
        self._put((name, doc))

    def _work(self, inst: Any) -> None:
        try:
            inst.set_hv(self.hv)
            inst.open_shutter()
            self._result = self.run(inst, [self._sink])
        except BaseException as exc:  # handed to the plan, which raises it
            self._error = exc
        finally:
            try:
                inst.make_safe()         # as the command line leaves it: shutter closed, HV off
            except Exception as exc:     # the instrument may be gone; the run's error matters more
                self._error = self._error or exc
            self._put((_DONE, None))

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        self.cancelled = True


class _StreamReader:
    """A bluesky ``Readable`` whose reading is the event data of one stream, set before
    each ``read`` (data keys from :func:`cplscope.bluesky.documents.data_keys`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parent = None
        self._data: dict[str, Any] = {}
        self._config: dict[str, Any] = {}
        self._time = time.time()

    def load(self, data: Mapping[str, Any], configuration: Mapping[str, Any] | None) -> None:
        self._data = dict(data)
        if configuration is not None:
            self._config = dict(configuration)
        self._time = time.time()

    def describe(self) -> dict[str, Any]:
        return data_keys(self._data)

    def read(self) -> dict[str, Any]:
        return {k: {"value": v, "timestamp": self._time} for k, v in self._data.items()}

    def describe_configuration(self) -> dict[str, Any]:
        return data_keys(self._config)

    def read_configuration(self) -> dict[str, Any]:
        return {k: {"value": v, "timestamp": self._time} for k, v in self._config.items()}


def _sample_name(cpl: CplScope) -> str:
    sample = cpl.link.options.get("sample")
    return str(sample) if sample else "unknown"


def _jsonable(kw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v if v is None or isinstance(v, (bool, int, float, str)) else str(v))
            for k, v in kw.items()}
