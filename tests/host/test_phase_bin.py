"""Tests of cplscope.demod.phase_binning: the Cython kernel against a plain-NumPy reference,
the streaming form against the one-shot call, the θ convention, and input checks.

The reference classifies every sample with np.searchsorted on the bin boundaries, written
out from the rule in the module docstring:

    X_j  = rint(t_j · fs · 2**20)                                  (int64)
    b_jk = ceil((B·X_j + k·(X_{j+1} − X_j)) / (B·2**20)),  k < B;  period end = ceil(X_{j+1}/2**20)

Integer samples must give identical sums; float samples agree to rounding.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cplscope import _phasebin
from cplscope.demod.phase_binning import SUBSAMPLE_BITS, PhaseBinner, edge_positions, phase_bin

Q = 2**SUBSAMPLE_BITS
DTYPES = [np.int16, np.uint16, np.float32, np.float64]
CASES = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- plain-NumPy reference ----------------------------------------------------------------

def ceil_div(a, b):
    return -((-a) // b)


def reference_phase_bin(samples, fs, edges, n_bins, frame_periods=None):
    x = np.rint(np.asarray(edges, dtype=np.float64) * (fs * 2.0**SUBSAMPLE_BITS)).astype(np.int64)
    n_periods = max(len(x) - 1, 0)
    if frame_periods is not None:
        n_periods = (n_periods // frame_periods) * frame_periods
    rows = 1 if frame_periods is None else n_periods // frame_periods
    sums = np.zeros(rows * n_bins)
    counts = np.zeros(rows * n_bins, dtype=np.int64)
    if n_periods > 0:
        j = np.arange(n_periods)[:, None]
        k = np.arange(n_bins)[None, :]
        bounds = ceil_div(n_bins * x[j] + k * (x[j + 1] - x[j]), n_bins * Q).ravel()
        end = ceil_div(x[n_periods], Q)
        i = np.arange(len(samples))
        inside = (i >= bounds[0]) & (i < end)
        slot = np.searchsorted(bounds, i[inside], side="right") - 1
        period, bin_ = np.divmod(slot, n_bins)
        row = 0 if frame_periods is None else period // frame_periods
        flat = row * n_bins + bin_
        sums = np.bincount(flat, weights=samples[inside].astype(np.float64), minlength=rows * n_bins)
        counts = np.bincount(flat, minlength=rows * n_bins).astype(np.int64)
    if frame_periods is None:
        return sums, counts
    return sums.reshape(rows, n_bins), counts.reshape(rows, n_bins)


def assert_same(actual, expected, dtype):
    (s, n), (s_ref, n_ref) = actual, expected
    assert s.dtype == np.float64 and n.dtype == np.int64
    assert s.shape == s_ref.shape and n.shape == n_ref.shape
    np.testing.assert_array_equal(n, n_ref)
    if np.dtype(dtype).kind in "iu":
        np.testing.assert_array_equal(s, s_ref)
    else:
        np.testing.assert_allclose(s, s_ref, rtol=1e-12, atol=1e-9)


# --- generated inputs ---------------------------------------------------------------------

def sample_elements(dtype):
    if dtype == np.int16:
        return st.integers(-(2**15), 2**15 - 1)
    if dtype == np.uint16:
        return st.integers(0, 2**16 - 1)
    return st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)


@st.composite
def binning_cases(draw, fs_choices=(1.0, 0.37, 44_100.0, 250_000.0, 333_333.3, 2e6)):
    """Samples, sample rate, edge times (s), B and K.

    Edge positions in samples: a start anywhere around the data (also before sample 0 and
    after the end), then periods that are jittered, shorter than B samples, exactly B·m
    samples (boundaries on samples) or whole samples (edges on samples).
    """
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 250))
    samples = draw(hnp.arrays(dtype, n, elements=sample_elements(dtype)))
    fs = draw(st.sampled_from(fs_choices))
    n_bins = draw(st.integers(1, 12))
    frame_periods = draw(st.one_of(st.none(), st.integers(1, 4)))
    start = draw(st.one_of(st.integers(-10, n + 2).map(float), st.floats(-10.0, n + 2.0)))
    period = st.one_of(
        st.floats(0.05, 10.0 * n_bins),                            # jittered, also < B samples
        st.integers(1, 10).map(lambda m: float(m * n_bins)),      # boundaries on samples
        st.integers(1, 25).map(float),                             # edges on samples
    )
    lengths = draw(st.lists(period, max_size=25))
    positions = start + np.concatenate([[0.0], np.cumsum(lengths)]) if draw(st.booleans()) else np.empty(0)
    edges = positions / fs
    edges = edges[np.concatenate([[True], np.diff(edges) > 0])] if edges.size else edges
    return samples, fs, edges, n_bins, frame_periods


# --- kernel against the reference ---------------------------------------------------------

@CASES
@given(binning_cases())
def test_kernel_matches_reference(case):
    samples, fs, edges, n_bins, frame_periods = case
    expected = reference_phase_bin(samples, fs, edges, n_bins, frame_periods)
    actual = phase_bin(samples, fs, edges, n_bins, frame_periods)
    assert_same(actual, expected, samples.dtype)


@CASES
@given(binning_cases())
def test_totals_are_the_samples_between_first_and_last_edge(case):
    samples, fs, edges, n_bins, _ = case
    sums, n = phase_bin(samples, fs, edges, n_bins)
    if len(edges) < 2:
        assert n.sum() == 0 and not sums.any()
        return
    first, last = (ceil_div(x, Q) for x in edge_positions(edges[[0, -1]], fs))
    inside = samples[max(first, 0):max(last, 0)]
    assert n.sum() == inside.size
    np.testing.assert_allclose(sums.sum(), inside.astype(np.float64).sum(), rtol=1e-12, atol=1e-9)


def test_run_and_scatter_paths_agree_on_boundaries():
    """A mix of periods with ≥ 8·B samples (summed in runs) and fewer (classified per
    sample), many with boundaries exactly on samples, in one stream."""
    rng = np.random.default_rng(7)
    samples = rng.integers(-3000, 3000, 8000).astype(np.int16)
    n_bins = 16
    lengths = rng.choice([3.0, 5.0, 16.0, 17.0, 49.5, 127.0, 128.0, 200.25, 256.0], size=150)
    edges = 3.0 + np.concatenate([[0.0], np.cumsum(lengths)])
    for k in (None, 1, 7):
        assert_same(phase_bin(samples, 1.0, edges, n_bins, k),
                    reference_phase_bin(samples, 1.0, edges, n_bins, k), np.int16)


# --- the θ convention, independent of the boundary formula ---------------------------------

def test_edge_sample_opens_the_new_period_in_bin_0():
    samples = np.arange(30, dtype=np.float64)
    sums, n = phase_bin(samples, 1.0, [4.0, 12.0, 20.0], 4, frame_periods=1)
    # Bins of 2 samples: the samples at t = 4, 12 start bin 0; 11 and 19 end bin 3.
    np.testing.assert_array_equal(n, np.full((2, 4), 2))
    np.testing.assert_array_equal(sums, [[4 + 5, 6 + 7, 8 + 9, 10 + 11],
                                         [12 + 13, 14 + 15, 16 + 17, 18 + 19]])


def test_bin_means_of_a_phase_ramp_stay_inside_their_bins():
    """Feed θ itself as the signal: every sample of bin k has θ ∈ [2πk/B, 2π(k+1)/B), so each
    bin's mean must lie in that interval (a shift by one sample or one bin breaks it)."""
    fs, f_pem, n_bins = 250_000.0, 47_123.4567, 16
    t0 = 3.1e-6
    edges = t0 + np.arange(4000) / f_pem
    t = np.arange(int(edges[-1] * fs) + 50) / fs
    theta = 2 * np.pi * np.mod((t - t0) * f_pem, 1.0)
    sums, n = phase_bin(theta, fs, edges, n_bins)
    assert np.all(n > 0)  # 5 samples per period, but the phases drift through all bins
    mean = sums / n
    lo = 2 * np.pi * np.arange(n_bins) / n_bins
    assert np.all(mean >= lo - 1e-9) and np.all(mean < lo + 2 * np.pi / n_bins + 1e-9)
    # Drifting phases fill each bin evenly: n_k = samples/B to within one per pass of the drift.
    assert np.ptp(n) <= 0.01 * n.mean()


