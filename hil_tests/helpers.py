"""Small shared steps of the acceptance tests (instrument preparation, waiting for events)."""
from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable
from typing import Any

from cplscope.protocol import Counts, Event, Opcode

A0_RAD = math.pi / 2  # quarter-wave: the retardation every test holds unless it says otherwise
#: wall-clock s per s of instrument time (set per board by conftest; > 1 on the emulated Pico)
WALL_PER_INSTRUMENT_S = 1.0


def tune(inst: Any, wavelength_nm: float = 438.0, *, bins: int = 16, periods: int = 5000,
         a0_rad: float = A0_RAD, hv_volts: float = 800.0, shutter: bool = True) -> None:
    """Configure counting, home, hold ``a0_rad`` (rad), go to ``wavelength_nm`` (nm), set the
    HV (V) and the shutter: the state a measurement starts from."""
    inst.configure_counting(bins=bins, periods=periods)
    inst.home()
    inst.set_retardation(a0_rad)
    inst.move_to(wavelength_nm)
    inst.set_hv(hv_volts)
    if shutter:
        inst.open_shutter()
    else:
        inst.close_shutter()


def wait_event(inst: Any, code: int, timeout_s: float = 10.0, since: int = 0) -> Event:
    """The first board event with ``code`` among those received after index ``since`` of
    ``inst.transport.events`` (waits up to ``timeout_s`` s of instrument time)."""
    deadline = time.monotonic() + timeout_s * WALL_PER_INSTRUMENT_S
    while time.monotonic() < deadline:
        for e in list(inst.transport.events)[since:]:
            if e.code == code:
                return e
        time.sleep(0.01)
    raise AssertionError(f"no event {code} within {timeout_s:g} s of instrument time; got "
                         f"{[(e.code, e.text) for e in inst.transport.events]}")


def wait_locked(inst: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    """STATUS once it reports the PEM locked (waits up to ``timeout_s`` s of instrument time:
    a board driving the PEM itself first sweeps for its resonance)."""
    deadline = time.monotonic() + timeout_s * WALL_PER_INSTRUMENT_S
    while True:
        st = inst.transport.command(Opcode.STATUS)
        if st["pem_locked"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert st["pem_locked"], f"the PEM did not lock within {timeout_s:g} s: {st}"
    return st


def raw_frames(inst: Any, n: int, timeout_s: float = 30.0,
               during: Callable[[int], None] | None = None) -> list[Counts]:
    """START, collect ``n`` COUNTS frames of this acquisition whatever their flags, STOP.
    ``during(i)`` is called after frame i (e.g. to move the monochromator meanwhile).
    ``timeout_s``: s of instrument time."""
    t = inst.transport
    t.drain()
    acq = t.command(Opcode.START)["acq_id"]
    frames: list[Counts] = []
    deadline = time.monotonic() + timeout_s * WALL_PER_INSTRUMENT_S
    try:
        while len(frames) < n:
            try:
                msg = t.data.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"only {len(frames)} of {n} frames in {timeout_s:g} s of "
                                     "instrument time")
            if isinstance(msg, Counts) and msg.acq_id == acq:
                frames.append(msg)
                if during is not None:
                    during(len(frames) - 1)
    finally:
        t.command(Opcode.STOP)
    return frames


def rate_cps(frames: Any) -> tuple[float, float]:
    """Total count rate (counts/s) of a FrameSet and its Poisson σ."""
    total = float(frames.counts.sum())
    return total / frames.dwell_s, math.sqrt(total) / frames.dwell_s
