"""The rp2 board's viper kernels (firmware/board/rp2_dma.py) run in the real MicroPython
interpreter (unix port) and are compared with plain-Python references built from
docs/protocol.md."""
import json
import random
import subprocess
import zlib

from fwpaths import FIRMWARE

SCRIPT = r"""
import sys, json
sys.path.insert(0, %(fw)r)
from array import array
from board import rp2_dma as K
inp = json.loads(%(inp)r)
out = {}
ring = array('I', inp['ring'])
bins = array('I', [0] * inp['bins'])
per = inp['bins'] // 2
top = 0
for c in (0, 1):
    r = array('I', inp['rings'][c])
    t = K.ring_collect(r, len(r), per, c, bins)
    top = max(top, t)
    out.setdefault('reset', []).append(list(r))
out['bins'] = list(bins)
out['top'] = top
src = array('H', inp['samples'])
dst = bytearray(3 * len(src) // 2)
out['clipped'] = K.pack12_ring(src, 0, len(src), len(src), dst)
out['packed'] = dst.hex()
out['clip_cases'] = []
for case in inp['clip_cases']:
    c = array('H', case)
    out['clip_cases'].append(K.pack12_ring(c, 0, len(c), len(c), bytearray(3 * len(c) // 2)))
ring64 = array('H', inp['ring64'])
out['above'] = [K.above_u16(ring64, a, b, 64, lv) for a, b, lv in inp['above_cases']]
out['max'] = [K.max_u16(ring64, a, b, 64) for a, b, lv in inp['above_cases']]
words = array('I', inp['words'])
edges = bytearray(4 + 2 * 64)
state = array('i', [0, 0])
out['n_edges'] = K.edges_block(words, len(words), inp['idx'], inp['avail'], inp['t_prev'],
                               inp['t_len'], 2, 4, edges, 65, state)
out['edges'] = edges.hex()
out['state'] = list(state)
ring16 = array('H', inp['ring16'])
dst = bytearray(3 * 12 // 2)
out['ring_clipped'] = K.pack12_ring(ring16, 10, 12, 16, dst)
out['ring_packed'] = dst.hex()
st = array('i', [0, 0, 0])
K.period_stats(words, len(words), 27, 16, 2, 4, st)
out['stats'] = list(st)
print(json.dumps(out))
"""


def pack_reference(samples):
    out = bytearray()
    for a, b in zip(samples[0::2], samples[1::2]):
        out += bytes([a & 0xFF, (a >> 8) | ((b & 0x0F) << 4), b >> 4])
    return out.hex()


