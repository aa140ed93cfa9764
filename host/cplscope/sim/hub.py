"""The simulated instrument's hub process: the optical bench, the firmware link and the device
side of the virtual USB cable.

    python -m cplscope.sim.hub --sample R-Cs4PbBr6 --seed 0 [--speed 50] [--faults JSON] ...

It builds a :class:`~cplscope.sim.bench.Bench`, a :class:`~cplscope.sim.adapter.BenchAdapter`,
a :class:`~cplscope.sim.link.SimHub` for the firmware (``micropython firmware/main.py LINK``)
and a cable server that :class:`~cplscope.sim.vusb.VirtualUSBBackend` connects to. When ready
it prints one JSON line on stdout::

    {"ready": true, "link": "unix:/tmp/…/link.sock", "cable": "unix:/tmp/…/cable.sock",
     "serial": "…", "pid": 1234}

then serves until a ``quit`` control message, SIGTERM/SIGINT, or the death of its parent.
Semantics of packets, halts, disconnects and faults: docs/simulator.md, "Processes, virtual
USB and faults".
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from typing import Any, Callable

from ..protocol import usb_ids as ids
from .faults import Faults, FaultInjector
from .link import SimHub
from .vusb import (ANS, BULK_IN_HEAD, BULK_OUT_HEAD, CLEAR_HALT_HEAD, CTRL_HEAD, ENUM_HEAD,
                   ERR_INVALID_PARAM, ERR_NO_DEVICE, ERR_OVERFLOW, ERR_PIPE, ERR_TIMEOUT, GEN,
                   OP_BULK_IN, OP_BULK_OUT, OP_CLEAR_HALT, OP_CONTROL, OP_CTRL, OP_ENUM,
                   OP_OPEN, OP_RESET, REQ)

__all__ = ["UsbPort", "CableServer", "main"]

_POLL_S = 0.02  # how often a waiting IN transfer looks for an unplug or a halt
_MAX_REQUEST = 1 << 20


class UsbError(Exception):
    """A transfer that ends in a libusb error `status` (negative)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class UsbPort:
    """The board's USB device as the bus sees it: visibility, descriptors, endpoint halts and
    the IN packet stream, with faults applied.

    The device is on the bus while the cable is plugged and a firmware is connected to the
    hub (a rebooting board re-enumerates, as `rp2_usb.start` does on the real one). Each
    appearance gets a new generation and bus address.

    IN transfers: each firmware `usb_write` buffer is one device-side transfer, sent as 64-byte
    packets; when its length is a multiple of 64 a zero-length packet ends it (as
    `rp2_usb.VendorInterface._in_done` does), unless `zlp` is False, in which case it runs on
    into the next buffer. A host read ends at a short packet or when its buffer is full.
    """

    def __init__(self, hub: SimHub, injector: FaultInjector, *, zlp: bool = True) -> None:
        self.hub = hub
        self.faults = injector
        self.zlp = zlp
        self.serial = hub.serial
        self.plugged = True
        self.firmware_up = False
        self.generation = 0
        self.visible = False
        self.address = 0
        self.configuration = 1
        self.halted: set[int] = set()
        self.unplugs = 0
        self._packets: deque[bytes] = deque()
        self._state = threading.RLock()
        self._in_lock = threading.Lock()
        self._disconnect_done = False
        self._replug_at_us: int | None = None
        self._config = ids.configuration_descriptor()
        self._device = ids.device_descriptor()
        self._strings = ids.string_table(self.serial)

    # bus state ------------------------------------------------------------------------------
    def _update(self) -> None:
        """Re-evaluate visibility; a new appearance is a bus reset with a new generation."""
        with self._state:
            now = self.plugged and self.firmware_up
            if now and not self.visible:
                self.generation += 1
                self.address = self.address % 126 + 1
                self.configuration = 1  # the OS configures a new device at enumeration
                self.halted.clear()
                self._packets.clear()
                self.visible = True
                self.hub.set_usb_connected(True)
            elif not now and self.visible:
                self.visible = False
                self._packets.clear()
                self.hub.set_usb_connected(False)

    def on_link(self, connected: bool) -> None:
        with self._state:
            self.firmware_up = connected
            self._update()

    def set_plugged(self, plugged: bool) -> None:
        with self._state:
            if self.plugged and not plugged:
                self.unplugs += 1
            self.plugged = plugged
            self._update()

    def on_time(self, now_us: int) -> None:
        """Scheduled unplug (`disconnect_at`) and replug (`reconnect_after`), instrument time."""
        f = self.faults.faults
        with self._state:
            if (f.disconnect_at is not None and not self._disconnect_done
                    and now_us >= f.disconnect_at * 1e6):
                self._disconnect_done = True
                self.set_plugged(False)
                if f.reconnect_after is not None:
                    self._replug_at_us = now_us + round(f.reconnect_after * 1e6)
            if self._replug_at_us is not None and now_us >= self._replug_at_us:
                self._replug_at_us = None
                self.set_plugged(True)
            self.hub.wake_at_us = self._replug_at_us

    def set_faults(self, changes: dict[str, Any]) -> Faults:
        with self._state:
            new = self.faults.faults.updated(changes)
            if "disconnect_at" in changes:
                self._disconnect_done = False
            if "reconnect_after" in changes and not self.plugged:
                ra = new.reconnect_after
                self._replug_at_us = None if ra is None else self.hub.now_us + round(ra * 1e6)
                self.hub.wake_at_us = self._replug_at_us
            self.faults.faults = new
            return new

    def _check(self, gen: int) -> None:
        if not self.visible or gen != self.generation:
            raise UsbError(ERR_NO_DEVICE, "the board is not on the bus (unplugged or rebooted)")

    # enumeration and control ----------------------------------------------------------------
    def enumerate(self) -> bytes:
        with self._state:
            if not self.visible:
                return b""
            return (ENUM_HEAD.pack(self.generation, 1, self.address, len(self._config))
                    + self._device + self._config)

    def open(self, gen: int) -> None:
        with self._state:
            self._check(gen)

    def _string(self, index: int) -> bytes:
        if index == 0:
            return struct.pack("<BBH", 4, 3, ids.LANGID_EN_US)
        text = self._strings.get(index)
        if text is None:
            raise UsbError(ERR_PIPE, f"no string descriptor {index}")
        body = text.encode("utf-16-le")
        return bytes([2 + len(body), 3]) + body

    def control(self, gen: int, bm: int, req: int, value: int, index: int, length: int,
                out: bytes) -> bytes:
        """A control transfer on endpoint 0; unsupported requests stall (EPIPE)."""
        with self._state:
            self._check(gen)
            if bm == 0x80 and req == 6:  # GET_DESCRIPTOR
                kind, i = value >> 8, value & 0xFF
                if kind == 1:
                    return self._device[:length]
                if kind == 2 and i == 0:
                    return self._config[:length]
                if kind == 3:
                    return self._string(i)[:length]
                raise UsbError(ERR_PIPE, f"descriptor type {kind} index {i} not supported")
            if bm == 0x80 and req == 0:  # GET_STATUS (device): self-powered
                return b"\x01\x00"[:length]
            if bm == 0x82 and req == 0:  # GET_STATUS (endpoint): halt bit
                return bytes([int(index & 0xFF in self.halted), 0])[:length]
            if bm == 0x80 and req == 8:  # GET_CONFIGURATION
                return bytes([self.configuration])[:length]
            if bm == 0x00 and req == 9 and value in (0, 1):  # SET_CONFIGURATION
                self.configuration = value
                self.halted.clear()
                return b""
            if bm == 0x01 and req == 11 and value == 0 and index in (0, 1, 2):  # SET_INTERFACE
                return b""
            if bm == 0x02 and req in (1, 3) and value == 0:  # CLEAR/SET_FEATURE ENDPOINT_HALT
                (self.halted.discard if req == 1 else self.halted.add)(index & 0xFF)
                return b""
            if bm == 0x21 and req in (0x20, 0x22):  # CDC SET_LINE_CODING, SET_CONTROL_LINE_STATE
                return b""
            if bm == 0xA1 and req == 0x21:  # CDC GET_LINE_CODING: 115200 8N1
                return struct.pack("<IBBB", 115200, 0, 0, 8)[:length]
            raise UsbError(ERR_PIPE, f"control request bmRequestType=0x{bm:02x} "
                                     f"bRequest={req} not supported by the board")

    def clear_halt(self, gen: int, ep: int) -> None:
        with self._state:
            self._check(gen)
            self.halted.discard(ep)

    def reset(self, gen: int) -> None:
        """Port reset: halts cleared, the transfer in progress discarded, the board's IN
        buffers freed (its USB stack's on_reset); the device keeps its address."""
        with self._state:
            self._check(gen)
            self.halted.clear()
            self._packets.clear()
            self.configuration = 1
            self.hub.set_usb_connected(False)
            self.hub.set_usb_connected(True)

    # bulk ----------------------------------------------------------------------------------
    def bulk_out(self, gen: int, ep: int, data: bytes) -> int:
        with self._state:
            self._check(gen)
            if ep in self.halted:
                raise UsbError(ERR_PIPE, f"endpoint 0x{ep:02x} is halted")
            if ep == ids.EP_OUT:
                sent = self.faults.out_buffer(data, self.hub.connections)
                try:
                    if sent:
                        self.hub.host_write(sent)
                except (OSError, ConnectionError) as e:
                    raise UsbError(ERR_NO_DEVICE, f"the firmware is gone ({e})") from e
            elif ep not in (ids.EP_CDC_OUT,):
                raise UsbError(ERR_INVALID_PARAM, f"no OUT endpoint 0x{ep:02x}")
            return len(data)

    def _packetize(self, data: bytes) -> None:
        mp = ids.MAX_PACKET
        for i in range(0, len(data), mp):
            self._packets.append(data[i:i + mp])
        if self.zlp and len(data) % mp == 0 and data:
            self._packets.append(b"")

    def bulk_in(self, gen: int, ep: int, length: int, timeout_ms: int) -> bytes:
        """One IN transfer of at most `length` bytes; `timeout_ms` 0 waits forever."""
        with self._state:
            self._check(gen)
            if ep in self.halted:
                raise UsbError(ERR_PIPE, f"endpoint 0x{ep:02x} is halted")
        if ep != ids.EP_IN:  # CDC REPL endpoints: nothing comes (no REPL in the sim)
            if ep not in (ids.EP_CDC_IN, ids.EP_CDC_NOTIFY):
                raise UsbError(ERR_INVALID_PARAM, f"no IN endpoint 0x{ep:02x}")
            time.sleep(timeout_ms / 1000 if timeout_ms else _POLL_S)
            raise UsbError(ERR_TIMEOUT, "")
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        got = bytearray()
        with self._in_lock:
            while True:
                with self._state:
                    self._check(gen)
                    if ep in self.halted:
                        raise UsbError(ERR_PIPE, f"endpoint 0x{ep:02x} is halted")
                    pkt = self._packets[0] if self._packets else None
                    if pkt is not None:
                        if not got and self.faults.stall_now():
                            self.halted.add(ep)
                            raise UsbError(ERR_PIPE, f"endpoint 0x{ep:02x} stalled "
                                                     "(injected fault)")
                        self._packets.popleft()
                        if len(got) + len(pkt) > length:
                            raise UsbError(ERR_OVERFLOW, f"a {len(pkt)}-byte packet overflows "
                                           f"the {length - len(got)} bytes left in the buffer")
                        got += pkt
                        if len(pkt) < ids.MAX_PACKET or len(got) == length:
                            return bytes(got)
                        continue
                left = _POLL_S if deadline is None else min(_POLL_S,
                                                            deadline - time.monotonic())
                if left <= 0:
                    if got:
                        return bytes(got)  # libusb: a timeout with data returns the data
                    raise UsbError(ERR_TIMEOUT, "")
                buf = self.hub.host_read(left)
                if buf is not None:
                    with self._state:
                        if self.visible and gen == self.generation:
                            self._packetize(self.faults.in_buffer(buf, self.hub.connections))

    def stats(self) -> dict[str, Any]:
        with self._state:
            return {"visible": self.visible, "plugged": self.plugged,
                    "firmware_up": self.firmware_up, "generation": self.generation,
                    "address": self.address, "unplugs": self.unplugs,
                    "firmware_connections": self.hub.connections,
                    "faults": self.faults.faults.as_dict(), **self.faults.stats()}


