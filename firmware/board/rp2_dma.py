"""Native (viper) kernels for the rp2 board: the per-frame and per-block work on DMA buffers,
so that no interpreted Python runs per sample, per photon or per PEM period.

Pure computation on buffers: no hardware access, so the unit tests run them in the
MicroPython unix port (tests/firmware/test_rp2_kernels.py).
"""
import micropython


@micropython.viper
def ring_collect(ring, n_ring: int, per_counter: int, counter: int, out) -> int:
    """Add one counter's ring (ones' complement running totals, uint32) into `out` (B uint32
    counts, bin 2·(j mod per_counter) + counter) and reset the ring to all ones for the next
    frame. Returns the largest bin total seen (for the saturation check)."""
    r = ptr32(ring)
    o = ptr32(out)
    biggest = 0
    j = 0
    while j < n_ring:
        total = int(uint(r[j]) ^ uint(0xFFFFFFFF))
        r[j] = int(uint(0xFFFFFFFF))
        k = 2 * (j % per_counter) + counter
        o[k] = o[k] + total
        if uint(o[k]) > uint(biggest):
            biggest = o[k]
        j += 1
    return biggest


@micropython.viper
def fill_u32(buf, n: int, value: int):
    p = ptr32(buf)
    i = 0
    while i < n:
        p[i] = value
        i += 1


# Hot loops live in small helpers whose first three arguments are the loop's variables:
# viper keeps only a function's first three locals (its first arguments) in registers on
# the RP2040's Thumb-1 core and every other local in the stack frame. With that and two
# 12-bit samples per 32-bit load, packing, the frame CRC and the guard's check of a
# 2048-sample block take 2.9 ms instead of 4.8 ms on the emulated RP2040
# (bench/bench_rp2_kernels.py). Buffers are passed to them as addresses (ints, which viper
# accepts for a pointer argument; the stubs' types do not say so).

@micropython.viper
def _pack_pairs(s: ptr32, d: ptr8, n: int) -> int:
    """n pairs of 12-bit samples (one uint32 each, a in its low half) from s into 3·n
    bytes at d: a0..7 | a8..11 b0..3 | b4..11. Returns 1 if a sample is at full scale
    (4095), else 0: tested on both halves at once, x + 1 carries into bit 12 only when x is
    4095. A sample of 0 is not clipping: the front end is biased above 0 V (docs/build.md),
    so the dark and weak light read above 0."""
    full = 0
    while n > 0:
        n -= 1
        w = s[n] & 0x0FFF0FFF
        full |= w + 0x00010001
        o = 3 * n
        d[o] = w
        d[o + 1] = (w >> 8) | (w >> 12)
        d[o + 2] = w >> 20
    if full & 0x10001000:
        return 1
    return 0


@micropython.viper
def _or_above(p: ptr32, n: int, acc: int, add: int) -> int:
    """acc | the OR over the n words at p of (w & 0x0FFF0FFF) + add: with add = (4095 −
    level)·0x10001, bit 12 or 28 is set exactly when a sample (a half) exceeds level."""
    while n > 0:
        n -= 1
        acc |= (p[n] & 0x0FFF0FFF) + add
    return acc


@micropython.viper
def pack12_ring(src, start: int, n: int, ring_len: int, dst) -> int:
    """Pack the n (even) 12-bit samples (uint16 each, from the ADC FIFO) of a ring of
    ring_len (a power of two) uint16 from index start (even), wrapping, into 3·n/2 bytes:
    pairs (a, b) as a0..7 | a8..11 b0..3 | b4..11 (docs/protocol.md ADC_BLOCK). Returns 1
    if a sample is at full scale, 4095 (clipped), else 0."""
    base = int(ptr32(src))
    out = int(ptr8(dst))
    pairs = n >> 1
    k = start >> 1
    first = (ring_len >> 1) - k
    if first > pairs:
        first = pairs
    rest = pairs - first
    clip = int(_pack_pairs(base + 4 * k, out, first))  # type: ignore[arg-type]
    clip |= int(_pack_pairs(base, out + 3 * first, rest))  # type: ignore[arg-type]
    return clip


@micropython.viper
def above_u16(src, start: int, stop: int, ring_len: int, level: int) -> int:
    """1 if a 12-bit sample of a ring of ring_len (a power of two) uint16 from index start
    (inclusive) to stop (exclusive), wrapping, exceeds level, else 0. Two samples per 32-bit
    load: x + (4095 − level) carries into bit 12 exactly when x > level."""
    if level >= 0xFFF:
        return 0
    s16 = ptr16(src)
    base = int(ptr32(src))
    add = (0xFFF - level) * 0x10001
    i = start
    end = stop
    if stop < start:
        end = ring_len
    while True:
        if i < end and (i & 1):
            if (s16[i] & 0xFFF) > level:
                return 1
            i += 1
        if i < end:
            k = i >> 1
            words = (end >> 1) - k
            if int(_or_above(base + 4 * k, words, 0, add)) & 0x10001000:  # type: ignore[arg-type]
                return 1
            i = (k + words) << 1
            if i < end and (s16[i] & 0xFFF) > level:
                return 1
        if end == stop:
            return 0
        i = 0
        end = stop


