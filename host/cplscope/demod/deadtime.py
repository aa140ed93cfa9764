"""The non-paralyzable dead-time correction of photon counts (measurement model, dead time).

Counts c_k observed in a bin whose live time is t_k = frame_time·span/B are corrected as
c_k / (1 − c_k·τ/t_k). The estimator's Cython kernel (``_estimate.frame_moments``) applies
the same correction inside its sums; this is the NumPy form for everything else.
"""
from __future__ import annotations

import numpy as np

__all__ = ["apply_dead_time", "dead_time_correct", "dead_time_ratio"]


def dead_time_ratio(dead_time_s: float, frame_time_s: float | None, n_bins: int,
                    span: float = 1.0) -> float:
    """τ/t_k: the dead time over one bin's live time (dimensionless).

    Raises ValueError when ``frame_time_s`` is missing or not positive while a dead time is
    given.
    """
    tau = float(dead_time_s)
    if tau == 0.0:
        return 0.0
    if frame_time_s is None or not frame_time_s > 0:
        raise ValueError("dead_time needs frame_time, the duration of one frame in s "
                         "(K PEM periods), to know each bin's live time")
    return tau / (float(frame_time_s) * float(span) / int(n_bins))


def dead_time_correct(counts: np.ndarray, dead_time_s: float, frame_time_s: float | None,
                      span: float = 1.0) -> np.ndarray:
    """Counts (n_frames, B) or (B,) corrected for the dead time ``dead_time_s`` (s) at frames
    of ``frame_time_s`` (s) whose bins cover ``span`` of the PEM period; float64.

    Raises ValueError when a bin is at or above the dead-time limit (c·τ/t ≥ 1).
    """
    c = np.asarray(counts, dtype=np.float64)
    ratio = dead_time_ratio(dead_time_s, frame_time_s, c.shape[-1], span)
    if ratio == 0.0:
        return c
    if np.any(c * ratio >= 1):
        raise ValueError("counts at or above the dead-time limit of their live time: check "
                         "dead_time and frame_time (s), or the detector saturated")
    return apply_dead_time(c, ratio)


def apply_dead_time(counts: np.ndarray, ratio: float | np.ndarray) -> np.ndarray:
    """c / (1 − c·ratio) for counts already checked against the limit; ``ratio`` is τ/t_k,
    one number or one per bin (:func:`dead_time_ratio`)."""
    c = np.asarray(counts, dtype=np.float64)
    return c / (1.0 - c * ratio)
