"""Frame layer of docs/protocol.md (version 1): header, CRC, encoding and checking one frame."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from .._framing import crc32
from .errors import FrameError

SYNC = b"\xc5\x5c"
VERSION = 1
HEADER_SIZE = 20
OVERHEAD = 24  # header + CRC
MAX_PAYLOAD = 8192
MAX_FRAME = OVERHEAD + MAX_PAYLOAD
SEQ_MODULUS = 2**32

BytesLike = bytes | bytearray | memoryview

_HEADER = struct.Struct("<2sBBHHIQ")
_CRC = struct.Struct("<I")


class FrameType(IntEnum):
    """Frame types of protocol version 1."""

    COUNTS = 0x01  #: device -> host, phase-binned counts
    ADC_BLOCK = 0x02  #: device -> host, raw ADC samples with PEM reference edges
    STATUS = 0x03  #: device -> host, JSON status object
    EVENT = 0x04  #: device -> host, asynchronous event
    REPLY = 0x05  #: device -> host, answer to a COMMAND
    GATED_COUNTS = 0x06  #: device -> host, phase-binned counts of one gate (revision 3)
    COMMAND = 0x10  #: host -> device


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame that passed every frame-level check, payload not yet interpreted.

    ``timestamp_us`` is the device time of the frame in µs.
    """

    frame_type: int
    seq: int
    timestamp_us: int
    payload: bytes


def encode_frame(frame_type: int, seq: int, timestamp_us: int, payload: BytesLike) -> bytes:
    """Wrap ``payload`` into a complete frame: header, payload, CRC-32.

    ``seq`` is the sender's frame counter (u32), ``timestamp_us`` the sender's time in µs (u64).
    Raises ``ValueError`` when a field is out of range or the payload exceeds 8192 bytes.
    """
    for name, value, bits in (("frame_type", int(frame_type), 8), ("seq", seq, 32),
                              ("timestamp_us", timestamp_us, 64)):
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{name} = {value} does not fit in u{bits} (0 … {(1 << bits) - 1})")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(
            f"payload of {len(payload)} bytes exceeds the protocol's maximum of {MAX_PAYLOAD}; "
            "split the data over several frames")
    body = _HEADER.pack(SYNC, VERSION, int(frame_type), len(payload), 0, seq, timestamp_us) + payload
    return body + _CRC.pack(crc32(body))


def parse_frame(data: BytesLike) -> RawFrame:
    """Check that ``data`` is exactly one valid frame and split it into header fields and payload.

    Raises :class:`FrameError` whose ``reason`` is ``"sync"``, ``"version"``, ``"length"``,
    ``"size"`` or ``"crc"`` (checked in that order). For a byte stream use
    :class:`cplscope.protocol.StreamDecoder`.
    """
    data = bytes(data)
    if len(data) < 6:
        raise FrameError("size", f"{len(data)} bytes cannot hold a frame header (20 bytes) and CRC")
    if data[:2] != SYNC:
        raise FrameError("sync", f"frame starts with {data[:2].hex(' ')}, not the sync bytes c5 5c")
    if data[2] != VERSION:
        raise FrameError(
            "version", f"frame has protocol version {data[2]}; this host speaks version {VERSION}")
    length = data[4] | (data[5] << 8)
    if length > MAX_PAYLOAD:
        raise FrameError("length", f"payload length {length} exceeds the maximum of {MAX_PAYLOAD}")
    if len(data) != OVERHEAD + length:
        raise FrameError(
            "size", f"got {len(data)} bytes but the header announces a {OVERHEAD + length}-byte "
            "frame; pass exactly one frame")
    (expected,) = _CRC.unpack_from(data, HEADER_SIZE + length)
    actual = crc32(memoryview(data)[:HEADER_SIZE + length])
    if actual != expected:
        raise FrameError(
            "crc", f"CRC mismatch: frame carries 0x{expected:08X}, bytes give 0x{actual:08X}")
    _, _, frame_type, _, _, seq, timestamp_us = _HEADER.unpack_from(data)
    return RawFrame(frame_type, seq, timestamp_us, data[HEADER_SIZE:HEADER_SIZE + length])
