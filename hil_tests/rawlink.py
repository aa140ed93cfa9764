"""The board's vendor bulk interface through plain pyusb: frames out, frames in, and nothing
of the host library's logic (no reconnects, no command bookkeeping). The tests that send
malformed or fuzzed frames, or that check the raw stream, use it.
"""
from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from typing import Any

import usb.core
import usb.util

from cplscope.protocol import Message, Opcode, Reply, StreamDecoder, encode_command
from cplscope.board.transport import claim_vendor_interface

READ_SIZE = 16384  # a multiple of 64 larger than the largest frame: one frame per read


class RawLink:
    """One claimed vendor interface of a pyusb ``Device``.

    ``decoder`` sees every byte read, so its ``stats`` are the stream health of everything
    received; ``chunks`` keeps the raw reads when ``record`` is True.
    """

    def __init__(self, device: usb.core.Device, *, record: bool = False) -> None:
        self.device = device
        self.interface, self.ep_out, self.ep_in = claim_vendor_interface(device)
        self.decoder = StreamDecoder(keep_raw=True)
        self.record = record
        self.chunks: list[bytes] = []
        self._buf = array("B", bytes(READ_SIZE))
        self._rid = 0
        self._host_seq = 0

    # --- bytes ----------------------------------------------------------------------------
    def write(self, data: bytes, timeout_s: float = 5.0) -> None:
        self.ep_out.write(data, timeout=int(timeout_s * 1000))

    def read(self, timeout_ms: int = 100) -> list[Message]:
        """One bulk read (at most one frame with the board's transfers); [] on timeout."""
        try:
            n = self.ep_in.read(self._buf, timeout=timeout_ms)
        except usb.core.USBTimeoutError:
            return []
        if not n:
            return []
        chunk = self._buf[:n].tobytes()
        if self.record:
            self.chunks.append(chunk)
        return self.decoder.feed(chunk)

    def read_until(self, done: Callable[[Message], bool], timeout_s: float,
                   sink: list[Message] | None = None) -> Message:
        """Read until a message satisfies ``done``; every message read goes to ``sink``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in self.read():
                if sink is not None:
                    sink.append(msg)
                if done(msg):
                    return msg
        raise TimeoutError(f"no matching frame within {timeout_s:g} s")

    # --- commands ---------------------------------------------------------------------------
    def next_request_id(self) -> int:
        self._rid = self._rid % 0xFFFE + 1  # 1 … 65534; 0xFFFF is reserved
        return self._rid

    def next_seq(self) -> int:
        self._host_seq = (self._host_seq + 1) & 0xFFFFFFFF
        return self._host_seq

    def command_frame(self, opcode: int, args: dict[str, Any] | None = None) -> tuple[int, bytes]:
        rid = self.next_request_id()
        return rid, encode_command(rid, opcode, args, seq=self.next_seq())

    def command(self, opcode: int, args: dict[str, Any] | None = None, *,
                timeout_s: float = 10.0, sink: list[Message] | None = None) -> Reply:
        """Send one command and return its REPLY (whatever its status)."""
        rid, frame = self.command_frame(opcode, args)
        self.write(frame)
        reply = self.read_until(lambda m: isinstance(m, Reply) and m.request_id == rid,
                                timeout_s, sink)
        assert isinstance(reply, Reply)
        return reply

    def call(self, opcode: int, args: dict[str, Any] | None = None,
             timeout_s: float = 10.0) -> dict[str, Any]:
        """Send one command and return its result; CommandError if refused."""
        return self.command(opcode, args, timeout_s=timeout_s).raise_for_status()

    def drain(self, quiet_ms: int = 50, max_s: float = 2.0) -> list[Message]:
        """Read until nothing arrives for ``quiet_ms`` or ``max_s`` s have passed (an idle
        board sends a STATUS every second of device time); return what was read."""
        out: list[Message] = []
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            try:
                n = self.ep_in.read(self._buf, timeout=quiet_ms)
            except usb.core.USBTimeoutError:
                return out
            if n:
                chunk = self._buf[:n].tobytes()
                if self.record:
                    self.chunks.append(chunk)
                out.extend(self.decoder.feed(chunk))
        return out

    def identify(self) -> dict[str, Any]:
        return self.call(Opcode.IDENTIFY)

    def close(self) -> None:
        try:
            usb.util.release_interface(self.device, self.interface)
        except Exception:  # the device may be gone already
            pass
        usb.util.dispose_resources(self.device)
