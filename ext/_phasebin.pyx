# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Phase-binning kernel for raw ADC streams (see cplscope.demod.phase_binning).

Edge positions are int64 fixed-point sample indices, X = position · 2**shift, given either
directly or as float64 times t (s) that the kernel quantizes on the fly as
X = base + rint(t · scale), scale = sample_rate · 2**shift (round half to even, as np.rint).
For the period [X_j, X_{j+1}) and B bins the first sample of bin k is

    b_jk = ceil((B·X_j + k·(X_{j+1} − X_j)) / (B · 2**shift)),   k = 0 … B−1,

and the period ends at ceil(X_{j+1} / 2**shift), where the next one starts. Everything after
the quantization is exact integer arithmetic, so the result does not depend on the compiler.
Equivalently, sample i of the period is in bin k = floor(B·(i·2**shift − X_j) / ΔX), because
b_jk ≤ i < b_j,k+1 iff k·ΔX ≤ B·(i·2**shift − X_j) < (k+1)·ΔX.

Long periods (at least 8·B samples) step the boundaries b_jk and sum each contiguous run of
samples (_bin_long). Periods only partly inside the samples given go sample by sample
(_bin_clipped). Short periods, the common case, are binned in one of two modes, chosen per
chunk of _CHUNK periods:
- run mode: a stable PEM sampled by a stable ADC clock gives consecutive periods the same
  number n of samples and the same bin for each of them, their *pattern*. Such periods are
  collected into a *run* (_Run) with an exact integer test of a few operations per period,
  and the run's samples, contiguous, are added as the column sums of a (periods, n) array
  (_flush_run), at nearly the speed of reading them;
- scatter mode: when the patterns keep changing (edges with jitter comparable to a bin, or
  a sample rate that is no near-multiple of the PEM frequency), each sample is binned on its
  own (_scatter_periods). A chunk switches to it when its runs cost more than that would.