def test_short_periods_leave_bins_empty():
    samples = np.ones(100, dtype=np.int16)
    sums, n = phase_bin(samples, 1.0, np.arange(0.0, 100.0, 5.0), 16)
    assert n.sum() == 95 and np.count_nonzero(n) == 5
    np.testing.assert_array_equal(sums, n)
    # Sample offset m of each period sits at θ/2π = m/5, in bin floor(16·m/5).
    np.testing.assert_array_equal(np.flatnonzero(n), [0, 3, 6, 9, 12])


def test_trailing_incomplete_frame_is_dropped():
    samples = np.arange(100, dtype=np.uint16)
    sums, n = phase_bin(samples, 1.0, np.arange(0.0, 71.0, 10.0), 2, frame_periods=3)
    assert sums.shape == (2, 2)   # 7 periods -> 2 frames of 3
    np.testing.assert_array_equal(n, np.full((2, 2), 15))
    np.testing.assert_array_equal(sums.sum(axis=1), [samples[0:30].sum(), samples[30:60].sum()])


# --- streaming equals one shot ------------------------------------------------------------

@st.composite
def stream_splits(draw, case_strategy=binning_cases()):
    """A case, block cuts, and for each edge the feed call that delivers it: any call up to
    the one holding the edge's first sample, in order. Cuts fall anywhere, and often just
    before, at or after a period's first sample."""
    samples, fs, edges, n_bins, frame_periods = draw(case_strategy)
    n = samples.size
    first_sample = np.maximum(ceil_div(edge_positions(edges, fs), Q), 0) if edges.size else []
    near_edge = st.sampled_from([int(s) for s in first_sample if 1 <= s <= n] or [0])
    cut = st.one_of(st.integers(0, n),
                    st.tuples(near_edge, st.integers(-1, 1)).map(lambda a: min(max(sum(a), 0), n)))
    cuts = sorted(draw(st.lists(cut, max_size=6)))
    bounds = np.array([0, *cuts, n])
    n_calls = len(bounds) - 1
    latest = np.searchsorted(bounds[:-1], first_sample, side="right") - 1
    picks = sorted(draw(st.lists(st.integers(0, n_calls - 1), min_size=len(edges),
                                 max_size=len(edges))))
    call = np.minimum(picks, latest) if len(edges) else np.array([], dtype=int)
    return samples, fs, edges, n_bins, frame_periods, bounds, call


