# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Phase-binning kernel for raw ADC streams (see cplscope.demod.phase_binning).

Edge positions are int64 fixed-point sample indices, X = position · 2**shift, given either
directly or as float64 times t (s) that the kernel quantizes on the fly as
X = base + rint(t · scale), scale = sample_rate · 2**shift (round half to even, as np.rint).
For the period [X_j, X_{j+1}) and B bins the first sample of bin k is

    b_jk = ceil((B·X_j + k·(X_{j+1} − X_j)) / (B · 2**shift)),   k = 0 … B−1,

and the period ends at ceil(X_{j+1} / 2**shift), where the next one starts. Everything after
the quantization is exact integer arithmetic, so the result does not depend on the compiler.

Two equivalent ways to apply the rule, chosen per period for speed:
- runs (period has at least 8·B samples): step the boundaries b_jk and sum each contiguous run;
- scatter (shorter periods): sample i is in bin k = floor(B·(i·2**shift − X_j) / ΔX),
  because b_jk ≤ i < b_j,k+1 iff k·ΔX ≤ B·(i·2**shift − X_j) < (k+1)·ΔX.

For speed the edges are handled in chunks of _CHUNK periods: one pass converts and checks the
positions, one computes per period everything that needs a division (bin and remainder of
its first sample, bin step per sample), and only then are the periods' samples binned, so
that the samples do not wait for the divisions. For integer samples the scatter path counts
without a separate increment: see `packed` in _bin_periods.
"""
from libc.math cimport fabs
from libc.stdint cimport int16_t, int64_t, uint16_t
from libc.stdlib cimport calloc, free, malloc

ctypedef fused sample_t:
    int16_t
    uint16_t
    float
    double

ctypedef fused edge_t:
    int64_t
    double

cdef enum:
    # status codes of bin_periods
    _OK = 0
    _BAD_EDGE = 1          # edge not finite, or its position beyond ±2**62 / 2**shift samples
    _NOT_INCREASING = 2    # edge position not above the previous one
    _PERIOD_TOO_LONG = 3   # B·ΔX would overflow int64
    _NO_MEMORY = 4

OK, BAD_EDGE, NOT_INCREASING, PERIOD_TOO_LONG, NO_MEMORY = (
    _OK, _BAD_EDGE, _NOT_INCREASING, _PERIOD_TOO_LONG, _NO_MEMORY)

cdef int64_t _LIMIT = <int64_t>1 << 62
cdef double _LIMIT_D = 4611686018427387904.0      # 2**62
cdef double _ROUND = 6755399441055744.0           # 1.5 · 2**52
cdef double _EXACT = 2251799813685248.0           # 2**51


cdef inline int64_t _floor_shift(int64_t x, int shift) noexcept nogil:
    """floor(x / 2**shift) without relying on the sign behaviour of >>."""
    if x >= 0:
        return x >> shift
    return -(((-x) + ((<int64_t>1 << shift) - 1)) >> shift)


cdef inline int64_t _ceil_shift(int64_t x, int shift) noexcept nogil:
    return -_floor_shift(-x, shift)


cdef inline bint _position(edge_t e, double scale, int64_t base, int64_t* out) noexcept nogil:
    """Fixed-point position of one edge; False if it is not finite or out of range."""
    cdef double y, r
    if edge_t is double:
        y = e * scale
        if not fabs(y) < _LIMIT_D:      # also catches NaN
            return False
        # rint with ties to even, without a libm call: adding 1.5·2**52 leaves no fraction
        # bits; |y| ≥ 2**51 is already an integer.
        r = (y + _ROUND) - _ROUND if fabs(y) < _EXACT else y
        out[0] = base + <int64_t>r
    else:
        out[0] = e
    return True


cdef inline int64_t _estimate_quotient(int64_t num, int64_t den, double inv) noexcept nogil:
    """floor(num / den) for 0 ≤ num < 2**62, den > 0, given inv ≈ 1/den: the floating-point
    estimate is off by at most one and is settled by exact integer tests."""
    cdef int64_t k = <int64_t>(<double>num * inv)
    cdef int64_t t = k * den
    if t > num:
        k -= 1
    elif num - t >= den:
        k += 1
    return k


cdef enum:
    _CHUNK = 256             # periods per chunk (its buffers stay in L1)
    _PACK_SHIFT = 40         # packed accumulator: sum + count · 2**40 (see _bin_periods)
    _PACK_PERIODS = 1 << 19  # most periods between flushes of the packed accumulators


cdef int _convert_edges(const edge_t[::1] edges, int64_t first, int64_t m, double scale,
                        int64_t base, int64_t max_dx, int64_t* x, int64_t* where) noexcept nogil:
    """x[1 … m] = positions of edges[first + 1 … first + m] (x[0] is set by the caller),
    checked as the periods are binned: each edge valid, then above the previous one, then the
    period not too long. Branch-free pass first; the ordered scan only if something failed."""
    cdef int64_t p, d
    cdef double y
    cdef bint ok = True
    for p in range(1, m + 1):
        if edge_t is double:
            y = edges[first + p] * scale
            ok &= fabs(y) < _LIMIT_D        # also catches NaN
            y = y if fabs(y) < _LIMIT_D else 0.0
            # rint with ties to even, without a libm call (as _position)
            y = (y + _ROUND) - _ROUND if fabs(y) < _EXACT else y
            x[p] = base + <int64_t>y
        else:
            x[p] = edges[first + p]
    for p in range(1, m + 1):
        d = x[p] - x[p - 1]
        ok &= (d > 0) & (d < max_dx)
    if ok:
        return _OK
    for p in range(1, m + 1):
        if not _position(edges[first + p], scale, base, &x[p]):
            where[0] = first + p
            return _BAD_EDGE
        if x[p] <= x[p - 1]:
            where[0] = first + p
            return _NOT_INCREASING
        if x[p] - x[p - 1] >= max_dx:
            where[0] = first + p - 1
            return _PERIOD_TOO_LONG
    return _OK


cdef inline void _flush_packed(int64_t* packed, int64_t n_bins, int64_t* isums,
                               int64_t* row_counts) noexcept nogil:
    """Move the packed accumulators (two interleaved sets, see _bin_periods) to isums and
    row_counts."""
    cdef int64_t k, p, c
    for k in range(2 * n_bins):
        p = packed[k]
        c = (p + (<int64_t>1 << (_PACK_SHIFT - 1))) >> _PACK_SHIFT
        isums[k >> 1] += p - (c << _PACK_SHIFT)
        row_counts[k >> 1] += c
        packed[k] = 0


ctypedef struct _Period:
    int64_t s, k0, r0, q1, r1


cdef int _bin_periods(const sample_t[::1] samples, int64_t start, const edge_t[::1] edges,
                      double scale, int64_t base, int64_t n_bins, int shift,
                      int64_t first_period, int64_t frame_periods,
                      double[:, ::1] sums, int64_t[:, ::1] counts, int64_t* where) noexcept nogil:
    cdef int64_t n = samples.shape[0]
    cdef int64_t end = start + n
    cdef int64_t n_periods = edges.shape[0] - 1
    cdef int64_t denom = n_bins << shift            # B · 2**shift
    cdef int64_t max_dx = _LIMIT // n_bins
    cdef int64_t row = first_period // frame_periods
    cdef int64_t in_frame = first_period % frame_periods
    cdef int64_t j, k, i, xa, xb, dx, s0, s1, lo, hi, c, p, m, seg, i_end
    cdef int64_t q, cur_q, cur_r, step_q, step_r, b_prev, b_next, a, b, num, rem, over
    cdef int64_t acc_i, packed_periods = 0, k1, rem1, over1
    cdef int64_t one = <int64_t>1 << _PACK_SHIFT
    cdef double acc_f, inv
    cdef int status
    cdef double* row_sums = &sums[row, 0]
    cdef int64_t* row_counts = &counts[row, 0]
    # Integer samples are summed exactly in int64, then moved to the float64 sums per row.
    # The scatter path adds sample + 2**40 to packed[2k + parity of the sample in its period]:
    # one add per sample accumulates both the sum and the count, and consecutive samples of
    # one bin do not wait on each other's store. A scatter period has < 8·B samples, so at
    # most 8 per bin (ΔX < 8·denom); after ≤ _PACK_PERIODS = 2**19 periods an entry holds
    # ≤ 2**22 samples, |sum| ≤ 2**38 < 2**39, and _flush_packed splits it exactly.
    cdef int64_t* isums = NULL
    cdef int64_t* packed = NULL
    cdef int64_t* x = <int64_t*>malloc((_CHUNK + 1) * sizeof(int64_t) + (_CHUNK + 1) * sizeof(_Period))
    cdef _Period* per = <_Period*>(x + _CHUNK + 1)

    if x == NULL:
        return _NO_MEMORY
    if sample_t is int16_t or sample_t is uint16_t:
        isums = <int64_t*>calloc(3 * n_bins, sizeof(int64_t))
        if isums == NULL:
            free(x)
            return _NO_MEMORY
        packed = isums + n_bins
    if not _position(edges[0], scale, base, &x[0]):
        where[0] = 0
        free(isums)
        free(x)
        return _BAD_EDGE
    s1 = _ceil_shift(x[0], shift)
    j = 0
    while j < n_periods:
        m = n_periods - j if n_periods - j < _CHUNK else _CHUNK
        status = _convert_edges(edges, j, m, scale, base, max_dx, x, where)
        if status != _OK:
            free(isums)
            free(x)
            return status
        # Per period of the chunk: bin k0 (remainder r0) of its first sample s0, and the
        # bin step per sample q1 (remainder r1). Computed ahead, so that a period's samples do
        # not wait for the division.
        per[0].s = s1
        for p in range(m):
            s1 = _ceil_shift(x[p + 1], shift)
            per[p + 1].s = s1
            dx = x[p + 1] - x[p]
            inv = 1.0 / <double>dx
            # s0·2**shift − X_j = (−X_j) mod 2**shift: the first sample's offset from the edge
            num = n_bins * ((-x[p]) & (((<int64_t>1) << shift) - 1))
            k = _estimate_quotient(num, dx, inv)
            per[p].k0 = k
            per[p].r0 = num - k * dx
            k = _estimate_quotient(denom, dx, inv)
            per[p].q1 = k
            per[p].r1 = denom - k * dx
        s1 = per[0].s
        if sample_t is int16_t or sample_t is uint16_t:
            if packed_periods + m > _PACK_PERIODS:
                _flush_packed(packed, n_bins, isums, row_counts)
                packed_periods = 0
            packed_periods += m
        p = 0
        while p < m:
            # periods p … seg − 1 of the chunk are in the current row
            seg = m
            if frame_periods - in_frame < m - p:
                seg = p + (frame_periods - in_frame)
            in_frame += seg - p
            for p in range(p, seg):
                xa = x[p]
                xb = x[p + 1]
                dx = xb - xa
                s0 = per[p].s
                s1 = per[p + 1].s
                lo = s0 if s0 > start else start
                hi = s1 if s1 < end else end
                if lo >= hi:
                    continue
                if s1 - s0 >= 8 * n_bins:
                    # Runs (measured faster than scatter only from ~8 samples per bin on).
                    # b_jk relative to q = floor(X_j / 2**shift) has numerator B·r + k·ΔX
                    # over denom, carried as quotient cur_q and remainder cur_r.
                    q = _floor_shift(xa, shift)
                    cur_q = 0
                    cur_r = n_bins * (xa - (q << shift))
                    step_q = dx // denom
                    step_r = dx - step_q * denom
                    b_prev = s0
                    for k in range(n_bins):
                        if k == n_bins - 1:
                            b_next = s1
                        else:
                            cur_r += step_r
                            over = cur_r >= denom       # branch-free carry: it is unpredictable
                            cur_q += step_q + over
                            cur_r -= (-over) & denom
                            b_next = q + cur_q + (cur_r > 0)
                        a = b_prev if b_prev > lo else lo
                        b = b_next if b_next < hi else hi
                        if a < b:
                            if sample_t is int16_t or sample_t is uint16_t:
                                acc_i = 0
                                for i in range(a - start, b - start):
                                    acc_i += samples[i]
                                isums[k] += acc_i
                            else:
                                acc_f = 0.0
                                for i in range(a - start, b - start):
                                    acc_f += samples[i]
                                row_sums[k] += acc_f
                            row_counts[k] += b - a
                        b_prev = b_next
                else:
                    # Scatter: k of the first sample, then step by denom/ΔX bins per sample,
                    # carrying the remainder exactly.
                    k = per[p].k0
                    rem = per[p].r0
                    if lo != s0:                # clipped at the start of the samples
                        inv = 1.0 / <double>dx
                        num = n_bins * ((lo << shift) - xa)
                        k = _estimate_quotient(num, dx, inv)
                        rem = num - k * dx
                    step_q = per[p].q1
                    step_r = per[p].r1
                    i = lo - start
                    i_end = hi - start
                    if sample_t is int16_t or sample_t is uint16_t:
                        # Two independent carry chains, for the even and the odd samples, each
                        # stepping 2·denom/ΔX bins; k counts in packed entries (2 per bin).
                        k = 2 * k
                        k1 = k + 2 * step_q
                        rem1 = rem + step_r
                        if rem1 >= dx:
                            rem1 -= dx
                            k1 += 2
                        step_r = 2 * step_r     # < 2·ΔX
                        step_q = 4 * step_q
                        if step_r >= dx:
                            step_r -= dx
                            step_q += 2
                        while i + 1 < i_end:
                            packed[k] += <int64_t>samples[i] + one
                            packed[k1 + 1] += <int64_t>samples[i + 1] + one
                            rem += step_r
                            over = rem >= dx
                            k += step_q + 2 * over
                            rem = rem - dx if over else rem
                            rem1 += step_r
                            over1 = rem1 >= dx
                            k1 += step_q + 2 * over1
                            rem1 = rem1 - dx if over1 else rem1
                            i += 2
                        if i < i_end:
                            packed[k] += <int64_t>samples[i] + one
                    else:
                        for i in range(i, i_end):
                            row_sums[k] += samples[i]
                            row_counts[k] += 1
                            rem += step_r
                            over = rem >= dx
                            k += step_q + over
                            rem -= (-over) & dx
            p = seg
            if in_frame == frame_periods and j + p < n_periods:
                in_frame = 0
                if sample_t is int16_t or sample_t is uint16_t:
                    _flush_packed(packed, n_bins, isums, row_counts)
                    packed_periods = 0
                    for c in range(n_bins):
                        row_sums[c] += <double>isums[c]
                        isums[c] = 0
                row += 1
                row_sums = &sums[row, 0]
                row_counts = &counts[row, 0]
        x[0] = x[m]
        s1 = per[m].s
        j += m
    if sample_t is int16_t or sample_t is uint16_t:
        _flush_packed(packed, n_bins, isums, row_counts)
        for c in range(n_bins):
            row_sums[c] += <double>isums[c]
        free(isums)
    free(x)
    return _OK


def bin_periods(const sample_t[::1] samples, int64_t start, const edge_t[::1] edges,
                double scale, int64_t base, int64_t n_bins, int shift, int64_t first_period,
                int64_t frame_periods, double[:, ::1] sums, int64_t[:, ::1] counts):
    """Add the samples of the periods between consecutive ``edges`` into ``sums``/``counts``.

    Args:
        samples: C-contiguous int16, uint16, float32 or float64 samples; ``samples[0]`` is
            absolute sample index ``start``.
        start: absolute sample index of ``samples[0]``.
        edges: int64 edge positions in units of 2**-shift sample (absolute; ``scale`` and
            ``base`` unused), or float64 edge times in s, quantized to
            ``base + rint(t · scale)``.
        scale: sample_rate · 2**shift, for float64 edges.
        base: fixed-point position of time 0 of float64 edges; |base| < 2**61 (not checked).
        n_bins: B ≥ 1.
        shift: fixed-point fraction bits, 0 ≤ shift < 40.
        first_period: number of the period starting at ``edges[0]``, counted from the first
            period of row 0; period p goes to row p // frame_periods.
        frame_periods: K ≥ 1, periods per row.
        sums, counts: (rows, B) accumulators, added to in place.

    Returns:
        ``(status, index)``: status OK, or BAD_EDGE / NOT_INCREASING (index: the edge) /
        PERIOD_TOO_LONG (index: the period) / NO_MEMORY. On an error the accumulators hold
        a partial result and must be discarded.

    Samples outside ``[start, start + len(samples))`` are simply absent: a period only
    partly covered by ``samples`` contributes the samples that are there.
    """
    cdef int64_t n_periods = edges.shape[0] - 1
    cdef int64_t where = -1
    cdef int status
    if n_bins < 1 or frame_periods < 1 or first_period < 0 or not 0 <= shift < 40:
        raise ValueError("bin_periods: n_bins, frame_periods ≥ 1, first_period ≥ 0 and "
                         "0 ≤ shift < 40 required")
    if sums.shape[1] != n_bins or counts.shape[1] != n_bins or sums.shape[0] != counts.shape[0]:
        raise ValueError(f"bin_periods: sums and counts must both have shape (rows, {n_bins})")
    if n_periods < 1:
        return _OK, -1
    if (first_period + n_periods - 1) // frame_periods >= sums.shape[0]:
        raise ValueError(f"bin_periods: {n_periods} periods from period {first_period} need "
                         f"{(first_period + n_periods - 1) // frame_periods + 1} rows, "
                         f"sums has {sums.shape[0]}")
    with nogil:
        status = _bin_periods(samples, start, edges, scale, base, n_bins, shift, first_period,
                              frame_periods, sums, counts, &where)
    return status, where
