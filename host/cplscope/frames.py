"""A block of counting frames taken at one setting, as the estimator and the archive use it."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .protocol import Counts

__all__ = ["FrameSet"]


@dataclass
class FrameSet:
    """Usable COUNTS frames of one acquisition, stacked.

    Attributes:
        counts: (n_frames, B) uint32 photon counts per phase bin.
        seq: (n,) device sequence numbers.
        timestamp_us: (n,) device time of each frame, µs.
        flags: (n,) frame flags (docs/protocol.md).
        periods: (n,) K, PEM periods per frame.
        pem_period_ps: (n,) mean PEM period of each frame, ps.
        mono_position: (n,) monochromator position, steps.
        acq_id: (n,) acquisition id.
        bin_span: mean fraction of the PEM period covered by the bins (1 = whole period); a
            board that tracks PEM drift varies it slightly from frame to frame, and the
            estimator takes the mean.
        excluded: frames received in the same acquisition but not usable (saturated,
            overload, monochromator moving, PEM unlocked); never part of ``counts``.
        received: every frame of the acquisition, usable or not, in order, for the raw
            archive.
    """

    counts: np.ndarray
    seq: np.ndarray
    timestamp_us: np.ndarray
    flags: np.ndarray
    periods: np.ndarray
    pem_period_ps: np.ndarray
    mono_position: np.ndarray
    acq_id: np.ndarray
    bin_span: float = 1.0
    excluded: int = 0
    received: list[Counts] = field(default_factory=list, repr=False)

    @classmethod
    def from_frames(cls, frames: Sequence[Counts], *, excluded: int = 0,
                    n_bins: int | None = None,
                    received: Sequence[Counts] | None = None) -> FrameSet:
        """Stack decoded usable COUNTS frames (all with the same B); ``received`` lists every
        frame of the acquisition, usable or not (default: ``frames``)."""
        everything = list(received) if received is not None else list(frames)
        if not frames:
            b = n_bins or 0
            empty = np.zeros(0, dtype=np.int64)
            return cls(np.zeros((0, b), dtype=np.uint32), empty, empty, empty, empty, empty,
                       empty, empty, excluded=excluded, received=everything)
        bins = {f.n_bins for f in frames}
        if len(bins) != 1:
            raise ValueError(f"frames with different numbers of bins {sorted(bins)} cannot be "
                             "stacked; reconfigure and measure again")
        span = float(np.mean([getattr(f, "bin_span", 1.0) or 1.0 for f in frames]))
        col = lambda name: np.array([getattr(f, name) for f in frames], dtype=np.int64)
        return cls(
            counts=np.stack([f.counts for f in frames]).astype(np.uint32, copy=False),
            seq=col("seq"), timestamp_us=col("timestamp_us"),
            flags=np.array([int(f.flags) for f in frames], dtype=np.int64),
            periods=col("periods"), pem_period_ps=col("pem_period_ps"),
            mono_position=col("mono_position"), acq_id=col("acq_id"), bin_span=span,
            excluded=excluded, received=everything)

    @property
    def n_frames(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[1])

    @property
    def frame_times_s(self) -> np.ndarray:
        """Duration of each frame, K·T_PEM, in s."""
        return self.periods * self.pem_period_ps * 1e-12

    @property
    def frame_time_s(self) -> float:
        """Mean frame duration in s (NaN when empty)."""
        return float(self.frame_times_s.mean()) if self.n_frames else float("nan")

    @property
    def dwell_s(self) -> float:
        """Total counting time of the usable frames, s."""
        return float(self.frame_times_s.sum())

    def extend(self, other: FrameSet) -> FrameSet:
        """A new FrameSet with ``other``'s frames appended (same B and bin span)."""
        if other.n_frames and self.n_frames and other.n_bins != self.n_bins:
            raise ValueError("cannot join frames with different numbers of bins")
        if not self.n_frames:
            return FrameSet(**{**other.__dict__, "excluded": self.excluded + other.excluded,
                               "received": self.received + other.received})
        cat = lambda a, b: np.concatenate([a, b])
        return FrameSet(
            cat(self.counts, other.counts), cat(self.seq, other.seq),
            cat(self.timestamp_us, other.timestamp_us), cat(self.flags, other.flags),
            cat(self.periods, other.periods), cat(self.pem_period_ps, other.pem_period_ps),
            cat(self.mono_position, other.mono_position), cat(self.acq_id, other.acq_id),
            (self.bin_span * self.n_frames + other.bin_span * other.n_frames)
            / (self.n_frames + other.n_frames),
            self.excluded + other.excluded, self.received + other.received)
