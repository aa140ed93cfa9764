"""One call from a DAQ recording to g_lum: :func:`demodulate`.

For a user with their own ADC samples of the PMT signal and either the PEM reference
rising-edge times or the reference waveform recorded beside it. It phase-bins the samples
(:func:`~cplscope.demod.phase_binning.phase_bin`), records the phases at which every bin was
actually sampled, and fits them with :func:`~cplscope.demod.estimate` in analog mode, so that
any sample rate works: one that walks through the PEM period, and one that is a multiple of
the PEM frequency and samples a few fixed phases (250 kS/s with a 50 kHz PEM).
"""
from __future__ import annotations

import numbers

import numpy as np

from .estimator import Estimate, estimate
from .phase_binning import phase_bin

__all__ = ["demodulate", "rising_edges"]

#: frames that demodulate makes by default (σ from the frame scatter has dof = frames − 1)
DEFAULT_FRAMES = 50
#: fewest frames demodulate accepts: below it σ rests on too few degrees of freedom
MIN_FRAMES = 3


def rising_edges(reference: np.ndarray, sample_rate_hz: float, *,
                 threshold: float | None = None, hysteresis: float = 0.1) -> np.ndarray:
    """Rising-edge times (s from sample 0) of a recorded reference waveform.

    An edge is where the waveform rises through ``threshold``, after having been below
    ``threshold − h`` and before reaching ``threshold + h`` (h = ``hysteresis`` × the
    waveform's 1–99 % range), so that noise near the threshold gives one edge, not several.
    Its time is interpolated between the samples that bracket the threshold (the cubic
    through the four nearest samples). That locates a sine reference sampled only 5 times
    per period to within 0.01 sample; a square wave whose edges are faster than a sample
    is located only to within one sample per edge (record it faster, or pass edge times
    from a timer to :func:`demodulate` instead). A constant error of the edge times acts
    as an error of φ0: calibrate φ0 from a recording made the same way.

    Args:
        reference: 1-D samples of the PEM reference (any units), taken with the signal.
        sample_rate_hz: sample rate in Hz; sample i is at i / sample_rate_hz s.
        threshold: crossing level in the units of ``reference``; default its mean.
        hysteresis: half-width of the dead band, as a fraction of that range, in [0, 0.5).

    Returns:
        float64 array of edge times in s, increasing.

    Raises:
        ValueError: not a 1-D real array, a flat waveform, or a bad rate or hysteresis.
    """
    ref = np.asarray(reference)
    if ref.ndim != 1 or ref.dtype.kind not in "uif":
        raise ValueError(f"reference must be a 1-D real array, got shape {ref.shape} and "
                         f"dtype {ref.dtype}")
    fs = _rate(sample_rate_hz)
    if not 0.0 <= hysteresis < 0.5:
        raise ValueError(f"hysteresis must be in [0, 0.5), got {hysteresis!r}")
    x = ref.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("reference holds non-finite samples")
    if x.size < 2:
        return np.empty(0)
    lo_q, hi_q = np.percentile(x, [1.0, 99.0])
    span = hi_q - lo_q
    if not span > 0:
        raise ValueError("the reference waveform is flat: no edges to find (is the right "
                         "channel connected?)")
    # the mean: for a sine (or a square wave of 50 % duty) it is the midline even when only
    # a few fixed phases are sampled, where the midpoint of the extremes is not
    th = float(x.mean()) if threshold is None else float(threshold)
    if not lo_q < th < hi_q:
        raise ValueError(f"threshold {th!r} lies outside the reference's 1–99 % range "
                         f"[{lo_q:g}, {hi_q:g}]")
    h = hysteresis * span
    state = np.where(x >= th + h, 1, np.where(x <= th - h, -1, 0))
    idx = np.arange(x.size)
    last = np.maximum.accumulate(np.where(state != 0, idx, -1))
    filled = np.where(last >= 0, state[np.maximum(last, 0)], 0)
    # the first sample at or above th + h after a sample at or below th − h
    rise = np.flatnonzero((filled[1:] == 1) & (filled[:-1] == -1)) + 1
    below = np.maximum.accumulate(np.where(x < th, idx, -1))
    j = below[rise - 1]                    # last sample below th before the rise: j + 1 ≥ th
    frac = (th - x[j]) / (x[j + 1] - x[j])
    return (j + _cubic_refine(x - th, j, frac)) / fs


