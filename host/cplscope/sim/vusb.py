"""A pyusb backend for the simulated instrument: a virtual USB bus with one cable to the sim hub.

``VirtualUSBBackend(address)`` is a ``usb.backend.IBackend``: pass it to
``usb.core.find(idVendor=VID, idProduct=PID, backend=...)`` and everything above pyusb runs as
against a real board: descriptors, strings, bulk transfers with timeouts and short packets,
endpoint halts, and a disconnect that raises ``USBError`` with ``errno.ENODEV``. The device
side (descriptors, packets, faults) lives in the hub (:mod:`cplscope.sim.hub`); this module is
the host side and defines the cable's wire format.

Cable wire format (unix or TCP stream socket, little-endian): a request is ``u8 op, u32 n``
and n payload bytes; the answer is ``i8 status, u32 n`` and n bytes. Status 0 is success, a
negative status is a libusb error code (the payload is then the error text).

| op | request payload | answer payload |
|---|---|---|
| ENUM 1 | – | empty (no device) or ``u32 generation, u8 bus, u8 address, u16 n_cfg``, device descriptor (18), configuration descriptor (n_cfg) |
| OPEN 2 | ``u32 generation`` | – |
| CTRL 3 | ``u32 gen, u8 bmRequestType, u8 bRequest, u16 wValue, u16 wIndex, u16 wLength, u32 timeout_ms``, OUT data | IN data |
| BULK_OUT 4 | ``u32 gen, u8 ep, u32 timeout_ms``, data | ``u32 written`` |
| BULK_IN 5 | ``u32 gen, u8 ep, u32 length, u32 timeout_ms`` | data |
| CLEAR_HALT 6 | ``u32 gen, u8 ep`` | – |
| RESET 7 | ``u32 gen`` | – |
| CONTROL 16 | JSON request (launcher ↔ hub: faults, time, truth, quit) | JSON answer |

A generation identifies one appearance of the device on the bus: each reconnect (cable or
firmware restart) makes a new one, and every request naming an old one fails with NO_DEVICE.
"""
from __future__ import annotations

import array
import errno
import json
import socket
import struct
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import usb.backend
import usb.core

__all__ = ["VirtualUSBBackend", "parse_cable_address", "OP_ENUM", "OP_OPEN", "OP_CTRL",
           "OP_BULK_OUT", "OP_BULK_IN", "OP_CLEAR_HALT", "OP_RESET", "OP_CONTROL",
           "LIBUSB_ERRORS", "SPEED_FULL"]

OP_ENUM, OP_OPEN, OP_CTRL, OP_BULK_OUT, OP_BULK_IN, OP_CLEAR_HALT, OP_RESET = range(1, 8)
OP_CONTROL = 0x10

REQ = struct.Struct("<BI")
ANS = struct.Struct("<bI")
ENUM_HEAD = struct.Struct("<IBBH")
CTRL_HEAD = struct.Struct("<IBBHHHI")
BULK_OUT_HEAD = struct.Struct("<IBI")
BULK_IN_HEAD = struct.Struct("<IBII")
CLEAR_HALT_HEAD = struct.Struct("<IB")
GEN = struct.Struct("<I")

#: libusb error codes the cable uses → (errno, libusb's text).
LIBUSB_ERRORS: dict[int, tuple[int | None, str]] = {
    -1: (errno.EIO, "Input/output error"),
    -2: (errno.EINVAL, "Invalid parameter"),
    -4: (errno.ENODEV, "No such device (it may have been disconnected)"),
    -5: (errno.ENOENT, "Entity not found"),
    -7: (errno.ETIMEDOUT, "Operation timed out"),
    -8: (errno.EOVERFLOW, "Overflow"),
    -9: (errno.EPIPE, "Pipe error"),
    -12: (errno.ENOSYS, "Operation not supported or unimplemented on this platform"),
    -99: (None, "Unknown error"),
}
ERR_IO, ERR_INVALID_PARAM, ERR_NO_DEVICE, ERR_NOT_FOUND = -1, -2, -4, -5
ERR_TIMEOUT, ERR_OVERFLOW, ERR_PIPE, ERR_NOT_SUPPORTED = -7, -8, -9, -12
SPEED_FULL = 2  # LIBUSB_SPEED_FULL
_MAX_ANSWER = 1 << 24


