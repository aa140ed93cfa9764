"""Fault injection on the simulated USB cable: which frames are lost or corrupted (IN frames
of the board and OUT frames of the host alike, command replies and commands included), which
IN transfers stall, when the cable unplugs. Pure and seeded: the hub (`cplscope.sim.hub`)
applies the decisions; docs/simulator.md, "Processes, virtual USB and faults", has the
semantics.

Decisions are a hash of (seed, kind, key) rather than draws from one generator, so that they do
not depend on timing: a frame's fate depends only on the seed, its direction, the firmware run
it belongs to and its sequence number; a stall only on the seed and the index of the
data-carrying IN transfer.
"""
from __future__ import annotations

import hashlib
import math
import struct
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

__all__ = ["Faults", "FaultInjector", "split_frames", "FAULT_KEYS", "MAX_LINK_RATE",
           "check_link_faults"]

_SYNC = b"\xc5\x5c"
_HEADER = 20
_OVERHEAD = 24
_MAX_PAYLOAD = 8192
_KEEP_SEQS = 100_000  # how many dropped/corrupted sequence numbers the injector remembers
_TYPE_NAMES = {1: "COUNTS", 2: "ADC_BLOCK", 3: "STATUS", 4: "EVENT", 5: "REPLY", 0x10: "COMMAND"}

#: the highest `corrupt`, `drop` or `stall` fraction an instrument session accepts
#: (:func:`check_link_faults`): a USB link that loses one frame in 20 is broken, not flaky
MAX_LINK_RATE = 0.05


@dataclass(frozen=True)
class Faults:
    """Fault settings of the virtual cable.

    corrupt: fraction (0…1) of frames with one byte changed (never a sync byte, so that the
    receiver can count every corrupted frame as a rejection), in both directions: the board's
    IN frames (data, events, replies) and the host's OUT frames (commands). drop: fraction of
    frames lost whole, in both directions. stall: fraction of data-carrying IN transfers answered with an endpoint halt
    (EPIPE until clear_halt; no data is lost). disconnect_at: instrument time in s at which the
    cable unplugs (once), None for never. reconnect_after: instrument seconds after the
    disconnect at which it plugs back in, None for never.
    """

    corrupt: float = 0.0
    drop: float = 0.0
    stall: float = 0.0
    disconnect_at: float | None = None
    reconnect_after: float | None = None

    @property
    def loses_frames(self) -> bool:
        """True if frames may be lost or corrupted on the cable (`drop` or `corrupt` set)."""
        return self.corrupt > 0 or self.drop > 0

    def updated(self, changes: Mapping[str, Any] | None) -> "Faults":
        """A copy with `changes` applied, each checked; unknown keys raise ValueError."""
        if not changes:
            return self
        unknown = sorted(set(changes) - set(FAULT_KEYS))
        if unknown:
            raise ValueError(f"unknown fault key(s) {', '.join(map(repr, unknown))}; "
                             f"the simulated cable knows {', '.join(FAULT_KEYS)}")
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key in ("corrupt", "drop", "stall"):
                checked[key] = _fraction(key, value)
            else:
                checked[key] = _seconds(key, value)
        return replace(self, **checked)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


FAULT_KEYS = tuple(f.name for f in fields(Faults))


def check_link_faults(faults: Mapping[str, Any] | None) -> Faults:
    """Faults for an instrument session (``cplscope.connect("sim", faults=...)``, ``--fault``):
    the checks of :meth:`Faults.updated`, and no `corrupt`, `drop` or `stall` rate above
    :data:`MAX_LINK_RATE`, which no working link reaches (the injector itself takes any
    fraction, for stress tests of the decoder). Raises ValueError saying what is wrong."""
    checked = Faults().updated(faults)
    for key in ("corrupt", "drop", "stall"):
        rate = getattr(checked, key)
        if rate > MAX_LINK_RATE:
            raise ValueError(
                f"fault {key!r} = {rate:g} is more than a USB link loses: a link that "
                f"{'corrupts' if key == 'corrupt' else 'drops' if key == 'drop' else 'stalls'}"
                f" more than {MAX_LINK_RATE:g} of its frames is broken, not flaky; give a "
                f"fraction from 0 to {MAX_LINK_RATE:g} (e.g. 1e-3)")
    if checked.reconnect_after is not None and checked.disconnect_at is None:
        raise ValueError("fault 'reconnect_after' needs 'disconnect_at' (when the cable "
                         "unplugs); without it the cable never unplugs")
    return checked