The edges are converted in chunks, so that the per-period tests read positions from L1.
"""
from libc.math cimport cos, fabs, sin
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint64_t
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

cdef enum:
    _CHUNK = 256             # periods per chunk of edges (its buffer stays in L1)
    _BOX_BITS = 10           # a run's box admits ΔX within ±ΔX/2**10 of its first period's
    _ACC_WIDTH = 64          # samples per step of a run's column sums (at most, or n)
    _ACC32_STEPS = 32768     # 2**15: int16 and uint16 sums of fewer stay below 2**31
    _PACK_SHIFT = 40         # scatter mode: packed accumulator = sum + count · 2**40
    # A chunk goes to scatter mode when its runs cost more than that would: a period costs
    # about 2.9 ns in run mode, plus 21 ns per box miss and 55 ns per run opened, against
    # 13 ns in scatter mode (bench/bench_phase_bin.py, 250 kHz, B = 16).
    _MISS_COST = 2           # ≈ 21 / (13 − 2.9)
    _OPEN_COST = 5           # ≈ 55 / (13 − 2.9)
    _MAX_STAY = 64           # most chunks in scatter mode before run mode is tried again

cdef int64_t _LIMIT = <int64_t>1 << 62
cdef uint64_t _OFFSET = <uint64_t>1 << 62
cdef double _LIMIT_D = 4611686018427387904.0      # 2**62
cdef double _ROUND = 6755399441055744.0           # 1.5 · 2**52
cdef double _EXACT = 2251799813685248.0           # 2**51


cdef inline int64_t _floor_shift(int64_t x, int shift) noexcept nogil:
    """floor(x / 2**shift) for |x| < 2**62, branch-free and without relying on the sign
    behaviour of >>: shifted in unsigned arithmetic after an offset of 2**62."""
    return <int64_t>(((<uint64_t>x + _OFFSET) >> shift) - (_OFFSET >> shift))


cdef inline int64_t _ceil_shift(int64_t x, int shift) noexcept nogil:
    return _floor_shift(x + ((<int64_t>1 << shift) - 1), shift)


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


cdef union _Bits:
    double d
    int64_t i


cdef int _convert_edges(const edge_t[::1] edges, int64_t first, int64_t m, double scale,
                        int64_t base, int64_t max_dx, int64_t* x, int64_t* where) noexcept nogil:
    """x[1 … m] = positions of edges[first + 1 … first + m] (x[0] is set by the caller).

    A vectorizable pass converts positions |y| < 2**51, rounding half to even by adding
    1.5·2**52 (the sum's low mantissa bits are then the integer). The steps between positions
    are checked by the caller period by period. Only if an edge was out of that range (or not
    finite) does an ordered scan convert and check every edge and step, so that the first
    error in edge order is reported."""
    cdef int64_t p
    cdef _Bits y, r
    cdef bint ok = True
    if edge_t is double:
        r.d = _ROUND
        for p in range(1, m + 1):
            y.d = edges[first + p] * scale
            ok &= fabs(y.d) < _EXACT        # also catches NaN
            y.d = y.d + _ROUND
            x[p] = base + (y.i - r.i)
    else:
        for p in range(1, m + 1):
            x[p] = edges[first + p]
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


ctypedef struct _Run:
    # Consecutive fully covered short periods with one pattern: the pattern of the period
    # that opened the run (bin K_t of its sample t < n). With u = s0·2**shift − X_j, the
    # offset of a period's first sample s0 from its edge, sample t is in bin K_t iff
    #     K_t·ΔX − t·D ≤ B·u < (K_t + 1)·ΔX − t·D,        D = B·2**shift,
    # so a period has the pattern iff B·u is at least every lower line K_t·ΔX − t·D and below
    # every upper line (K_t + 1)·ΔX − t·D (_has_pattern). The lines rise with ΔX (K_t ≥ 0),
    # so for ΔX in an interval [dx_lo, dx_hi] it suffices that B·u is at least all lower lines
    # at dx_hi and below all upper lines at dx_lo: u in a box, a test of three comparisons
    # per period (_extend_run). Periods that fail it get the full test.
    int64_t n            # samples per period; 0: no run open
    int64_t s0           # first sample of the run not yet added to the bins
    int64_t dx_lo        # ΔX interval [dx_lo, dx_lo + dx_w]
    uint64_t dx_w
    int64_t u_lo         # box: u_lo ≤ u < u_lo + u_w
    uint64_t u_w


cdef void _open_run(_Run* run, int64_t s0, int64_t n, int64_t u, int64_t dx, int64_t n_bins,
                    int shift, int64_t max_dx, int64_t* pattern) noexcept nogil:
    """Open a run at the period with first sample s0, n samples, offset u and length dx:
    its pattern (exact, stepping quotient and remainder of (B·u + t·D) / ΔX) and its box,
    for ΔX within ±dx/2**_BOX_BITS."""
    cdef int64_t denom = n_bins << shift
    cdef int64_t bu = n_bins * u
    cdef double inv = 1.0 / <double>dx
    cdef int64_t k = _estimate_quotient(bu, dx, inv)
    cdef int64_t rem = bu - k * dx
    cdef int64_t step_q = _estimate_quotient(denom, dx, inv)
    cdef int64_t step_r = denom - step_q * dx
    cdef int64_t w = dx >> _BOX_BITS
    cdef int64_t dx_lo = dx - w
    cdef int64_t dx_hi = min(dx + w, max_dx - 1)
    cdef int64_t lo = 0, hi = _LIMIT, td = 0, t, over
    for t in range(n):
        pattern[t] = k
        lo = max(lo, k * dx_hi - td)
        hi = min(hi, (k + 1) * dx_lo - td)
        td += denom
        rem += step_r
        over = rem >= dx
        k += step_q + over
        rem -= (-over) & dx
    run.n = n
    run.s0 = s0
    run.dx_lo = dx_lo
    run.dx_w = <uint64_t>(dx_hi - dx_lo)
    run.u_w = 0
    if hi > lo:
        # B·u ≥ lo ⇔ u ≥ ceil(lo / B) and B·u < hi ⇔ u < ceil(hi / B), for 0 ≤ lo < hi
        inv = 1.0 / <double>n_bins
        lo = _estimate_quotient(lo + n_bins - 1, n_bins, inv)
        hi = _estimate_quotient(hi + n_bins - 1, n_bins, inv)
        run.u_w = <uint64_t>(hi - lo)
    run.u_lo = lo


cdef inline int64_t _extend_run(const _Run* run, const int64_t* x, int64_t p, int64_t seg,
                                int shift) noexcept nogil:
    """The first period in p … seg − 1 that fails the run's box test (seg if none does):
    n samples, ΔX in the interval and u in the box. Carries v = s0·2**shift, so that
    u = v − X_j, and the period has n samples iff the next one's u, v + n·2**shift − X_{j+1},
    is in [0, 2**shift). Periods before seg must end inside the samples (not checked here)."""
    cdef int64_t big_n = run.n << shift, dx_lo = run.dx_lo, u_lo = run.u_lo
    cdef uint64_t dx_w = run.dx_w, u_w = run.u_w, one = <uint64_t>1 << shift
    cdef int64_t xa = x[p], xb, v = _ceil_shift(xa, shift) << shift, u = v - xa, u_next
    while p < seg:
        xb = x[p + 1]
        v += big_n
        u_next = v - xb
        if not ((<uint64_t>(u - u_lo) < u_w) & (<uint64_t>(xb - xa - dx_lo) <= dx_w)
                & (<uint64_t>u_next < one)):
            break
        xa = xb
        u = u_next
        p += 1
    return p


cdef inline bint _has_pattern(const int64_t* pattern, int64_t n, int64_t bu, int64_t dx,
                              int64_t denom) noexcept nogil:
    """Whether a period of n samples with B·u = bu and length dx has the pattern: B·u
    between every pair of lines."""
    cdef int64_t t, td = 0, line
    cdef bint ok = True
    for t in range(n):
        line = pattern[t] * dx - td
        ok &= (bu >= line) & (bu < line + dx)
        td += denom
    return ok


ctypedef fused acc_t:
    int64_t
    double


cdef inline void _fold_halves(acc_t* acc, int64_t width, int64_t n) noexcept nogil:
    """Fold ``width`` = n·2**m accumulators in halves, so that acc[t] (t < n) ends as the
    sum of acc[t], acc[t + n], acc[t + 2n], …"""
    cdef int64_t h = width, j
    while h > n:
        h >>= 1
        for j in range(h):
            acc[j] += acc[j + h]


cdef void _flush_run(_Run* run, int64_t upto, const sample_t[::1] samples, int64_t start,
                     const int64_t* pattern, int32_t* acc32, int64_t* acc64, double* facc,
                     int64_t* isums, double* row_sums, int64_t* row_counts) noexcept nogil:
    """Add the run's samples run.s0 … upto − 1 (whole periods) to the bins of its pattern,
    as the column sums of a (periods, n) array, and move run.s0 to upto.

    Short runs go sample by sample. Longer ones are summed ``width`` = n·2**m samples at a
    time, element-wise into as many accumulators (a contiguous, vectorizable loop), which
    are then folded in halves down to the n column sums. Integer samples go through int32
    accumulators, moved to int64 before they could overflow."""
    cdef int64_t n = run.n
    cdef int64_t total = upto - run.s0
    cdef int64_t rows = total // n
    cdef int64_t width = n, steps, nb, b, j, t
    cdef const sample_t* src
    if total <= 0:
        return
    src = &samples[run.s0 - start]
    while 2 * width <= _ACC_WIDTH and 2 * (width // n) <= rows:
        width *= 2
    if rows < 2 * (width // n):
        t = 0
        for j in range(total):
            if sample_t is int16_t or sample_t is uint16_t:
                isums[pattern[t]] += src[j]
            else:
                row_sums[pattern[t]] += src[j]
            t += 1
            if t == n:
                t = 0
    elif sample_t is int16_t or sample_t is uint16_t:
        steps = total // width
        for j in range(width):
            acc64[j] = 0
        while steps > 0:
            # < 2**15 samples per accumulator: |sum| < 2**31
            nb = min(steps, <int64_t>_ACC32_STEPS - 1)
            steps -= nb
            for j in range(width):
                acc32[j] = 0
            for b in range(nb):
                for j in range(width):
                    acc32[j] += src[j]
                src += width
            if steps == 0:
                for j in range(total % width):
                    acc32[j] += src[j]
            for j in range(width):
                acc64[j] += acc32[j]
        _fold_halves(acc64, width, n)
        for t in range(n):
            isums[pattern[t]] += acc64[t]
    else:
        steps = total // width
        for j in range(width):
            facc[j] = 0.0
        for b in range(steps):
            for j in range(width):
                facc[j] += src[j]
            src += width
        for j in range(total % width):
            facc[j] += src[j]
        _fold_halves(facc, width, n)
        for t in range(n):
            row_sums[pattern[t]] += facc[t]
    for t in range(n):
        row_counts[pattern[t]] += rows
    run.s0 = upto


cdef void _bin_clipped(const sample_t[::1] samples, int64_t start, int64_t lo, int64_t hi,
                       int64_t xa, int64_t dx, int64_t n_bins, int shift, int64_t* isums,
                       double* row_sums, int64_t* row_counts) noexcept nogil:
    """Samples lo … hi − 1 of a short period starting at X = xa, one at a time: bin k of
    sample i is floor(B·(i·2**shift − xa) / ΔX), stepped by quotient and remainder."""
    cdef double inv = 1.0 / <double>dx
    cdef int64_t num = n_bins * ((lo << shift) - xa)
    cdef int64_t k = _estimate_quotient(num, dx, inv)
    cdef int64_t rem = num - k * dx
    cdef int64_t step_q = _estimate_quotient(n_bins << shift, dx, inv)
    cdef int64_t step_r = (n_bins << shift) - step_q * dx
    cdef int64_t i
    for i in range(lo - start, hi - start):
        if sample_t is int16_t or sample_t is uint16_t:
            isums[k] += samples[i]
        else:
            row_sums[k] += samples[i]
        row_counts[k] += 1
        rem += step_r
        if rem >= dx:
            rem -= dx
            k += 1
        k += step_q


cdef void _bin_long(const sample_t[::1] samples, int64_t start, int64_t lo, int64_t hi,
                    int64_t xa, int64_t dx, int64_t s0, int64_t s1, int64_t n_bins, int shift,
                    int64_t* isums, double* row_sums, int64_t* row_counts) noexcept nogil:
    """A period with many samples per bin: step the boundaries b_jk and sum each contiguous
    run. b_jk relative to q = floor(X_j / 2**shift) has numerator B·r + k·ΔX over denom,
    carried as quotient cur_q and remainder cur_r."""
    cdef int64_t denom = n_bins << shift
    cdef int64_t q = _floor_shift(xa, shift)
    cdef int64_t cur_q = 0
    cdef int64_t cur_r = n_bins * (xa - (q << shift))
    cdef int64_t step_q = dx // denom
    cdef int64_t step_r = dx - step_q * denom
    cdef int64_t b_prev = s0, b_next, a, b, k, i, over, acc_i
    cdef double acc_f
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


ctypedef struct _Period:
    int64_t s, k0, r0, q1, r1


cdef struct _Work:
    # what the period-by-period passes share during one call
    int64_t start, end          # samples present: start … end − 1
    int64_t n_bins, max_dx, short
    int shift
    int64_t* isums              # integer sample sums of the current row
    double* row_sums            # float sample sums of the current row (and at its end, all)
    int64_t* row_counts
    int64_t* pattern            # run mode: the open run's pattern and column sums
    int32_t* acc32
    int64_t* acc64
    double* facc
    _Period* per                # scatter mode: per period of the chunk
    int64_t* packed
    int64_t opens               # runs opened so far
    int64_t misses              # periods of open runs that failed the box test


cdef inline int _check_step(const int64_t* x, int64_t p, int64_t max_dx) noexcept nogil:
    """Whether the period from x[p] to x[p + 1] is valid: the edges increase and the period
    is not too long."""
    cdef int64_t dx = x[p + 1] - x[p]
    if dx <= 0:
        return _NOT_INCREASING
    if dx >= max_dx:
        return _PERIOD_TOO_LONG
    return _OK


cdef int _run_periods(_Run* run, const sample_t[::1] samples, const int64_t* x, int64_t p,
                      int64_t seg, _Work* w, int64_t* bad) noexcept nogil:
    """Run mode: bin periods p … seg − 1 of the chunk, collecting short ones into runs. A run
    stays open at the end; on an error, *bad is the failing period."""
    cdef int64_t shift = w.shift, n_bins = w.n_bins, start = w.start, end = w.end
    cdef int64_t cover, xa, xb, s0, s1, ns, lo, hi
    cdef int status
    while p < seg:
        if run.n:
            cover = seg      # periods before cover end inside the samples
            while cover > p and _ceil_shift(x[cover], shift) > end:
                cover -= 1
            p = _extend_run(run, x, p, cover, shift)
            if p == seg:
                break
        # period p does not pass the open run's fast test, if any
        status = _check_step(x, p, w.max_dx)
        if status != _OK:
            bad[0] = p
            return status
        xa = x[p]
        xb = x[p + 1]
        s0 = _ceil_shift(xa, shift)
        s1 = _ceil_shift(xb, shift)
        ns = s1 - s0
        p += 1
        if ns == 0:
            continue            # no samples: an open run stays contiguous
        if run.n:
            w.misses += 1
            if (p <= cover and ns == run.n
                    and _has_pattern(w.pattern, ns, n_bins * ((s0 << shift) - xa), xb - xa,
                                     n_bins << shift)):
                continue
            _flush_run(run, s0, samples, start, w.pattern, w.acc32, w.acc64, w.facc, w.isums,
                       w.row_sums, w.row_counts)
            run.n = 0
        if ns < w.short and s0 >= start and s1 <= end:
            _open_run(run, s0, ns, (s0 << shift) - xa, xb - xa, n_bins, shift, w.max_dx,
                      w.pattern)
            w.opens += 1
            continue
        lo = s0 if s0 > start else start
        hi = s1 if s1 < end else end
        if lo >= hi:
            continue
        if ns < w.short:
            _bin_clipped(samples, start, lo, hi, xa, xb - xa, n_bins, shift, w.isums,
                         w.row_sums, w.row_counts)
        else:
            _bin_long(samples, start, lo, hi, xa, xb - xa, s0, s1, n_bins, shift, w.isums,
                      w.row_sums, w.row_counts)
    return _OK


cdef int _scatter_periods(const sample_t[::1] samples, const int64_t* x, int64_t p,
                          int64_t seg, _Work* w, int64_t* bad) noexcept nogil:
    """Scatter mode, for periods whose patterns keep changing: bin periods p … seg − 1 of the
    chunk one sample at a time, bin k of sample i being floor(B·(i·2**shift − X_j) / ΔX).

    A first pass computes per period everything that needs a division (bin and remainder of
    its first sample, bin step per sample), so that the samples do not wait for it. Integer
    samples are added with 2**40 to packed[2k + parity of the sample in its period]: one add
    accumulates both the sum and the count, and consecutive samples do not wait on each
    other's store. A short period has < 8·B samples, so ≤ 8 per bin; a call bins at most
    _CHUNK periods, so an entry holds < 2**19 samples, |sum| < 2**35 < 2**39, and the split
    into sum and count at the end is exact."""
    cdef int64_t shift = w.shift, n_bins = w.n_bins, start = w.start, end = w.end
    cdef int64_t denom = n_bins << shift, mask = (<int64_t>1 << shift) - 1
    cdef int64_t one = <int64_t>1 << _PACK_SHIFT
    cdef int64_t q, i, i_end, dx, num, k, k1, rem, rem1, over, over1, step_q, step_r
    cdef int64_t xa, s0, s1, lo, hi, pk, c
    cdef double inv
    cdef _Period* per = w.per
    cdef int64_t* packed = w.packed
    cdef int status = _OK
    for q in range(p, seg):
        status = _check_step(x, q, w.max_dx)
        if status != _OK:
            bad[0] = q
            seg = q
            break
    per[p].s = _ceil_shift(x[p], shift)
    for q in range(p, seg):
        per[q + 1].s = _ceil_shift(x[q + 1], shift)
        dx = x[q + 1] - x[q]
        inv = 1.0 / <double>dx
        num = n_bins * ((-x[q]) & mask)     # B·(s0·2**shift − X_j)
        k = _estimate_quotient(num, dx, inv)
        per[q].k0 = k
        per[q].r0 = num - k * dx
        k = _estimate_quotient(denom, dx, inv)
        per[q].q1 = k
        per[q].r1 = denom - k * dx
    for q in range(p, seg):
        xa = x[q]
        dx = x[q + 1] - xa
        s0 = per[q].s
        s1 = per[q + 1].s
        lo = s0 if s0 > start else start
        hi = s1 if s1 < end else end
        if lo >= hi:
            continue
        if s1 - s0 >= w.short:
            _bin_long(samples, start, lo, hi, xa, dx, s0, s1, n_bins, shift, w.isums,
                      w.row_sums, w.row_counts)
            continue
        if lo != s0:
            _bin_clipped(samples, start, lo, hi, xa, dx, n_bins, shift, w.isums, w.row_sums,
                         w.row_counts)
            continue
        k = per[q].k0
        rem = per[q].r0
        step_q = per[q].q1
        step_r = per[q].r1
        i = lo - start
        i_end = hi - start
        if sample_t is int16_t or sample_t is uint16_t:
            # Two independent carry chains, for the even and the odd samples, each stepping
            # 2·denom/ΔX bins; k counts in packed entries (2 per bin).
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
                w.row_sums[k] += samples[i]
                w.row_counts[k] += 1
                rem += step_r
                over = rem >= dx
                k += step_q + over
                rem -= (-over) & dx
    if sample_t is int16_t or sample_t is uint16_t:
        for k in range(2 * n_bins):
            pk = packed[k]
            c = (pk + (<int64_t>1 << (_PACK_SHIFT - 1))) >> _PACK_SHIFT
            w.isums[k >> 1] += pk - (c << _PACK_SHIFT)
            w.row_counts[k >> 1] += c
            packed[k] = 0
    return status


cdef int _bin_periods(const sample_t[::1] samples, int64_t start, const edge_t[::1] edges,
                      double scale, int64_t base, int64_t n_bins, int shift,
                      int64_t first_period, int64_t frame_periods,
                      double[:, ::1] sums, int64_t[:, ::1] counts, int64_t* where) noexcept nogil:
    cdef int64_t n_periods = edges.shape[0] - 1
    cdef int64_t short = 8 * n_bins                 # longer periods are summed bin by bin
    cdef int64_t acc_n = max(short, <int64_t>_ACC_WIDTH)
    cdef int64_t row = first_period // frame_periods
    cdef int64_t in_frame = first_period % frame_periods
    cdef int64_t j, p, m, seg, c, bad = 0, opens, misses
    # Chunks of costly runs go to scatter mode; after `stay` chunks there, the next one
    # tries run mode again, and each failed try doubles the stay (up to _MAX_STAY).
    cdef int64_t scatter_left = 0, stay = 1
    cdef int status
    cdef _Run run
    cdef _Work w
    cdef int64_t* x = <int64_t*>malloc((_CHUNK + 1) * sizeof(int64_t))
    w.start = start
    w.end = start + samples.shape[0]
    w.n_bins = n_bins
    w.max_dx = _LIMIT // n_bins
    w.short = short
    w.shift = shift
    w.row_sums = &sums[row, 0]
    w.row_counts = &counts[row, 0]
    # Integer samples are summed exactly in int64 (isums), then moved to the float64 sums
    # per row.
    w.isums = <int64_t*>calloc(3 * n_bins + short + acc_n, sizeof(int64_t))
    w.packed = w.isums + n_bins
    w.pattern = w.packed + 2 * n_bins
    w.acc64 = w.pattern + short
    w.acc32 = <int32_t*>malloc(acc_n * sizeof(int32_t))
    w.facc = <double*>malloc(acc_n * sizeof(double))
    w.per = <_Period*>malloc((_CHUNK + 1) * sizeof(_Period))
    w.opens = 0
    w.misses = 0
    run.n = 0

    if x == NULL or w.isums == NULL or w.acc32 == NULL or w.facc == NULL or w.per == NULL:
        status = _NO_MEMORY
    elif not _position(edges[0], scale, base, &x[0]):
        where[0] = 0
        status = _BAD_EDGE
    else:
        status = _OK
    j = 0
    while status == _OK and j < n_periods:
        m = n_periods - j if n_periods - j < _CHUNK else _CHUNK
        status = _convert_edges(edges, j, m, scale, base, w.max_dx, x, where)
        if status != _OK:
            break
        if scatter_left and run.n:
            _flush_run(&run, _ceil_shift(x[0], shift), samples, start, w.pattern, w.acc32,
                       w.acc64, w.facc, w.isums, w.row_sums, w.row_counts)
            run.n = 0
        opens = w.opens
        misses = w.misses
        p = 0
        while p < m:
            # periods p … seg − 1 of the chunk are in the current row
            seg = m
            if frame_periods - in_frame < m - p:
                seg = p + (frame_periods - in_frame)
            in_frame += seg - p
            if scatter_left:
                status = _scatter_periods(samples, x, p, seg, &w, &bad)
            else:
                status = _run_periods(&run, samples, x, p, seg, &w, &bad)
            if status != _OK:
                where[0] = j + bad + (status == _NOT_INCREASING)
                break
            p = seg
            if in_frame == frame_periods and j + p < n_periods:
                in_frame = 0
                if run.n:   # the run goes on in the next row with the same pattern
                    _flush_run(&run, _ceil_shift(x[p], shift), samples, start, w.pattern,
                               w.acc32, w.acc64, w.facc, w.isums, w.row_sums, w.row_counts)
                if sample_t is int16_t or sample_t is uint16_t:
                    for c in range(n_bins):
                        w.row_sums[c] += <double>w.isums[c]
                        w.isums[c] = 0
                row += 1
                w.row_sums = &sums[row, 0]
                w.row_counts = &counts[row, 0]
        if scatter_left:
            scatter_left -= 1
        elif _MISS_COST * (w.misses - misses) + _OPEN_COST * (w.opens - opens) > m:
            scatter_left = stay
            stay = min(2 * stay, <int64_t>_MAX_STAY)
        else:
            stay = 1
        x[0] = x[m]
        j += m
    if status == _OK:
        if run.n:
            _flush_run(&run, _ceil_shift(x[0], shift), samples, start, w.pattern, w.acc32,
                       w.acc64, w.facc, w.isums, w.row_sums, w.row_counts)
        if sample_t is int16_t or sample_t is uint16_t:
            for c in range(n_bins):
                w.row_sums[c] += <double>w.isums[c]
    free(w.isums)
    free(w.acc32)
    free(w.facc)
    free(w.per)
    free(x)
    return status


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


cdef void _phase_moments(int64_t start, int64_t stop, const int64_t[::1] x, int64_t n_bins,
                         int shift, int64_t first_period, int64_t frame_periods,
                         int64_t harmonics, double[:, :, ::1] out) noexcept nogil:
    cdef int64_t n_periods = x.shape[0] - 1
    cdef int64_t rows = out.shape[0]
    cdef int64_t j, i, lo, hi, k, row, num, dx, n, m
    cdef double step, c1, s1, t, c4, s4, cd, sd
    cdef double c[4]
    cdef double s[4]
    cdef double* acc
    for j in range(n_periods):
        row = (first_period + j) // frame_periods
        if row >= rows:
            break
        dx = x[j + 1] - x[j]
        lo = max(_ceil_shift(x[j], shift), start)
        hi = min(_ceil_shift(x[j + 1], shift), stop)
        step = 6.283185307179586 / <double>dx
        # θ advances by a fixed step per sample: rotate (cos θ, sin θ) from sample to sample,
        # re-seeded from libm every 32 samples so that rounding cannot accumulate
        cd = cos(<double>(<int64_t>1 << shift) * step)
        sd = sin(<double>(<int64_t>1 << shift) * step)
        c1 = 1.0
        s1 = 0.0
        for i in range(lo, hi):
            num = (i << shift) - x[j]                # 0 ≤ num < ΔX, exact
            k = (n_bins * num) // dx                  # the boundary rule's bin
            acc = &out[row, k, 0]
            if (i - lo) % 32 == 0:
                c1 = cos(<double>num * step)
                s1 = sin(<double>num * step)
            else:
                t = c1 * cd - s1 * sd
                s1 = s1 * cd + c1 * sd
                c1 = t
            acc[0] += 1.0
            # e^{inθ} for n = 1 … 4, then four independent chains stepped by e^{i4θ}, so
            # that the recurrence is not one long chain of dependent multiplications
            c[0] = c1
            s[0] = s1
            for m in range(1, 4):
                c[m] = c[m - 1] * c1 - s[m - 1] * s1
                s[m] = s[m - 1] * c1 + c[m - 1] * s1
            c4 = c[3]
            s4 = s[3]
            n = 1
            while n + 3 <= harmonics:
                for m in range(4):
                    acc[n + m] += c[m]
                    acc[harmonics + n + m] += s[m]
                    t = c[m] * c4 - s[m] * s4
                    s[m] = s[m] * c4 + c[m] * s4
                    c[m] = t
                n += 4
            m = 0
            while n <= harmonics:
                acc[n] += c[m]
                acc[harmonics + n] += s[m]
                n += 1
                m += 1


def phase_moments(int64_t start, int64_t stop, const int64_t[::1] x, int64_t n_bins,
                  int shift, int64_t first_period, int64_t frame_periods, int64_t harmonics,
                  double[:, :, ::1] out):
    """Add the Fourier moments of the sampled phases of each bin into ``out``.

    For every sample i in [start, stop) inside a period [X_j, X_{j+1}) of the int64
    fixed-point edges ``x`` (units of 2**-shift sample), in the bin of the boundary rule,
    with phase θ = 2π·(i·2**shift − X_j)/(X_{j+1} − X_j) rad, adds
    [1, cos θ … cos Hθ, sin θ … sin Hθ] (H = ``harmonics``) to out[row, bin], row =
    (first_period + j) // frame_periods; rows beyond ``out`` are skipped. The edges must be
    checked (increasing, B·ΔX within int64) by the caller, as for bin_periods.
    """
    if n_bins < 1 or frame_periods < 1 or first_period < 0 or harmonics < 0 or not 0 <= shift < 40:
        raise ValueError("phase_moments: n_bins, frame_periods ≥ 1, first_period, harmonics "
                         "≥ 0 and 0 ≤ shift < 40 required")
    if out.shape[1] != n_bins or out.shape[2] != 2 * harmonics + 1:
        raise ValueError(f"phase_moments: out must have shape (rows, {n_bins}, "
                         f"{2 * harmonics + 1})")
    if x.shape[0] < 2 or out.shape[0] == 0:
        return
    with nogil:
        _phase_moments(start, stop, x, n_bins, shift, first_period, frame_periods, harmonics,
                       out)