def parse_cable_address(address: str) -> tuple[int, Any]:
    """'unix:PATH' or 'tcp:127.0.0.1:PORT' → (socket family, sockaddr)."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    if address.startswith("tcp:"):
        host, port = address[4:].rsplit(":", 1)
        return socket.AF_INET, (host, int(port))
    raise ValueError(f"cable address must be 'unix:PATH' or 'tcp:HOST:PORT', got {address!r}")


def usb_error(status: int, text: str = "") -> usb.core.USBError:
    """The pyusb exception libusb1's backend would raise for libusb error code `status`."""
    eno, name = LIBUSB_ERRORS.get(status, LIBUSB_ERRORS[-99])
    msg = f"{name}: {text}" if text else name
    if status == ERR_TIMEOUT:
        return usb.core.USBTimeoutError(msg, status, eno)
    return usb.core.USBError(msg, status, eno)


# descriptors ----------------------------------------------------------------------------------
class _Desc:
    """A descriptor with its fields as attributes (what pyusb reads), plus extra bytes."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.extra_descriptors: list[int] = []

    if TYPE_CHECKING:  # fields are set from the descriptor layouts
        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...


_DEVICE_FIELDS = ("bLength", "bDescriptorType", "bcdUSB", "bDeviceClass", "bDeviceSubClass",
                  "bDeviceProtocol", "bMaxPacketSize0", "idVendor", "idProduct", "bcdDevice",
                  "iManufacturer", "iProduct", "iSerialNumber", "bNumConfigurations")
_CONFIG_FIELDS = ("bLength", "bDescriptorType", "wTotalLength", "bNumInterfaces",
                  "bConfigurationValue", "iConfiguration", "bmAttributes", "bMaxPower")
_INTF_FIELDS = ("bLength", "bDescriptorType", "bInterfaceNumber", "bAlternateSetting",
                "bNumEndpoints", "bInterfaceClass", "bInterfaceSubClass",
                "bInterfaceProtocol", "iInterface")
_EP_FIELDS = ("bLength", "bDescriptorType", "bEndpointAddress", "bmAttributes",
              "wMaxPacketSize", "bInterval")


@dataclass
class _Config:
    desc: _Desc
    interfaces: list[list[tuple[_Desc, list[_Desc]]]] = field(default_factory=list)


def parse_configuration(raw: bytes) -> _Config:
    """Split a configuration descriptor as libusb does: interfaces grouped by number, each
    alternate setting with its endpoints; class-specific and other descriptors go into the
    ``extra_descriptors`` of the last standard descriptor before them (the IAD, which comes
    before any interface, into the configuration's)."""
    if len(raw) < 9 or raw[1] != 2:
        raise usb_error(ERR_IO, "malformed configuration descriptor from the simulated board")
    cfg = _Config(_Desc(**dict(zip(_CONFIG_FIELDS, struct.unpack_from("<BBHBBBBB", raw)))))
    by_number: dict[int, list[tuple[_Desc, list[_Desc]]]] = {}
    last: _Desc = cfg.desc
    current: tuple[_Desc, list[_Desc]] | None = None
    pos = raw[0]
    while pos + 2 <= len(raw):
        n, kind = raw[pos], raw[pos + 1]
        if n < 2 or pos + n > len(raw):
            raise usb_error(ERR_IO, "malformed descriptor inside the configuration")
        if kind == 4 and n >= 9:
            d = _Desc(**dict(zip(_INTF_FIELDS, struct.unpack_from("<9B", raw, pos))))
            current = (d, [])
            if d.bInterfaceNumber not in by_number:
                by_number[d.bInterfaceNumber] = []
                cfg.interfaces.append(by_number[d.bInterfaceNumber])
            by_number[d.bInterfaceNumber].append(current)
            last = d
        elif kind == 5 and n >= 7 and current is not None:
            vals = struct.unpack_from("<BBBBHB", raw, pos)
            d = _Desc(**dict(zip(_EP_FIELDS, vals)), bRefresh=0, bSynchAddress=0)
            current[1].append(d)
            last = d
        else:
            last.extra_descriptors.extend(raw[pos:pos + n])
        pos += n
    return cfg


@dataclass
class _VDevice:
    """One appearance of the board on the virtual bus (pyusb's opaque device id)."""

    generation: int
    bus: int
    address: int
    device: _Desc
    config: _Config


@dataclass
class _Handle:
    dev: _VDevice
    claimed: set[int] = field(default_factory=set)
    closed: bool = False


# the backend ----------------------------------------------------------------------------------
class VirtualUSBBackend(usb.backend.IBackend):
    """pyusb backend for the simulated instrument's USB cable at `address` ('unix:PATH' or
    'tcp:127.0.0.1:PORT', the hub's ``cable`` address).

    Thread-safe: each thread talks to the hub over its own connection, so a reader thread can
    block in a bulk read while another thread writes commands. Timeouts are in ms as in
    pyusb (0 = wait forever).
    """

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        self._family, self._sockaddr = parse_cable_address(address)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._closed = False

    # connection plumbing ------------------------------------------------------------------
    def _sock(self) -> socket.socket:
        s = getattr(self._local, "sock", None)
        if s is None:
            if self._closed:
                raise usb_error(ERR_NO_DEVICE, "the virtual USB backend is closed")
            s = socket.socket(self._family, socket.SOCK_STREAM)
            try:
                s.connect(self._sockaddr)
            except OSError as e:
                s.close()
                raise usb_error(ERR_NO_DEVICE, f"the simulated instrument at {self.address} "
                                f"is not running ({e})") from e
            if self._family == socket.AF_INET:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.sock = s
            with self._lock:
                self._socks.add(s)
        return s

    def _recv_exact(self, s: socket.socket, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = s.recv_into(view[got:])
            if not k:
                raise ConnectionError("the simulated instrument closed the cable")
            got += k
        return bytes(buf)

    def request(self, op: int, payload: bytes = b"") -> tuple[int, bytes]:
        """One round trip on this thread's connection: (status, answer payload). A hub that
        is gone raises USBError ENODEV."""
        s = self._sock()
        try:
            s.sendall(REQ.pack(op, len(payload)) + payload)
            status, n = ANS.unpack(self._recv_exact(s, ANS.size))
            if n > _MAX_ANSWER:
                raise ConnectionError(f"cable answer of {n} bytes is too long")
            return status, self._recv_exact(s, n) if n else b""
        except (OSError, ConnectionError) as e:
            self._local.sock = None
            s.close()
            raise usb_error(ERR_NO_DEVICE, f"the simulated instrument went away ({e})") from e
        except BaseException:
            # interrupted (Ctrl-C) between request and answer: the answer would come to the
            # next request on this connection, so it is closed; the next request opens another
            self._local.sock = None
            s.close()
            raise

    def _call(self, op: int, payload: bytes = b"") -> bytes:
        status, data = self.request(op, payload)
        if status < 0:
            raise usb_error(status, data.decode(errors="replace"))
        return data

    def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """A control message to the hub (not USB): set faults, read the instrument clock,
        ground truth, statistics, quit. A refused request raises ValueError with the hub's
        text."""
        status, data = self.request(OP_CONTROL, json.dumps(request).encode())
        if status < 0:
            raise ValueError(data.decode(errors="replace"))
        return json.loads(data)

    def close(self) -> None:
        """Close every connection to the hub (the device is then gone for this backend)."""
        self._closed = True
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def _finalize_object(self) -> None:
        self.close()

    # enumeration ---------------------------------------------------------------------------
    def enumerate_devices(self) -> list[_VDevice]:
        try:
            data = self._call(OP_ENUM)
        except usb.core.USBError as e:
            if e.errno == errno.ENODEV:
                return []  # no hub, no device
            raise
        if not data:
            return []
        gen, bus, address, n_cfg = ENUM_HEAD.unpack_from(data)
        raw_dev = data[ENUM_HEAD.size:ENUM_HEAD.size + 18]
        raw_cfg = data[ENUM_HEAD.size + 18:ENUM_HEAD.size + 18 + n_cfg]
        dev = _Desc(**dict(zip(_DEVICE_FIELDS, struct.unpack("<BBHBBBBHHHBBBB", raw_dev))))
        return [_VDevice(gen, bus, address, dev, parse_configuration(raw_cfg))]

    def get_parent(self, dev: _VDevice) -> None:
        return None

    def get_device_descriptor(self, dev: _VDevice) -> _Desc:
        d = _Desc(**{k: getattr(dev.device, k) for k in _DEVICE_FIELDS})
        d.bus, d.address, d.speed = dev.bus, dev.address, SPEED_FULL
        d.port_number, d.port_numbers = 1, (1,)
        return d

    def get_configuration_descriptor(self, dev: _VDevice, config: int) -> _Desc:
        if config != 0:
            raise usb_error(ERR_NOT_FOUND, f"the board has one configuration, not index {config}")
        return dev.config.desc

    def get_interface_descriptor(self, dev: _VDevice, intf: int, alt: int,
                                 config: int) -> _Desc:
        self.get_configuration_descriptor(dev, config)
        if not 0 <= intf < len(dev.config.interfaces):
            raise IndexError("Invalid interface index " + str(intf))
        alts = dev.config.interfaces[intf]
        if not 0 <= alt < len(alts):
            raise IndexError("Invalid alternate setting index " + str(alt))
        return alts[alt][0]

    def get_endpoint_descriptor(self, dev: _VDevice, ep: int, intf: int, alt: int,
                                config: int) -> _Desc:
        self.get_interface_descriptor(dev, intf, alt, config)
        eps = dev.config.interfaces[intf][alt][1]
        if not 0 <= ep < len(eps):
            raise IndexError("Invalid endpoint index " + str(ep))
        return eps[ep]

    # handles -------------------------------------------------------------------------------
    def open_device(self, dev: _VDevice) -> _Handle:
        self._call(OP_OPEN, GEN.pack(dev.generation))
        return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        dev_handle.closed = True

    def _gen(self, h: _Handle) -> int:
        if h.closed:
            raise usb_error(ERR_INVALID_PARAM, "the device handle is closed")
        return h.dev.generation

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        self._ctrl(dev_handle, 0x00, 9, config_value, 0, b"", 0, 1000)

    def get_configuration(self, dev_handle: _Handle) -> int:
        return self._ctrl(dev_handle, 0x80, 8, 0, 0, b"", 1, 1000)[0]

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        self._ctrl(dev_handle, 0x01, 11, altsetting, intf, b"", 0, 1000)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        self._gen(dev_handle)
        numbers = {alts[0][0].bInterfaceNumber for alts in dev_handle.dev.config.interfaces}
        if intf not in numbers:
            raise usb_error(ERR_NOT_FOUND, f"the board has no interface {intf}")
        dev_handle.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        dev_handle.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False  # the virtual bus has no kernel drivers

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def _check_claimed(self, h: _Handle, intf: int) -> None:
        if intf not in h.claimed:  # libusb needs a claimed interface for transfers
            raise usb_error(ERR_NOT_FOUND, f"interface {intf} is not claimed")

    # transfers -----------------------------------------------------------------------------
    def _ctrl(self, h: _Handle, bm: int, req: int, value: int, index: int, out: bytes,
              length: int, timeout: int) -> bytes:
        head = CTRL_HEAD.pack(self._gen(h), bm, req, value, index, length, timeout)
        return self._call(OP_CTRL, head + out)

    def ctrl_transfer(self, dev_handle: _Handle, bmRequestType: int, bRequest: int,
                      wValue: int, wIndex: int, data: array.array, timeout: int) -> int:
        n = len(data) * data.itemsize
        if bmRequestType & 0x80:  # device to host: read into `data`
            got = self._ctrl(dev_handle, bmRequestType, bRequest, wValue, wIndex, b"", n,
                             timeout)
            memoryview(data).cast("B")[:len(got)] = got
            return len(got)
        self._ctrl(dev_handle, bmRequestType, bRequest, wValue, wIndex, data.tobytes(), n,
                   timeout)
        return n

    def bulk_write(self, dev_handle: _Handle, ep: int, intf: int, data: array.array,
                   timeout: int) -> int:
        self._check_claimed(dev_handle, intf)
        head = BULK_OUT_HEAD.pack(self._gen(dev_handle), ep, timeout)
        return int(GEN.unpack(self._call(OP_BULK_OUT, head + data.tobytes()))[0])

    def bulk_read(self, dev_handle: _Handle, ep: int, intf: int, buff: array.array,
                  timeout: int) -> int:
        self._check_claimed(dev_handle, intf)
        n = len(buff) * buff.itemsize
        got = self._call(OP_BULK_IN, BULK_IN_HEAD.pack(self._gen(dev_handle), ep, n, timeout))
        memoryview(buff).cast("B")[:len(got)] = got
        return len(got)

    # The CDC notification endpoint is the only interrupt endpoint: same path, nothing comes.
    intr_write = bulk_write
    intr_read = bulk_read

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        self._call(OP_CLEAR_HALT, CLEAR_HALT_HEAD.pack(self._gen(dev_handle), ep))

    def reset_device(self, dev_handle: _Handle) -> None:
        self._call(OP_RESET, GEN.pack(self._gen(dev_handle)))