def run_stream(samples, fs, edges, n_bins, frame_periods, bounds, call, origin="stream"):
    binner = PhaseBinner(fs, n_bins, frame_periods)
    parts = []
    for c in range(len(bounds) - 1):
        block = samples[bounds[c]:bounds[c + 1]]
        times = edges[np.asarray(call) == c]
        if origin == "block":
            times = times - bounds[c] / fs
        parts.append(binner.feed(block, times, origin=origin))
        assert binner.held_samples <= binner.samples_fed
    final = binner.flush()
    if frame_periods is None:
        assert all(p[0].shape == (0, n_bins) for p in parts)
        return final
    parts.append(final)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@CASES
@given(stream_splits())
def test_stream_equals_one_call_on_the_concatenation(split):
    samples, fs, edges, n_bins, frame_periods, bounds, call = split
    expected = phase_bin(samples, fs, edges, n_bins, frame_periods)
    assert_same(run_stream(*split), expected, samples.dtype)


def on_grid(case):
    """Edges moved onto a 2**-6 sample grid (duplicates removed)."""
    samples, fs, edges, n_bins, frame_periods = case
    grid = np.unique(np.round(edges * fs * 64) / (64 * fs))
    return samples, fs, grid, n_bins, frame_periods


@settings(max_examples=100, deadline=None)
@given(stream_splits(binning_cases(fs_choices=(1.0, 2.0**18, 2.0**-3)).map(on_grid)))
def test_block_relative_edges_equal_stream_edges(split):
    """With a power-of-two rate and edges on a 2**-6 sample grid both time origins are exact."""
    samples = split[0]
    assert_same(run_stream(*split, origin="block"), run_stream(*split), samples.dtype)


