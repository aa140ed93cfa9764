"""Typed payloads: round trips, the 12-bit packing, flag rules, malformed payloads, encoder checks."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cplscope.protocol import (
    AdcBlock,
    Command,
    CommandError,
    Counts,
    Event,
    EventCode,
    Flags,
    FrameType,
    MalformedPayload,
    Opcode,
    ProtocolError,
    Reply,
    ReplyStatus,
    Severity,
    Status,
    StreamDecoder,
    UnknownFrameType,
    bin_span_from_wire,
    bin_span_to_wire,
    decode_command,
    decode_frame,
    decode_payload,
    encode_adc_block,
    encode_command,
    encode_command_payload,
    encode_counts,
    encode_event,
    encode_frame,
    encode_message,
    encode_reply,
    encode_status,
    pack12,
    unpack12,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
header = st.fixed_dictionaries({"seq": u32, "timestamp_us": st.integers(0, 2**64 - 1)})


def roundtrip(msg):
    frame = encode_message(msg)
    back = decode_frame(frame)
    assert type(back) is type(msg)
    assert (back.seq, back.timestamp_us) == (msg.seq, msg.timestamp_us)
    assert encode_message(back) == frame
    return back


# ------------------------------------------------------------------------------ COUNTS

@given(st.lists(u32, min_size=2, max_size=64), u16, u32, i32, u32, u16, u16, header)
@settings(max_examples=150, deadline=None)
def test_counts_roundtrip(counts, flags, periods, mono, period_ps, acq, span_raw, hdr) -> None:
    span = span_raw / 65536 if span_raw else 1.0
    msg = Counts(len(counts), Flags(flags), periods, mono, period_ps, acq,
                 np.array(counts, dtype=np.uint32), bin_span=span, **hdr)
    back = roundtrip(msg)
    assert back.counts.tolist() == counts
    assert (back.n_bins, back.flags, back.periods, back.mono_position, back.pem_period_ps,
            back.acq_id, back.bin_span) == (len(counts), flags, periods, mono, period_ps, acq, span)
    assert struct.unpack_from("<H", msg.to_payload(), 18) == (span_raw,)


@pytest.mark.parametrize("span, raw", [
    (1.0, 0), (0.9472, 62076), (0.5, 32768), (1 / 65536, 1), (65535 / 65536, 65535),
    (1 - 0.4 / 65536, 0),  # rounds to the whole period
])
def test_bin_span_wire_value_is_the_nearest_65536th_with_0_for_the_whole_period(span, raw) -> None:
    assert bin_span_to_wire(span) == raw
    assert bin_span_from_wire(raw) == pytest.approx(span, abs=0.5 / 65536)
    payload = encode_counts([1, 2], flags=0, periods=1, bin_span=span)
    assert struct.unpack_from("<H", payload, 18) == (raw,)


@pytest.mark.parametrize("span", [0.0, -0.5, 1.0001, 2.0, float("nan"), float("inf"), 0.2 / 65536])
def test_bin_span_outside_0_1_is_refused(span) -> None:
    with pytest.raises(ValueError, match="bin_span"):
        encode_counts([1, 2], flags=0, periods=1, bin_span=span)


def test_bin_edges_follow_the_span() -> None:
    c = Counts(4, Flags(0), 1, 0, 0, 0, np.zeros(4, np.uint32), bin_span=0.75)
    assert c.bin_edges_rad() == pytest.approx(np.array([0, 0.375, 0.75, 1.125, 1.5]) * np.pi)
    full = decode_payload(FrameType.COUNTS, encode_counts([1, 2], flags=0, periods=1), 0, 0)
    assert full.bin_span == 1.0
    assert full.bin_edges_rad() == pytest.approx([0.0, np.pi, 2 * np.pi])


def test_counts_usable_follows_the_protocol_rule_for_every_flag_combination() -> None:
    for bits in range(1 << 7):
        f = Flags(bits)
        spoiled = bool(f & Flags.SATURATED) or bool(f & Flags.OVERLOAD) or bool(f & Flags.MONO_MOVING)
        expected = bool(f & Flags.PEM_LOCKED) and not spoiled
        c = Counts(2, f, 1, 0, 0, 0, np.zeros(2, np.uint32))
        assert c.usable is expected, f


def test_flag_bits_are_the_protocol_table() -> None:
    names = ["SATURATED", "OVERLOAD", "SHUTTER_OPEN", "PEM_LOCKED", "MONO_MOVING", "HV_ON", "OVERRUN"]
    assert [Flags[n] for n in names] == [1 << k for k in range(7)]


def test_pem_period_in_seconds() -> None:
    c = Counts(2, Flags(0), 1, 0, 20_000_000, 0, np.zeros(2, np.uint32))
    assert c.pem_period_s == pytest.approx(20e-6)
    assert np.isnan(Counts(2, Flags(0), 1, 0, 0, 0, np.zeros(2, np.uint32)).pem_period_s)


# ------------------------------------------------------------------------------ ADC_BLOCK

def pack12_loop(samples):
    out = bytearray()
    for a, b in zip(samples[0::2], samples[1::2]):
        out += bytes([a & 0xFF, (a >> 8) | ((b & 0x0F) << 4), b >> 4])
    return bytes(out)


@given(st.lists(st.integers(0, 4095), max_size=200).filter(lambda s: len(s) % 2 == 0),
       st.integers(0, 5))
@settings(max_examples=150, deadline=None)
def test_12bit_packing_matches_the_byte_layout(samples, offset) -> None:
    packed = pack12(samples)
    assert packed == pack12_loop(samples)
    assert unpack12(bytes(offset) + packed, len(samples), offset=offset).tolist() == samples


@st.composite
def adc_blocks(draw) -> AdcBlock:
    n_samples = 2 * draw(st.integers(0, 300))
    # Random bytes masked to 12 bits: cheaper to draw than a list of ints, same coverage.
    samples = np.frombuffer(draw(st.binary(min_size=2 * n_samples, max_size=2 * n_samples)),
                            dtype="<u2").astype(np.uint16) & 0x0FFF
    n_edges = draw(st.integers(0, 40))
    deltas = draw(st.lists(u16, min_size=max(n_edges - 1, 0), max_size=max(n_edges - 1, 0)))
    edge0 = draw(u32) if n_edges else 0
    edges = (edge0 + np.cumsum([0, *deltas], dtype=np.int64))[:n_edges]
    rate = draw(st.floats(1.0, 1e7, width=32))
    return AdcBlock(draw(st.integers(0, 2**64 - 1)), draw(st.integers(1, 2**32 - 1)), rate,
                    draw(i32), Flags(draw(u16)), draw(u16), samples, edges, **draw(header))


@given(adc_blocks())
@settings(max_examples=150, deadline=None)
def test_adc_block_roundtrip(msg: AdcBlock) -> None:
    back = roundtrip(msg)
    assert back.samples.tolist() == msg.samples.tolist()
    assert back.edges_ticks.tolist() == msg.edges_ticks.tolist()
    assert (back.n_samples, back.n_edges) == (msg.n_samples, msg.n_edges)
    assert back.sample_rate_hz == msg.sample_rate_hz


def test_adc_block_times_in_seconds() -> None:
    msg = AdcBlock(0, 125_000_000, 250_000.0, 0, Flags(0), 0, np.zeros(4, np.uint16),
                   np.array([100, 2600, 5101]))
    back = decode_frame(encode_message(msg))
    assert back.edge_times_s() == pytest.approx(np.array([100, 2600, 5101]) / 125e6, rel=1e-15)
    assert back.sample_times_s() == pytest.approx([0, 4e-6, 8e-6, 12e-6], rel=1e-12)


# ------------------------------------------------------------------------------ STATUS, EVENT, COMMAND, REPLY

def status_dict(**over):
    d = {"state": "idle", "mode": "counting", "bins": 16, "periods": 500, "pem_locked": True,
         "pem_period_ps": 20_000_000, "a0_rad": 1.5708, "wavelength_nm": 438.0,
         "mono_position": 12345, "moving": False, "homed": True, "hv_volts": 650.2, "hv_set_volts": 650,
         "shutter_open": False, "overload": False, "frames_sent": 10, "frames_dropped": 0,
         "frames_late": 0, "uptime_us": 5_000_000}
    d.update(over)
    return d


def test_status_requires_frames_late_and_keeps_it_apart_from_frames_dropped() -> None:
    d = status_dict(frames_dropped=4, frames_late=3)
    msg = decode_payload(FrameType.STATUS, encode_status(d), 0, 0)
    assert (msg.frames_dropped, msg.frames_late) == (4, 3) and msg.extra == {}
    del d["frames_late"]
    with pytest.raises(MalformedPayload, match="missing 'frames_late'"):
        decode_payload(FrameType.STATUS, json.dumps(d).encode(), 0, 0)


def test_status_roundtrip_keeps_extra_keys() -> None:
    d = status_dict(firmware_note="x")
    msg = decode_payload(FrameType.STATUS, encode_status(d), 3, 4)
    assert isinstance(msg, Status)
    assert msg.to_dict() == d and msg.extra == {"firmware_note": "x"}
    assert msg.wavelength_nm == 438.0 and msg.pem_locked is True
    assert roundtrip(msg) == msg


def test_status_fault_reason_is_a_known_optional_key() -> None:
    d = status_dict(state="fault", fault="MicroPython 1.25 is older than 1.26")
    msg = decode_payload(FrameType.STATUS, encode_status(d), 0, 0)
    assert msg.fault == "MicroPython 1.25 is older than 1.26" and msg.extra == {}
    assert msg.to_dict() == d and roundtrip(msg) == msg
    assert decode_payload(FrameType.STATUS, encode_status(status_dict(fault=None)), 0, 0).fault \
        is None
    old = decode_payload(FrameType.STATUS, encode_status(status_dict()), 0, 0)  # no key
    assert old.fault is None and old.to_dict() == status_dict()
    with pytest.raises(MalformedPayload, match="'fault' = 3 is not a string or null"):
        decode_payload(FrameType.STATUS, json.dumps(status_dict(fault=3)).encode(), 0, 0)


json_text = st.text(st.characters(codec="utf-8"), max_size=30)
json_obj = st.dictionaries(json_text, st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53),
                                                st.floats(allow_nan=False, allow_infinity=False),
                                                json_text), max_size=5)


@given(u16, st.integers(0, 2), json_text, header)
@settings(max_examples=100, deadline=None)
def test_event_roundtrip(code, severity, text, hdr) -> None:
    assert roundtrip(Event(code, severity, text, **hdr)) == Event(code, severity, text, **hdr)


@given(st.integers(0, 0xFFFE), st.integers(0, 255), json_obj, st.booleans(), header)
@settings(max_examples=100, deadline=None)
def test_command_roundtrip(request_id, opcode, args, retry, hdr) -> None:
    msg = Command(request_id, opcode, args, retry=retry, **hdr)
    assert roundtrip(msg) == msg
    assert encode_command(request_id, opcode, args, hdr["seq"], hdr["timestamp_us"],
                          retry=retry) == encode_message(msg)
    assert encode_message(msg)[20 + 3] == int(retry)  # the flags byte: RETRY is bit 0


def test_command_flag_bits_other_than_retry_are_ignored() -> None:
    payload = bytearray(encode_command_payload(9, 10, {}))
    payload[3] = 0xFE
    assert decode_command(bytes(payload)).retry is False
    payload[3] = 0xFF
    assert decode_command(bytes(payload)).retry is True


@given(u16, st.integers(0, 255), st.integers(0, 255), json_obj, json_text.filter(bool), header)
@settings(max_examples=100, deadline=None)
def test_reply_roundtrip(request_id, opcode, status, result, error, hdr) -> None:
    msg = (Reply(request_id, opcode, status, result=result, **hdr) if status == 0
           else Reply(request_id, opcode, status, error=error, **hdr))
    back = roundtrip(msg)
    assert back == msg
    assert back.ok is (status == 0)


def test_known_codes_become_enums_and_unknown_ones_stay_ints() -> None:
    ev = decode_payload(FrameType.EVENT, encode_event(9, 1, "crc"))
    assert ev.code is EventCode.BAD_FRAME and ev.severity is Severity.WARNING
    ev = decode_payload(FrameType.EVENT, encode_event(200, 7, ""))
    assert type(ev.code) is int and ev.code == 200 and type(ev.severity) is int
    rep = decode_payload(FrameType.REPLY, encode_reply(1, 99, 42, error="?"))
    assert (rep.opcode, rep.status) == (99, 42) and type(rep.status) is int


def test_reply_raise_for_status() -> None:
    ok = decode_payload(FrameType.REPLY, encode_reply(7, Opcode.SHUTTER, 0, result={"shutter_open": True}))
    assert ok.raise_for_status() == {"shutter_open": True}
    bad = decode_payload(FrameType.REPLY, encode_reply(7, Opcode.SET_HV, ReplyStatus.OUT_OF_RANGE,
                                                       error="volts=2000 out of range 0..1100"))
    with pytest.raises(CommandError, match="SET_HV.*OUT_OF_RANGE.*0..1100") as err:
        bad.raise_for_status()
    assert err.value.status is ReplyStatus.OUT_OF_RANGE and err.value.request_id == 7


def test_opcode_and_status_tables() -> None:
    assert [o.value for o in Opcode] == list(range(1, 18))
    assert [s.value for s in ReplyStatus] == list(range(8))
    assert [c.value for c in EventCode] == list(range(1, 11))


# ------------------------------------------------------------------------------ malformed payloads

COUNTS_HEAD = struct.pack("<HHIiIHH", 4, 8, 1, 0, 0, 0, 0)
ADC_HEAD = struct.Struct("<QIfiHHHHI")


MALFORMED = [
    (FrameType.COUNTS, COUNTS_HEAD + bytes(12), "20 \\+ 4·4 = 36"),
    (FrameType.COUNTS, COUNTS_HEAD + bytes(20), "20 \\+ 4·4 = 36"),
    (FrameType.COUNTS, struct.pack("<HHIiIHH", 1, 0, 1, 0, 0, 0, 0) + bytes(4), "n_bins = 1"),
    (FrameType.COUNTS, struct.pack("<HHIiIHH", 65, 0, 1, 0, 0, 0, 0) + bytes(260), "n_bins = 65"),
    (FrameType.COUNTS, bytes(19), "shorter"),
    (FrameType.ADC_BLOCK, bytes(31), "shorter"),
    (FrameType.ADC_BLOCK, ADC_HEAD.pack(0, 1, 1.0, 0, 0, 3, 0, 0, 0) + bytes(5), "odd"),
    (FrameType.ADC_BLOCK, ADC_HEAD.pack(0, 1, 1.0, 0, 0, 2, 2, 0, 0) + bytes(3), "require 37"),
    (FrameType.ADC_BLOCK, ADC_HEAD.pack(0, 0, 1.0, 0, 0, 0, 0, 0, 0), "tick_hz is 0"),
    (FrameType.ADC_BLOCK, ADC_HEAD.pack(0, 1, float("nan"), 0, 0, 0, 0, 0, 0), "sample_rate"),
    (FrameType.ADC_BLOCK, ADC_HEAD.pack(0, 1, -5.0, 0, 0, 0, 0, 0, 0), "sample_rate"),
    (FrameType.ADC_BLOCK, ADC_HEAD.pack(0, 1, 1.0, 0, 0, 0, 0, 0, 9), "no edges"),
    (FrameType.STATUS, b"[1, 2]", "JSON object"),
    (FrameType.STATUS, b"{", "not valid JSON"),
    (FrameType.STATUS, b"\xff{}", "UTF-8"),
    (FrameType.STATUS, json.dumps({k: v for k, v in status_dict().items() if k != "homed"}).encode(),
     "missing 'homed'"),
    (FrameType.STATUS, json.dumps(status_dict(pem_locked=1)).encode(), "'pem_locked' = 1 is not a boolean"),
    (FrameType.STATUS, json.dumps(status_dict(state="busy")).encode(), "'state' = 'busy'"),
    (FrameType.EVENT, b"\x01\x00", "shorter"),
    (FrameType.EVENT, b"\x01\x00\x00\x00\xc3(", "UTF-8"),
    (FrameType.REPLY, b"\x01\x00\x01", "shorter"),
    (FrameType.REPLY, b"\x01\x00\x01\x00[]", "JSON object"),
    (FrameType.REPLY, b"\x01\x00\x01\x03\xff", "UTF-8"),
    (FrameType.COMMAND, b"", "shorter"),
    (FrameType.COMMAND, b"\x01\x00\x01\x00null", "JSON object"),
]


@pytest.mark.parametrize("ftype,payload,message", MALFORMED)
def test_malformed_payload_is_reported_and_counted(ftype, payload, message) -> None:
    with pytest.raises(MalformedPayload, match=message) as err:
        decode_payload(ftype, payload)
    assert err.value.frame_type == ftype
    assert isinstance(err.value, ProtocolError) and isinstance(err.value, ValueError)
    # In a stream the frame is counted as rejected and left out; its neighbours come through.
    ok = encode_event(1, 0, "fw 1.0")
    stream = (encode_frame(FrameType.EVENT, 0, 0, ok) + encode_frame(ftype, 1, 0, payload)
              + encode_frame(FrameType.EVENT, 2, 0, ok))
    dec = StreamDecoder()
    assert [m.seq for m in dec.feed(stream)] == [0, 2]
    assert (dec.stats.rejected, dec.stats.rejected_payload, dec.stats.frames) == (1, 1, 2)
    assert dec.stats.missing == 0  # the malformed frame's sequence number was seen


def test_unknown_frame_type() -> None:
    with pytest.raises(UnknownFrameType, match="0x42"):
        decode_frame(encode_frame(0x42, 0, 0, b"abc"))
    dec = StreamDecoder()
    assert dec.feed(encode_frame(0x42, 0, 0, b"abc") + encode_frame(0x42, 1, 0, b"")) == []
    assert (dec.stats.unknown, dec.stats.rejected, dec.stats.frames) == (2, 0, 0)


# ------------------------------------------------------------------------------ encoders refuse what the layout cannot carry

@pytest.mark.parametrize("call,message", [
    (lambda: encode_counts([1], flags=0, periods=1), "2 … 64 bins"),
    (lambda: encode_counts([1] * 65, flags=0, periods=1), "2 … 64 bins"),
    (lambda: encode_counts([1, -1], flags=0, periods=1), "0 … 4294967295"),
    (lambda: encode_counts([1, 2**32], flags=0, periods=1), "0 … 4294967295"),
    (lambda: encode_counts([1.5, 2], flags=0, periods=1), "integers"),
    (lambda: encode_counts([1, 2], flags=0, periods=-1), "periods"),
    (lambda: encode_counts([1, 2], flags=0, periods=1, mono_position=2**31), "i32"),
    (lambda: pack12([1, 2, 3]), "even"),
    (lambda: pack12([4096, 0]), "0 … 4095"),
    (lambda: encode_adc_block([0, 0], [5, 2], t0_ticks=0, tick_hz=1, sample_rate_hz=1.0), "65535"),
    (lambda: encode_adc_block([0, 0], [2**32], t0_ticks=0, tick_hz=1, sample_rate_hz=1.0), "edges_ticks"),
    (lambda: encode_adc_block([0, 0], [], t0_ticks=0, tick_hz=0, sample_rate_hz=1.0), "tick_hz"),
    (lambda: encode_adc_block([0, 0], [], t0_ticks=0, tick_hz=1, sample_rate_hz=1e39), "f32"),
    (lambda: encode_adc_block([0] * 6000, [], t0_ticks=0, tick_hz=1, sample_rate_hz=1.0), "8192"),
    (lambda: encode_status({"state": "idle"}), "missing"),
    (lambda: encode_command(0xFFFF, 1, {}, 0), "reserved"),
    (lambda: encode_command(1, 256, {}, 0), "opcode"),
    (lambda: encode_command(1, 1, {"x": float("nan")}, 0), "strict JSON"),
    (lambda: encode_command(1, 1, {1: 2}, 0), "str keys"),
    (lambda: encode_command(1, 1, {"x": "y" * 9000}, 0), "8192"),
    (lambda: encode_command(1, 1, {}, 2**32), "seq"),
    (lambda: encode_reply(1, 1, 0, error="x"), "OK reply"),
    (lambda: encode_reply(1, 1, 3), "error text"),
    (lambda: encode_reply(1, 1, 3, result={}, error="x"), "not a result"),
    (lambda: encode_frame(1, 0, -1, b""), "timestamp_us"),
    (lambda: encode_frame(1, 0, 0, bytes(8193)), "8192"),
])
def test_encoders_refuse_values_the_layout_cannot_carry(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
