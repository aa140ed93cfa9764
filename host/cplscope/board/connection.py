"""Reach a board: a real one over libusb, or the simulated instrument (:func:`open_controller`)."""
from __future__ import annotations

from typing import Any, TypeVar

import usb.core

from .controller import Controller
from .transport import DeviceNotFound, Transport

__all__ = ["find_boards", "open_controller"]


def _usb_backend() -> Any:
    import libusb_package

    backend = libusb_package.get_libusb1_backend()
    if backend is None:
        raise DeviceNotFound("libusb could not be loaded: reinstall `libusb-package`")
    return backend


def find_boards() -> list[usb.core.Device]:
    """Every cplscope board on the USB bus (real boards only)."""
    from ..protocol.usb_ids import PID, VID

    return list(usb.core.find(find_all=True, idVendor=VID, idProduct=PID,
                              backend=_usb_backend()))


C = TypeVar("C", bound=Controller)


def open_controller(address: str = "usb", *, cls: type[C] = Controller,  # type: ignore[assignment]
                    sample: str = "R-Cs4PbBr6", faults: dict[str, float] | None = None,
                    seed: int | None = None, reconnect_timeout: float = 30.0,
                    reply_timeout: float = 5.0, **sim_options: Any) -> C:
    """Connect to a CPL controller and return it as a ``cls`` (a
    :class:`~cplscope.board.controller.Controller`, or the :class:`cplscope.Instrument` that
    :func:`cplscope.connect` asks for).

    The arguments are those of :func:`cplscope.connect`; a simulated instrument without a
    ``seed`` gets a fresh one (:func:`cplscope.util.seeds.fresh_seed`), which its
    :meth:`~cplscope.board.controller.Controller.info` reports as ``sim_seed``.

    Raises:
        DeviceNotFound: no matching board.
        ValueError: an unknown address form, or faults that are unknown, malformed or
            beyond what a real link loses (a rate above 0.05).
    """
    from ..protocol.usb_ids import PID, VID

    if address == "sim":
        from ..sim.faults import check_link_faults
        from ..sim.launcher import launch
        from ..util.seeds import fresh_seed

        check_link_faults(faults)  # no rate above what a real link loses
        if seed is None:
            seed = fresh_seed()
        session = launch(sample, faults=faults, seed=seed, **sim_options)
        try:
            transport = Transport(session.find_device, reconnect_timeout=reconnect_timeout,
                                  reply_timeout=reply_timeout,
                                  retry_on_silence=session.loses_frames)
        except BaseException:
            session.close()
            raise
        return cls(transport, sim=session, address="sim", sim_seed=seed)
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
    return cls(Transport(find, reconnect_timeout=reconnect_timeout,
                                reply_timeout=reply_timeout), address=address)
