"""The compiled kernels of cplscope._framing against plain-Python references.

``reference_scan`` is the receiver rule of docs/protocol.md written the obvious way (one
candidate at a time, ``zlib.crc32`` for the CRC); bench/bench_framing.py loads it from here as
the pure-Python decoder it compares against.
"""
from __future__ import annotations

import array
import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cplscope import _framing
from cplscope.protocol import MAX_PAYLOAD, OVERHEAD, StreamDecoder, encode_frame

SYNC = b"\xc5\x5c"


def reference_scan(buf: bytes, final: bool = False) -> tuple:
    """Same contract as ``cplscope._framing.scan``, in plain Python."""
    buf = bytes(buf)
    n = len(buf)
    frames = []
    rej = {"version": 0, "length": 0, "crc": 0, "truncated": 0}
    skipped = 0
    i = 0
    while i < n:
        if buf[i] != 0xC5:
            nxt = buf.find(b"\xc5", i)
            nxt = n if nxt < 0 else nxt
            skipped += nxt - i
            i = nxt
            continue
        if i + 1 == n:  # a lone C5 at the end may be half a sync
            if final:
                skipped += 1
                i += 1
                continue
            break
        if buf[i + 1] != 0x5C:
            skipped += 1
            i += 1
            continue
        reason = None
        complete = False
        if i + 2 < n and buf[i + 2] != 1:
            reason = "version"
        elif i + 6 <= n and struct.unpack_from("<H", buf, i + 4)[0] > MAX_PAYLOAD:
            reason = "length"
        elif i + 6 <= n and n - i >= OVERHEAD + struct.unpack_from("<H", buf, i + 4)[0]:
            complete = True
            length = struct.unpack_from("<H", buf, i + 4)[0]
            body = buf[i:i + 20 + length]
            (crc,) = struct.unpack_from("<I", buf, i + 20 + length)
            if zlib.crc32(body) != crc:
                reason = "crc"
        if reason is None and not complete:
            if not final:
                break
            reason = "truncated"
        if reason is not None:
            rej[reason] += 1
            skipped += 1
            i += 1
            continue
        ftype = buf[i + 3]
        seq, ts = struct.unpack_from("<IQ", buf, i + 8)
        frames.append((i, ftype, length, seq, ts))
        i += OVERHEAD + length
    keep = n - i
    return (frames, rej["version"], rej["length"], rej["crc"], rej["truncated"], skipped, keep)


# ---------------------------------------------------------------------------------------------
# CRC-32


def buffer_kinds(data: bytes) -> list:
    ro = np.frombuffer(data, dtype=np.uint8)  # read-only view of bytes
    return [data, bytearray(data), memoryview(data), memoryview(bytearray(data)),
            ro, np.array(ro), array.array("B", data)]


@given(st.binary(max_size=300), st.integers(min_value=-(2**40), max_value=2**40))
@settings(max_examples=300, deadline=None)
def test_crc32_matches_zlib(data: bytes, value: int) -> None:
    assert _framing.crc32(data) == zlib.crc32(data)
    assert _framing.crc32(data, value) == zlib.crc32(data, value)


@given(st.binary(max_size=200), st.binary(max_size=200), st.integers(0, 7))
@settings(max_examples=200, deadline=None)
def test_crc32_running_form_and_unaligned_views(a: bytes, b: bytes, shift: int) -> None:
    assert _framing.crc32(b, _framing.crc32(a)) == zlib.crc32(a + b)
    padded = memoryview(bytes(shift) + a)[shift:]  # start at every alignment mod 8
    assert _framing.crc32(padded) == zlib.crc32(a)


def test_crc32_accepts_every_contiguous_byte_buffer() -> None:
    data = random.Random(1).randbytes(1 << 20)
    expected = zlib.crc32(data)
    for buf in buffer_kinds(data):
        assert _framing.crc32(buf) == expected, type(buf)
    assert _framing.crc32(b"") == 0
    assert _framing.crc32(b"", 0xDEADBEEF) == 0xDEADBEEF


def test_crc32_check_value() -> None:
    # The standard CRC-32 check value: CRC of ASCII "123456789".
    assert _framing.crc32(b"123456789") == 0xCBF43926


def test_kernels_refuse_non_contiguous_buffers() -> None:
    strided = memoryview(bytes(range(20)))[::2]
    with pytest.raises((ValueError, BufferError)):
        _framing.crc32(strided)
    with pytest.raises((ValueError, BufferError)):
        _framing.scan(strided)


