"""Fault injector of the virtual USB cable: validation, frame splitting, rates (binomial
tolerances), seeded reproducibility, and what the host's decoder sees."""
import math

import pytest

from cplscope.protocol import StreamDecoder, encode_counts, encode_frame, FrameType
from cplscope.sim.faults import FAULT_KEYS, Faults, FaultInjector, split_frames


def counts_frame(seq: int, bins: int = 16) -> bytes:
    payload = encode_counts(list(range(bins)), flags=0, periods=50, pem_period_ps=20_000_000,
                            acq_id=1)
    return encode_frame(FrameType.COUNTS, seq, 1000 * seq, payload)


def test_unknown_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="unknown fault key.*'drops'.*corrupt, drop, stall"):
        Faults().updated({"drops": 0.1})
    for key, bad in [("drop", 1.5), ("corrupt", -0.1), ("stall", "x"), ("drop", True),
                     ("disconnect_at", -1), ("reconnect_after", math.inf)]:
        with pytest.raises(ValueError, match=repr(key)):
            Faults().updated({key: bad})
    f = Faults().updated({"drop": 0.25, "disconnect_at": 3, "reconnect_after": None})
    assert (f.drop, f.disconnect_at, f.reconnect_after) == (0.25, 3.0, None)
    assert set(f.as_dict()) == set(FAULT_KEYS)
    with pytest.raises(ValueError, match="seed"):
        FaultInjector(-1)


def test_split_frames_at_frame_boundaries():
    a, b = counts_frame(7), counts_frame(8, bins=4)
    assert split_frames(a + b) == [(7, a), (8, b)]
    assert split_frames(a + b[:10]) == [(7, a), (None, b[:10])]
    assert split_frames(b"junk" + a) == [(None, b"junk" + a)]
    assert split_frames(b"") == []


@pytest.mark.parametrize("kind", ["drop", "corrupt"])
def test_rates_follow_the_setting(kind):
    n, p = 4000, 0.1
    inj = FaultInjector(3, Faults().updated({kind: p}))
    for seq in range(n):
        inj.in_buffer(counts_frame(seq), run=1)
    hits = inj.dropped if kind == "drop" else inj.corrupted
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) < 4 * sigma, (hits, n * p, sigma)
    assert inj.frames == n


def test_stall_rate_and_extremes():
    inj = FaultInjector(5, Faults(stall=0.2))
    n = 5000
    hits = sum(inj.stall_now() for _ in range(n))
    assert abs(hits - n * 0.2) < 4 * math.sqrt(n * 0.2 * 0.8)
    assert inj.stalled == hits
    assert all(FaultInjector(1, Faults(stall=1.0)).stall_now() for _ in range(10))
    assert not any(FaultInjector(1, Faults(stall=0.0)).stall_now() for _ in range(10))


def test_decoder_sees_drops_as_gaps_and_corruption_as_rejections():
    inj = FaultInjector(11, Faults(drop=0.15, corrupt=0.15))
    dec = StreamDecoder()
    got = []
    n = 2000
    for seq in range(n):
        got += [m.seq for m in dec.feed(inj.in_buffer(counts_frame(seq), run=1))]
    got += [m.seq for m in dec.flush()]
    lost = set(range(n)) - set(got)
    assert lost == set(inj.dropped_seqs) | set(inj.corrupted_seqs)
    assert not set(inj.dropped_seqs) & set(inj.corrupted_seqs)
    # every corrupted frame is rejected (the sync bytes are never touched); a stray C5 5C
    # inside a corrupted frame may add one more
    assert inj.corrupted <= dec.stats.rejected <= inj.corrupted + 3
    # first and last frames may be lost without a visible gap at the stream's ends
    edge = {0, n - 1} & lost
    assert dec.stats.missing == len(lost) - len(edge)


def test_reproducible_by_seed_and_independent_of_buffering():
    def run(seed, joined):
        inj = FaultInjector(seed, Faults(drop=0.2, corrupt=0.2))
        frames = [counts_frame(s) for s in range(600)]
        if joined:  # the same frames, two per buffer
            out = [inj.in_buffer(frames[i] + frames[i + 1], 1) for i in range(0, 600, 2)]
        else:
            out = [inj.in_buffer(f, 1) for f in frames]
        return b"".join(out), list(inj.dropped_seqs), list(inj.corrupted_seqs)

    assert run(4, False) == run(4, False) == run(4, True)
    assert run(4, False) != run(5, False)
    # a restarted firmware (next run) repeats sequence numbers but gets fresh decisions
    a, b = FaultInjector(4, Faults(drop=0.5)), FaultInjector(4, Faults(drop=0.5))
    for s in range(200):
        a.in_buffer(counts_frame(s), 1)
        b.in_buffer(counts_frame(s), 2)
    assert list(a.dropped_seqs) != list(b.dropped_seqs)


def command_frame(seq: int) -> bytes:
    from cplscope.protocol import encode_command

    return encode_command(seq % 1000, 10, None, seq)


@pytest.mark.parametrize("kind", ["drop", "corrupt"])
def test_commands_on_the_way_to_the_board_are_hit_at_the_same_rate(kind):
    n, p = 4000, 0.1
    inj = FaultInjector(3, Faults().updated({kind: p}))
    out = [inj.out_buffer(command_frame(seq), run=1) for seq in range(n)]
    hits = inj.out_dropped if kind == "drop" else inj.out_corrupted
    assert abs(hits - n * p) < 4 * math.sqrt(n * p * (1 - p)), (hits, n * p)
    assert inj.out_frames == n and inj.frames == 0  # OUT frames are counted apart
    if kind == "drop":
        assert sum(not o for o in out) == hits
        assert set(inj.out_dropped_seqs) == {s for s, o in enumerate(out) if not o}
    else:  # a corrupted command is still a whole frame, never with a changed sync
        changed = {s for s, o in enumerate(out) if o != command_frame(s)}
        assert changed == set(inj.out_corrupted_seqs)
        assert all(o[:2] == b"\xc5\x5c" and len(o) == len(command_frame(s))
                   for s, o in enumerate(out))


def test_out_decisions_are_independent_of_in_decisions_and_reproducible():
    def run(seed):
        inj = FaultInjector(seed, Faults(drop=0.3))
        for s in range(300):
            inj.in_buffer(counts_frame(s), 1)
            inj.out_buffer(command_frame(s), 1)
        return list(inj.dropped_seqs), list(inj.out_dropped_seqs)

    (a_in, a_out), (b_in, b_out) = run(6), run(6)
    assert (a_in, a_out) == (b_in, b_out)
    assert a_in != a_out  # the same sequence numbers get their own fate in each direction


def test_in_frames_hit_are_counted_by_type():
    from cplscope.protocol import encode_reply

    inj = FaultInjector(1, Faults(drop=1.0))
    reply = encode_frame(FrameType.REPLY, 5, 0, encode_reply(3, 10, 0, result={}))
    inj.in_buffer(counts_frame(4) + reply, run=1)
    assert inj.stats()["hit_types"] == {"COUNTS": 1, "REPLY": 1}