def test_stream_holds_back_an_open_period_and_emits_completed_frames():
    samples = np.arange(50, dtype=np.int16)
    binner = PhaseBinner(1.0, 2, frame_periods=2)
    sums, n = binner.feed(samples[:10], [2.0, 6.0])
    assert sums.shape == (0, 2) and binner.partial.periods == 1
    assert binner.held_samples == 4            # samples 6..9 wait for the edge at 10
    sums, n = binner.feed(samples[10:16], [10.0, 14.0, 18.0])
    np.testing.assert_array_equal(sums, [[2 + 3 + 6 + 7, 4 + 5 + 8 + 9]])
    np.testing.assert_array_equal(n, [[4, 4]])
    partial = binner.partial                   # period [10, 14) binned, [14, 18) open
    assert partial.periods == 1 and partial.n.tolist() == [2, 2]
    assert binner.held_samples == 2
    # The stream ends at sample 16: flush bins [14, 18) with the samples that exist.
    sums, n = binner.flush()
    np.testing.assert_array_equal(sums, [[10 + 11 + 14 + 15, 12 + 13]])
    np.testing.assert_array_equal(n, [[4, 2]])
    assert binner.periods_binned == 4 and binner.held_samples == 0
    with pytest.raises(RuntimeError):
        binner.feed(samples[16:], [])


def test_stream_copies_what_it_holds():
    buf = np.arange(20, dtype=np.int16)
    binner = PhaseBinner(1.0, 2)
    binner.feed(buf, [4.0])
    buf[:] = -1                                # e.g. a reused DMA buffer
    binner.feed(np.arange(20, 40, dtype=np.int16), [24.0])
    sums, n = binner.flush()
    np.testing.assert_array_equal(sums, [np.arange(4, 14).sum(), np.arange(14, 24).sum()])


def test_late_edge_is_rejected():
    binner = PhaseBinner(1.0, 4)
    binner.feed(np.zeros(10, np.int16), [1.0])
    binner.feed(np.zeros(10, np.int16), [12.0])
    with pytest.raises(ValueError, match="after 20 samples were fed"):
        binner.feed(np.zeros(10, np.int16), [18.5])   # its first sample (19) is already fed
    binner.feed(np.zeros(10, np.int16), [19.5])       # first sample 20: not fed yet, fine
    with pytest.raises(ValueError, match="increase across blocks"):
        binner.feed(np.zeros(0, np.int16), [19.5])
    # Edges before sample 0 claim no sample that was fed: accepted, as by phase_bin.
    early = PhaseBinner(1.0, 4)
    early.feed(np.arange(10, dtype=np.int16), [-7.0, -3.0, 1.0])
    assert early.flush()[1].tolist() == [0, 0, 0, 1]   # sample 0, at θ = 2π·3/4


# --- run mode and scatter mode -------------------------------------------------------------
# Short periods are binned in runs of periods with one pattern (bins of their samples) or,
# where the patterns keep changing, sample by sample; the kernel picks per chunk of 256
# periods. Both must agree exactly with the rule, also where a period sits exactly on a
# pattern's edge and when the mode changes within one call.

