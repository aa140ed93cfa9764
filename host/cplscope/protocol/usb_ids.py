"""USB identity of the cplscope board, as `firmware/board/rp2_usb.py` enumerates it.

The board is a composite device: MicroPython's built-in CDC ACM REPL (interfaces 0 and 1,
behind an interface association descriptor) and the cplscope vendor interface (class 0xFF)
with one bulk OUT and one bulk IN endpoint. The host finds it with
``usb.core.find(idVendor=VID, idProduct=PID)`` and the vendor interface with
``usb.util.find_descriptor(cfg, bInterfaceClass=VENDOR_CLASS)``.

:func:`device_descriptor` and :func:`configuration_descriptor` give the bytes the board
answers to GET_DESCRIPTOR (the simulated board serves exactly these), following what
micropython-lib's ``usb.device`` builds on the rp2 port with the built-in CDC driver.
A test checks the constants against ``rp2_usb.py``.
"""
from __future__ import annotations

import struct

__all__ = [
    "VID", "PID", "MANUFACTURER", "PRODUCT", "VENDOR_INTERFACE_STRING", "CDC_INTERFACE_STRING",
    "VENDOR_CLASS", "VENDOR_SUBCLASS", "VENDOR_PROTOCOL", "VENDOR_INTERFACE", "EP_OUT", "EP_IN",
    "MAX_PACKET", "LANGID_EN_US", "STR_MANUFACTURER", "STR_PRODUCT", "STR_SERIAL", "STR_CDC",
    "STR_VENDOR", "device_descriptor", "configuration_descriptor", "string_table",
]

#: pid.codes test allocation (docs/hardware.md): development and lab use only.
VID = 0x1209
PID = 0x0001
MANUFACTURER = "cplscope project"
PRODUCT = "cplscope CPL controller"
#: rp2_usb.VendorInterface.desc_cfg appends PRODUCT + " data" as the interface string.
VENDOR_INTERFACE_STRING = PRODUCT + " data"
#: MicroPython's default MICROPY_HW_USB_CDC_INTERFACE_STRING.
CDC_INTERFACE_STRING = "Board CDC"

VENDOR_CLASS = 0xFF
VENDOR_SUBCLASS = 0x00
VENDOR_PROTOCOL = 0x00

#: Interface and endpoint numbers: the built-in CDC takes interfaces 0–1 and endpoints
#: 0x81 (notification), 0x02/0x82 (data); usb.device numbers the runtime interface next.
CDC_COMM_INTERFACE = 0
CDC_DATA_INTERFACE = 1
VENDOR_INTERFACE = 2
EP_CDC_NOTIFY = 0x81
EP_CDC_OUT = 0x02
EP_CDC_IN = 0x82
EP_OUT = 0x03
EP_IN = 0x83
#: Full-speed bulk max packet size, bytes.
MAX_PACKET = 64

LANGID_EN_US = 0x0409
#: String descriptor indices (TinyUSB/MicroPython numbering; 4 is the CDC string and the
#: runtime interface's string comes after the built-in ones).
STR_MANUFACTURER = 1
STR_PRODUCT = 2
STR_SERIAL = 3
STR_CDC = 4
STR_VENDOR = 5

_BCD_USB = 0x0200
_BCD_DEVICE = 0x0100
_EP0_SIZE = 64
_MAX_POWER_2MA = 125  # 250 mA, MicroPython's USBD_MAX_POWER_MA
# usb.device sets bit 6 (self-powered) when max_power_ma is not given, as rp2_usb.start does
_CONFIG_ATTRIBUTES = 0x80 | 0x40


def device_descriptor() -> bytes:
    """The 18-byte device descriptor.

    bDeviceClass/SubClass/Protocol are 0/0/0: micropython-lib's ``usb.device`` uses these
    defaults, and ``rp2_usb.start`` does not override them (the IAD form 0xEF/2/1 would be
    the stricter choice for a composite device; Linux and macOS accept both).
    """
    return struct.pack("<BBHBBBBHHHBBBB", 18, 1, _BCD_USB, 0, 0, 0, _EP0_SIZE, VID, PID,
                       _BCD_DEVICE, STR_MANUFACTURER, STR_PRODUCT, STR_SERIAL, 1)


def _endpoint(address: int, attributes: int, max_packet: int, interval: int) -> bytes:
    return struct.pack("<BBBBHB", 7, 5, address, attributes, max_packet, interval)


def _interface(number: int, n_endpoints: int, cls: int, subclass: int, protocol: int,
               string: int) -> bytes:
    return struct.pack("<9B", 9, 4, number, 0, n_endpoints, cls, subclass, protocol, string)


def configuration_descriptor() -> bytes:
    """The full configuration descriptor (wTotalLength bytes): IAD + CDC ACM as TinyUSB's
    TUD_CDC_DESCRIPTOR lays it out, then the vendor interface with its two bulk endpoints."""
    c = CDC_COMM_INTERFACE
    cdc = b"".join([
        struct.pack("<8B", 8, 0x0B, c, 2, 0x02, 0x02, 0x00, 0),  # IAD: CDC, ACM
        _interface(c, 1, 0x02, 0x02, 0x00, STR_CDC),
        struct.pack("<BBBH", 5, 0x24, 0x00, 0x0120),  # CDC header, bcdCDC 1.20
        struct.pack("<5B", 5, 0x24, 0x01, 0x00, c + 1),  # call management
        struct.pack("<4B", 4, 0x24, 0x02, 0x02),  # ACM: line coding and serial state
        struct.pack("<5B", 5, 0x24, 0x06, c, c + 1),  # union
        _endpoint(EP_CDC_NOTIFY, 0x03, 8, 16),
        _interface(c + 1, 2, 0x0A, 0x00, 0x00, 0),
        _endpoint(EP_CDC_OUT, 0x02, 64, 0),
        _endpoint(EP_CDC_IN, 0x02, 64, 0),
    ])
    vendor = (_interface(VENDOR_INTERFACE, 2, VENDOR_CLASS, VENDOR_SUBCLASS, VENDOR_PROTOCOL,
                         STR_VENDOR)
              + _endpoint(EP_OUT, 0x02, MAX_PACKET, 0) + _endpoint(EP_IN, 0x02, MAX_PACKET, 0))
    total = 9 + len(cdc) + len(vendor)
    head = struct.pack("<BBHBBBBB", 9, 2, total, 3, 1, 0, _CONFIG_ATTRIBUTES, _MAX_POWER_2MA)
    return head + cdc + vendor


def string_table(serial: str) -> dict[int, str]:
    """String descriptor index → text, for a board with serial number ``serial``."""
    return {STR_MANUFACTURER: MANUFACTURER, STR_PRODUCT: PRODUCT, STR_SERIAL: serial,
            STR_CDC: CDC_INTERFACE_STRING, STR_VENDOR: VENDOR_INTERFACE_STRING}
