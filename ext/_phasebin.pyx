# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Phase-binning kernel for raw ADC streams (see cplscope.demod.phase_binning).

Edge positions arrive as int64 fixed-point sample indices, X = position · 2**shift. For the
period [X_j, X_{j+1}) and B bins the first sample of bin k is

    b_jk = ceil((B·X_j + k·(X_{j+1} − X_j)) / (B · 2**shift)),   k = 0 … B−1,

and the period ends at ceil(X_{j+1} / 2**shift), where the next one starts. Everything is
exact integer arithmetic, so the result does not depend on the compiler's floating point.

Two equivalent ways to apply the rule, chosen per period for speed:
- "runs" (period has at least B samples): step the boundaries b_jk and sum each contiguous run;
- "scatter" (fewer samples than bins): classify each sample, k = floor(B·(i·2**shift − X_j) / ΔX).
Sample i is in bin k iff b_jk ≤ i < b_j,k+1, iff k·ΔX ≤ B·(i·2**shift − X_j) < (k+1)·ΔX, so the
two paths agree exactly.
"""
from libc.stdint cimport int16_t, int64_t, uint16_t

ctypedef fused sample_t:
    int16_t
    uint16_t
    float
    double


cdef inline int64_t _floor_shift(int64_t x, int shift) noexcept nogil:
    """floor(x / 2**shift) without relying on the sign behaviour of >>."""
    if x >= 0:
        return x >> shift
    return -(((-x) + ((<int64_t>1 << shift) - 1)) >> shift)


cdef inline int64_t _ceil_shift(int64_t x, int shift) noexcept nogil:
    return -_floor_shift(-x, shift)


cdef inline double _run_sum(const sample_t[::1] samples, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Sum of samples[a:b]: exact (int64) for integer samples, float64 otherwise."""
    cdef Py_ssize_t i
    cdef int64_t acc_i = 0
    cdef double acc_f = 0.0
    if sample_t is float or sample_t is double:
        for i in range(a, b):
            acc_f += samples[i]
        return acc_f
    else:
        for i in range(a, b):
            acc_i += samples[i]
        return <double>acc_i


cdef void _bin_periods(const sample_t[::1] samples, int64_t start, const int64_t[::1] edges,
                       int64_t n_bins, int shift, int64_t first_period, int64_t frame_periods,
                       double[:, ::1] sums, int64_t[:, ::1] counts) noexcept nogil:
    cdef int64_t n = samples.shape[0]
    cdef int64_t end = start + n
    cdef int64_t n_periods = edges.shape[0] - 1
    cdef int64_t denom = n_bins << shift            # B · 2**shift
    cdef int64_t row = first_period // frame_periods
    cdef int64_t in_frame = first_period % frame_periods
    cdef int64_t j, k, i, xa, xb, dx, s0, s1, lo, hi
    cdef int64_t q, cur_q, cur_r, step_q, step_r, b_prev, b_next, a, b, num, t
    cdef double inv
    cdef double* row_sums
    cdef int64_t* row_counts

    s1 = _ceil_shift(edges[0], shift)
    for j in range(n_periods):
        xa = edges[j]
        xb = edges[j + 1]
        dx = xb - xa
        s0 = s1
        s1 = _ceil_shift(xb, shift)
        lo = s0 if s0 > start else start
        hi = s1 if s1 < end else end
        if lo < hi:
            row_sums = &sums[row, 0]
            row_counts = &counts[row, 0]
            if s1 - s0 >= n_bins:
                # Runs. Numerator of b_jk relative to q = floor(X_j / 2**shift):
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
                        cur_q += step_q
                        cur_r += step_r
                        if cur_r >= denom:
                            cur_q += 1
                            cur_r -= denom
                        b_next = q + cur_q + (cur_r > 0)
                    a = b_prev if b_prev > lo else lo
                    b = b_next if b_next < hi else hi
                    if a < b:
                        row_sums[k] += _run_sum(samples, a - start, b - start)
                        row_counts[k] += b - a
                    b_prev = b_next
            else:
                # Scatter: estimate k in floating point, then settle it with the exact
                # integer test k·ΔX ≤ num < (k+1)·ΔX (the estimate is off by at most one).
                inv = 1.0 / <double>dx
                num = n_bins * ((lo << shift) - xa)
                for i in range(lo, hi):
                    k = <int64_t>(<double>num * inv)
                    t = k * dx
                    if t > num:
                        k -= 1
                    elif num - t >= dx:
                        k += 1
                    row_sums[k] += samples[i - start]
                    row_counts[k] += 1
                    num += denom
        in_frame += 1
        if in_frame == frame_periods:
            in_frame = 0
            row += 1


def bin_periods(const sample_t[::1] samples, int64_t start, const int64_t[::1] edges,
                int64_t n_bins, int shift, int64_t first_period, int64_t frame_periods,
                double[:, ::1] sums, int64_t[:, ::1] counts):
    """Add the samples of the periods between consecutive ``edges`` into ``sums``/``counts``.

    Args:
        samples: C-contiguous int16, uint16, float32 or float64 samples; ``samples[0]`` is
            absolute sample index ``start``.
        start: absolute sample index of ``samples[0]``.
        edges: increasing edge positions in units of 2**-shift sample (absolute).
        n_bins: B ≥ 1.
        shift: fixed-point fraction bits of ``edges``.
        first_period: running period number of the period starting at ``edges[0]``, counted
            from the first period of row 0; period p goes to row p // frame_periods.
        frame_periods: K ≥ 1, periods per row.
        sums, counts: (rows, B) accumulators, added to in place.

    Samples outside ``[start, start + len(samples))`` are simply absent: a period only
    partly covered by ``samples`` contributes the samples that are there. The caller checks
    that edges increase and that B·(X_{j+1} − X_j) and |X|·B stay below 2**62.
    """
    cdef int64_t n_periods = edges.shape[0] - 1
    if n_bins < 1 or frame_periods < 1 or first_period < 0 or not 0 <= shift < 40:
        raise ValueError("bin_periods: n_bins, frame_periods ≥ 1, first_period ≥ 0 and "
                         "0 ≤ shift < 40 required")
    if sums.shape[1] != n_bins or counts.shape[1] != n_bins or sums.shape[0] != counts.shape[0]:
        raise ValueError(f"bin_periods: sums and counts must both have shape (rows, {n_bins})")
    if n_periods < 1:
        return
    if (first_period + n_periods - 1) // frame_periods >= sums.shape[0]:
        raise ValueError(f"bin_periods: {n_periods} periods from period {first_period} need "
                         f"{(first_period + n_periods - 1) // frame_periods + 1} rows, "
                         f"sums has {sums.shape[0]}")
    with nogil:
        _bin_periods(samples, start, edges, n_bins, shift, first_period, frame_periods,
                     sums, counts)