def _cubic_refine(y: np.ndarray, j: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Zero in [0, 1] of the cubic through y[j−1 … j+2] (a sign change between j and j+1),
    by Newton steps from the linear estimate ``frac``; edges at the ends keep ``frac``.
    For a sine sampled 5 times per period the cubic locates the crossing to 0.008 sample,
    linear interpolation to 0.03."""
    ok = (j >= 1) & (j + 2 < y.size)
    jj = j[ok]
    ym, y0, y1, y2 = y[jj - 1], y[jj], y[jj + 1], y[jj + 2]
    # Lagrange cubic on nodes −1, 0, 1, 2: c0 + c1·r + c2·r² + c3·r³
    c0 = y0
    c1 = -ym / 3 - y0 / 2 + y1 - y2 / 6
    c2 = ym / 2 - y0 + y1 / 2
    c3 = -ym / 6 + y0 / 2 - y1 / 2 + y2 / 6
    r = frac[ok].copy()
    for _ in range(4):
        slope = c1 + r * (2 * c2 + 3 * c3 * r)
        step = np.where(slope > 0, (c0 + r * (c1 + r * (c2 + c3 * r))) / np.where(
            slope > 0, slope, 1.0), 0.0)
        r = np.clip(r - step, 0.0, 1.0)
    out = frac.copy()
    out[ok] = r
    return out


def demodulate(
    samples: np.ndarray,
    sample_rate_hz: float,
    *,
    retardation: float,
    edges_s: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    reference_threshold: float | None = None,
    phase_offset: float = 0.0,
    n_bins: int = 16,
    frame_periods: int | None = None,
    dark: float = 0.0,
    dark_sigma: float = 0.0,
) -> Estimate:
    """g_lum, I_L, I_R and u, with σ, from a DAQ recording of the PMT signal.

    Give the PEM reference either as ``edges_s`` (rising-edge times in s from sample 0, e.g.
    from a counter/timer input) or as ``reference``, the reference waveform sampled with the
    signal (edges found by :func:`rising_edges`).

    Args:
        samples: 1-D PMT signal samples (int16, uint16, float32 or float64; ADC codes or
            volts); sample i is taken at i / sample_rate_hz s.
        sample_rate_hz: ADC sample rate in Hz. Any rate works, also one that is a multiple
            of the PEM frequency: the fit uses the phases actually sampled in every bin.
        retardation: A0, the PEM's peak retardation in rad (π/2 for quarter wave).
        edges_s: PEM reference rising-edge times in s, strictly increasing.
        reference: the reference waveform, same length and rate as ``samples``.
        reference_threshold: crossing level for ``reference`` (default: its mean).
        phase_offset: φ0 in rad, from the reference edge to the zero crossing of δ
            (calibrate it with a linear polarizer).
        n_bins: B phase bins per PEM period (16 keeps 98.6 % of the information).
        frame_periods: PEM periods per frame; σ comes from the scatter of the frames.
            Default: the recording's periods split into 50 frames.
        dark: signal level with the light blocked (input units), subtracted.
        dark_sigma: standard uncertainty of ``dark`` (input units).

    Returns:
        The :class:`~cplscope.demod.Estimate` (``noise="gaussian"``): intensities are the
        period-mean signal in input units; σ has ``dof_sigma`` = frames − 1 degrees of
        freedom; ``emission_z`` tests the signal against ``dark``.

    Raises:
        ValueError: neither or both of ``edges_s`` and ``reference``; a reference of another
            length; fewer than 3 frames of ``frame_periods`` periods in the recording; and
            the errors of :func:`phase_bin` and :func:`estimate` (which say what was wrong).
    """
    fs = _rate(sample_rate_hz)
    data = np.asarray(samples)
    if (edges_s is None) == (reference is None):
        raise ValueError("give the PEM reference either as edges_s (rising-edge times in s) "
                         "or as reference (the reference waveform), not both or neither")
    if reference is not None:
        ref = np.asarray(reference)
        if ref.shape != data.shape:
            raise ValueError(f"reference has shape {ref.shape}, samples {data.shape}: record "
                             "both at the same rate and pass the same span")
        edges = rising_edges(ref, fs, threshold=reference_threshold)
    else:
        edges = np.asarray(edges_s, dtype=np.float64)
        if edges.ndim != 1:
            raise ValueError(f"edges_s must be a 1-D array of times in s, got shape {edges.shape}")
    n_periods = max(edges.size - 1, 0)
    if frame_periods is None:
        k = max(n_periods // DEFAULT_FRAMES, 1)
    elif isinstance(frame_periods, bool) or not isinstance(frame_periods, numbers.Integral) \
            or frame_periods < 1:
        raise ValueError(f"frame_periods must be an integer ≥ 1, got {frame_periods!r}")
    else:
        k = int(frame_periods)
    if n_periods // k < MIN_FRAMES:
        raise ValueError(
            f"the recording holds {n_periods} PEM periods ({edges.size} reference edges), "
            f"{n_periods // k} frames of {k} periods: need at least {MIN_FRAMES} frames for "
            f"σ; record at least {MIN_FRAMES * k + 1} edges or use shorter frames")
    sums, n, phases = phase_bin(data, fs, edges, n_bins, k, sampled_phases=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / n
    return estimate(means, retardation, phase_offset=phase_offset, dark=dark,
                    dark_sigma=dark_sigma, noise="gaussian", sampled_phases=phases)


def _rate(sample_rate_hz) -> float:
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, numbers.Real):
        raise ValueError(f"sample_rate_hz must be a number of Hz, got {sample_rate_hz!r}")
    fs = float(sample_rate_hz)
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"sample_rate_hz must be positive and finite, got {sample_rate_hz!r}")
    return fs
