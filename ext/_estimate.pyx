"""Inner loops of :func:`cplscope.demod.estimate`: one pass over the (n_frames, B) frames.

Everything after this pass works on B-element vectors.
"""
from libc.math cimport isfinite
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t

import numpy as np

cimport cython

ctypedef fused frame_value_t:
    uint16_t
    int16_t
    uint32_t
    int32_t
    int64_t
    uint64_t
    float
    double

cdef enum Status:
    S_OK = 0
    S_NEGATIVE = 1
    S_NON_FINITE = 2
    S_DEAD_TIME_LIMIT = 3

#: status codes returned by :func:`frame_moments`
OK = S_OK
NEGATIVE = S_NEGATIVE
NON_FINITE = S_NON_FINITE
DEAD_TIME_LIMIT = S_DEAD_TIME_LIMIT


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _moments(const frame_value_t[:, ::1] frames, const double[::1] dead_ratio,
                  double[::1] sums, double[::1] sumsq, Py_ssize_t* bad) noexcept nogil:
    cdef Py_ssize_t n_frames = frames.shape[0], n_bins = frames.shape[1]
    cdef Py_ssize_t f, k
    cdef double x, loss
    cdef bint correct = dead_ratio.shape[0] > 0
    for k in range(n_bins):
        sums[k] = 0.0
        sumsq[k] = 0.0
    for f in range(n_frames):
        for k in range(n_bins):
            x = <double>frames[f, k]
            if not isfinite(x):
                bad[0] = f * n_bins + k
                return S_NON_FINITE
            if x < 0.0:
                bad[0] = f * n_bins + k
                return S_NEGATIVE
            if correct:
                loss = x * dead_ratio[k]
                if loss >= 1.0:
                    bad[0] = f * n_bins + k
                    return S_DEAD_TIME_LIMIT
                x = x / (1.0 - loss)
            sums[k] += x
            sumsq[k] += x * x
    return S_OK


def frame_moments(const frame_value_t[:, ::1] frames, const double[::1] dead_ratio):
    """Per-bin sum and sum of squares over frames, with optional dead-time correction.

    Args:
        frames: (n_frames, B) C-contiguous counts or signals.
        dead_ratio: (B,) τ/t_k per bin (1/counts) for the non-paralyzable correction
            c/(1 − c·τ/t_k), or an empty array for none.

    Returns:
        (sums, sumsq, status, bad_index): float64 (B,) arrays, a status code (``OK``,
        ``NEGATIVE``, ``NON_FINITE``, ``DEAD_TIME_LIMIT``) and the flat index of the first
        offending value (-1 if none).
    """
    cdef Py_ssize_t n_bins = frames.shape[1]
    if dead_ratio.shape[0] not in (0, n_bins):
        raise ValueError("dead_ratio must be empty or have one entry per bin")
    sums_arr = np.empty(n_bins, dtype=np.float64)
    sumsq_arr = np.empty(n_bins, dtype=np.float64)
    cdef double[::1] sums = sums_arr, sumsq = sumsq_arr
    cdef Py_ssize_t bad = -1
    cdef int status
    with nogil:
        status = _moments(frames, dead_ratio, sums, sumsq, &bad)
    return sums_arr, sumsq_arr, status, bad