@micropython.viper
def max_u16(src, start: int, stop: int, ring_len: int) -> int:
    """Largest 12-bit sample in a ring of ring_len uint16 from index start (inclusive) to
    stop (exclusive), wrapping (the level a guard trip reports: once, not per check)."""
    s = ptr16(src)
    biggest = 0
    i = start
    while i != stop:
        v = s[i] & 0xFFF
        if v > biggest:
            biggest = v
        i += 1
        if i >= ring_len:
            i = 0
    return biggest


@micropython.viper
def period_stats(words, ring_len: int, start: int, n: int, scale: int, offset: int, out):
    """From n period-timer words of a ring of ring_len uint32, from index start (wrapping):
    out[0] = sum of periods (cycles), out[1] = shortest, out[2] = longest
    (cycles = scale·word + offset)."""
    w = ptr32(words)
    o = ptr32(out)
    total = 0
    lo = 0x3FFFFFFF
    hi = 0
    i = 0
    j = start
    while i < n:
        p = scale * w[j] + offset
        total += p
        if p < lo:
            lo = p
        if p > hi:
            hi = p
        i += 1
        j += 1
        if j >= ring_len:
            j = 0
    o[0] = total
    o[1] = lo
    o[2] = hi


@micropython.viper
def edges_block(words, ring_len: int, idx: int, avail: int, t_prev: int, t_len: int,
                scale: int, offset: int, dst, max_edges: int, state) -> int:
    """Reference edges of one ADC block from the period-timer ring (ring_len uint32 words).

    Walks at most `avail` words from ring index `idx`; t_prev is the time of the last edge
    already reported, in ticks relative to this block's t0 (≤ 0). Edges before t_len (the
    block length in ticks) go into dst in ADC_BLOCK layout: u32 first edge after t0, then
    u16 deltas. state[0] = words consumed, state[1] = time of the last consumed edge relative
    to t0. Returns the number of edges, or -1 if an edge-to-edge delta exceeds 65535 ticks
    (reference slower than the format allows) or there are more than max_edges."""
    w = ptr32(words)
    d = ptr8(dst)
    st = ptr32(state)
    t = t_prev
    n = 0
    j = idx
    while n < avail:
        delta = scale * w[j] + offset
        if t + delta >= t_len:
            break
        t += delta
        if n == 0:
            d[0] = t & 0xFF
            d[1] = (t >> 8) & 0xFF
            d[2] = (t >> 16) & 0xFF
            d[3] = (t >> 24) & 0xFF
        else:
            if delta > 0xFFFF or n >= max_edges:
                st[0] = n
                st[1] = t
                return -1
            d[2 + 2 * n] = delta & 0xFF
            d[3 + 2 * n] = delta >> 8
        n += 1
        j += 1
        if j >= ring_len:
            j = 0
    st[0] = n
    st[1] = t
    return n


@micropython.viper
def crc32_table(out):
    """Fill `out` (256 uint32) with the byte table of the reflected CRC-32 (IEEE 802.3,
    polynomial 0xEDB88320), the CRC of docs/protocol.md."""
    t = ptr32(out)
    i = 0
    while i < 256:
        c = uint(i)
        k = 0
        while k < 8:
            if c & 1:
                c = (c >> 1) ^ uint(0xEDB88320)
            else:
                c = c >> 1
            k += 1
        t[i] = c
        i += 1


@micropython.viper
def _crc32_bytes(t: ptr32, c: uint, n: int, end: ptr8):
    """CRC-32 register c over the n bytes before end, then its final value (c ^ 0xFFFFFFFF)
    written little-endian at end[0:4] (no uint return: that would be a long int)."""
    c = c & uint(0xFFFFFFFF)  # a no-op on the 32-bit port; -1 is 64 bits wide on unix
    while n > 0:
        c = uint(t[(c ^ uint(end[0 - n])) & 0xFF]) ^ (c >> 8)
        n -= 1
    c = c ^ uint(0xFFFFFFFF)
    end[0] = c & 0xFF
    end[1] = (c >> 8) & 0xFF
    end[2] = (c >> 16) & 0xFF
    end[3] = (c >> 24) & 0xFF


@micropython.viper
def crc32_seal(table, buf, n: int):
    """Write the CRC-32 of buf[0:n] (as binascii.crc32) little-endian into buf[n:n+4].
    Unlike binascii.crc32 on a 32-bit port, makes no long int for CRCs ≥ 2**30."""
    _crc32_bytes(table, -1, n, int(ptr8(buf)) + n)  # type: ignore[arg-type]


@micropython.viper
def ring_in(ring, mask: int, pos: int, src, n: int):
    """Copy src[0:n] into a byte ring of mask + 1 bytes (a power of two) from pos, wrapping."""
    d = ptr8(ring)
    s = ptr8(src)
    i = 0
    while i < n:
        d[(pos + i) & mask] = s[i]
        i += 1


@micropython.viper
def ring_out(ring, mask: int, pos: int, dst, n: int):
    """Copy n bytes of a byte ring of mask + 1 bytes from pos (wrapping) into dst[0:n]."""
    s = ptr8(ring)
    d = ptr8(dst)
    i = 0
    while i < n:
        d[i] = s[(pos + i) & mask]
        i += 1
