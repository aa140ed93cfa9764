"""Commands (host -> device, type 0x10) and their replies (device -> host, type 0x05)."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ._fields import check_size, check_uint, compact_json, enum_or_int, json_object, utf8
from .errors import MalformedPayload
from .frames import FrameType, encode_frame

UNREADABLE_REQUEST_ID = 0xFFFF  # request_id of a REPLY to a command frame that could not be read
#: COMMAND flags bit 0: this frame sends again a command whose reply did not arrive; a device
#: of protocol revision 2 answers it from its reply cache when it has the original
#: (docs/protocol.md, "Retries")
COMMAND_RETRY = 0x01


class Opcode(IntEnum):
    """Command opcodes of protocol version 1 (arguments and results: docs/protocol.md)."""

    IDENTIFY = 1
    CONFIGURE = 2
    START = 3
    STOP = 4
    MOVE = 5
    HOME = 6
    SET_RETARDATION = 7
    SET_HV = 8
    SHUTTER = 9
    STATUS = 10
    SELF_TEST = 11
    SET_LIMITS = 12
    CLEAR_FAULT = 13
    PEM_CONFIG = 14
    MONO_CONFIG = 15
    MAINTENANCE = 16  #: reply, then restart into maintenance mode (rp2 board)
    HV_CONFIG = 17  #: the detector's HV model (cplscope.settings.hv_model)


class ReplyStatus(IntEnum):
    """Status codes of a REPLY."""

    OK = 0
    BAD_FRAME = 1  #: the command payload is shorter than 4 bytes
    UNKNOWN_COMMAND = 2  #: unknown opcode
    BAD_ARGS = 3  #: args not a JSON object, or a key missing, unknown or of the wrong type
    OUT_OF_RANGE = 4  #: a value outside its allowed range (the text gives the range)
    BAD_STATE = 5  #: not allowed now
    HARDWARE = 6  #: the hardware did not do it
    INTERNAL = 7  #: unexpected firmware error; an EVENT FAULT follows


class CommandError(RuntimeError):
    """The device refused or failed a command: ``status``, ``opcode``, ``request_id`` and the
    device's ``text`` saying what was wrong."""

    def __init__(self, reply: Reply) -> None:
        status = reply.status
        name = status.name if isinstance(status, ReplyStatus) else f"status {status}"
        op = reply.opcode.name if isinstance(reply.opcode, Opcode) else f"opcode {reply.opcode}"
        super().__init__(f"{op} (request {reply.request_id}) failed with {name}: {reply.error}")
        self.status = status
        self.opcode = reply.opcode
        self.request_id = reply.request_id
        self.text = reply.error or ""


_HEAD = struct.Struct("<HBB")


def _split_head(ft: FrameType, payload: bytes) -> tuple[int, int, int, bytes]:
    """(request_id, opcode, third byte, body) of a COMMAND or REPLY payload."""
    if len(payload) < _HEAD.size:
        raise MalformedPayload(
            ft, f"{ft.name} payload of {len(payload)} bytes is shorter than {_HEAD.size}")
    return (*_HEAD.unpack_from(payload), payload[_HEAD.size:])


@dataclass(slots=True)
class Command:
    """A command frame's content: ``request_id`` (chosen by the host), ``opcode``, ``args``,
    and ``retry`` (flag RETRY: the frame sends an earlier command again)."""

    request_id: int
    opcode: Opcode | int
    args: dict[str, Any]
    retry: bool = field(default=False, kw_only=True)
    seq: int = field(default=0, kw_only=True)
    timestamp_us: int = field(default=0, kw_only=True)
    raw: bytes | None = field(default=None, kw_only=True, repr=False, compare=False)

    TYPE = FrameType.COMMAND

    def to_payload(self) -> bytes:
        return encode_command_payload(self.request_id, self.opcode, self.args, retry=self.retry)


