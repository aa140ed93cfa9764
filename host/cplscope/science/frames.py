"""A block of counting frames as arrays: what an acquisition returns, what the estimator
fits and what the raw archive stores."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..demod.deadtime import dead_time_ratio
from ..protocol import Counts, GatedCounts, usable_flags

__all__ = ["FrameSet", "GatedFrameSet", "RawFrames"]

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
        if cls is FrameSet and everything and all(
                isinstance(f, GatedCounts) for f in everything):
            return GatedFrameSet.from_frames(frames, excluded=excluded, n_bins=n_bins,
                                             received=received)
        if not frames:
            b = n_bins or 0
            empty = np.zeros(0, dtype=np.int64)
            return cls(np.zeros((0, b), dtype=np.uint32),
                       **{name: empty for name in cls._columns()}, bin_span=np.zeros(0),
                       excluded=excluded, received=everything, **cls._constants_of(frames))
        bins = {f.n_bins for f in frames}
        if len(bins) != 1:
            raise ValueError(f"frames with different numbers of bins {sorted(bins)} cannot be "
                             "stacked; reconfigure and measure again")
        col = lambda name: np.array([int(getattr(f, name)) for f in frames], dtype=np.int64)
        return cls(
            counts=np.stack([np.asarray(f.counts) for f in frames]).astype(np.uint32, copy=False),
            **{name: col(name) for name in cls._columns()},
            bin_span=np.array([float(getattr(f, "bin_span", 1.0) or 1.0) for f in frames]),
            excluded=excluded, received=everything, **cls._constants_of(frames))

    @classmethod
    def _columns(cls) -> tuple[str, ...]:
        """The per-frame header columns (besides counts and bin_span)."""
        return _HEADER

    @classmethod
    def _constants_of(cls, frames: Sequence[Counts]) -> dict[str, Any]:
        """Fields common to all frames, from decoded frames (none for plain counting)."""
        return {}

    def _constants(self) -> dict[str, Any]:
        return {}

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
        for name in self._columns():
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
        kw = {name: np.asarray(getattr(self, name))[mask]
              for name in ("counts",) + self._columns()}
        return type(self)(**kw, bin_span=self.spans[mask], **self._constants())

    def all_received(self) -> FrameSet:
        """Every frame the acquisition received, usable or not (``self`` when ``received``
        is empty, e.g. for frames read back from an archive)."""
        return FrameSet.of(self.received) if self.received else self

    def extend(self, other: FrameSet) -> FrameSet:
        """A new FrameSet with ``other``'s frames appended (same B)."""
        if other.n_frames and self.n_frames and other.n_bins != self.n_bins:
            raise ValueError("cannot join frames with different numbers of bins")
        if type(other) is not type(self) and self.n_frames and other.n_frames:
            raise ValueError("cannot join gated and continuous counting frames: measure the "
                             "point again in one mode")
        if not self.n_frames:
            return type(other)(**{**{f.name: getattr(other, f.name) for f in fields(other)},
                                  "excluded": self.excluded + other.excluded,
                                  "received": self.received + other.received})
        if not other.n_frames:
            return type(self)(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                                 "excluded": self.excluded + other.excluded,
                                 "received": self.received + other.received})
        self._check_joins(other)
        cat = lambda name: np.concatenate([np.asarray(getattr(self, name)),
                                           np.asarray(getattr(other, name))])
        return type(self)(**{name: cat(name) for name in ("counts",) + self._columns()},
                          bin_span=np.concatenate([self.spans, other.spans]),
                          excluded=self.excluded + other.excluded,
                          received=self.received + other.received, **self._constants())

    def _check_joins(self, other: FrameSet) -> None:
        """Raise when ``other``'s frames cannot be joined to these."""


_GATED = ("gate", "pulses", "pulse_period_ns", "gate_delay_ns", "gate_width_ns")


