"""The analog path: raw ADC blocks -> phase-binned per-frame mean signals (lock-in on the host).

The board streams 12-bit ADC samples with the PEM reference-edge times (ADC_BLOCK frames).
:class:`AnalogCollector` feeds consecutive blocks of one acquisition into a
:class:`cplscope.demod.PhaseBinner`; every ``frame_periods`` PEM periods make one frame of B
mean signals, which :func:`cplscope.demod.estimate` fits with ``noise="gaussian"``. A block
that does not continue the previous one (a lost frame) or is not usable (clipped, PEM
unlocked, monochromator moving) ends the current stream: the incomplete frame is dropped and
binning starts afresh at the next good block, so no frame ever spans a gap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..demod import PhaseBinner, SampledPhases
from ..demod.bins import HARMONICS
from ..protocol import AdcBlock

__all__ = ["AnalogCollector", "AnalogFrames"]


@dataclass
class AnalogFrames:
    """Phase-binned analog frames.

    Attributes:
        sums: (n_frames, B) sums of ADC samples per bin (ADC counts).
        n: (n_frames, B) number of samples per bin.
        frame_periods: PEM periods per frame.
        sample_rate_hz: ADC sample rate, Hz.
        excluded_blocks: blocks not used (unusable flags).
        breaks: times the stream had to restart (gaps, unusable blocks).
        moments: (n_frames, B, 2H+1) the reference phases each bin actually sampled
            (:class:`cplscope.demod.SampledPhases`), so that a rate locked to the PEM (the
            samples at a few fixed phases) is fitted with the right model.
    """

    sums: np.ndarray
    n: np.ndarray
    frame_periods: int
    sample_rate_hz: float
    excluded_blocks: int = 0
    breaks: int = 0
    blocks: list[AdcBlock] = field(default_factory=list, repr=False)
    moments: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.sums.shape[0])

    @property
    def means(self) -> np.ndarray:
        """(n_frames, B) mean signal per bin (ADC counts); NaN in a bin that received no
        sample in that frame (a rate locked to the PEM leaves bins empty)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.sums / np.maximum(self.n, 1), np.nan)

    @property
    def complete(self) -> np.ndarray:
        return np.all(self.n > 0, axis=1)

    @property
    def sampled_phases(self) -> SampledPhases | None:
        """The sampled phases of every frame, or None when they were not recorded."""
        return SampledPhases(self.moments) if self.moments is not None else None

    def check(self) -> None:
        """Raise a ValueError that says why, when the frames cannot be fitted: fewer than 3
        phase bins ever received a sample (M, u and v need 3)."""
        filled = int((self.n.sum(axis=0) > 0).sum()) if self.n_frames else 0
        if self.n_frames and filled < 3:
            raise ValueError(
                f"only {filled} of {self.n.shape[1]} phase bins received samples: the ADC rate "
                f"{self.sample_rate_hz:g} Hz is locked to the PEM frequency at too few phases. "
                "Choose a rate that is not a simple multiple of it (configure_analog's default "
                "249675 Hz)")

    @property
    def dwell_s(self) -> float:
        """Sampling time covered by the frames, s."""
        return float(self.n.sum() / self.sample_rate_hz)


class AnalogCollector:
    """Bin the ADC blocks of one acquisition into frames of ``frame_periods`` PEM periods."""

    def __init__(self, n_bins: int, frame_periods: int) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be ≥ 2, got {n_bins}")
        if frame_periods < 1:
            raise ValueError(f"frame_periods must be ≥ 1, got {frame_periods}")
        self.n_bins = n_bins
        self.frame_periods = frame_periods
        self._binner: PhaseBinner | None = None
        self._next_t0: float | None = None
        self._sums: list[np.ndarray] = []
        self._n: list[np.ndarray] = []
        self._moments: list[np.ndarray] = []
        self._samples = 0                # in the completed frames
        self.sample_rate_hz = float("nan")
        self.excluded_blocks = 0
        self.breaks = 0
        self.blocks: list[AdcBlock] = []

    @property
    def dwell_s(self) -> float:
        return self._samples / self.sample_rate_hz if self._n else 0.0

    def feed(self, block: AdcBlock) -> int:
        """Add one block; returns the number of frames completed so far."""
        self.blocks.append(block)
        if not block.usable:
            self.excluded_blocks += 1
            self._restart()
            return len(self._sums)
        step = block.samples.size * block.tick_hz / block.sample_rate_hz
        if (self._binner is None or self._next_t0 is None
                or abs(block.t0_ticks - self._next_t0) > 1.0
                or block.sample_rate_hz != self.sample_rate_hz):
            if self._binner is not None:
                self.breaks += 1
            self._restart()
            self.sample_rate_hz = float(block.sample_rate_hz)
            self._binner = PhaseBinner(self.sample_rate_hz, self.n_bins, self.frame_periods,
                                       sampled_phases=True)
        self._next_t0 = block.t0_ticks + step
        sums, n, phases = self._binner.feed(block.samples, block.edge_times_s(),
                                            origin="block")
        self._keep(sums, n, phases.moments)
        return len(self._sums)

    def _restart(self) -> None:
        self._binner = None
        self._next_t0 = None

    def _keep(self, sums: np.ndarray, n: np.ndarray, moments: np.ndarray) -> None:
        m = moments if moments.ndim == 3 else moments[None]
        for s, c, mm in zip(sums, n, m):
            self._sums.append(s)
            self._n.append(c)
            self._moments.append(mm)
            self._samples += int(c.sum())

    def frames(self) -> AnalogFrames:
        b = self.n_bins
        sums = np.array(self._sums).reshape(-1, b)
        n = np.array(self._n, dtype=np.int64).reshape(-1, b)
        moments = np.array(self._moments, dtype=np.float64).reshape(-1, b, 2 * HARMONICS + 1)
        return AnalogFrames(sums, n, self.frame_periods, self.sample_rate_hz,
                            self.excluded_blocks, self.breaks, list(self.blocks), moments)