@st.composite
def regular_streams(draw):
    """Samples and edges of a PEM that is nearly a multiple of the sample period: a base
    period of P samples (also one with boundaries exactly on samples), a slow drift, and
    per-edge jitter of 0, ±1 fixed-point unit (the smallest step that changes a pattern) or
    a few percent of a bin. Edge times are multiples of 2**-20 s at fs = 1 Hz, so exact."""
    n_bins = draw(st.one_of(st.integers(1, 16), st.sampled_from([32, 64])))
    period = draw(st.one_of(
        st.floats(0.6, 8.0 * n_bins),
        st.tuples(st.integers(1, 8 * n_bins), st.integers(1, 5)).map(lambda a: a[0] / a[1]),
    ))
    n_periods = draw(st.integers(2, 400))
    drift = draw(st.sampled_from([0.0, 1e-5, -3e-4]))
    jitter = draw(st.sampled_from(["none", "unit", "small"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lengths = period * (1.0 + drift * np.arange(n_periods))
    start = draw(st.floats(-3.0, 5.0))
    x = np.rint((start + np.concatenate([[0.0], np.cumsum(lengths)])) * Q).astype(np.int64)
    if jitter == "unit":
        x += rng.integers(-1, 2, x.size)
    elif jitter == "small":
        x += np.rint(rng.normal(0.0, 0.02 * period / n_bins * Q, x.size)).astype(np.int64)
    x = np.unique(x)
    n = int(np.ceil(x[-1] / Q)) + draw(st.integers(-5, 5))
    samples = rng.integers(-2000, 2000, max(n, 0)).astype(np.int16)
    frame_periods = draw(st.one_of(st.none(), st.integers(1, 50)))
    return samples, 1.0, x / Q, n_bins, frame_periods


@CASES
@given(regular_streams())
def test_runs_match_reference(case):
    samples, fs, edges, n_bins, frame_periods = case
    assert_same(phase_bin(samples, fs, edges, n_bins, frame_periods),
                reference_phase_bin(samples, fs, edges, n_bins, frame_periods), np.int16)


@settings(max_examples=60, deadline=None)
@given(stream_splits(regular_streams()))
def test_runs_stream_equals_one_call(split):
    samples, fs, edges, n_bins, frame_periods, bounds, call = split
    assert_same(run_stream(*split), phase_bin(samples, fs, edges, n_bins, frame_periods),
                np.int16)


def pem_stream(n_samples, fs, f_pem, jitter_s, rng, tick_hz=None):
    """Edge times (s) of a PEM at f_pem with Gaussian jitter, optionally on a tick grid."""
    edges = 1.3e-6 + np.arange(int(n_samples / fs * f_pem) + 1) / f_pem
    edges += rng.normal(0.0, jitter_s, edges.size)
    return np.round(edges * tick_hz) / tick_hz if tick_hz else edges


REGIMES = {
    "commensurate": (250e3, 50e3, 2e-9, None),        # one pattern throughout: one run
    "drifting": (250e3, 50.0123e3, 2e-9, None),       # patterns last ~50 periods
    "tick grid": (250e3, 50.0123e3, 0.0, 125e6),      # rp2 edge capture, 8 ns ticks
    "jittery": (250e3, 50.0123e3, 50e-9, None),        # patterns last a few periods
    "incommensurate": (250e3, 250e3 / 5.3, 2e-9, None),  # a new pattern every period
    "1 MHz": (1e6, 50.0123e3, 2e-9, None),
    "default rate": (48e6 / 192.25, 50e3, 0.0, 125e6),  # configure_analog(): phases walk
}


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_long_streams_match_reference(regime, dtype):
    """300 k samples (over 200 chunks of periods), in frames and not."""
    fs, f_pem, jitter, tick = REGIMES[regime]
    rng = np.random.default_rng(5)
    samples = rng.integers(0, 4096, 300_000).astype(dtype)
    edges = pem_stream(samples.size, fs, f_pem, jitter, rng, tick)
    for k in (None, 997):
        assert_same(phase_bin(samples, fs, edges, 16, k),
                    reference_phase_bin(samples, fs, edges, 16, k), dtype)


def test_mode_changes_within_one_call():
    """Regimes one after another in one stream, so that chunks change mode both ways."""
    rng = np.random.default_rng(6)
    fs = 250e3
    parts, t0 = [], 0.0
    for regime in ("commensurate", "incommensurate", "drifting", "jittery", "tick grid",
                   "commensurate"):
        _, f_pem, jitter, tick = REGIMES[regime]
        e = t0 + pem_stream(60_000, fs, f_pem, jitter, rng, tick)
        parts.append(e[:-1])
        t0 = e[-1]
    edges = np.concatenate(parts + [[t0]])
    samples = rng.integers(-2000, 2000, int(t0 * fs) + 10).astype(np.int16)
    for k in (None, 1000):
        assert_same(phase_bin(samples, fs, edges, 16, k),
                    reference_phase_bin(samples, fs, edges, 16, k), np.int16)


@pytest.mark.parametrize("n_bins,lengths", [(16, [98, 97, 99]), (32, [98, 196, 206, 214]),
                                             (64, [98, 206, 322, 374, 392]), (12, [3, 4, 6])])
def test_samples_exactly_on_bin_boundaries_in_scatter_mode(n_bins, lengths):
    """Edges on samples put samples exactly on bin boundaries, where the quotient
    B·(i − X_j)/ΔX is an integer m. For these B and lengths, m·ΔX·fl(1/ΔX) is below m in
    double precision for some m (e.g. B = 16, 98 samples, sample 49: 7.999…), so a kernel
    that took bins from a floating-point quotient would misplace them. Lengths drawn at
    random change the pattern every period or two: scatter mode after the first chunk."""
    rng = np.random.default_rng(n_bins)
    edges = 7.0 + np.concatenate([[0], np.cumsum(rng.choice(lengths, 3000))]).astype(float)
    samples = rng.integers(-2000, 2000, int(edges[-1]) + 3).astype(np.int16)
    for k in (None, 5):
        assert_same(phase_bin(samples, 1.0, edges, n_bins, k),
                    reference_phase_bin(samples, 1.0, edges, n_bins, k), np.int16)


@pytest.mark.parametrize("regime", ["commensurate", "incommensurate"])
def test_bad_edge_inside_a_run_is_reported_where_it_is(regime):
    """A step back or an overlong period deep inside a stream, in run and in scatter mode:
    the kernel names that edge or period."""
    fs, f_pem, jitter, tick = REGIMES[regime]
    rng = np.random.default_rng(8)
    samples = rng.integers(0, 4096, 200_000).astype(np.int16)
    x = edge_positions(pem_stream(samples.size, fs, f_pem, jitter, rng, tick), fs)
    back = x.copy()
    back[30_001] = back[30_000]
    long_ = x.copy()
    long_[30_001:] += 2**62 // 16
    for bad, status, where in ((back, _phasebin.NOT_INCREASING, 30_001),
                               (long_, _phasebin.PERIOD_TOO_LONG, 30_000)):
        sums, counts = np.zeros((1, 16)), np.zeros((1, 16), dtype=np.int64)
        assert _phasebin.bin_periods(samples, 0, bad, 0.0, 0, 16, SUBSAMPLE_BITS, 0,
                                     len(bad), sums, counts) == (status, where)


def test_float_edges_beyond_two_to_the_51_are_converted_exactly():
    """Edge times whose fixed-point positions exceed 2**51 (2**31 samples) take the exact
    per-edge conversion: same bins as the int64 positions."""
    fs = 2e6
    first = 2**31 + 12_345                       # absolute index of samples[0]
    rng = np.random.default_rng(9)
    samples = rng.integers(0, 4096, 50_000).astype(np.uint16)
    edges = (first + 0.37 + np.arange(0, 49_000, 40.0007)) / fs
    x = edge_positions(edges, fs)
    assert x[0] >= 2**51
    out = []
    for e, scale in ((edges, fs * Q), (x, 0.0)):
        sums, counts = np.zeros((1, 16)), np.zeros((1, 16), dtype=np.int64)
        assert _phasebin.bin_periods(samples, first, e, scale, 0, 16, SUBSAMPLE_BITS, 0,
                                     len(e), sums, counts)[0] == _phasebin.OK
        out.append((sums, counts))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][1].sum() > 45_000


# --- long streams -------------------------------------------------------------------------

def test_kernel_is_exact_at_absolute_indices_of_a_ten_hour_stream():
    """10 h at 2 MHz is 7.2e10 samples: shifting all positions by that many samples must
    not change a single bin."""
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 4096, 20_000).astype(np.uint16)
    x = (np.cumsum(rng.uniform(30.0, 50.0, 450)) * Q).astype(np.int64)
    shift = 72_000_000_000
    out = []
    for offset in (0, shift):
        sums, counts = np.zeros((1, 16)), np.zeros((1, 16), dtype=np.int64)
        status, _ = _phasebin.bin_periods(samples, offset, x + offset * Q, 0.0, 0, 16,
                                          SUBSAMPLE_BITS, 0, len(x), sums, counts)
        assert status == _phasebin.OK
        out.append((sums, counts))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][1].sum() > 15_000


