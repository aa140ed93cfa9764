"""`connect`: one call to reach a real board over libusb or the simulated instrument."""
from __future__ import annotations

from typing import Any

from .board.connection import find_boards, open_controller
from .instrument import Instrument

__all__ = ["connect", "find_boards"]


def connect(address: str = "usb", *, sample: str = "R-Cs4PbBr6",
            faults: dict[str, float] | None = None, seed: int | None = None,
            reconnect_timeout: float = 30.0, reply_timeout: float = 5.0,
            **sim_options: Any) -> Instrument:
    """Connect to a CPL controller and return an :class:`~cplscope.Instrument`.

    Args:
        address: ``"usb"`` (the first board found), ``"usb://SERIAL"`` (the board with that
            USB serial number), or ``"sim"`` (start the simulated instrument: the optical bench
            and the real firmware in the MicroPython interpreter, as child processes).
        sample: simulated sample: a built-in name (``cplscope.sim.samples.list_samples()``)
            or a path to a sample JSON file. Simulator only.
        faults: simulated faults (``corrupt``, ``drop``, ``stall``: fractions of frames from
            0 to 0.05, in both directions; ``disconnect_at``, ``reconnect_after``: instrument
            s). Simulator only.
        seed: random seed of the simulated bench: the same seed and commands give the same
            data. None (default): a fresh seed, so that two runs (two samples measured one
            after the other) never share a noise realization; ``inst.info()["sim_seed"]``
            and every run's metadata (``instrument.sim_seed``) record it.
        reconnect_timeout: s to wait for the board to come back after a disconnect.
        reply_timeout: s a command waits for its reply (the Instrument's own commands wait
            twice that): longer for a board that answers slowly.
        **sim_options: further simulator options (see ``cplscope.sim.launcher.launch``).

    Raises:
        DeviceNotFound: no matching board.
        ValueError: an unknown address form, or faults that are unknown, malformed or
            beyond what a real link loses (a rate above 0.05).
    """
    return open_controller(address, cls=Instrument, sample=sample, faults=faults, seed=seed,
                           reconnect_timeout=reconnect_timeout, reply_timeout=reply_timeout,
                           **sim_options)
