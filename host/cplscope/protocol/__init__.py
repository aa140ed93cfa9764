"""Host side of the cplscope wire protocol, version 1 (docs/protocol.md).

- :class:`StreamDecoder`: frames out of a byte stream split in any way, with statistics.
- :func:`decode_frame` / :func:`encode_message`: one frame <-> one typed message.
- Messages: :class:`Counts`, :class:`AdcBlock`, :class:`Status`, :class:`Event`,
  :class:`Reply`, :class:`Command`; enums :class:`FrameType`, :class:`Flags`,
  :class:`EventCode`, :class:`Severity`, :class:`Opcode`, :class:`ReplyStatus`.
- Encoders: :func:`encode_frame`, :func:`encode_command`, and ``encode_*`` payload builders.
- Errors: everything malformed raises a :class:`ProtocolError` (a ``ValueError``):
  :class:`FrameError`, :class:`UnknownFrameType`, :class:`MalformedPayload`. A refused command
  raises :class:`CommandError` from :meth:`Reply.raise_for_status`.

The CRC-32 and the sync scan run in the compiled kernel :mod:`cplscope._framing`.
"""
from .._framing import crc32
from .codec import Message, decode_frame, decode_payload, encode_message
from .commands import (
    COMMAND_RETRY,
    Command,
    CommandError,
    Opcode,
    Reply,
    ReplyStatus,
    decode_command,
    decode_reply,
    encode_command,
    encode_command_payload,
    encode_reply,
)
from .errors import FrameError, MalformedPayload, ProtocolError, UnknownFrameType
from .frames import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_PAYLOAD,
    OVERHEAD,
    SYNC,
    VERSION,
    FrameType,
    RawFrame,
    encode_frame,
    parse_frame,
)
from .payloads import (
    AdcBlock,
    Counts,
    Event,
    EventCode,
    Flags,
    GatedCounts,
    Severity,
    Status,
    bin_span_from_wire,
    bin_span_to_wire,
    decode_adc_block,
    decode_counts,
    decode_event,
    decode_gated_counts,
    decode_status,
    encode_adc_block,
    encode_counts,
    encode_event,
    encode_gated_counts,
    encode_status,
    pack12,
    unpack12,
    usable_flags,
)
from .stream import StreamDecoder, StreamStats

__all__ = [
    "COMMAND_RETRY", "HEADER_SIZE", "MAX_FRAME", "MAX_PAYLOAD", "OVERHEAD", "SYNC", "VERSION",
    "AdcBlock", "Command", "CommandError", "Counts", "Event", "EventCode", "Flags", "FrameError",
    "GatedCounts", "decode_gated_counts", "encode_gated_counts",
    "FrameType", "MalformedPayload", "Message", "Opcode", "ProtocolError", "RawFrame", "Reply",
    "ReplyStatus", "Severity", "Status", "StreamDecoder", "StreamStats", "UnknownFrameType",
    "bin_span_from_wire", "bin_span_to_wire", "crc32", "decode_adc_block", "decode_command", "decode_counts", "decode_event",
    "decode_frame", "decode_payload", "decode_reply", "decode_status", "encode_adc_block",
    "encode_command", "encode_command_payload", "encode_counts", "encode_event", "encode_frame",
    "encode_message", "encode_reply", "encode_status", "pack12", "parse_frame", "unpack12",
    "usable_flags",
]