@dataclass(slots=True)
class Reply:
    """The device's answer to one command (type 0x05).

    ``request_id`` and ``opcode`` of the command answered (0xFFFF and 0 when the command frame
    was unreadable); ``status``: :class:`ReplyStatus` (a plain int if version 1 does not define
    it). On OK, ``result`` is the result object and ``error`` None; otherwise ``result`` is None
    and ``error`` the device's text saying what was wrong.
    """

    request_id: int
    opcode: Opcode | int
    status: ReplyStatus | int
    result: dict[str, Any] | None = None
    error: str | None = None
    seq: int = field(default=0, kw_only=True)
    timestamp_us: int = field(default=0, kw_only=True)
    raw: bytes | None = field(default=None, kw_only=True, repr=False, compare=False)

    TYPE = FrameType.REPLY

    @property
    def ok(self) -> bool:
        return self.status == ReplyStatus.OK

    def raise_for_status(self) -> dict[str, Any]:
        """Return ``result`` when OK, else raise :class:`CommandError`."""
        if self.status != ReplyStatus.OK:
            raise CommandError(self)
        return self.result if self.result is not None else {}

    def to_payload(self) -> bytes:
        return encode_reply(self.request_id, self.opcode, self.status, result=self.result,
                            error=self.error)


def encode_command_payload(request_id: int, opcode: int, args: dict[str, Any] | None = None,
                           *, retry: bool = False) -> bytes:
    """COMMAND payload: request_id, opcode, flags (:data:`COMMAND_RETRY` with ``retry``), and
    ``args`` as compact JSON (empty when no args)."""
    check_uint("request_id", request_id, 16)
    if request_id == UNREADABLE_REQUEST_ID:
        raise ValueError("request_id 0xFFFF is reserved for replies to unreadable commands; "
                         "use 0 … 65534")
    check_uint("opcode", int(opcode), 8)
    if args is None:
        args = {}
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise ValueError(f"args must be a dict with str keys, got {args!r}")
    body = compact_json(args, "command args") if args else b""
    flags = COMMAND_RETRY if retry else 0
    return check_size(FrameType.COMMAND, _HEAD.pack(request_id, int(opcode), flags) + body)


def encode_command(request_id: int, opcode: int, args: dict[str, Any] | None, seq: int,
                   timestamp_us: int = 0, *, retry: bool = False) -> bytes:
    """A complete COMMAND frame. ``seq`` is the host's frame counter (u32), ``timestamp_us`` the
    host's time in µs (0 when unused); ``retry`` sets the flag RETRY (the same request_id,
    opcode and args as a command sent before)."""
    return encode_frame(FrameType.COMMAND, seq, timestamp_us,
                        encode_command_payload(request_id, opcode, args, retry=retry))


def decode_command(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                   raw: bytes | None = None) -> Command:
    """Decode a COMMAND payload (at least 4 bytes; args empty or a JSON object). Flag bits
    other than RETRY are reserved and ignored."""
    ft = FrameType.COMMAND
    request_id, opcode, flags, body = _split_head(ft, payload)
    args = json_object(ft, body, "args") if body else {}
    return Command(request_id, enum_or_int(Opcode, opcode), args,
                   retry=bool(flags & COMMAND_RETRY), seq=seq, timestamp_us=timestamp_us,
                   raw=raw)


def encode_reply(request_id: int, opcode: int, status: int, *,
                 result: dict[str, Any] | None = None, error: str | None = None) -> bytes:
    """REPLY payload. OK needs ``result`` (a dict, default {}); any other status needs ``error``
    text and no result."""
    check_uint("request_id", request_id, 16)
    check_uint("opcode", int(opcode), 8)
    check_uint("status", int(status), 8)
    if status == ReplyStatus.OK:
        if error is not None:
            raise ValueError("an OK reply carries a result, not error text")
        body = compact_json({} if result is None else result, "reply result")
    else:
        if result is not None:
            raise ValueError(f"a reply with status {status} carries error text, not a result")
        if not error:
            raise ValueError("an error reply must say what was wrong: give error text")
        body = error.encode()
    return check_size(FrameType.REPLY, _HEAD.pack(request_id, int(opcode), int(status)) + body)


def decode_reply(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                 raw: bytes | None = None) -> Reply:
    """Decode a REPLY payload. OK: a JSON object (an empty body reads as {}). Else: UTF-8 text."""
    ft = FrameType.REPLY
    request_id, opcode, status, body = _split_head(ft, payload)
    if status == ReplyStatus.OK:
        result = json_object(ft, body, "result") if body else {}
        return Reply(request_id, enum_or_int(Opcode, opcode), ReplyStatus.OK, result=result,
                     seq=seq, timestamp_us=timestamp_us, raw=raw)
    return Reply(request_id, enum_or_int(Opcode, opcode), enum_or_int(ReplyStatus, status),
                 error=utf8(ft, body, "error text"), seq=seq, timestamp_us=timestamp_us, raw=raw)