def test_viper_kernels_match_the_protocol_and_the_ring_layout(micropython):
    rng = random.Random(7)
    bins = 4  # 2 bins per counter, ring of 8 words: each bin owns 4 ring words
    rings = [[0xFFFF_FFFF - rng.randrange(1000) for _ in range(8)] for _ in (0, 1)]
    samples = [rng.randrange(4096) for _ in range(62)] + [0, 4095]
    words = [rng.randrange(100, 200) for _ in range(32)]
    inp = {"bins": bins, "rings": rings, "ring": rings[0], "samples": samples,
           "words": words, "idx": 30, "avail": 20, "t_prev": -37, "t_len": 3000,
           "ring16": [rng.randrange(4096) for _ in range(14)] + [0, 4095]}
    # clipping: none, then a 0 or a 4095 in either half of a pair (ADC noise on the top
    # bits must not matter: the kernel masks to 12 bits); only 4095 is clipping, since the
    # front end reads above 0 in the dark (a 0 flagged SATURATED dropped dark blocks)
    mid = [rng.randrange(1, 4095) | (rng.randrange(16) << 12) for _ in range(16)]
    clip_cases = [mid]
    for pos in (0, 1, 14, 15):
        for v in (0, 4095):
            case = list(mid)
            case[pos] = v
            clip_cases.append(case)
    inp["clip_cases"] = clip_cases
    # the guard's check: odd and even ends, wrapping, empty, a sample equal to the level
    ring64 = [rng.randrange(100, 2000) for _ in range(64)]
    ring64[37] = 3000
    ring64[2] = 2500
    inp["ring64"] = ring64
    inp["above_cases"] = [(a, b, lv) for a in (0, 1, 36, 37, 38, 63) for b in (0, 3, 37, 38, 50)
                          for lv in (2499, 2500, 2999, 3000, 4095)]
    p = subprocess.run([micropython, "-c", SCRIPT % {"fw": str(FIRMWARE),
                                                      "inp": json.dumps(inp)}],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)

    expected = [0] * bins
    for c, ring in enumerate(rings):
        for j, w in enumerate(ring):
            expected[2 * (j % 2) + c] += 0xFFFF_FFFF - w
    assert out["bins"] == expected
    assert out["top"] == max(expected)
    assert out["reset"] == [[0xFFFF_FFFF] * 8] * 2  # ready for the next frame

    assert out["packed"] == pack_reference(samples)
    # the same from a ring of 16 samples, 12 of them from index 10 (wrapping)
    wrapped = [inp["ring16"][(10 + i) % 16] for i in range(12)]
    assert out["ring_packed"] == pack_reference(wrapped)
    assert out["ring_clipped"] == 1 and 4095 in wrapped
    # period statistics of 16 words from index 27 of the 32-word ring (wrapping)
    periods = [2 * words[(27 + i) % 32] + 4 for i in range(16)]
    assert out["stats"] == [sum(periods), min(periods), max(periods)]
    assert out["clipped"] == 1
    assert out["clip_cases"] == [0] + [0, 1] * 4
    for (a, b, lv), above, top in zip(inp["above_cases"], out["above"], out["max"]):
        seen = [ring64[j % 64] for j in range(a, b if b >= a else b + 64)]
        assert above == int(any(x > lv for x in seen)), (a, b, lv, above)
        assert top == max(seen, default=0), (a, b, top)

    # edges: walk the ring from index 30 (wrapping), periods 2w+4, stop at t_len
    t, times, j = -37, [], 30
    for _ in range(20):
        t_next = t + 2 * words[j % 32] + 4
        if t_next >= 3000:
            break
        t = t_next
        times.append(t)
        j += 1
    assert out["n_edges"] == len(times) and out["state"] == [len(times), times[-1]]
    raw = bytes.fromhex(out["edges"])
    assert int.from_bytes(raw[0:4], "little") == times[0]
    deltas = [int.from_bytes(raw[4 + 2 * i:6 + 2 * i], "little") for i in range(len(times) - 1)]
    assert deltas == [b - a for a, b in zip(times, times[1:])]


CRC_SCRIPT = r"""
import sys, gc
sys.path.insert(0, %(fw)r)
from array import array
from board import rp2_dma as K
t = array('I', bytes(1024))
K.crc32_table(t)
data = bytes.fromhex(%(data)r)
buf = bytearray(len(data) + 4)
buf[:len(data)] = data
out = []
for n in %(lengths)r:
    K.crc32_seal(t, buf, n)
    out.append(bytes(buf[n:n + 4]).hex())
    buf[:len(data)] = data
def cost(calls):
    gc.collect()
    a = gc.mem_alloc()
    i = 0
    while i < calls:
        K.crc32_seal(t, buf, 300)
        i += 1
    return gc.mem_alloc() - a
cost(1)
print(' '.join(out), cost(2000) - cost(10))
"""


def test_viper_crc32_seal_matches_zlib_and_does_not_allocate(micropython):
    rng = random.Random(11)
    data = bytes(rng.randrange(256) for _ in range(8216))
    lengths = [0, 1, 2, 3, 19, 20, 84, 276, 300, 1537, 8216]
    p = subprocess.run([micropython, "-c", CRC_SCRIPT % {"fw": str(FIRMWARE), "data": data.hex(),
                                                          "lengths": lengths}],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    *crcs, alloc = p.stdout.split()
    expected = [zlib.crc32(data[:n]).to_bytes(4, "little").hex() for n in lengths]
    assert crcs == expected
    assert any(zlib.crc32(data[:n]) >= 1 << 30 for n in lengths)  # the case binascii boxes
    assert int(alloc) <= 0  # nothing per call: 2000 calls cost no more than 10
