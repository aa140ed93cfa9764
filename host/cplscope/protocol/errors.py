"""Exceptions of :mod:`cplscope.protocol`. All derive from :class:`ProtocolError` (a ``ValueError``)."""
from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that do not follow docs/protocol.md (version 1)."""


class FrameError(ProtocolError):
    """A frame fails a receiver check; ``reason`` names which one.

    Reasons: ``"sync"`` (does not start with ``C5 5C``), ``"version"`` (version is not 1),
    ``"length"`` (payload length above 8192), ``"size"`` (the bytes given are not exactly one
    frame), ``"crc"`` (CRC-32 mismatch).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownFrameType(ProtocolError):
    """A frame with a good CRC whose type is not in the version-1 table; ``frame_type`` holds it."""

    def __init__(self, frame_type: int) -> None:
        super().__init__(
            f"frame type 0x{frame_type:02X} is not defined in protocol version 1 "
            "(known: 0x01-0x05 device->host, 0x10 host->device)")
        self.frame_type = frame_type


class MalformedPayload(ProtocolError):
    """A frame with a good CRC whose payload does not match the layout of its type.

    The CRC only proves the bytes arrived as sent, so this means the sender is wrong (or speaks
    another protocol revision). ``frame_type`` holds the frame's type.
    """

    def __init__(self, frame_type: int, message: str) -> None:
        super().__init__(message)
        self.frame_type = frame_type