class CableServer:
    """Serves the cable socket: one thread per host connection (one per host thread)."""

    def __init__(self, port: UsbPort, address: str,
                 control: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.port = port
        self.control = control
        path = address[5:] if address.startswith("unix:") else None
        if path is None:
            raise ValueError(f"the cable listens on a unix socket ('unix:PATH'), got {address!r}")
        self.address = address
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(16)
        self._path = path
        self._stop = False
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="cable-accept", daemon=True)

    def start(self) -> "CableServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop = True
        for s in [self._listener, *self._conns]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        try:
            os.unlink(self._path)
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="cable", daemon=True).start()

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("host closed the cable connection")
            buf += chunk
        return bytes(buf)

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stop:
                op, n = REQ.unpack(self._recv_exact(conn, REQ.size))
                if n > _MAX_REQUEST:
                    raise ConnectionError(f"cable request of {n} bytes is too long")
                payload = self._recv_exact(conn, n) if n else b""
                try:
                    status, answer = 0, self._dispatch(op, payload)
                except UsbError as e:
                    status, answer = e.status, str(e).encode()
                except (ValueError, KeyError, TypeError, struct.error) as e:
                    status, answer = ERR_INVALID_PARAM, str(e).encode()
                conn.sendall(ANS.pack(status, len(answer)) + answer)
        except (OSError, ConnectionError):
            pass
        finally:
            conn.close()
            if conn in self._conns:
                self._conns.remove(conn)

    def _dispatch(self, op: int, p: bytes) -> bytes:
        port = self.port
        if op == OP_BULK_IN:
            gen, ep, length, timeout = BULK_IN_HEAD.unpack(p)
            return port.bulk_in(gen, ep, length, timeout)
        if op == OP_BULK_OUT:
            gen, ep, _timeout = BULK_OUT_HEAD.unpack_from(p)
            return GEN.pack(port.bulk_out(gen, ep, p[BULK_OUT_HEAD.size:]))
        if op == OP_ENUM:
            return port.enumerate()
        if op == OP_OPEN:
            port.open(GEN.unpack(p)[0])
            return b""
        if op == OP_CTRL:
            gen, bm, req, value, index, length, _timeout = CTRL_HEAD.unpack_from(p)
            return port.control(gen, bm, req, value, index, length, p[CTRL_HEAD.size:])
        if op == OP_CLEAR_HALT:
            gen, ep = CLEAR_HALT_HEAD.unpack(p)
            port.clear_halt(gen, ep)
            return b""
        if op == OP_RESET:
            port.reset(GEN.unpack(p)[0])
            return b""
        if op == OP_CONTROL:
            return json.dumps(self.control(json.loads(p))).encode()
        raise ValueError(f"unknown cable request {op}")


