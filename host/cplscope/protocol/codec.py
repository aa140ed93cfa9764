"""Frame type <-> typed message: one dispatch table for decoding and encoding."""
from __future__ import annotations

from collections.abc import Callable

from .commands import Command, Reply, decode_command, decode_reply
from .errors import UnknownFrameType
from .frames import BytesLike, FrameType, encode_frame, parse_frame
from .payloads import (AdcBlock, Counts, Event, GatedCounts, Status, decode_adc_block,
                       decode_counts, decode_event, decode_gated_counts, decode_status)

Message = Counts | GatedCounts | AdcBlock | Status | Event | Reply | Command

_DECODERS: dict[int, Callable[..., Message]] = {
    FrameType.COUNTS: decode_counts,
    FrameType.ADC_BLOCK: decode_adc_block,
    FrameType.STATUS: decode_status,
    FrameType.EVENT: decode_event,
    FrameType.REPLY: decode_reply,
    FrameType.GATED_COUNTS: decode_gated_counts,
    FrameType.COMMAND: decode_command,
}


def decode_payload(frame_type: int, payload: bytes, seq: int = 0, timestamp_us: int = 0,
                   raw: bytes | None = None) -> Message:
    """Decode the payload of a CRC-checked frame of type ``frame_type``.

    Raises :class:`UnknownFrameType` for a type version 1 does not define and
    :class:`MalformedPayload` when the payload does not match its type's layout.
    """
    try:
        decoder = _DECODERS[frame_type]
    except KeyError:
        raise UnknownFrameType(frame_type) from None
    return decoder(payload, seq=seq, timestamp_us=timestamp_us, raw=raw)


def decode_frame(data: BytesLike, *, keep_raw: bool = False) -> Message:
    """Check and decode exactly one frame.

    Raises :class:`FrameError` (``reason`` says which check failed), :class:`UnknownFrameType`
    or :class:`MalformedPayload`; all are :class:`ProtocolError`.
    """
    frame = parse_frame(data)
    return decode_payload(frame.frame_type, frame.payload, frame.seq, frame.timestamp_us,
                          bytes(data) if keep_raw else None)


def encode_message(message: Message, seq: int | None = None,
                   timestamp_us: int | None = None) -> bytes:
    """A complete frame carrying ``message``; ``seq`` and ``timestamp_us`` (µs) default to the
    message's own."""
    return encode_frame(message.TYPE, message.seq if seq is None else seq,
                        message.timestamp_us if timestamp_us is None else timestamp_us,
                        message.to_payload())
