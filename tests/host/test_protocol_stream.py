"""StreamDecoder: chunking, sequence statistics, corruption, fuzzing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cplscope.protocol import (
    Counts,
    Flags,
    MAX_FRAME,
    FrameType,
    ProtocolError,
    StreamDecoder,
    decode_frame,
    decode_payload,
    encode_adc_block,
    encode_counts,
    encode_event,
    encode_frame,
    encode_reply,
    encode_status,
)
from cplscope.protocol.errors import MalformedPayload

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def counts_frame(seq: int, b: int = 4, ts: int = 0) -> bytes:
    payload = encode_counts(np.arange(b) + seq % 1000, flags=Flags.PEM_LOCKED, periods=100)
    return encode_frame(FrameType.COUNTS, seq, ts, payload)


def event_frame(seq: int) -> bytes:
    return encode_frame(FrameType.EVENT, seq, 0, encode_event(1, 0, "fw"))


def decode_all(data: bytes, chunk: int = 7, **kw) -> tuple[list, StreamDecoder]:
    dec = StreamDecoder(**kw)
    out = [m for i in range(0, len(data), chunk) for m in dec.feed(data[i:i + chunk])]
    return out + dec.flush(), dec


# ------------------------------------------------------------------------------ sequence numbers

@pytest.mark.parametrize("seqs,missing,restarts", [
    ([0, 1, 2, 3], 0, 0),
    ([1000, 1001], 0, 0),                               # joining a running stream is no gap
    ([5, 8], 2, 0),
    ([5, 8, 9, 20], 12, 0),
    ([2**32 - 2, 2**32 - 1, 0, 1], 0, 0),               # wraparound, not a restart
    ([2**32 - 2, 1], 2, 0),                             # gap across the wraparound
    ([100, 101, 0, 1, 2], 0, 1),                        # firmware restart
    ([100, 0, 0], 0, 2),                                # restarted twice
    ([100, 3, 4], 0, 1),                                # restart whose frames 0..2 were lost
    ([7, 7], 0, 1),                                     # not ahead: cannot be a gap
])
def test_sequence_statistics(seqs, missing, restarts) -> None:
    out, dec = decode_all(b"".join(event_frame(s) for s in seqs))
    assert [m.seq for m in out] == seqs
    assert (dec.stats.missing, dec.stats.restarts, dec.stats.frames) == (missing, restarts, len(seqs))
    assert dec.last_seq == seqs[-1]


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(1, 2**20), max_size=20))
@settings(max_examples=100, deadline=None)
def test_missing_is_the_sum_of_forward_gaps_modulo_2_32(start, steps) -> None:
    seqs = [start]
    for step in steps:
        seqs.append((seqs[-1] + step) % 2**32)
    if any(s == 0 and p != 2**32 - 1 for p, s in zip(seqs, seqs[1:])):
        return  # a jump that lands exactly on 0 reads as a restart by the protocol's rule
    out, dec = decode_all(b"".join(event_frame(s) for s in seqs), chunk=64)
    assert dec.stats.missing == sum(step - 1 for step in steps)
    assert dec.stats.restarts == 0


# ------------------------------------------------------------------------------ chunking and buffering

def test_partial_frame_waits_for_the_rest() -> None:
    frame = counts_frame(3, b=16)
    dec = StreamDecoder()
    for cut in (1, 2, 6, 19, 20, len(frame) - 1):
        assert dec.feed(frame[:cut]) == [] and dec.pending == cut
        assert [m.seq for m in dec.feed(frame[cut:])] == [3] and dec.pending == 0
    assert dec.stats.bytes_skipped == 0 and dec.stats.rejected == 0


def test_flush_gives_up_on_a_false_sync_that_announces_a_long_frame() -> None:
    """A stray sync in garbage whose length field is large holds back what follows until that
    many bytes have arrived (the protocol cannot tell it from a real frame before its CRC);
    flush() at the end of the stream rejects it and releases the frames behind it."""
    false_sync = b"\xc5\x5c\x01\x01" + (4000).to_bytes(2, "little")
    dec = StreamDecoder()
    assert dec.feed(false_sync + counts_frame(1) + counts_frame(2)) == []
    assert [m.seq for m in dec.flush()] == [1, 2]
    assert dec.stats.rejected_truncated == 1 and dec.pending == 0
    # With enough data behind it, no flush is needed: its CRC fails and the scan resumes.
    dec = StreamDecoder()
    out = dec.feed(false_sync + b"".join(counts_frame(s) for s in range(100)))
    assert [m.seq for m in out] == list(range(100))
    assert dec.stats.rejected_crc == 1


def test_held_back_bytes_stay_below_one_maximal_frame() -> None:
    """False syncs that each announce an almost maximal frame, every 100 bytes, with real frames
    among them: the decoder never holds more than one maximal frame minus a byte, and every real
    frame comes through."""
    false_sync = b"\xc5\x5c\x01\x01" + (8191).to_bytes(2, "little")
    block = b"".join(false_sync + bytes(94) for _ in range(3)) + counts_frame(0)
    data = block * 300
    dec = StreamDecoder()
    out = []
    for i in range(0, len(data), 4096):
        out += dec.feed(data[i:i + 4096])
        assert dec.pending < MAX_FRAME
    out += dec.flush()
    assert len(out) == 300 and dec.stats.rejected == 900


def test_decoded_messages_do_not_alias_the_fed_buffer() -> None:
    buf = bytearray(counts_frame(1, b=8))
    (msg,) = StreamDecoder().feed(buf)
    before = msg.counts.copy()
    buf[:] = bytes(len(buf))
    assert np.array_equal(msg.counts, before)


def test_feed_accepts_any_byte_buffer_and_keep_raw() -> None:
    frames = [counts_frame(s) for s in range(3)]
    data = b"".join(frames)
    for buf in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        dec = StreamDecoder(keep_raw=True)
        assert [m.raw for m in dec.feed(buf)] == frames
    assert all(m.raw is None for m in StreamDecoder().feed(data))
    with pytest.raises(TypeError):
        StreamDecoder().feed(5)  # type: ignore[arg-type]
    assert [m.seq for m in StreamDecoder().iter_decode([data[:10], data[10:]])] == [0, 1, 2]


# ------------------------------------------------------------------------------ corruption

@st.composite
def good_frames(draw, seq: int) -> bytes:
    kind = draw(st.sampled_from(["counts", "adc", "event", "reply"]))
    ts = draw(st.integers(0, 2**64 - 1))
    if kind == "counts":
        b = draw(st.integers(2, 64))
        payload = encode_counts(draw(st.lists(st.integers(0, 2**32 - 1), min_size=b, max_size=b)),
                                flags=draw(st.integers(0, 127)), periods=draw(st.integers(1, 10**5)))
        return encode_frame(FrameType.COUNTS, seq, ts, payload)
    if kind == "adc":
        n = 2 * draw(st.integers(0, 20))
        payload = encode_adc_block(draw(st.lists(st.integers(0, 4095), min_size=n, max_size=n)),
                                   np.cumsum(draw(st.lists(st.integers(0, 999), max_size=5))),
                                   t0_ticks=draw(st.integers(0, 2**40)), tick_hz=125_000_000,
                                   sample_rate_hz=250e3)
        return encode_frame(FrameType.ADC_BLOCK, seq, ts, payload)
    if kind == "event":
        return encode_frame(FrameType.EVENT, seq, ts, encode_event(draw(st.integers(1, 9)), 0,
                                                                    draw(st.text(max_size=20))))
    return encode_frame(FrameType.REPLY, seq, ts, encode_reply(1, 2, 0, result={"a": seq}))


@st.composite
def corrupted_streams(draw):
    """Frames with consecutive sequence numbers, random garbage between them, and 1-4 bit
    flips. Returns the stream, the frames, which frames were hit, and a chunking."""
    n = draw(st.integers(1, 8))
    first = draw(st.integers(0, 2**32 - 1 - n))
    frames = [draw(good_frames(first + k)) for k in range(n)]
    gaps = draw(st.lists(st.binary(max_size=30), min_size=n + 1, max_size=n + 1))
    data = bytearray()
    spans = []
    for gap, frame in zip(gaps, frames):
        data += gap
        spans.append((len(data), len(data) + len(frame)))
        data += frame
    data += gaps[-1]
    bits = draw(st.sets(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=4))
    for bit in bits:
        data[bit // 8] ^= 1 << (bit % 8)
    hit = {k for k, (a, b) in enumerate(spans) for bit in bits if a <= bit // 8 < b}
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    chunks = [bytes(data[a:b]) for a, b in zip(bounds, bounds[1:])]
    return bytes(data), frames, hit, chunks


@given(corrupted_streams())
@SETTINGS
def test_bit_flips_never_let_a_corrupt_frame_through(case) -> None:
    """Every frame hit by a flip is dropped; every frame not hit comes through unchanged, even
    when the flips land in the garbage between frames."""
    data, frames, hit, chunks = case
    dec = StreamDecoder(keep_raw=True)
    out = [m for c in chunks for m in dec.feed(c)] + dec.flush()
    intact = [f for k, f in enumerate(frames) if k not in hit]
    assert [m.raw for m in out] == intact
    assert dec.stats.frames == len(intact)
    assert dec.stats.unknown == 0 and dec.stats.rejected_payload == 0
    assert sum(len(f) for f in intact) + dec.stats.bytes_skipped == len(data)
    # Lost frames between the first and last intact one show up as missing.
    seen = [k for k in range(len(frames)) if k not in hit]
    assert dec.stats.missing == (seen[-1] - seen[0] + 1 - len(seen) if seen else 0)
    assert dec.stats.restarts == 0


# ------------------------------------------------------------------------------ fuzzing: only documented exceptions

@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
@SETTINGS
def test_arbitrary_bytes_never_raise_from_the_stream_decoder(data, cuts) -> None:
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    dec = StreamDecoder()
    for a, b in zip(bounds, bounds[1:]):
        dec.feed(data[a:b])
    dec.flush()
    assert dec.pending == 0
    assert dec.stats.bytes_skipped + dec.pending <= len(data)
    try:
        decode_frame(data)
    except ProtocolError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
payload_bodies = st.one_of(
    st.binary(max_size=120),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.just(b"[" * 5000),                    # nesting deeper than the JSON parser allows
    st.just(b"{\"a\":" + b"9" * 5000 + b"}"),  # integer longer than Python converts
)


@given(st.sampled_from(list(FrameType) + [0, 6, 0x11, 0xFF]), st.binary(max_size=4), payload_bodies)
@SETTINGS
def test_good_crc_frames_with_garbage_payloads_are_counted_not_raised(ftype, head, body) -> None:
    payload = head + body
    frame = encode_frame(ftype, 1, 0, payload)
    dec = StreamDecoder()
    out = dec.feed(event_frame(0) + frame + event_frame(2))
    assert len(out) in (2, 3) and (out[0].seq, out[-1].seq) == (0, 2)
    accepted = len(out) == 3
    assert dec.stats.frames + dec.stats.unknown + dec.stats.rejected_payload == 3
    assert dec.stats.missing == 0
    if ftype in list(FrameType):
        try:
            decode_payload(ftype, payload)
            assert accepted
        except MalformedPayload:
            assert not accepted and dec.stats.rejected_payload == 1
    else:
        assert dec.stats.unknown == 1


def test_status_frame_through_the_stream() -> None:
    status = {"state": "running", "mode": "analog", "bins": 16, "periods": 500, "pem_locked": False,
              "pem_period_ps": 0, "a0_rad": None, "wavelength_nm": 504.0, "mono_position": -3,
              "moving": False, "homed": False, "hv_volts": 0.0, "hv_set_volts": 0.0,
              "shutter_open": True,
              "overload": True, "frames_sent": 1, "frames_dropped": 2, "frames_late": 0,
              "uptime_us": 3}
    (msg,) = StreamDecoder().feed(encode_frame(FrameType.STATUS, 0, 9, encode_status(status)))
    assert msg.to_dict() == status and msg.timestamp_us == 9 and msg.a0_rad is None


def test_counts_usable_on_decoded_frames() -> None:
    good = encode_counts([1, 2], flags=Flags.PEM_LOCKED | Flags.HV_ON, periods=1)
    moving = encode_counts([1, 2], flags=Flags.PEM_LOCKED | Flags.MONO_MOVING, periods=1)
    out = StreamDecoder().feed(encode_frame(1, 0, 0, good) + encode_frame(1, 1, 0, moving))
    assert all(isinstance(m, Counts) for m in out)
    assert [m.usable for m in out] == [True, False]
