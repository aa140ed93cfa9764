"""The framed link to one board over pyusb: commands with replies, and the data stream.

A :class:`Transport` owns the pyusb device of a real board (libusb) or of the simulated one
(cplscope's virtual-USB backend): it claims the vendor interface (class 0xFF), reads the bulk
IN endpoint in a background thread, decodes frames with :class:`cplscope.protocol.
StreamDecoder`, hands replies to the command that waits for them, and queues data frames
(COUNTS, ADC_BLOCK) and events for the instrument layer. It counts everything that goes wrong
(corrupt frames, sequence gaps, stalls, disconnects, firmware restarts) and reconnects by
itself when the board comes back. A command whose reply was lost or corrupted is sent again
(docs/protocol.md, "Retries"): the board answers a retry from its reply cache, so no command
runs twice.
"""
from __future__ import annotations

import errno
import logging
import os
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
    EventCode,
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
#: s a command waits, after the link showed a loss, for a reply that may still come before it
#: sends the command again
_LOSS_GRACE_S = 0.05
#: the first retry interval is this fraction of the reply timeout (0.25 s at the default 5 s,
#: some 50 times a board's usual reply time); it doubles up to the reply timeout. A retry
#: that was not needed costs one cached reply, which the host ignores
_RETRY_FRACTION = 0.05
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
    disconnect; ``stalls``: endpoint halts cleared; ``retries``: commands sent again because
    their reply was lost or corrupted (docs/protocol.md, "Retries").
    """

    frames: int = 0
    rejected: int = 0
    missing: int = 0
    restarts: int = 0
    reconnects: int = 0
    stalls: int = 0
    unknown: int = 0
    retries: int = 0

    @classmethod
    def of(cls, stats: StreamStats, *, reconnects: int = 0, stalls: int = 0,
           retries: int = 0) -> LinkHealth:
        """A snapshot of a decoder's counters with the link's own."""
        return cls(frames=stats.frames, rejected=stats.rejected, missing=stats.missing,
                   restarts=stats.restarts, reconnects=reconnects, stalls=stalls,
                   unknown=stats.unknown, retries=retries)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Pending:
    """A command waiting for its reply. ``wake`` is set when the reply came, the board
    disconnected (``lost``), or the link lost a frame meanwhile (``suspect``: the reply may
    have been that frame)."""

    __slots__ = ("wake", "reply", "lost", "suspect")

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.reply: Reply | None = None
        self.lost = False
        self.suspect = False


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
            the emulated Pico of the acceptance tests. A command is sent again when the link
            loses a frame while it waits, or after no reply for 1/20 of this (doubling, at
            most ``reply_timeout``); a partial frame that gets no further byte for 1/20 of
            it is given up (its bytes are scanned again for frames).
        max_retries: how many times one command may be sent again.
        retry_on_silence: also send a command again when no reply came for a while (above),
            not only when the link shows a loss, and give up a partial frame that stops
            growing; or a callable asked each time. A link that loses nothing (the simulated
            instrument without cable faults) turns it off: there silence only means a slow
            host machine, and a retry would be one more command in the twin's timeline (a
            partial frame given up, a frame lost), so its data would depend on the machine's
            speed.
    """

    def __init__(self, find: Callable[[], usb.core.Device | None], *,
                 reconnect_timeout: float = 30.0, keep_raw: bool = False,
                 reply_timeout: float = 5.0, max_retries: int = 8,
                 retry_on_silence: bool | Callable[[], bool] = True) -> None:
        if not reply_timeout > 0:
            raise ValueError(f"reply_timeout must be > 0 s, got {reply_timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer ≥ 0, got {max_retries!r}")
        self._find = find
        self.reconnect_timeout = reconnect_timeout
        self.reply_timeout = reply_timeout
        self.max_retries = max_retries
        self.retry_on_silence = retry_on_silence
        self._decoder = StreamDecoder(keep_raw=keep_raw)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._cmd_lock = threading.Lock()
        # a random first id: a retry of this session can then meet a reply the board kept
        # for an earlier session only by a 1-in-65535 chance (docs/protocol.md, "Retries")
        self._request_id = int.from_bytes(os.urandom(2), "little") % 0xFFFF
        self._host_seq = 0
        self._retries = 0
        self._losses = 0  # rejected + missing frames + restarts, as the reader last saw them
        self._rejected_at_good = 0  # rejected frames up to the last good frame
        self._last_bytes = time.monotonic()  # when the reader last got bytes
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
                             stalls=self._stalls, retries=self._retries)

    def lost_frames(self) -> int:
        """Frames the link lost so far, each counted once: the sequence numbers missing, plus
        the frames rejected since the last good frame (a rejected frame becomes a missing
        number only when a good frame follows it)."""
        stats = self._decoder.stats
        return stats.missing + max(0, stats.rejected - self._rejected_at_good)

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the board to be connected; True if it is."""
        return self._connected.wait(timeout)

    def command(self, opcode: Opcode | int, args: dict[str, Any] | None = None, *,
                timeout: float | None = None) -> dict[str, Any]:
        """Send one command and return its result, sending it again (flag RETRY, the same
        request id) when its reply was lost or corrupted: at once when the link shows a loss
        while it waits, else after no reply for 1/20 of :attr:`reply_timeout` (doubling), at
        most :attr:`max_retries` times, all within ``timeout``. The board answers a retry of
        a command it executed with the same reply, without executing it again.

        Raises:
            cplscope.protocol.CommandError: the board refused it (its text says why).
            ConnectionLost: the board disconnected before answering.
            TimeoutError: no reply within ``timeout`` s (default :attr:`reply_timeout`); the
                text says how often the command was sent and what the link lost meanwhile.
        """
        if timeout is None:
            timeout = self.reply_timeout
        name = Opcode(opcode).name if int(opcode) in Opcode._value2member_map_ else str(opcode)
        with self._cmd_lock:
            if not self._connected.wait(timeout):
                raise ConnectionLost(f"{name}: the board is not connected")
            deadline = time.monotonic() + timeout
            with self._lock:
                self._request_id = (self._request_id + 1) % 0xFFFF
                rid = self._request_id
                pending = self._pending[rid] = _Pending()
            losses, restarts = self._losses, self._decoder.stats.restarts
            try:
                self._send(rid, opcode, args, retry=False, timeout=timeout)
                sends = self._await(pending, rid, opcode, args, deadline)
            finally:
                with self._lock:
                    self._pending.pop(rid, None)
            if pending.lost:
                raise ConnectionLost(f"{name}: the board disconnected before it answered")
            if pending.reply is None:
                restarts = self._decoder.stats.restarts - restarts
                raise TimeoutError(self._no_reply(name, timeout, sends,
                                                  self._losses - losses - restarts, restarts))
            return pending.reply.raise_for_status()

    def _await(self, pending: _Pending, rid: int, opcode: Opcode | int,
               args: dict[str, Any] | None, deadline: float) -> int:
        """Wait for the reply to command ``rid`` until ``deadline``, sending it again when it
        seems lost; returns how many times it was sent in all."""
        sends = 1
        interval = _RETRY_FRACTION * self.reply_timeout
        next_send = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                return sends
            may_retry = sends <= self.max_retries
            silence = self._retry_on_silence()
            wake_at = min(next_send, deadline) if may_retry and silence else deadline
            pending.wake.wait(wake_at - now)
            pending.wake.clear()  # before the checks: a wake-up after them is not missed
            if pending.reply is not None or pending.lost:
                return sends
            if not may_retry:
                continue
            if pending.suspect:
                pending.suspect = False
                # the lost frame may have been something else: the reply may be right behind
                if pending.wake.wait(_LOSS_GRACE_S) and (pending.reply is not None
                                                         or pending.lost):
                    return sends
            elif not silence or time.monotonic() < next_send:
                continue
            self._send(rid, opcode, args, retry=True,
                       timeout=max(0.001, min(interval, deadline - time.monotonic())))
            sends += 1
            interval = min(2 * interval, self.reply_timeout)
            next_send = time.monotonic() + interval

    def _send(self, rid: int, opcode: Opcode | int, args: dict[str, Any] | None, *,
              retry: bool, timeout: float) -> None:
        """Write one COMMAND frame. A retry that the board does not take in time is not an
        error (the board is busy, e.g. homing; the wait goes on)."""
        with self._lock:
            frame = encode_command(rid, opcode, args, seq=self._host_seq, retry=retry)
            self._host_seq = (self._host_seq + 1) & 0xFFFFFFFF
        if not retry:
            self._write(frame, timeout)
            return
        self._retries += 1
        log.debug("request %d (%s): no reply yet, sending it again", rid, opcode)
        try:
            self._write(frame, timeout)
        except TimeoutError:
            log.debug("request %d: the board did not take the retry within %g s", rid, timeout)

    def _retry_on_silence(self) -> bool:
        r = self.retry_on_silence
        return bool(r() if callable(r) else r)

    def _no_reply(self, name: str, timeout: float, sends: int, lost: int,
                  restarts: int = 0) -> str:
        if sends == 1:
            return (f"{name}: no reply within {timeout:g} s; the board may be busy or hung "
                    "(check `cplscope info`)")
        if restarts:
            link = (f"the firmware restarted {restarts} time(s) meanwhile (a reset or a "
                    "crash: `cplscope info` shows the reset cause)")
            if lost:
                link += f", and the link lost or corrupted {lost} frame(s)"
        elif lost:
            link = (f"the link lost or corrupted {lost} frame(s) meanwhile: check the USB "
                    "cable, hub and port")
        else:
            link = "no frame came back meanwhile: the board may be busy or hung (check " \
                   "`cplscope info`)"
        return f"{name}: no reply within {timeout:g} s although it was sent {sends} times; {link}"

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
            self._ep_out.write(frame, timeout=max(1, int(timeout * 1000)))  # 0: forever
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
                self._give_up_partial()
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
                self._last_bytes = time.monotonic()
                self._take(self._decoder.feed(memoryview(self._buf)[:n]))

    def _take(self, messages: list) -> None:
        """Dispatch decoded messages and note what the link lost meanwhile."""
        if messages:
            self._rejected_at_good = self._decoder.stats.rejected
        self._dispatch(messages)
        self._check_losses()

    def _give_up_partial(self) -> None:
        """A partial frame that got no further byte for a retry interval is given up (a
        corrupted length field, or a frame cut off): its bytes are scanned again for the
        frames behind it (docs/protocol.md, "Receiver rules")."""
        if (self._decoder.pending and time.monotonic() - self._last_bytes
                > _RETRY_FRACTION * self.reply_timeout and self._retry_on_silence()):
            log.debug("giving up a partial frame of %d bytes", self._decoder.pending)
            self._take(self._decoder.flush())

    def _check_losses(self) -> None:
        """Wake the waiting command when the link lost a frame: it may have been the reply."""
        stats = self._decoder.stats
        # a firmware restart loses the command it was given, too
        losses = stats.rejected + stats.missing + stats.restarts
        if losses != self._losses:
            self._losses = losses
            self._suspect_all()

    def _suspect_all(self) -> None:
        with self._lock:
            for pending in self._pending.values():
                pending.suspect = True
                pending.wake.set()

    def _dispatch(self, messages: list) -> None:
        for msg in messages:
            if isinstance(msg, (Counts, AdcBlock)):
                self.data.put(msg)
            elif isinstance(msg, Reply):
                with self._lock:
                    pending = self._pending.get(msg.request_id)
                if pending is not None:
                    pending.reply = msg
                    pending.wake.set()
                else:  # the late original of a retried command, or the retry's: ignored
                    log.debug("reply to request %d, which no command waits for",
                              msg.request_id)
            elif isinstance(msg, Status):
                self.last_status = msg
            elif isinstance(msg, Event):
                self.events.append(msg)
                if msg.code == EventCode.BAD_FRAME:  # a command frame arrived damaged
                    self._suspect_all()
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
                pending.wake.set()
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
