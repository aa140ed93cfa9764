"""Lock-in sampling of raw ADC streams: sum the samples of each PEM phase bin.

Time base: sample i of a stream is taken at t = i / sample_rate (s). The PEM reference gives
rising edges at increasing times t_j (s); the phase θ is 0 at each edge and rises linearly to
2π at the next. Bin k of B spans θ ∈ [2πk/B, 2π(k+1)/B), so a sample exactly at an edge is
in bin 0 of the period that starts there. Samples before the first edge or after the last
edge are ignored. Frames group K consecutive periods, counted from the first edge.

Boundary rule. Edge times are converted once to positions in samples, kept as int64 fixed
point with ``SUBSAMPLE_BITS`` fraction bits (2**-20 sample ≈ 1e-6 sample, far finer than
the 8 ns device tick):

    X_j = rint(t_j · sample_rate · 2**SUBSAMPLE_BITS)

and the first sample of bin k of period j is, in exact integer arithmetic,

    b_jk = ceil((B·X_j + k·(X_{j+1} − X_j)) / (B · 2**SUBSAMPLE_BITS)),   k = 0 … B−1,

the period ending at ceil(X_{j+1} / 2**SUBSAMPLE_BITS). This is ceil((t_j + (k/B)·(t_{j+1} −
t_j))·fs) evaluated without rounding error on the quantized edges, so every implementation
of the rule gives the same bins, and absolute sample indices stay exact for streams of days
(int64 counters, no accumulated float time).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .bins import HARMONICS, SampledPhases

__all__ = ["SUBSAMPLE_BITS", "PartialFrame", "PhaseBinner", "edge_positions", "phase_bin",
           "sampled_phases"]

#: Fraction bits of the fixed-point edge positions (units of 2**-SUBSAMPLE_BITS sample).
SUBSAMPLE_BITS = 20

_SAMPLE_DTYPES = tuple(np.dtype(t) for t in (np.int16, np.uint16, np.float32, np.float64))
# Keeps every intermediate of the kernel (B·X, B·ΔX, i·2**bits) inside int64.
_LIMIT = 2**62

_kernel = None


def _phasebin():
    """The compiled kernel, imported on first use so that importing cplscope.demod works
    in a source tree where only other kernels have been built."""
    global _kernel
    if _kernel is None:
        try:
            from .. import _phasebin as kernel
        except ImportError as exc:  # pragma: no cover - depends on the build
            raise ImportError(
                "cplscope._phasebin (Cython kernel) is not built: install the package "
                "(pip install .) or run 'python tools/build_inplace.py _phasebin'") from exc
        _kernel = kernel
    return _kernel


# --- input checks ------------------------------------------------------------------------

def _check_sample_rate(sample_rate) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise ValueError(f"sample_rate must be a real number in Hz, got {sample_rate!r}")
    fs = float(sample_rate)
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"sample_rate must be a positive, finite number of Hz, got {sample_rate!r}")
    return fs


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be ≥ 1, got {value}")
    return int(value)


def _check_frame_periods(value) -> int | None:
    return None if value is None else _check_count(value, "frame_periods")


def _check_samples(samples, dtype: np.dtype | None = None) -> np.ndarray:
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"samples must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.newbyteorder("=") not in _SAMPLE_DTYPES:
        raise ValueError(
            f"samples must have dtype int16, uint16, float32 or float64, got {arr.dtype}; "
            "convert with samples.astype(np.float64) (or int16 for raw ADC codes)")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if dtype is not None and arr.dtype != dtype:
        raise ValueError(f"samples of one stream must keep one dtype: the stream is {dtype}, "
                         f"this block is {arr.dtype}")
    return np.ascontiguousarray(arr)


def edge_positions(edges, sample_rate: float, origin: int = 0) -> np.ndarray:
    """Quantize edge times to fixed-point sample positions (the boundary rule's X_j).

    Args:
        edges: 1-D increasing, finite edge times in s, relative to sample ``origin``.
        sample_rate: ADC sample rate in Hz.
        origin: absolute sample index that time 0 of ``edges`` refers to.

    Returns:
        int64 array, ``origin·2**SUBSAMPLE_BITS + rint(t · sample_rate · 2**SUBSAMPLE_BITS)``,
        in units of 2**-SUBSAMPLE_BITS sample.

    Raises:
        ValueError: edges not 1-D, not real, not finite, not strictly increasing, or so far
            from sample 0 (≥ 2**42 samples) that the fixed point would overflow.
    """
    fs = _check_sample_rate(sample_rate)
    e = _check_times(edges)
    if not np.all(np.isfinite(e)):
        bad = int(np.flatnonzero(~np.isfinite(e))[0])
        raise ValueError(f"edges must be finite; edge {bad} is {e[bad]}")
    if e.size > 1 and not np.all(np.diff(e) > 0):
        bad = int(np.flatnonzero(np.diff(e) <= 0)[0])
        raise ValueError(f"edges must be strictly increasing times; edge {bad + 1} "
                         f"({e[bad + 1]!r} s) does not follow edge {bad} ({e[bad]!r} s)")
    scaled = e * (fs * 2.0**SUBSAMPLE_BITS)
    base = int(origin) << SUBSAMPLE_BITS
    if scaled.size and (np.max(np.abs(scaled)) + abs(base) >= _LIMIT):
        raise ValueError("edge times are too far from sample 0 for int64 sample positions "
                         f"(|t·sample_rate| must stay below {_LIMIT >> SUBSAMPLE_BITS} "
                         "samples, 25 days at 2 MHz); start a new stream")
    x = np.rint(scaled).astype(np.int64) + base
    if x.size > 1 and not np.all(np.diff(x) > 0):
        bad = int(np.flatnonzero(np.diff(x) <= 0)[0])
        raise ValueError(f"edges {bad} and {bad + 1} are closer than 2**-{SUBSAMPLE_BITS} "
                         "sample: they cannot be distinct PEM reference edges")
    return x


def _check_period_length(x: np.ndarray, n_bins: int) -> None:
    if x.size > 1 and int(np.max(np.diff(x))) >= _LIMIT // n_bins:
        raise ValueError(f"a PEM period of more than {_LIMIT // n_bins >> SUBSAMPLE_BITS} "
                         f"samples with {n_bins} bins overflows the binning arithmetic: "
                         "check the edge times (s) and sample_rate (Hz)")


def _period_starts(x: np.ndarray) -> np.ndarray:
    """First sample index of the period opened by each edge: ceil(X / 2**SUBSAMPLE_BITS)."""
    return -((-x) >> SUBSAMPLE_BITS)


# --- one-shot ----------------------------------------------------------------------------

def phase_bin(samples: np.ndarray, sample_rate: float, ref_edges, n_bins: int,
              frame_periods: int | None = None, *, sampled_phases: bool = False):
    """Sum ADC samples into PEM phase bins (lock-in sampling of a raw stream).

    Args:
        samples: 1-D int16, uint16, float32 or float64 samples (ADC codes or volts); sample i
            is taken at i / sample_rate s.
        sample_rate: ADC sample rate in Hz.
        ref_edges: strictly increasing times in s of the PEM reference rising edges,
            relative to sample 0. Edges may lie outside the sampled span: a period only
            partly covered by samples contributes the samples that exist (see ``n``).
        n_bins: B ≥ 1; bin k spans θ ∈ [2πk/B, 2π(k+1)/B) from the rising edge.
        frame_periods: K ≥ 1 groups K consecutive periods (from the first edge) into one
            frame and drops a trailing incomplete frame; None sums all periods.
        sampled_phases: also return the phases at which each bin was sampled (see
            :func:`sampled_phases`), for ``estimate(..., sampled_phases=...)``. Opt-in: it
            costs 50–100 ns per sample, the binning itself about 1.

    Returns:
        ``(sums, n)``: float64 sums of the samples (input units) and int64 sample counts per
        bin, of shape (B,), or (n_frames, B) with ``frame_periods``. ``sums / n`` is the
        mean signal per bin (NaN where a bin got no sample, e.g. periods shorter than B
        samples). Sums of integer samples are exact. With ``sampled_phases=True``,
        ``(sums, n, phases)`` with a :class:`~cplscope.demod.bins.SampledPhases` of the
        same frames.

    Raises:
        ValueError: wrong dimension or dtype of ``samples``; non-finite or non-increasing
            edges; n_bins or frame_periods < 1; sample_rate not positive.
    """
    fs = _check_sample_rate(sample_rate)
    b = _check_count(n_bins, "n_bins")
    k = _check_frame_periods(frame_periods)
    data = _check_samples(samples)
    times = _check_times(ref_edges)
    n_periods = max(times.size - 1, 0)
    if k is None:
        sums, counts = np.zeros((1, b)), np.zeros((1, b), dtype=np.int64)
        _bin_times(data, times, fs, b, n_periods + 1, sums, counts)
        if sampled_phases:
            return sums[0], counts[0], _moments_of(times, fs, b, data.size, None)
        return sums[0], counts[0]
    n_frames = n_periods // k
    sums, counts = np.zeros((n_frames, b)), np.zeros((n_frames, b), dtype=np.int64)
    used = n_frames * k + 1
    _bin_times(data, times[:used], fs, b, k, sums, counts)
    if times.size > used - 1:  # the dropped tail must be valid edges too
        edge_positions(times[max(used - 2, 0):], fs)
    if sampled_phases:
        return sums, counts, _moments_of(times[:used], fs, b, data.size, k)
    return sums, counts


def sampled_phases(sample_rate: float, ref_edges, n_bins: int, n_samples: int,
                   frame_periods: int | None = None) -> SampledPhases:
    """The phases at which a stream of ``n_samples`` samples sampled each phase bin.

    Only the sample times and the reference edges matter, not the sample values, so this
    can be computed beside any :func:`phase_bin` call (with the same arguments it is what
    ``phase_bin(..., sampled_phases=True)`` returns). Each sample i (at i/sample_rate s)
    in a period between two edges has the phase θ = 2π·(t_i − t_j)/(t_{j+1} − t_j) rad and
    falls into the bin of the boundary rule; the result holds, per frame and bin, the sums
    of 1, cos nθ and sin nθ, n = 1 … HARMONICS, from which
    :meth:`~cplscope.demod.bins.SampledPhases.layout` computes the means of sin δ and cos δ
    over the samples for any A0 and φ0.

    Args:
        sample_rate: ADC sample rate in Hz.
        ref_edges: increasing PEM reference rising-edge times in s from sample 0.
        n_bins: B ≥ 1.
        n_samples: number of samples in the stream (≥ 0).
        frame_periods: K periods per frame as for :func:`phase_bin`, or None for one total.

    Returns:
        A :class:`~cplscope.demod.bins.SampledPhases`, moments of shape (B, 2H+1), or
        (n_frames, B, 2H+1) with ``frame_periods``.
    """
    fs = _check_sample_rate(sample_rate)
    b = _check_count(n_bins, "n_bins")
    k = _check_frame_periods(frame_periods)
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
        raise ValueError(f"n_samples must be an integer ≥ 0, got {n_samples!r}")
    times = _check_times(ref_edges)
    if k is not None:
        times = times[: (max(times.size - 1, 0) // k) * k + 1]
    return _moments_of(times, fs, b, int(n_samples), k)


def _moments_of(times: np.ndarray, fs: float, n_bins: int, n_samples: int,
                frame_periods: int | None) -> SampledPhases:
    x = edge_positions(times, fs)
    _check_period_length(x, n_bins)
    n_periods = max(x.size - 1, 0)
    k = frame_periods if frame_periods is not None else n_periods + 1
    rows = n_periods // k if frame_periods is not None else 1
    out = np.zeros((rows, n_bins, 2 * HARMONICS + 1))
    _phasebin().phase_moments(0, n_samples, x, n_bins, SUBSAMPLE_BITS, 0, k, HARMONICS, out)
    return SampledPhases(out if frame_periods is not None else out[0])


def _check_times(edges) -> np.ndarray:
    e = np.asarray(edges)
    if e.dtype == object or (e.size and e.dtype.kind not in "uif"):
        raise ValueError(f"edges must be real edge times in s, got dtype {e.dtype}")
    if e.ndim != 1:
        raise ValueError(f"edges must be a 1-D array of times in s, got shape {e.shape}")
    return np.ascontiguousarray(e, dtype=np.float64)


def _bin_times(data: np.ndarray, times: np.ndarray, fs: float, n_bins: int,
               frame_periods: int, sums: np.ndarray, counts: np.ndarray) -> None:
    """Bin with edge times in s quantized by the kernel, which also checks them."""
    if times.size < 2:
        edge_positions(times, fs)
        return
    kernel = _phasebin()
    status, where = kernel.bin_periods(data, 0, times, fs * 2.0**SUBSAMPLE_BITS, 0, n_bins,
                                       SUBSAMPLE_BITS, 0, frame_periods, sums, counts)
    if status == kernel.OK:
        return
    if status == kernel.PERIOD_TOO_LONG:
        _check_period_length(edge_positions(times[where:where + 2], fs), n_bins)
    if status in (kernel.BAD_EDGE, kernel.NOT_INCREASING):
        edge_positions(times[max(where - 1, 0):where + 1], fs)  # raises with the reason
    raise RuntimeError(f"phase-binning kernel failed with status {status} at {where}")


def _bin(data: np.ndarray, start: int, x: np.ndarray, n_bins: int, first_period: int,
         frame_periods: int, sums: np.ndarray, counts: np.ndarray) -> None:
    """Bin with int64 fixed-point edge positions (already checked)."""
    if x.size >= 2:
        kernel = _phasebin()
        status, where = kernel.bin_periods(data, start, x, 0.0, 0, n_bins, SUBSAMPLE_BITS,
                                           first_period, frame_periods, sums, counts)
        if status != kernel.OK:
            raise RuntimeError(f"phase-binning kernel failed with status {status} at {where}")


# --- streaming ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PartialFrame:
    """The frame in progress of a :class:`PhaseBinner`.

    Attributes:
        sums: (B,) float64 sums of the samples binned so far (input units).
        n: (B,) int64 sample counts.
        periods: PEM periods binned into it so far (< K; all periods when K is None).
    """

    sums: np.ndarray
    n: np.ndarray
    periods: int


class PhaseBinner:
    """Streaming form of :func:`phase_bin`: feed consecutive blocks of one ADC stream.

    A period can only be binned once its closing edge is known and all of its samples have
    arrived, so the binner holds back the samples from the last usable edge on. Feeding a
    stream block by block and then calling :meth:`flush` gives exactly the frames of one
    :func:`phase_bin` call on the concatenated samples and edges::

        binner = PhaseBinner(fs, 16, frame_periods=1000)
        for block, edges in stream:            # edges: s since sample 0 of the stream
            sums, n = binner.feed(block, edges)  # completed frames, shape (m, 16)
            ...
        sums, n = binner.flush()               # frames completed by the end of the stream

    Each edge must be fed no later than the block holding the first sample at or after it
    (it may come earlier, e.g. with the block that ends just before it). An edge that would
    reclaim samples already fed raises ``ValueError``.

    Sample indices are int64 counters. For long streams, ``origin="block"`` takes edge times
    relative to each block's first sample, as the ADC_BLOCK frame carries them; they are
    added to the block's exact start index after quantization.
    """

    def __init__(self, sample_rate: float, n_bins: int, frame_periods: int | None = None, *,
                 sampled_phases: bool = False):
        """Args:
            sample_rate: ADC sample rate in Hz.
            n_bins: B ≥ 1 phase bins per PEM period.
            frame_periods: K ≥ 1 periods per frame; None accumulates the whole stream into
                one result, returned by :meth:`flush`.
            sampled_phases: also track the phases at which each bin was sampled (as
                ``phase_bin(..., sampled_phases=True)``); :meth:`feed` and :meth:`flush`
                then return ``(sums, n, phases)`` with a
                :class:`~cplscope.demod.bins.SampledPhases` of the same frames.
        """
        self._phases = bool(sampled_phases)
        self._fs = _check_sample_rate(sample_rate)
        self._b = _check_count(n_bins, "n_bins")
        self._k = _check_frame_periods(frame_periods)
        self._dtype: np.dtype | None = None
        self._fed = 0                        # samples fed so far = absolute index of the next
        self._held = np.empty(0)             # samples [self._held_start, self._fed)
        self._held_start = 0
        self._edges = np.empty(0, np.int64)  # edges not yet closed: [open period start, ...]
        self._periods = 0                    # periods binned into the current frame
        self._binned = 0                     # periods binned in total
        self._acc_sums = np.zeros(self._b)
        self._acc_n = np.zeros(self._b, dtype=np.int64)
        self._acc_mom = np.zeros((self._b, 2 * HARMONICS + 1))
        self._closed = False

    @property
    def sample_rate(self) -> float:
        """ADC sample rate in Hz."""
        return self._fs

    @property
    def n_bins(self) -> int:
        """B, phase bins per period."""
        return self._b

    @property
    def frame_periods(self) -> int | None:
        """K, periods per frame (None: one result for the whole stream)."""
        return self._k

    @property
    def samples_fed(self) -> int:
        """Samples fed so far; also the absolute index of the next sample."""
        return self._fed

    @property
    def held_samples(self) -> int:
        """Samples held back because their period is not closed yet."""
        return self._fed - self._held_start

    @property
    def periods_binned(self) -> int:
        """PEM periods binned so far (including those of dropped or partial frames)."""
        return self._binned

    @property
    def partial(self) -> PartialFrame:
        """Copy of the frame in progress (with K None, the running totals)."""
        return PartialFrame(self._acc_sums.copy(), self._acc_n.copy(), self._periods)

    def feed(self, samples: np.ndarray, edges=(), *,
             origin: Literal["stream", "block"] = "stream") -> tuple[Any, ...]:
        """Add the next block of samples and any newly known reference edges.

        Args:
            samples: next 1-D block (same dtype for the whole stream; may be empty).
            edges: new rising-edge times in s, increasing and later than all edges fed
                before.
            origin: ``"stream"``: times are relative to sample 0 of the stream (as for
                :func:`phase_bin`); ``"block"``: relative to the first sample of this block.

        Returns:
            ``(sums, n)`` of the frames completed by this call, shapes (m, B), m ≥ 0. With
            ``frame_periods=None`` m is always 0; the totals come from :meth:`flush`. With
            ``sampled_phases=True``, ``(sums, n, phases)``.

        Raises:
            ValueError: bad samples or edges (as :func:`phase_bin`), an edge not after the
                previous one, or an edge that falls before samples already fed.
            RuntimeError: after :meth:`flush`.
        """
        if self._closed:
            raise RuntimeError("this PhaseBinner was flushed; start a new one for a new stream")
        data = _check_samples(samples, self._dtype)
        if origin not in ("stream", "block"):
            raise ValueError(f"origin must be 'stream' or 'block', not {origin!r}")
        x = edge_positions(edges, self._fs, self._fed if origin == "block" else 0)
        if x.size:
            if self._edges.size and x[0] <= self._edges[-1]:
                raise ValueError("edges must increase across blocks: the first new edge is "
                                 "not after the last edge fed before")
            if max(int(_period_starts(x[:1])[0]), 0) < self._fed:
                raise ValueError(
                    f"edge at sample position {x[0] / 2**SUBSAMPLE_BITS:.6f} comes after "
                    f"{self._fed} samples were fed; feed each edge no later than the block "
                    "holding its first sample")
            edges_all = np.concatenate([self._edges, x])
            _check_period_length(edges_all, self._b)
            self._edges = edges_all
        if self._dtype is None:
            self._dtype = data.dtype
            self._held = self._held.astype(data.dtype)
        data_start = self._fed
        self._fed += data.size
        starts = _period_starts(self._edges)
        # Periods whose closing edge is known and whose last sample has arrived.
        ready = int(np.searchsorted(starts[1:], self._fed, side="right"))
        out = self._bin_ready(ready, data, data_start)
        self._release(data, data_start)
        return out if self._phases else out[:2]

    def flush(self) -> tuple[Any, ...]:
        """End the stream: bin the periods whose closing edge is known, with the samples
        that arrived, and return what is left, as :func:`phase_bin` would.

        Returns:
            With K: ``(sums, n)`` of the frames completed now, shape (m, B); the trailing
            incomplete frame is dropped (read :attr:`partial` before flushing to keep it).
            With K None: the totals of the whole stream, shape (B,).
        """
        if self._closed:
            raise RuntimeError("this PhaseBinner was already flushed")
        out = self._bin_ready(max(self._edges.size - 1, 0), self._held[:0], self._fed)
        self._closed = True
        self._held = self._held[:0]
        self._held_start = self._fed
        if self._k is None:
            return ((self._acc_sums.copy(), self._acc_n.copy(),
                     SampledPhases(self._acc_mom.copy())) if self._phases
                    else (self._acc_sums.copy(), self._acc_n.copy()))
        return out if self._phases else out[:2]

    def _bin_ready(self, n_ready: int, data: np.ndarray, data_start: int
                   ) -> tuple[np.ndarray, np.ndarray, SampledPhases]:
        """Bin the first ``n_ready`` open periods, from the held samples and then ``data``
        (which starts at absolute index ``data_start``), into the frame accumulators."""
        b, k = self._b, self._k
        n_mom = 2 * HARMONICS + 1
        if n_ready == 0:
            return (np.zeros((0, b)), np.zeros((0, b), dtype=np.int64),
                    SampledPhases(np.zeros((0, b, n_mom))))
        k_eff = k if k is not None else self._periods + n_ready + 1
        rows = (self._periods + n_ready) // k_eff + 1
        sums, counts = np.zeros((rows, b)), np.zeros((rows, b), dtype=np.int64)
        sums[0], counts[0] = self._acc_sums, self._acc_n
        moments = np.zeros((rows if self._phases else 0, b, n_mom))
        if self._phases:
            moments[0] = self._acc_mom
        edges = self._edges[: n_ready + 1]
        starts = _period_starts(edges)
        for arr, arr_start in ((self._held, self._held_start), (data, data_start)):
            # Only the periods that overlap [arr_start, arr_start + arr.size).
            first = max(int(np.searchsorted(starts, arr_start, side="right")) - 1, 0)
            last = min(int(np.searchsorted(starts, arr_start + arr.size, side="left")), n_ready)
            if arr.size and last > first:
                _bin(arr, arr_start, edges[first: last + 1], b, self._periods + first,
                     k_eff, sums, counts)
                if self._phases:
                    _phasebin().phase_moments(arr_start, arr_start + arr.size,
                                              edges[first: last + 1], b, SUBSAMPLE_BITS,
                                              self._periods + first, k_eff, HARMONICS,
                                              moments)
        self._edges = self._edges[n_ready:]
        self._binned += n_ready
        self._periods = (self._periods + n_ready) % k_eff
        self._acc_sums, self._acc_n = sums[-1].copy(), counts[-1].copy()
        if self._phases:
            self._acc_mom = moments[-1].copy()
        return sums[:-1], counts[:-1], SampledPhases(moments[:-1])

    def _release(self, data: np.ndarray, data_start: int) -> None:
        """Keep (as a copy) only the samples that a period not yet binned can claim."""
        if self._edges.size:
            keep_from = int(_period_starts(self._edges[:1])[0])
        else:
            keep_from = self._fed  # future edges cannot precede samples already fed
        keep_from = max(keep_from, self._held_start)
        if keep_from >= self._fed:
            self._held, self._held_start = self._held[:0], self._fed
            return
        old = self._held[max(keep_from - self._held_start, 0):]
        new = data[max(keep_from - data_start, 0):]
        self._held = np.concatenate([old, new])  # a copy: never alias the caller's buffer
        self._held_start = keep_from
