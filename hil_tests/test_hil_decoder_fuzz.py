"""The host's frame decoder on a real captured stream from the board under test, with bytes
changed by hypothesis: it raises nothing, never passes on a frame that was not sent, and
recovers every frame the damage did not touch, in order, however the stream is split."""
from __future__ import annotations

import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cplscope.protocol import Counts, Opcode, StreamDecoder


def capture(link) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """Raw IN bytes of a short acquisition plus commands, and the frames in them as
    (start, end, bytes)."""
    link.call(Opcode.CONFIGURE, {"mode": "counting", "bins": 16, "periods": 100})
    link.call(Opcode.HOME, timeout_s=120.0)
    link.call(Opcode.SET_RETARDATION, {"a0_rad": math.pi / 2})
    link.call(Opcode.MOVE, {"wavelength_nm": 438.0})  # real counts: random-looking bytes
    while link.call(Opcode.STATUS)["moving"]:
        time.sleep(0.01)
    link.call(Opcode.SET_HV, {"volts": 800.0})
    link.call(Opcode.SHUTTER, {"open": True})
    link.drain(max_s=0.3)
    link.chunks.clear()
    link.record = True
    link.call(Opcode.START)
    n = 0
    while n < 150:
        n += sum(isinstance(m, Counts) for m in link.read())
    link.call(Opcode.STOP)
    link.call(Opcode.STATUS)
    link.record = False
    stream = b"".join(link.chunks)
    check = StreamDecoder(keep_raw=True)
    msgs = check.feed(stream) + check.flush()
    assert check.stats.rejected == 0 and check.stats.bytes_skipped == 0
    frames, pos = [], 0
    for m in msgs:
        raw = m.raw
        assert raw is not None and stream[pos:pos + len(raw)] == raw
        frames.append((pos, pos + len(raw), raw))
        pos += len(raw)
    assert pos == len(stream)
    return stream, frames


def test_decoder_on_damaged_captured_stream(open_raw) -> None:
    link = open_raw(record=True)
    stream, frames = capture(link)
    size = len(stream)

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(flips=st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)),
                          max_size=12),
           cuts=st.lists(st.integers(0, size), max_size=20))
    def check(flips: list[tuple[int, int]], cuts: list[int]) -> None:
        data = bytearray(stream)
        for pos, mask in flips:
            data[pos] ^= mask
        bounds = [0, *sorted(cuts), size]
        dec = StreamDecoder(keep_raw=True)
        out = []
        for a, b in zip(bounds, bounds[1:]):
            out += dec.feed(bytes(data[a:b]))
        out += dec.flush()
        touched = {i for i in {pos for pos, _ in flips} if data[i] != stream[i]}
        intact = [raw for start, end, raw in frames
                  if not any(start <= p < end for p in touched)]
        assert [m.raw for m in out] == intact
        assert dec.stats.frames == len(intact)
        # every damaged frame whose sync survived was seen and rejected
        damaged = [(s, e) for s, e, _ in frames if any(s <= p < e for p in touched)]
        with_sync = [1 for s, e in damaged if s not in touched and s + 1 not in touched]
        assert dec.stats.rejected >= len(with_sync)

    check()
