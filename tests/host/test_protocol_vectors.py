"""The shared test vectors (tests/vectors/frames.json) through the host decoder and encoder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cplscope.protocol import (
    AdcBlock,
    Command,
    Counts,
    Event,
    FrameError,
    FrameType,
    Reply,
    StreamDecoder,
    decode_frame,
    encode_command,
    encode_message,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "frames.json").read_text())
GOOD = [v for v in VECTORS["vectors"] if "reject" not in v]
BAD = [v for v in VECTORS["vectors"] if "reject" in v]
CLASSES = {1: Counts, 2: AdcBlock, 4: Event, 5: Reply, 16: Command}
# Vector field name -> message attribute, where they differ.
RENAMED = {(5, "text"): "error"}
# Vector fields hold wire values; these are decoded to another unit on the host.
FROM_WIRE = {(1, "bin_span"): lambda raw: raw / 65536 if raw else 1.0}


def test_vector_file_is_for_this_protocol_version() -> None:
    assert VECTORS["protocol_version"] == 1
    assert GOOD and BAD


@pytest.mark.parametrize("vec", GOOD, ids=[v["name"] for v in GOOD])
def test_vector_decodes_to_its_fields(vec: dict) -> None:
    msg = decode_frame(bytes.fromhex(vec["hex"]))
    assert isinstance(msg, CLASSES[vec["type"]])
    assert msg.TYPE == FrameType(vec["type"])
    assert (msg.seq, msg.timestamp_us) == (vec["seq"], vec["timestamp_us"])
    for key, expected in vec["fields"].items():
        actual = getattr(msg, RENAMED.get((vec["type"], key), key))
        expected = FROM_WIRE.get((vec["type"], key), lambda v: v)(expected)
        if isinstance(actual, np.ndarray):
            assert actual.tolist() == expected, key
        else:
            assert actual == expected, key
    if isinstance(msg, Counts):
        assert msg.counts.dtype == np.uint32 and msg.counts.shape == (msg.n_bins,)
    if isinstance(msg, AdcBlock):
        assert msg.samples.dtype == np.uint16 and msg.edges_ticks.dtype == np.int64


@pytest.mark.parametrize("vec", GOOD, ids=[v["name"] for v in GOOD])
def test_vector_reencodes_to_the_same_bytes(vec: dict) -> None:
    msg = decode_frame(bytes.fromhex(vec["hex"]))
    assert encode_message(msg).hex() == vec["hex"]


def test_command_vectors_from_encode_command() -> None:
    for vec in (v for v in GOOD if v["type"] == FrameType.COMMAND):
        f = vec["fields"]
        assert encode_command(f["request_id"], f["opcode"], f["args"], vec["seq"],
                              retry=f.get("retry", False)).hex() == vec["hex"]


@pytest.mark.parametrize("vec", BAD, ids=[v["name"] for v in BAD])
def test_reject_vector_is_rejected_for_its_reason(vec: dict) -> None:
    bad = bytes.fromhex(vec["hex"])
    with pytest.raises(FrameError) as err:
        decode_frame(bad)
    assert err.value.reason == vec["reject"]
    # In a stream: rejected for that reason, and the frame behind it still comes through.
    good = bytes.fromhex(GOOD[0]["hex"])
    dec = StreamDecoder(keep_raw=True)
    out = dec.feed(bad + good) + dec.flush()
    assert [m.raw for m in out] == [good]
    assert getattr(dec.stats, f"rejected_{vec['reject']}") >= 1
    assert dec.stats.frames == 1


def test_all_vectors_as_one_stream_in_small_chunks() -> None:
    stream = b"".join(bytes.fromhex(v["hex"]) for v in VECTORS["vectors"])
    dec = StreamDecoder()
    out = [m for i in range(0, len(stream), 5) for m in dec.feed(stream[i:i + 5])] + dec.flush()
    assert [m.seq for m in out] == [v["seq"] for v in GOOD]
    assert dec.stats.frames == len(GOOD)
    assert dec.stats.rejected >= len(BAD)
    assert dec.stats.unknown == 0 and dec.stats.rejected_payload == 0


def test_every_counts_vector_states_its_bin_span_and_one_covers_part_of_the_period() -> None:
    spans = [decode_frame(bytes.fromhex(v["hex"])).bin_span for v in GOOD if v["type"] == 1]
    assert all("bin_span" in v["fields"] for v in GOOD if v["type"] == 1)
    assert 1.0 in spans and any(0.0 < s < 1.0 for s in spans), spans


def test_acq_done_vector_names_its_acquisition_and_frame_count() -> None:
    """The host ends a bounded acquisition on this event: its text must parse."""
    from cplscope.protocol import Event, EventCode, decode_frame

    vec = next(v for v in GOOD if v["name"] == "event_acq_done")
    ev = decode_frame(bytes.fromhex(vec["hex"]))
    assert isinstance(ev, Event) and ev.code is EventCode.ACQ_DONE
    assert ev.acq_done == (12, 600)
    other = Event(EventCode.OVERRUN, 1, "acquisition 12 ended after 600 data frames")
    assert other.acq_done is None  # only an ACQ_DONE event ends an acquisition
    assert Event(EventCode.ACQ_DONE, 0, "garbled").acq_done is None
