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
"""
from libc.math cimport fabs
from libc.stdint cimport int16_t, int64_t, uint16_t
from libc.stdlib cimport calloc, free

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
    cdef int64_t j, k, i, xa, xb, dx, s0, s1, lo, hi, c
    cdef int64_t q, cur_q, cur_r, step_q, step_r, b_prev, b_next, a, b, num, rem, over
    cdef int64_t acc_i
    cdef double acc_f, inv
    cdef double* row_sums = &sums[row, 0]
    cdef int64_t* row_counts = &counts[row, 0]
    # Integer samples are summed exactly in int64, then moved to the float64 sums per row.
    cdef int64_t* isums = NULL

    if sample_t is int16_t or sample_t is uint16_t:
        isums = <int64_t*>calloc(n_bins, sizeof(int64_t))
        if isums == NULL:
            return _NO_MEMORY
    if not _position(edges[0], scale, base, &xb):
        where[0] = 0
        free(isums)
        return _BAD_EDGE
    s1 = _ceil_shift(xb, shift)
    for j in range(n_periods):
        xa = xb
        if not _position(edges[j + 1], scale, base, &xb):
            where[0] = j + 1
            free(isums)
            return _BAD_EDGE
        if xb <= xa:
            where[0] = j + 1
            free(isums)
            return _NOT_INCREASING
        dx = xb - xa
        if dx >= max_dx:
            where[0] = j
            free(isums)
            return _PERIOD_TOO_LONG
        s0 = s1
        s1 = _ceil_shift(xb, shift)
        lo = s0 if s0 > start else start
        hi = s1 if s1 < end else end
        if lo < hi:
            if s1 - s0 >= 8 * n_bins:
                # Runs (measured faster than scatter only from ~8 samples per bin on). b_jk relative to q = floor(X_j / 2**shift) has numerator
                # B·r + k·ΔX over denom, carried as quotient cur_q and remainder cur_r.
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
                inv = 1.0 / <double>dx
                num = n_bins * ((lo << shift) - xa)
                k = _estimate_quotient(num, dx, inv)
                rem = num - k * dx
                step_q = _estimate_quotient(denom, dx, inv)
                step_r = denom - step_q * dx
                for i in range(lo - start, hi - start):
                    if sample_t is int16_t or sample_t is uint16_t:
                        isums[k] += <int64_t>samples[i]
                    else:
                        row_sums[k] += samples[i]
                    row_counts[k] += 1
                    rem += step_r
                    over = rem >= dx            # branch-free carry: it is unpredictable
                    k += step_q + over
                    rem -= (-over) & dx
        in_frame += 1
        if in_frame == frame_periods and j + 1 < n_periods:
            in_frame = 0
            if sample_t is int16_t or sample_t is uint16_t:
                for c in range(n_bins):
                    row_sums[c] += <double>isums[c]
                    isums[c] = 0
            row += 1
            row_sums = &sums[row, 0]
            row_counts = &counts[row, 0]
    if sample_t is int16_t or sample_t is uint16_t:
        for c in range(n_bins):
            row_sums[c] += <double>isums[c]
        free(isums)
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