def test_block_relative_edges_stay_on_their_sample_after_hours():
    """An edge exactly on sample i of a block 10 h into a 2 MHz stream quantizes to exactly
    i when given relative to the block."""
    fs = 2e6
    block_start = 72_000_000_123
    rel = np.array([0.0, 3.0, 17.0, 4095.0]) / fs
    np.testing.assert_array_equal(edge_positions(rel, fs, origin=block_start),
                                  (block_start + np.array([0, 3, 17, 4095])) * Q)


# --- buffers and input checks -------------------------------------------------------------

def test_read_only_strided_and_byte_swapped_samples():
    rng = np.random.default_rng(1)
    base = rng.integers(-2000, 2000, 2001).astype(np.int16)
    edges = np.arange(2.5, 900.0, 7.3)
    expected = reference_phase_bin(base[::2].copy(), 1.0, edges, 8)
    ro = base[::2].copy()
    ro.setflags(write=False)
    for arr in (ro, base[::2], base[::2].astype(">i2")):
        assert_same(phase_bin(arr, 1.0, edges, 8), expected, np.int16)


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=np.zeros((2, 5), np.int16)), "1-D"),
    (dict(samples=np.zeros(5, np.int32)), "dtype int16, uint16, float32 or float64"),
    (dict(samples=[1, 2, 3]), "dtype"),
    (dict(ref_edges=[0.0, 2.0, 1.0]), "strictly increasing"),
    (dict(ref_edges=[0.0, 1.0, 1.0]), "strictly increasing"),
    (dict(ref_edges=[0.0, np.nan]), "finite"),
    (dict(ref_edges=[[0.0, 1.0]]), "1-D"),
    (dict(ref_edges=["a"]), "real edge times"),
    (dict(ref_edges=[0.0, 1e-12]), "closer than"),
    (dict(ref_edges=[0.0, 1e30]), "too far"),
    (dict(n_bins=0), "n_bins must be ≥ 1"),
    (dict(n_bins=2.0), "n_bins must be an integer"),
    (dict(sample_rate=0.0), "positive"),
    (dict(sample_rate=-5.0), "positive"),
    (dict(sample_rate=float("inf")), "positive"),
    (dict(frame_periods=0), "frame_periods must be ≥ 1"),
    (dict(frame_periods=True), "frame_periods must be an integer"),
    (dict(frame_periods=2.5), "frame_periods must be an integer"),
])
def test_bad_input_raises_value_error(kwargs, match):
    args = dict(samples=np.zeros(10, np.int16), sample_rate=1.0, ref_edges=[0.0, 4.0, 8.0],
                n_bins=4, frame_periods=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        phase_bin(**args)


def test_stream_input_checks():
    with pytest.raises(ValueError, match="n_bins"):
        PhaseBinner(1.0, 0)
    with pytest.raises(ValueError, match="sample_rate"):
        PhaseBinner(-1.0, 4)
    with pytest.raises(ValueError, match="frame_periods"):
        PhaseBinner(1.0, 4, 0)
    binner = PhaseBinner(1.0, 4)
    binner.feed(np.zeros(4, np.int16), [1.0])
    with pytest.raises(ValueError, match="keep one dtype"):
        binner.feed(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="origin"):
        binner.feed(np.zeros(4, np.int16), [], origin="device")


# --- sampled phases (issue 10: analog at commensurate rates) --------------------------------

def reference_moments(n_samples, fs, edges, n_bins, frame_periods=None, harmonics=None):
    """Per-bin sums of [1, cos nθ, sin nθ] from the boundary rule, sample by sample."""
    from cplscope.demod.bins import HARMONICS

    h = HARMONICS if harmonics is None else harmonics
    x = np.rint(np.asarray(edges, dtype=np.float64) * (fs * 2.0**SUBSAMPLE_BITS)).astype(np.int64)
    n_periods = max(len(x) - 1, 0)
    if frame_periods is not None:
        n_periods = (n_periods // frame_periods) * frame_periods
    rows = 1 if frame_periods is None else n_periods // frame_periods
    out = np.zeros((rows, n_bins, 2 * h + 1))
    for j in range(n_periods):
        lo, hi = max(ceil_div(x[j], Q), 0), min(ceil_div(x[j + 1], Q), n_samples)
        i = np.arange(lo, hi, dtype=np.int64)
        num = i * Q - x[j]
        k = (n_bins * num) // (x[j + 1] - x[j])
        theta = 2 * np.pi * num / (x[j + 1] - x[j])
        n = np.arange(1, h + 1)
        row = 0 if frame_periods is None else j // frame_periods
        vals = np.concatenate([np.ones((len(i), 1)), np.cos(np.outer(theta, n)),
                               np.sin(np.outer(theta, n))], axis=1)
        np.add.at(out[row], k, vals)
    return out[0] if frame_periods is None else out


@CASES
@given(binning_cases())
def test_sampled_phases_match_reference_and_count_the_samples(case):
    from cplscope.demod.phase_binning import sampled_phases

    samples, fs, edges, n_bins, frame_periods = case
    sums, n, phases = phase_bin(samples, fs, edges, n_bins, frame_periods, sampled_phases=True)
    assert_same((sums, n), phase_bin(samples, fs, edges, n_bins, frame_periods), samples.dtype)
    np.testing.assert_array_equal(phases.counts, n)
    ref = reference_moments(samples.size, fs, edges, n_bins, frame_periods)
    np.testing.assert_allclose(phases.moments, ref, rtol=0, atol=1e-11)
    again = sampled_phases(fs, edges, n_bins, samples.size, frame_periods)
    np.testing.assert_array_equal(again.moments, phases.moments)


@CASES
@given(stream_splits())
def test_streamed_sampled_phases_equal_one_call(split):
    samples, fs, edges, n_bins, frame_periods, bounds, call = split
    _, n, expected = phase_bin(samples, fs, edges, n_bins, frame_periods, sampled_phases=True)
    binner = PhaseBinner(fs, n_bins, frame_periods, sampled_phases=True)
    parts = []
    for c in range(len(bounds) - 1):
        parts.append(binner.feed(samples[bounds[c]:bounds[c + 1]],
                                 edges[np.asarray(call) == c]))
        assert len(parts[-1]) == 3
    final = binner.flush()
    if frame_periods is None:
        np.testing.assert_allclose(final[2].moments, expected.moments, rtol=0, atol=1e-11)
        np.testing.assert_array_equal(final[1], n)
        return
    parts.append(final)
    got = np.concatenate([p[2].moments for p in parts])
    np.testing.assert_allclose(got, expected.moments, rtol=0, atol=1e-11)


@pytest.mark.parametrize("regime", ["commensurate", "default rate", "jittery"])
def test_sampled_phases_of_long_streams(regime):
    """The phases of every bin's samples lie inside the bin: their mean cos/sin direction
    points inside it, and at 250 kS/s / 50 kHz 11 of 16 bins stay empty."""
    fs, f_pem, jitter, tick = REGIMES[regime]
    rng = np.random.default_rng(6)
    edges = pem_stream(100_000, fs, f_pem, jitter, rng, tick)
    _, n, ph = phase_bin(np.zeros(100_000), fs, edges, 16, 1000, sampled_phases=True)
    np.testing.assert_array_equal(ph.counts, n)
    mm = ph.mean_moments()
    filled = np.isfinite(mm[:, 0])
    angle = np.mod(np.arctan2(mm[filled, 21], mm[filled, 1]), 2 * np.pi)
    centre = 2 * np.pi * (np.flatnonzero(filled) + 0.5) / 16
    assert np.all(np.abs(np.angle(np.exp(1j * (angle - centre)))) <= np.pi / 16 + 1e-9)
    if regime == "commensurate":
        assert filled.sum() == 5
    else:
        assert filled.all()
