"""`connect`: one call to reach a real board over libusb or the simulated instrument."""
from __future__ import annotations

from typing import Any

import usb.core

from .instrument import Instrument
from .transport import DeviceNotFound, Transport

__all__ = ["connect", "find_boards"]


def _usb_backend() -> Any:
    import libusb_package

    backend = libusb_package.get_libusb1_backend()
    if backend is None:
        raise DeviceNotFound("libusb could not be loaded: reinstall `libusb-package`")
    return backend


def find_boards() -> list[usb.core.Device]:
    """Every cplscope board on the USB bus (real boards only)."""
    from .usb_ids import PID, VID

    return list(usb.core.find(find_all=True, idVendor=VID, idProduct=PID,
                              backend=_usb_backend()))


def connect(address: str = "usb", *, sample: str = "R-Cs4PbBr6",
            faults: dict[str, float] | None = None, seed: int = 0,
            reconnect_timeout: float = 30.0, reply_timeout: float = 5.0,
            **sim_options: Any) -> Instrument:
    """Connect to a CPL controller and return an :class:`Instrument`.

    Args:
        address: ``"usb"`` (the first board found), ``"usb://SERIAL"`` (the board with that
            USB serial number), or ``"sim"`` (start the simulated instrument: the optical bench
            and the real firmware in the MicroPython interpreter, as child processes).
        sample: simulated sample: a built-in name (``cplscope.sim.samples.list_samples()``)
            or a path to a sample JSON file. Simulator only.
        faults: simulated faults (``corrupt``, ``drop``, ``stall``, ``disconnect_at``,
            ``reconnect_after``). Simulator only.
        seed: random seed of the simulated bench, for reproducible runs.
        reconnect_timeout: s to wait for the board to come back after a disconnect.
        reply_timeout: s a command waits for its reply (the Instrument's own commands wait
            twice that): longer for a board that answers slowly.
        **sim_options: further simulator options (see ``cplscope.sim.launcher.launch``).

    Raises:
        DeviceNotFound: no matching board.
        ValueError: an unknown address form.
    """
    from .usb_ids import PID, VID

    if address == "sim":
        from .sim.launcher import launch

        session = launch(sample, faults=faults, seed=seed, **sim_options)
        try:
            transport = Transport(session.find_device, reconnect_timeout=reconnect_timeout,
                                  reply_timeout=reply_timeout)
        except BaseException:
            session.close()
            raise
        return Instrument(transport, sim=session, address="sim")
    if faults or sim_options:
        raise ValueError("faults and simulator options apply only to connect('sim')")
    if address == "usb":
        serial = None
    elif address.startswith("usb://") and len(address) > len("usb://"):
        serial = address[len("usb://"):]
    else:
        raise ValueError(f"unknown address {address!r}: use 'usb', 'usb://SERIAL' or 'sim'")
    backend = _usb_backend()

    def find() -> usb.core.Device | None:
        for dev in usb.core.find(find_all=True, idVendor=VID, idProduct=PID, backend=backend):
            if serial is None:
                return dev
            try:
                if dev.serial_number == serial:
                    return dev
            except (usb.core.USBError, ValueError):
                continue
        return None

    if find() is None:
        what = f"with serial {serial}" if serial else f"(USB {VID:04x}:{PID:04x})"
        raise DeviceNotFound(f"no cplscope board {what} found: check the cable, that the "
                             "board runs the cplscope firmware (`cplscope flash`), and that "
                             "your user may open it (udev rule)")
    return Instrument(Transport(find, reconnect_timeout=reconnect_timeout,
                                reply_timeout=reply_timeout), address=address)