def test_kernel_constants_match_the_protocol_package() -> None:
    from cplscope import protocol
    assert (_framing.SYNC0, _framing.SYNC1) == tuple(protocol.SYNC)
    assert _framing.VERSION == protocol.VERSION
    assert _framing.HEADER_SIZE == protocol.HEADER_SIZE
    assert _framing.OVERHEAD == protocol.OVERHEAD
    assert _framing.MAX_PAYLOAD == protocol.MAX_PAYLOAD


# ---------------------------------------------------------------------------------------------
# Streams for the scan: frames, garbage built to provoke every receiver rule, corruption.

u32 = st.integers(0, 2**32 - 1)


@st.composite
def frames(draw) -> bytes:
    ftype = draw(st.sampled_from([1, 2, 3, 4, 5, 16, 0, 7, 255]))
    payload = draw(st.binary(max_size=48))
    return encode_frame(ftype, draw(u32), draw(st.integers(0, 2**64 - 1)), payload)


@st.composite
def traps(draw) -> bytes:
    """Byte runs that look like the start of a frame but are not a valid one."""
    good = draw(frames())
    kind = draw(st.sampled_from(["half_sync", "sync", "header", "truncated", "bad_crc",
                                 "bad_version", "long_length", "too_long", "swallower"]))
    if kind == "half_sync":
        return b"\xc5"
    if kind == "sync":
        return SYNC
    if kind == "header":
        return good[:draw(st.integers(3, 19))]
    if kind == "truncated":
        return good[:draw(st.integers(1, len(good) - 1))]
    if kind == "bad_crc":
        b = bytearray(good)
        b[-1] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "bad_version":
        return SYNC + bytes([draw(st.sampled_from([0, 2, 0x5C, 0xC5]))]) + good[3:]
    if kind == "too_long":
        return SYNC + b"\x01\x01" + struct.pack("<H", draw(st.integers(MAX_PAYLOAD + 1, 0xFFFF)))
    # A plausible header whose length reaches over whatever follows.
    return SYNC + b"\x01\x01" + struct.pack("<H", draw(st.integers(0, 300))) + bytes(14)


garbage = st.one_of(st.binary(max_size=24), traps(),
                    st.lists(st.sampled_from([b"\xc5", b"\x5c", b"\x01", b"\x00"]), max_size=8)
                    .map(b"".join))


@st.composite
def streams(draw) -> bytes:
    parts = draw(st.lists(st.one_of(frames(), garbage), max_size=12))
    data = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(0, 3)) if data else 0):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@st.composite
def chunkings(draw, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


@given(streams(), st.booleans())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_scan_matches_reference(data: bytes, final: bool) -> None:
    got = _framing.scan(data, final)
    assert got == reference_scan(data, final)
    found, *_, skipped, keep = got
    assert sum(OVERHEAD + f[2] for f in found) + skipped + keep == len(data)
    if final:
        assert keep == 0


@given(streams())
@settings(max_examples=100, deadline=None)
def test_scan_accepts_every_contiguous_byte_buffer(data: bytes) -> None:
    expected = _framing.scan(data)
    for buf in buffer_kinds(data):
        assert _framing.scan(buf) == expected, type(buf)


@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_chunked_kernel_decoder_equals_one_shot_reference_decoder(data) -> None:
    """Any split of the stream gives the same frames and counters as the reference in one go."""
    stream = data.draw(streams())
    chunks = data.draw(chunkings(stream))
    fast = StreamDecoder(keep_raw=True)
    got = [m for c in chunks for m in fast.feed(c)]
    assert fast.pending <= max(len(stream), 0)
    got += fast.flush()
    ref = StreamDecoder(keep_raw=True, scanner=reference_scan)
    want = ref.feed(stream) + ref.flush()
    assert [(type(m), m.seq, m.raw) for m in got] == [(type(m), m.seq, m.raw) for m in want]
    assert fast.stats == ref.stats
    assert fast.pending == 0


def test_scan_resumes_one_byte_after_a_rejected_sync() -> None:
    good = encode_frame(1, 5, 6, bytes(28))
    # A candidate whose length reaches into the good frame hides it until its CRC fails.
    swallow = SYNC + b"\x01\x01" + struct.pack("<H", 10) + bytes(14)
    found, rv, rl, rc, rt, skipped, keep = _framing.scan(swallow + good)
    assert [f[0] for f in found] == [len(swallow)]
    assert (rv, rl, rc, rt, skipped, keep) == (0, 0, 1, 0, len(swallow), 0)
