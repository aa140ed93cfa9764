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