def _fraction(key: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not (0.0 <= x <= 1.0):
        raise ValueError(f"fault {key!r} is a fraction of frames/transfers from 0 to 1, "
                         f"got {value!r}")
    return x


def _seconds(key: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not (math.isfinite(x) and x >= 0):
        raise ValueError(f"fault {key!r} is a time in instrument seconds ≥ 0 (or None for "
                         f"never), got {value!r}")
    return x


def split_frames(data: bytes) -> list[tuple[int | None, bytes]]:
    """Cut a byte string at protocol frame boundaries (sync + length fields; the CRC is not
    checked). Returns (seq, frame bytes) pairs; bytes that do not start a complete frame come
    as one (None, rest) piece at the end."""
    out: list[tuple[int | None, bytes]] = []
    pos, n = 0, len(data)
    while pos < n:
        if data[pos:pos + 2] == _SYNC and pos + _HEADER <= n:
            length = struct.unpack_from("<H", data, pos + 4)[0]
            end = pos + _OVERHEAD + length
            if length <= _MAX_PAYLOAD and end <= n:
                out.append((struct.unpack_from("<I", data, pos + 8)[0], data[pos:end]))
                pos = end
                continue
        out.append((None, data[pos:]))
        break
    return out


class FaultInjector:
    """Applies :class:`Faults` to the frames of the virtual cable, reproducibly from `seed`.

    Counters (`frames`, `dropped`, `corrupted` for IN frames; `out_frames`, `out_dropped`,
    `out_corrupted` for the host's OUT frames; `stalled`, `stall_checks`), the IN frames hit
    by type (`hit_types`: {"REPLY": n, ...}), and the sequence numbers of the frames dropped
    and corrupted (the last 100 000 of each, per direction) are kept for tests and for the
    hub's statistics.
    """

    def __init__(self, seed: int, faults: Faults | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"the fault seed must be an integer ≥ 0, got {seed!r}")
        self.seed = seed
        self.faults = faults or Faults()
        self.frames = self.dropped = self.corrupted = 0
        self.out_frames = self.out_dropped = self.out_corrupted = 0
        self.stalled = self.stall_checks = 0
        self.hit_types: dict[str, int] = {}
        self.dropped_seqs: deque[int] = deque(maxlen=_KEEP_SEQS)
        self.corrupted_seqs: deque[int] = deque(maxlen=_KEEP_SEQS)
        self.out_dropped_seqs: deque[int] = deque(maxlen=_KEEP_SEQS)
        self.out_corrupted_seqs: deque[int] = deque(maxlen=_KEEP_SEQS)
        self._unframed = 0
        self._out_unframed = 0

    def _u(self, kind: bytes, *key: int) -> int:
        """64 uniform bits for (seed, kind, key)."""
        msg = struct.pack("<Q", self.seed) + kind + struct.pack("<%dq" % len(key), *key)
        return int.from_bytes(hashlib.blake2b(msg, digest_size=8).digest(), "little")

    def _hit(self, p: float, kind: bytes, *key: int) -> bool:
        if p <= 0.0:
            return False
        return p >= 1.0 or self._u(kind, *key) < p * 2.0**64

    def in_buffer(self, data: bytes, run: int) -> bytes:
        """The bytes of one firmware IN buffer that reach the host, for firmware run `run`
        (the n-th firmware connection): whole frames dropped, single bytes changed."""
        out = []
        for seq, frame in split_frames(data):
            if seq is None:  # not a whole frame: key it by a running counter
                self._unframed += 1
                key = (run, -self._unframed)
            else:
                self.frames += 1
                key = (run, seq)
            name = _TYPE_NAMES.get(frame[3], "other") if len(frame) > 3 else "other"
            fate, frame = self._fate(frame, b"", key)
            if fate is not None:
                self.hit_types[name] = self.hit_types.get(name, 0) + 1
                if fate == "drop":
                    self.dropped += 1
                    if seq is not None:
                        self.dropped_seqs.append(seq)
                    continue
                self.corrupted += 1
                if seq is not None:
                    self.corrupted_seqs.append(seq)
            out.append(frame)
        return b"".join(out)

    def out_buffer(self, data: bytes, run: int) -> bytes:
        """The bytes of one host OUT write (commands) that reach the board in firmware run
        `run`: whole frames dropped, single bytes changed, at the same rates as IN frames,
        decided by the host's frame sequence number."""
        out = []
        for seq, frame in split_frames(data):
            if seq is None:
                self._out_unframed += 1
                key = (run, -self._out_unframed)
            else:
                self.out_frames += 1
                key = (run, seq)
            fate, frame = self._fate(frame, b"-out", key)
            if fate == "drop":
                self.out_dropped += 1
                if seq is not None:
                    self.out_dropped_seqs.append(seq)
                continue
            if fate == "corrupt":
                self.out_corrupted += 1
                if seq is not None:
                    self.out_corrupted_seqs.append(seq)
            out.append(frame)
        return b"".join(out)

    def _fate(self, frame: bytes, direction: bytes, key: tuple[int, int]
              ) -> tuple[str | None, bytes]:
        """("drop", frame), ("corrupt", the changed frame) or (None, frame)."""
        f = self.faults
        if self._hit(f.drop, b"drop" + direction, *key):
            return "drop", frame
        if len(frame) > 2 and self._hit(f.corrupt, b"corrupt" + direction, *key):
            bits = self._u(b"where" + direction, *key)
            pos = 2 + bits % (len(frame) - 2)
            flip = 1 + (bits >> 32) % 255
            b = bytearray(frame)
            b[pos] ^= flip
            return "corrupt", bytes(b)
        return None, frame

    def stall_now(self) -> bool:
        """Decide for the next data-carrying IN transfer whether the endpoint halts."""
        self.stall_checks += 1
        hit = self._hit(self.faults.stall, b"stall", self.stall_checks)
        self.stalled += hit
        return hit

    def stats(self) -> dict[str, Any]:
        return {"frames": self.frames, "dropped": self.dropped, "corrupted": self.corrupted,
                "stalled": self.stalled, "in_transfers": self.stall_checks,
                "out_frames": self.out_frames, "out_dropped": self.out_dropped,
                "out_corrupted": self.out_corrupted, "hit_types": dict(self.hit_types)}
