"""The framed link to one board over pyusb: commands with replies, and the data stream.

A :class:`Transport` owns the pyusb device of a real board (libusb) or of the simulated one
(cplscope's virtual-USB backend): it claims the vendor interface (class 0xFF), reads the bulk
IN endpoint in a background thread, decodes frames with :class:`cplscope.protocol.
StreamDecoder`, hands replies to the command that waits for them, and queues data frames
(COUNTS, ADC_BLOCK) and events for the instrument layer. It counts everything that goes wrong
(corrupt frames, sequence gaps, stalls, disconnects, firmware restarts) and reconnects by
itself when the board comes back.
"""
from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import usb.core
import usb.util

from ..protocol import (
    AdcBlock,
    Counts,
    Event,
    Opcode,
    Reply,
    Status,
    StreamDecoder,
    StreamStats,
    encode_command,
)

__all__ = ["ConnectionLost", "DeviceNotFound", "LinkHealth", "Transport",
           "claim_vendor_interface"]

log = logging.getLogger(__name__)

VENDOR_CLASS = 0xFF
_READ_SIZE = 16384            # a multiple of the 64-byte full-speed packet
_POLL_MS = 100
_DISCONNECTED = {errno.ENODEV, errno.EIO, errno.ESHUTDOWN, errno.ENOENT}


class DeviceNotFound(RuntimeError):
    """No matching board was found on the bus."""


class ConnectionLost(RuntimeError):
    """The board disconnected (or stopped answering) while a command or an acquisition needed
    it. The transport keeps trying to reconnect for ``reconnect_timeout`` seconds."""


@dataclass(frozen=True)
class LinkHealth:
    """Stream health since the transport opened: the decoder's counters
    (:class:`cplscope.protocol.StreamStats`, which documents them) plus what only the USB link
    sees.

    ``frames``: good frames decoded; ``rejected``: corrupt frames and candidates thrown away
    (CRC, version, length, malformed payload); ``missing``: sequence numbers never received;
    ``restarts``: firmware restarts seen (the sequence number went back); ``unknown``: good
    frames of a type this host does not know; ``reconnects``: USB reconnections after a
    disconnect; ``stalls``: endpoint halts cleared.
    """

    frames: int = 0
    rejected: int = 0
    missing: int = 0
    restarts: int = 0
    reconnects: int = 0
    stalls: int = 0
    unknown: int = 0

    @classmethod
    def of(cls, stats: StreamStats, *, reconnects: int = 0, stalls: int = 0) -> LinkHealth:
        """A snapshot of a decoder's counters with the link's own."""
        return cls(frames=stats.frames, rejected=stats.rejected, missing=stats.missing,
                   restarts=stats.restarts, reconnects=reconnects, stalls=stalls,
                   unknown=stats.unknown)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Pending:
    __slots__ = ("event", "reply", "lost")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Reply | None = None
        self.lost = False


def claim_vendor_interface(device: usb.core.Device) -> tuple[Any, Any, Any]:
    """Configure ``device``, claim its vendor interface and return (interface, ep_out, ep_in)."""
    try:
        cfg = device.get_active_configuration()
    except usb.core.USBError:
        cfg = None
    if cfg is None:
        device.set_configuration()
        cfg = device.get_active_configuration()
    intf = usb.util.find_descriptor(cfg, bInterfaceClass=VENDOR_CLASS)
    if intf is None:
        raise DeviceNotFound("the device has no vendor-specific (class 0xFF) interface: is it "
                             "running the cplscope firmware? Flash it with `cplscope flash`")
    try:
        if device.is_kernel_driver_active(intf.bInterfaceNumber):
            device.detach_kernel_driver(intf.bInterfaceNumber)
    except (NotImplementedError, usb.core.USBError):
        pass
    usb.util.claim_interface(device, intf)

    def endpoint(direction: int) -> Any:
        return usb.util.find_descriptor(
            intf, custom_match=lambda e: usb.util.endpoint_direction(e.bEndpointAddress)
            == direction and usb.util.endpoint_type(e.bmAttributes)
            == usb.util.ENDPOINT_TYPE_BULK)

    ep_out, ep_in = endpoint(usb.util.ENDPOINT_OUT), endpoint(usb.util.ENDPOINT_IN)
    if ep_out is None or ep_in is None:
        raise DeviceNotFound("the vendor interface lacks a bulk IN or OUT endpoint")
    return intf, ep_out, ep_in