# the process ------------------------------------------------------------------------------
def _json_arg(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--{what}: not valid JSON ({e}): {text!r}") from e
    if not isinstance(value, dict):
        raise SystemExit(f"--{what} must be a JSON object, got {text!r}")
    return value


def _parent_alive(ppid: int) -> bool:
    return os.getppid() == ppid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cplscope.sim.hub",
                                 description="hub process of the simulated cplscope instrument")
    ap.add_argument("--sample", default="R-Cs4PbBr6", help="built-in sample name or JSON path")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bench and of the faults")
    ap.add_argument("--speed", type=float, default=None,
                    help="pace moves and homing at this many instrument µs per wall µs and "
                         "let host commands reach the board mid-move (default: as fast as "
                         "possible, reproducible)")
    ap.add_argument("--bench", help="JSON object of Bench keyword arguments")
    ap.add_argument("--faults", help="JSON object of cable faults (corrupt, drop, stall, "
                                     "disconnect_at, reconnect_after)")
    ap.add_argument("--serial", default="51a000000001")
    ap.add_argument("--usb-bytes-per-s", type=float, default=1.0e6)
    ap.add_argument("--stall-s", type=float, default=None,
                    help="lossy back-pressure: stop waiting for a host that does not read "
                         "after this many wall s per request (default: wait, lossless)")
    ap.add_argument("--no-zlp", action="store_true",
                    help="whole-packet IN buffers run on into the next (no zero-length packet)")
    ap.add_argument("--dir", help="folder for the sockets (default: a new temporary folder)")
    args = ap.parse_args(argv)

    from .adapter import BenchAdapter
    from .bench import Bench

    parent = os.getppid()
    faults = Faults().updated(_json_arg(args.faults, "faults"))
    bench = Bench(args.sample, seed=args.seed, **_json_arg(args.bench, "bench"))
    adapter = BenchAdapter(bench)
    own_dir = args.dir is None
    folder = tempfile.mkdtemp(prefix="cplsim-") if own_dir else args.dir
    quit_event = threading.Event()
    injector = FaultInjector(args.seed, faults)
    port_box: list[UsbPort] = []

    def on_link(up: bool) -> None:
        if port_box:
            port_box[0].on_link(up)

    def on_time(now_us: int) -> None:
        if port_box:
            port_box[0].on_time(now_us)

    hub = SimHub(adapter, "unix:" + os.path.join(folder, "link.sock"), speed=args.speed,
                 usb_bytes_per_s=args.usb_bytes_per_s, serial=args.serial,
                 stall_s=args.stall_s, accept_restarts=True, on_link=on_link, on_time=on_time)
    port = UsbPort(hub, injector, zlp=not args.no_zlp)
    port_box.append(port)

    def control(req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "set_faults":
            return {"faults": port.set_faults(req.get("faults") or {}).as_dict()}
        if op == "time":
            return {"time_us": hub.now_us}
        if op == "truth":
            return adapter.truth(req["wavelength_nm"], req.get("gate"))
        if op == "stats":
            return {**port.stats(), "time_us": hub.now_us, "bench_frames": adapter.frames,
                    "bench_blocks": adapter.blocks,
                    "bench_wavelength_nm": adapter.last_wavelength_nm,
                    "hub_error": repr(hub.error) if hub.error else None}
        if op == "fault_log":
            return {"dropped_seqs": list(injector.dropped_seqs),
                    "corrupted_seqs": list(injector.corrupted_seqs),
                    "out_dropped_seqs": list(injector.out_dropped_seqs),
                    "out_corrupted_seqs": list(injector.out_corrupted_seqs)}
        if op == "plug":
            port.set_plugged(bool(req.get("plugged", True)))
            return port.stats()
        if op == "quit":
            quit_event.set()
            return {"quit": True}
        raise ValueError(f"unknown control op {op!r}; known: set_faults, time, truth, stats, "
                         "fault_log, plug, quit")

    cable = CableServer(port, "unix:" + os.path.join(folder, "cable.sock"), control)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: quit_event.set())
    hub.start()
    cable.start()
    print(json.dumps({"ready": True, "link": hub.address, "cable": cable.address,
                      "serial": args.serial, "pid": os.getpid()}), flush=True)
    try:
        while not quit_event.wait(0.2):
            if not _parent_alive(parent):
                break  # the launcher is gone: no orphan hub
            if hub.error is not None:
                print(f"cplscope sim hub: the firmware link failed: {hub.error!r}",
                      file=sys.stderr, flush=True)
                break
    finally:
        cable.close()
        hub.close()
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
