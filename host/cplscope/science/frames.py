"""A block of counting frames as arrays: what an acquisition returns, what the estimator
fits and what the raw archive stores."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..protocol import Counts, usable_flags

__all__ = ["FrameSet", "RawFrames"]

_HEADER = ("seq", "timestamp_us", "flags", "periods", "pem_period_ps", "mono_position",
           "acq_id")


@dataclass
class FrameSet:
    """COUNTS frames stacked into arrays.

    An acquisition (:meth:`cplscope.board.controller.Controller.acquire`) returns the usable frames
    and lists every frame it received in ``received``; the archive stores every frame, usable
    or not, and :attr:`usable` tells them apart.

    Attributes:
        counts: (n_frames, B) uint32 photon counts per phase bin.
        seq: (n,) device sequence numbers.
        timestamp_us: (n,) device time of each frame, µs.
        flags: (n,) frame flags (docs/protocol.md).
        periods: (n,) K, PEM periods per frame.
        pem_period_ps: (n,) mean PEM period of each frame, ps.
        mono_position: (n,) monochromator position, steps.
        acq_id: (n,) acquisition id.
        bin_span: fraction of the PEM period covered by the bins (1 = whole period), one
            number or one per frame; a board that tracks PEM drift varies it slightly from
            frame to frame, and the estimator takes the mean (:attr:`span`).
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
    bin_span: Any = 1.0
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
                       empty, empty, np.zeros(0), excluded=excluded, received=everything)
        bins = {f.n_bins for f in frames}
        if len(bins) != 1:
            raise ValueError(f"frames with different numbers of bins {sorted(bins)} cannot be "
                             "stacked; reconfigure and measure again")
        col = lambda name: np.array([int(getattr(f, name)) for f in frames], dtype=np.int64)
        return cls(
            counts=np.stack([np.asarray(f.counts) for f in frames]).astype(np.uint32, copy=False),
            **{name: col(name) for name in _HEADER},
            bin_span=np.array([float(getattr(f, "bin_span", 1.0) or 1.0) for f in frames]),
            excluded=excluded, received=everything)

    @classmethod
    def of(cls, frames: Any) -> FrameSet:
        """All the frames of ``frames`` as a FrameSet: a sequence of
        :class:`cplscope.protocol.Counts` (usable or not), or a FrameSet (returned as is)."""
        if isinstance(frames, FrameSet):
            return frames
        seq_frames = list(frames)
        if not seq_frames:
            raise ValueError("no frames given")
        out = cls.from_frames(seq_frames)
        _check_counts(out.counts)
        return out

    def __post_init__(self) -> None:
        n = self.counts.shape[0]
        for name in _HEADER:
            col = np.asarray(getattr(self, name))
            if col.shape != (n,):
                raise ValueError(f"{name} has shape {col.shape}, expected ({n},)")
        span = np.asarray(self.bin_span, dtype=np.float64)
        if span.ndim not in (0, 1) or (span.ndim == 1 and span.shape != (n,)):
            raise ValueError(f"bin_span must be one number or one per frame ({n},), got "
                             f"shape {span.shape}")

    @property
    def n_frames(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[1])

    @property
    def span(self) -> float:
        """Mean fraction of the PEM period covered by the bins (1 when empty)."""
        s = np.asarray(self.bin_span, dtype=np.float64)
        return float(s) if s.ndim == 0 else (float(s.mean()) if s.size else 1.0)

    @property
    def spans(self) -> np.ndarray:
        """(n,) bin span of each frame."""
        return np.broadcast_to(np.asarray(self.bin_span, dtype=np.float64),
                               (self.n_frames,)).copy()

    @property
    def usable(self) -> np.ndarray:
        """Boolean mask: frames that may enter an estimate (docs/protocol.md, Flags)."""
        return np.array([usable_flags(int(f)) for f in self.flags], dtype=bool)

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
        """Total counting time of the frames, s."""
        return float(self.frame_times_s.sum())

    def select(self, mask: np.ndarray) -> FrameSet:
        """The frames where ``mask`` is True (``received`` is not carried over)."""
        kw = {name: np.asarray(getattr(self, name))[mask] for name in ("counts",) + _HEADER}
        return FrameSet(**kw, bin_span=self.spans[mask])

    def all_received(self) -> FrameSet:
        """Every frame the acquisition received, usable or not (``self`` when ``received``
        is empty, e.g. for frames read back from an archive)."""
        return FrameSet.of(self.received) if self.received else self

    def extend(self, other: FrameSet) -> FrameSet:
        """A new FrameSet with ``other``'s frames appended (same B)."""
        if other.n_frames and self.n_frames and other.n_bins != self.n_bins:
            raise ValueError("cannot join frames with different numbers of bins")
        if not self.n_frames:
            return FrameSet(**{**{f.name: getattr(other, f.name) for f in fields(other)},
                               "excluded": self.excluded + other.excluded,
                               "received": self.received + other.received})
        if not other.n_frames:
            return FrameSet(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                               "excluded": self.excluded + other.excluded,
                               "received": self.received + other.received})
        cat = lambda name: np.concatenate([np.asarray(getattr(self, name)),
                                           np.asarray(getattr(other, name))])
        return FrameSet(**{name: cat(name) for name in ("counts",) + _HEADER},
                        bin_span=np.concatenate([self.spans, other.spans]),
                        excluded=self.excluded + other.excluded,
                        received=self.received + other.received)


def _check_counts(counts: np.ndarray) -> None:
    if counts.ndim != 2 or counts.dtype.kind not in "iu":
        raise ValueError(f"counts must be an integer (n_frames, B) array, got {counts.dtype} "
                         f"of shape {counts.shape}")


#: The archive's name for a FrameSet (kept so that scripts importing it keep working).
RawFrames = FrameSet