class Transport:
    """Commands and data frames over the board's vendor bulk interface.

    Args:
        find: returns the board's current pyusb ``Device`` or None; called at start and again
            after a disconnect, to reconnect.
        reconnect_timeout: s to keep looking for the board after a disconnect before giving up.
        keep_raw: keep each data frame's bytes (``msg.raw``) for the raw archive.
        reply_timeout: s :meth:`command` waits for a reply unless told otherwise
            (:class:`cplscope.Instrument` waits twice that); longer for a slow board, such as
            the emulated Pico of the acceptance tests.
    """

    def __init__(self, find: Callable[[], usb.core.Device | None], *,
                 reconnect_timeout: float = 30.0, keep_raw: bool = False,
                 reply_timeout: float = 5.0) -> None:
        if not reply_timeout > 0:
            raise ValueError(f"reply_timeout must be > 0 s, got {reply_timeout!r}")
        self._find = find
        self.reconnect_timeout = reconnect_timeout
        self.reply_timeout = reply_timeout
        self._decoder = StreamDecoder(keep_raw=keep_raw)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._cmd_lock = threading.Lock()
        self._request_id = 0
        self._host_seq = 0
        self._buf = array("B", bytes(_READ_SIZE))
        self.data: queue.Queue[Counts | AdcBlock] = queue.Queue()
        self.events: deque[Event] = deque(maxlen=1000)
        self.last_status: Status | None = None
        self._reconnects = 0
        self._stalls = 0
        self._connected = threading.Event()
        self._closed = threading.Event()
        self._gave_up = False
        self.on_event: Callable[[Event], None] | None = None
        device = find()
        if device is None:
            raise DeviceNotFound("no cplscope board found: check the USB cable, that the board "
                                 "runs the cplscope firmware, and the udev permissions")
        self._open(device)
        self._reader = threading.Thread(target=self._read_loop, name="cplscope-usb-reader",
                                        daemon=True)
        self._reader.start()

    # --- public -------------------------------------------------------------------------

    @property
    def device(self) -> usb.core.Device:
        """The current pyusb device (a new object after a reconnect)."""
        return self._device

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def health(self) -> LinkHealth:
        """A snapshot of the stream health counters."""
        return LinkHealth.of(self._decoder.stats, reconnects=self._reconnects,
                             stalls=self._stalls)

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the board to be connected; True if it is."""
        return self._connected.wait(timeout)

    def command(self, opcode: Opcode | int, args: dict[str, Any] | None = None, *,
                timeout: float | None = None) -> dict[str, Any]:
        """Send one command and return its result.

        Raises:
            cplscope.protocol.CommandError: the board refused it (its text says why).
            ConnectionLost: the board disconnected before answering.
            TimeoutError: no reply within ``timeout`` s (default :attr:`reply_timeout`).
        """
        if timeout is None:
            timeout = self.reply_timeout
        name = Opcode(opcode).name if int(opcode) in Opcode._value2member_map_ else str(opcode)
        with self._cmd_lock:
            if not self._connected.wait(timeout):
                raise ConnectionLost(f"{name}: the board is not connected")
            with self._lock:
                self._request_id = (self._request_id + 1) % 0xFFFF
                rid = self._request_id
                pending = self._pending[rid] = _Pending()
                frame = encode_command(rid, opcode, args, seq=self._host_seq)
                self._host_seq = (self._host_seq + 1) & 0xFFFFFFFF
            try:
                self._write(frame, timeout)
                if not pending.event.wait(timeout):
                    raise TimeoutError(f"{name}: no reply within {timeout:g} s; the board may "
                                       "be busy or hung (check `cplscope info`)")
            finally:
                with self._lock:
                    self._pending.pop(rid, None)
            if pending.lost or pending.reply is None:
                raise ConnectionLost(f"{name}: the board disconnected before it answered")
            return pending.reply.raise_for_status()

    def drain(self) -> int:
        """Discard queued data frames; return how many."""
        n = 0
        while True:
            try:
                self.data.get_nowait()
                n += 1
            except queue.Empty:
                return n

    def close(self) -> None:
        """Stop the reader thread and release the interface. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._reader.join(timeout=2.0)
        self._release()

    # --- internals ----------------------------------------------------------------------

    def _open(self, device: usb.core.Device) -> None:
        self._device = device
        self._intf, self._ep_out, self._ep_in = claim_vendor_interface(device)
        self._connected.set()

    def _release(self) -> None:
        try:
            usb.util.release_interface(self._device, self._intf)
        except Exception:  # the device may already be gone
            pass
        usb.util.dispose_resources(self._device)

    def _write(self, frame: bytes, timeout: float) -> None:
        try:
            self._ep_out.write(frame, timeout=int(timeout * 1000))
        except usb.core.USBTimeoutError as exc:
            raise TimeoutError("the board did not take a command within "
                               f"{timeout:g} s") from exc
        except usb.core.USBError as exc:
            if exc.errno in _DISCONNECTED:
                raise ConnectionLost("the board disconnected") from exc
            raise

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            if not self._connected.is_set():
                if not self._reconnect():
                    return
                continue
            try:
                n = self._ep_in.read(self._buf, timeout=_POLL_MS)
            except usb.core.USBTimeoutError:
                continue
            except usb.core.USBError as exc:
                if exc.errno == errno.EPIPE:
                    self._stalls += 1
                    try:
                        self._ep_in.clear_halt()
                    except usb.core.USBError:
                        pass
                    continue
                log.warning("USB link lost: %s", exc)
                self._on_disconnect()
                continue
            if n:
                self._dispatch(self._decoder.feed(memoryview(self._buf)[:n]))

    def _dispatch(self, messages: list) -> None:
        for msg in messages:
            if isinstance(msg, (Counts, AdcBlock)):
                self.data.put(msg)
            elif isinstance(msg, Reply):
                with self._lock:
                    pending = self._pending.get(msg.request_id)
                if pending is not None:
                    pending.reply = msg
                    pending.event.set()
            elif isinstance(msg, Status):
                self.last_status = msg
            elif isinstance(msg, Event):
                self.events.append(msg)
                if self.on_event is not None:
                    try:
                        self.on_event(msg)
                    except Exception:
                        log.exception("event callback failed")

    def _on_disconnect(self) -> None:
        self._connected.clear()
        self._dispatch(self._decoder.flush())
        with self._lock:
            for pending in self._pending.values():
                pending.lost = True
                pending.event.set()
        self._release()

    def _reconnect(self) -> bool:
        deadline = time.monotonic() + self.reconnect_timeout
        while not self._closed.is_set() and time.monotonic() < deadline:
            try:
                device = self._find()
                if device is not None:
                    self._open(device)
                    self._reconnects += 1
                    log.info("USB link re-established")
                    return True
            except (usb.core.USBError, DeviceNotFound) as exc:
                log.debug("reconnect attempt failed: %s", exc)
            time.sleep(0.1)
        self._gave_up = True
        return False
