"""Reassemble and check frames from a byte stream split arbitrarily (USB bulk reads)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._framing import scan as _kernel_scan
from .codec import Message, decode_payload
from .errors import MalformedPayload, UnknownFrameType
from .frames import HEADER_SIZE, OVERHEAD, SEQ_MODULUS, BytesLike

Scanner = Callable[[bytes, bool], tuple[Any, ...]]

_HALF = SEQ_MODULUS // 2


@dataclass(slots=True)
class StreamStats:
    """What a :class:`StreamDecoder` has seen so far.

    - ``frames``: frames decoded and passed on (good CRC, known type, well-formed payload).
    - ``rejected``: candidates and frames thrown away; the sum of the ``rejected_*`` fields:

      - ``rejected_version``: a sync ``C5 5C`` followed by a version other than 1;
      - ``rejected_length``: a sync followed by a payload length above 8192;
      - ``rejected_crc``: a complete candidate whose CRC-32 does not match;
      - ``rejected_truncated``: a candidate cut off by the end of the stream (only at
        :meth:`StreamDecoder.flush`);
      - ``rejected_payload``: a frame with a good CRC whose payload does not match its type's
        layout (:class:`MalformedPayload`).

      After a rejected candidate the scan resumes one byte after its sync, so one corrupt frame
      can add more than one rejection when its bytes contain ``C5 5C``; a stray ``C5 5C`` in
      garbage counts too.
    - ``unknown``: frames with a good CRC and a type protocol version 1 does not define.
    - ``missing``: sequence numbers never received in a good-CRC frame. For consecutive good
      frames with sequence numbers ``last`` and ``seq``, ``(seq − last − 1) mod 2³²`` is added.
      A frame lost to corruption usually shows both as a rejection and as one missing number.
      Every good-CRC frame counts here, including unknown and malformed ones.
    - ``restarts``: firmware restarts seen: ``seq == 0`` after any frame except seq 2³²−1
      (that is the normal wraparound), or a ``seq`` that is not ahead of ``last``, i.e.
      ``(seq − last) mod 2³²`` is 0 or at least 2³¹ (a restart whose first frames were lost).
      Nothing is added to ``missing`` across a restart.
    - ``bytes_skipped``: bytes that belong to no good-CRC frame (garbage, rejected candidates),
      discarded. ``bytes fed == bytes in good-CRC frames + bytes_skipped + pending``.
    """

    frames: int = 0
    rejected_version: int = 0
    rejected_length: int = 0
    rejected_crc: int = 0
    rejected_truncated: int = 0
    rejected_payload: int = 0
    unknown: int = 0
    missing: int = 0
    restarts: int = 0
    bytes_skipped: int = 0

    @property
    def rejected(self) -> int:
        return (self.rejected_version + self.rejected_length + self.rejected_crc
                + self.rejected_truncated + self.rejected_payload)


class StreamDecoder:
    """Decode the frames of a byte stream fed in chunks of any size and any split.

    >>> dec = StreamDecoder()
    >>> for chunk in usb_reads:              # doctest: +SKIP
    ...     for msg in dec.feed(chunk):
    ...         handle(msg)                  # Counts, AdcBlock, Status, Event, Reply, Command

    Only frames that pass every check are returned, in stream order; everything else is counted
    in :attr:`stats` (see :class:`StreamStats`) and dropped. An incomplete frame at the end of a
    chunk waits for the next one; :meth:`flush` gives up on it at the end of the stream.

    ``keep_raw=True`` stores each frame's bytes in the message's ``raw`` (for saving raw data).
    ``scanner`` replaces the compiled scan kernel (same signature as
    ``cplscope._framing.scan``); it exists for testing and benchmarking.
    """

    def __init__(self, *, keep_raw: bool = False, scanner: Scanner | None = None) -> None:
        self._scan: Scanner = scanner if scanner is not None else _kernel_scan
        self._keep_raw = keep_raw
        self._tail = b""
        self._last_seq: int | None = None
        self.stats = StreamStats()

    @property
    def pending(self) -> int:
        """Bytes held back because they may start a frame that has not fully arrived."""
        return len(self._tail)

    @property
    def last_seq(self) -> int | None:
        """Sequence number of the last good-CRC frame, None before the first."""
        return self._last_seq

    def feed(self, chunk: BytesLike) -> list[Message]:
        """Add the next bytes of the stream (any bytes-like object); return the frames completed
        by them, in order. Raises TypeError for anything that is not a buffer."""
        if type(chunk) is not bytes:
            chunk = memoryview(chunk).tobytes()  # not bytes(chunk): bytes(5) is five zeros
        data = self._tail + chunk if self._tail else chunk
        return self._process(data, final=False)

    def flush(self) -> list[Message]:
        """End of stream: give up waiting on a partial frame (rejected as truncated), rescan the
        bytes held back, and return any frames found in them. The decoder stays usable."""
        return self._process(self._tail, final=True)

    def iter_decode(self, chunks: Iterable[BytesLike]) -> Iterator[Message]:
        """Feed every chunk, then flush; yield the decoded frames."""
        for chunk in chunks:
            yield from self.feed(chunk)
        yield from self.flush()

    def _process(self, data: bytes, final: bool) -> list[Message]:
        if not data:
            self._tail = b""
            return []
        found, r_version, r_length, r_crc, r_trunc, skipped, keep = self._scan(data, final)
        st = self.stats
        st.rejected_version += r_version
        st.rejected_length += r_length
        st.rejected_crc += r_crc
        st.rejected_truncated += r_trunc
        st.bytes_skipped += skipped
        out: list[Message] = []
        keep_raw = self._keep_raw
        for offset, frame_type, length, seq, timestamp_us in found:
            self._track_seq(seq)
            start = offset + HEADER_SIZE
            payload = data[start:start + length]
            raw = data[offset:offset + OVERHEAD + length] if keep_raw else None
            try:
                out.append(decode_payload(frame_type, payload, seq, timestamp_us, raw))
            except UnknownFrameType:
                st.unknown += 1
            except MalformedPayload:
                st.rejected_payload += 1
        st.frames += len(out)
        self._tail = data[len(data) - keep:] if keep else b""
        return out

    def _track_seq(self, seq: int) -> None:
        last = self._last_seq
        self._last_seq = seq
        if last is None:
            return
        if seq == 0 and last != SEQ_MODULUS - 1:
            self.stats.restarts += 1
            return
        ahead = (seq - last) % SEQ_MODULUS
        if ahead == 0 or ahead >= _HALF:
            self.stats.restarts += 1
            return
        self.stats.missing += ahead - 1
