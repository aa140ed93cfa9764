"""Range checks and JSON/UTF-8 helpers shared by the payload codecs (private)."""
from __future__ import annotations

import json
from enum import IntEnum
from typing import Any

from .errors import MalformedPayload
from .frames import MAX_PAYLOAD, FrameType


def check_uint(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} = {value} does not fit in u{bits} (0 … {(1 << bits) - 1})")


def check_int32(name: str, value: int) -> None:
    if not -(1 << 31) <= value < (1 << 31):
        raise ValueError(f"{name} = {value} does not fit in i32 (−2³¹ … 2³¹−1)")


def check_size(frame_type: FrameType, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(
            f"{frame_type.name} payload would be {len(payload)} bytes, above the maximum of "
            f"{MAX_PAYLOAD}; send less data per frame")
    return payload


def enum_or_int(enum: type[IntEnum], value: int) -> Any:
    """``enum(value)`` when the value is in the table, else the plain int (kept, not dropped)."""
    try:
        return enum(value)
    except ValueError:
        return value


def utf8(frame_type: FrameType, raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayload(frame_type, f"{frame_type.name} {what} is not valid UTF-8: {exc}") from None


def json_object(frame_type: FrameType, raw: bytes, what: str) -> dict[str, Any]:
    text = utf8(frame_type, raw, what)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also: too deeply nested, too many digits
        raise MalformedPayload(frame_type, f"{frame_type.name} {what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedPayload(
            frame_type, f"{frame_type.name} {what} must be a JSON object, got {type(obj).__name__}")
    return obj


def compact_json(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} cannot be sent as strict JSON: {exc}") from None