@dataclass
class GatedFrameSet(FrameSet):
    """GATED_COUNTS frames stacked into arrays: each frame holds the phase-binned counts of
    one gate (time bin) after each excitation pulse (docs/protocol.md, GATED_COUNTS).

    Besides :class:`FrameSet`'s columns (``counts`` are the photons inside each frame's gate;
    ``frame_time_s`` and ``dwell_s`` are instrument time, so rates per second of measuring
    already include what the gate throws away):

    Attributes:
        gate: (n,) the gate each frame counted, 0 … n_gates − 1.
        pulses: (n,) excitation pulses whose gate the frame counted.
        pulse_period_ns, gate_delay_ns, gate_width_ns: (n,) the timing of each frame's gate.
        n_gates: the gates (time bins) of the configuration.
    """

    gate: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pulses: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pulse_period_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gate_delay_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    gate_width_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_gates: int = 1

    @classmethod
    def _columns(cls) -> tuple[str, ...]:
        return _HEADER + _GATED

    @classmethod
    def _constants_of(cls, frames: Sequence[Counts]) -> dict[str, Any]:
        gates = {int(getattr(f, "n_gates", 1)) for f in frames}
        if len(gates) > 1:
            raise ValueError(f"frames of configurations with {sorted(gates)} gates cannot be "
                             "stacked")
        return {"n_gates": gates.pop() if gates else 1}

    def _constants(self) -> dict[str, Any]:
        return {"n_gates": self.n_gates}

    def _check_joins(self, other: FrameSet) -> None:
        assert isinstance(other, GatedFrameSet)
        if other.n_gates != self.n_gates:
            raise ValueError(f"cannot join frames of {self.n_gates} and {other.n_gates} gates")

    @property
    def live_times_s(self) -> np.ndarray:
        """(n,) how long each frame's gate was open: pulses × gate width, s."""
        return self.pulses * self.gate_width_ns * 1e-9

    @property
    def live_time_s(self) -> float:
        """Mean open time of the gate per frame, s (NaN when empty)."""
        return float(self.live_times_s.mean()) if self.n_frames else float("nan")

    @property
    def live_fraction(self) -> float:
        """The share of the counting time the gates were open (NaN when empty)."""
        total = float(self.frame_times_s.sum())
        return float(self.live_times_s.sum()) / total if total > 0 else float("nan")

    def rows(self, gates: Any) -> GatedFrameSet:
        """The frames of the gates ``gates`` (an index or a sequence of them)."""
        wanted = np.atleast_1d(np.asarray(gates, dtype=np.int64))
        out = self.select(np.isin(self.gate, wanted))
        assert isinstance(out, GatedFrameSet)
        return out

    def rotations(self, gates: range | None = None, dead_time_s: float = 0.0) -> GatedFrameSet:
        """With several gates: each complete turn through them (frames of gates 0, 1, …,
        n − 1 in a row, one acquisition) summed into one frame, as one gate from the first
        gate's opening to the last one's end would have counted it in the same time (the
        counts and the periods add up, and so do the pulses, so the open time stays pulses ×
        gate width). Frames of an incomplete turn are left out. With one gate: ``self``.

        Args:
            gates: the contiguous gates to sum, ``range(j0, j1)`` (default: all of them): a
                gate from the opening of gate j0 to the end of gate j1 − 1, made offline
                from the same complete turns (the frames of the other gates are left out;
                the summed frame's time is that of the gates summed).
            dead_time_s: the counter's dead time τ, s (0: counts are summed as they are).
                The rate inside the gates falls with the decay, and the correction is not
                linear in the rate, so it is made per time bin, then summed: each frame's
                counts c at its own in-gate live time per phase bin t (pulses × gate width ×
                span / B) become c / (1 − c·τ/t), and their sum N is given as the counts
                c' = N / (1 + N·τ/t') that the summed gate (in-gate live time t' per phase bin,
                as the point pipeline computes it) would have counted, so that the pipeline's
                correction at the summed gate's rate gives back exactly N. (Summing first and
                correcting at the summed gate's mean rate would under-correct the early, bright
                bins.) The counts are then float64.

        Raises:
            ValueError: ``gates`` is not a non-empty range inside 0 … n_gates − 1; a frame's
                counts are at or above the dead-time limit of its live time.
        """
        n = self.n_gates
        sel = range(n) if gates is None else gates
        if not (isinstance(sel, range) and sel.step == 1 and 0 <= sel.start < sel.stop <= n):
            raise ValueError(f"gates must be a range of contiguous gates inside 0 … {n - 1}, "
                             f"got {gates!r}")
        if n < 2 or not self.n_frames:
            return self
        gate, acq = np.asarray(self.gate), np.asarray(self.acq_id)
        starts = [i for i in range(len(gate) - n + 1)
                  if gate[i] == 0 and np.array_equal(gate[i:i + n], np.arange(n))
                  and np.all(acq[i:i + n] == acq[i])]
        if not starts:
            empty = self.select(np.zeros(self.n_frames, dtype=bool))
            assert isinstance(empty, GatedFrameSet)
            empty.n_gates, empty.received = 1, self.received
            return empty
        # (turns, gates summed): the frames of each turn's selected gates
        idx = np.array(starts)[:, None] + np.array(sel)[None, :]
        col = lambda name: np.asarray(getattr(self, name))[idx]
        periods = col("periods")
        pem = (col("pem_period_ps") * periods).sum(axis=1) / periods.sum(axis=1)
        out = GatedFrameSet(
            counts=self.counts[idx].sum(axis=1).astype(np.uint32),
            seq=col("seq")[:, 0], timestamp_us=col("timestamp_us")[:, -1],
            flags=np.bitwise_or.reduce(col("flags"), axis=1), periods=periods.sum(axis=1),
            pem_period_ps=np.rint(pem).astype(np.int64), mono_position=col("mono_position")[:, 0],
            acq_id=col("acq_id")[:, 0], bin_span=self.spans[idx].mean(axis=1),
            gate=np.zeros(len(starts), dtype=np.int64), pulses=col("pulses").sum(axis=1),
            pulse_period_ns=col("pulse_period_ns")[:, 0],
            gate_delay_ns=col("gate_delay_ns")[:, 0], gate_width_ns=col("gate_width_ns")[:, 0],
            n_gates=1, received=self.received, excluded=self.excluded)
        if dead_time_s > 0:
            out.counts = self._dead_time_summed(idx, float(dead_time_s), out)
        return out

    def _dead_time_summed(self, idx: np.ndarray, tau: float, summed: GatedFrameSet
                          ) -> np.ndarray:
        """The frames ``idx`` (turns, gates) corrected each at its own in-gate live time,
        summed per turn, and given as the counts the ``summed`` gate would have observed
        (:meth:`rotations`)."""
        b = self.n_bins
        bin_live = (self.live_times_s * self.spans / b)[idx]          # (turns, gates), s
        if np.any(bin_live <= 0):
            raise ValueError("a gated frame without open time (no pulses or no gate width) "
                             "cannot be corrected for the dead time")
        c = self.counts[idx].astype(np.float64)                      # (turns, gates, B)
        load = c * (tau / bin_live)[:, :, None]
        if np.any(load >= 1):
            raise ValueError("counts at or above the dead-time limit of their gate's live "
                             "time: check the dead time, or the detector saturated")
        total = (c / (1.0 - load)).sum(axis=1)
        live_s = summed.frame_time_s * min(1.0, summed.live_fraction)
        ratio = dead_time_ratio(tau, live_s, b, summed.span)
        return total / (1.0 + total * ratio)

    def gate_times_s(self) -> tuple[np.ndarray, np.ndarray]:
        """(delay, width) of gates 0 … n_gates − 1 in s, from the frames (NaN for a gate
        without a frame)."""
        delay = np.full(self.n_gates, np.nan)
        width = np.full(self.n_gates, np.nan)
        for j in range(self.n_gates):
            hit = self.gate == j
            if np.any(hit):
                delay[j] = float(np.mean(self.gate_delay_ns[hit])) * 1e-9
                width[j] = float(np.mean(self.gate_width_ns[hit])) * 1e-9
        return delay, width


def _check_counts(counts: np.ndarray) -> None:
    if counts.ndim != 2 or counts.dtype.kind not in "iu":
        raise ValueError(f"counts must be an integer (n_frames, B) array, got {counts.dtype} "
                         f"of shape {counts.shape}")


#: The archive's name for a FrameSet (kept so that scripts importing it keep working).
RawFrames = FrameSet
