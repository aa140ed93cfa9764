"""How a point's light is detected: photon counting, or the analog (ADC) path.

The point loop (:func:`cplscope.plans.point.measure_point`) is the same for both; a
detection supplies how frames are acquired and joined, the point's context (the dark per
frame, the noise model) and the fit. :func:`detection_for` picks the one the board is
configured for.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..demod import Estimate, SampledPhases
from ..science.analog import AnalogFrames
from ..science.frames import FrameSet, GatedFrameSet
from ..science.pipeline import PointContext, Retardation, estimate_frames, process_point
from ..science.results import FlagRules, PointResult
from ..settings.calibration import Calibration

log = logging.getLogger(__name__)

__all__ = ["ANALOG_MIN_FRAMES", "ANALOG_USEFUL_FRAMES", "AnalogChunks", "Analog", "Counting",
           "Gated", "detection_for", "whole_turns"]

#: Fewest analog frames a point may have: σ comes from the frames' scatter with n − 1
#: degrees of freedom, and below 3 of them Student's t has no finite variance, so σ would not
#: be a standard deviation at all (docs/estimator.md, "How many analog frames").
ANALOG_MIN_FRAMES = 4
#: Fewest analog frames a point should have: at 9 degrees of freedom σ is itself uncertain by
#: 24 % and ±2σ covers 92.4 % instead of 95.4 %. Below it a point is flagged ``few_frames``,
#: and the adaptive dwell never decides on fewer frames.
ANALOG_USEFUL_FRAMES = 10


class Counting:
    """Photon counting: frames of phase-binned counts, Poisson noise."""

    name = "counting"
    calibration_mode = "counting"
    min_frames = 1
    useful_frames = 1

    def frame_time_s(self, inst: Any) -> float:
        """Duration of one frame, s."""
        return float(inst.frame_time_s())

    def acquire(self, inst: Any, seconds: float) -> FrameSet:
        return inst.acquire(duration_s=seconds)

    def empty(self, like: Any = None) -> FrameSet:
        return FrameSet.from_frames([], n_bins=like.n_bins if like is not None else 0)

    def context(self, wl: float, cal: Calibration, ret: Retardation, dark: Any,
                frames: FrameSet, **kw: Any) -> PointContext:
        """The context at these frames' frame time (the dark per bin per frame)."""
        t = frames.frame_time_s
        d = dark.per_frame(t) if dark is not None else 0.0
        sd = dark.sigma_per_frame(t) if dark is not None else 0.0
        return PointContext.build(wl, cal, ret, dark=d, dark_sigma=sd, **kw,
                                  **self._gate_context(frames))

    def _gate_context(self, frames: FrameSet) -> dict[str, Any]:
        return {}

    def estimate(self, frames: FrameSet, ctx: PointContext) -> Estimate:
        return estimate_frames(frames.counts, frames.frame_time_s, frames.span, ctx)

    def frame_flags(self, frames: FrameSet) -> list[int]:
        return [f.flags for f in frames.received]

    def process(self, frames: FrameSet, ctx: PointContext,
                rules: FlagRules) -> tuple[Estimate, PointResult]:
        return process_point(frames.counts, frames.frame_time_s, frames.span, frames.dwell_s,
                             ctx, frame_flags=self.frame_flags(frames), rules=rules)

    def dark_per_bin(self, ctx: PointContext, frames: FrameSet) -> np.ndarray:
        return np.broadcast_to(np.asarray(ctx.dark, dtype=np.float64), (frames.n_bins,)).copy()


class Gated(Counting):
    """Photon counting in a gate after each excitation pulse (CONFIGURE mode "gated"): the
    same frames, noise and fit as :class:`Counting`, rates per second of measuring (the
    gate's losses included, so planning and the survey see how long a gated point takes),
    and the dead-time correction at the rate inside the gate (:attr:`PointContext.live_fraction`
    from the frames' pulses × gate width). With several gates (time bins) a point takes the
    photons of every gate, each time bin corrected for the dead time at its own in-gate rate
    before they are summed (:meth:`GatedFrameSet.rotations`): the time-resolved analysis
    uses the frames' ``gate`` column."""

    name = "gated"

    @staticmethod
    def _whole(frames: FrameSet, dead_time_s: float = 0.0) -> FrameSet:
        """Time bins: whole turns through the gates, each as one frame of the whole gate
        (frames of different gates differ in intensity and g: fitted as frames of one
        model they would not fit)."""
        return whole_turns(frames, dead_time_s)

    def context(self, wl: float, cal: Calibration, ret: Retardation, dark: Any,
                frames: FrameSet, **kw: Any) -> PointContext:
        return super().context(wl, cal, ret, dark, self._whole(frames), **kw)

    def estimate(self, frames: FrameSet, ctx: PointContext) -> Estimate:
        return super().estimate(self._whole(frames, ctx.dead_time_s), ctx)

    def process(self, frames: FrameSet, ctx: PointContext,
                rules: FlagRules) -> tuple[Estimate, PointResult]:
        whole = self._whole(frames, ctx.dead_time_s)
        return process_point(whole.counts, whole.frame_time_s, whole.span, whole.dwell_s,
                             ctx, frame_flags=self.frame_flags(frames), rules=rules)

    def _gate_context(self, frames: FrameSet) -> dict[str, Any]:
        share = getattr(frames, "live_fraction", math.nan)
        if not (isinstance(share, float) and math.isfinite(share) and share > 0):
            return {}
        # each frame holds one gate of n: its own open share, not n gates'
        return {"live_fraction": min(1.0, share)}


def whole_turns(frames: FrameSet, dead_time_s: float = 0.0) -> FrameSet:
    """The frames a gated point is fitted on: with time bins, each whole turn through them
    as one frame, every bin corrected for the dead time ``dead_time_s`` (s) at its own in-gate
    rate (:meth:`GatedFrameSet.rotations`); otherwise ``frames`` themselves."""
    return frames.rotations(dead_time_s=dead_time_s) if isinstance(frames, GatedFrameSet) \
        else frames


@dataclass
class AnalogChunks:
    """The analog acquisitions of one point, in order (each an
    :class:`~cplscope.science.analog.AnalogFrames`)."""

    chunks: list[AnalogFrames] = field(default_factory=list)

    def extend(self, other: AnalogChunks) -> AnalogChunks:
        return AnalogChunks(self.chunks + other.chunks)

    @property
    def n_frames(self) -> int:
        return sum(c.n_frames for c in self.chunks)

    @property
    def dwell_s(self) -> float:
        return float(sum(c.dwell_s for c in self.chunks))

    @property
    def n_bins(self) -> int:
        return int(self.chunks[0].n.shape[1]) if self.chunks else 0

    @property
    def frame_time_s(self) -> float:
        return self.dwell_s / self.n_frames if self.n_frames else math.nan

    @property
    def means(self) -> np.ndarray:
        return np.concatenate([c.means for c in self.chunks])

    @property
    def phases(self) -> SampledPhases | None:
        moments = [c.moments for c in self.chunks]
        if not moments or any(m is None for m in moments):
            return None
        return SampledPhases(np.concatenate(moments))  # type: ignore[arg-type]

    @property
    def block_flags(self) -> list[int]:
        return [b.flags for c in self.chunks for b in c.blocks]

    def __iter__(self):
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True)
class Analog:
    """The analog path: ADC samples phase-binned on the host into frames of
    ``frame_periods`` PEM periods and ``n_bins`` bins, Gaussian noise from the frames'
    scatter (at least :data:`ANALOG_MIN_FRAMES` frames, better
    :data:`ANALOG_USEFUL_FRAMES`)."""

    n_bins: int = 16
    frame_periods: int = 5000
    name: str = "analog"
    calibration_mode: str = "analog"
    min_frames: int = ANALOG_MIN_FRAMES
    useful_frames: int = ANALOG_USEFUL_FRAMES

    def frame_time_s(self, inst: Any) -> float:
        """Duration of one analog frame, ``frame_periods`` PEM periods, s."""
        ps = inst.status().get("pem_period_ps")
        return self.frame_periods * (float(ps) * 1e-12 if ps else 2e-5)

    def check_dwell(self, inst: Any, dwell_s: float, *, warn: bool = True) -> None:
        """Refuse a fixed dwell (s) that cannot give :data:`ANALOG_MIN_FRAMES` frames; with
        ``warn``, warn below :data:`ANALOG_USEFUL_FRAMES`."""
        frame = self.frame_time_s(inst)
        if dwell_s < self.min_frames * frame:
            raise ValueError(
                f"an analog point of {dwell_s:g} s holds {dwell_s / frame:.1f} frames of "
                f"{frame:g} s; σ comes from the frames' scatter and needs at least "
                f"{self.min_frames} (useful from {self.useful_frames}): dwell ≥ "
                f"{self.useful_frames * frame:g} s, or shorter frames")
        if warn and dwell_s < self.useful_frames * frame:
            log.warning("an analog point of %g s holds %d frames: σ from fewer than %d frames "
                        "is itself uncertain by more than 24 %% (flag few_frames; use the "
                        "dof_sigma column for intervals). Dwell ≥ %g s avoids it.", dwell_s,
                        int(dwell_s / frame), self.useful_frames, self.useful_frames * frame)

    def acquire(self, inst: Any, seconds: float) -> AnalogChunks:
        chunk = inst.acquire_analog(duration_s=seconds, n_bins=self.n_bins,
                                    frame_periods=self.frame_periods)
        chunk.check()
        return AnalogChunks([chunk])

    def empty(self, like: Any = None) -> AnalogChunks:
        return AnalogChunks()

    def context(self, wl: float, cal: Calibration, ret: Retardation, dark: Any,
                frames: AnalogChunks, **kw: Any) -> PointContext:
        return PointContext.build(wl, cal, ret, dark=dark.level if dark is not None else 0.0,
                                  dark_sigma=dark.sigma if dark is not None else 0.0,
                                  noise="gaussian",
                                  dark_noise=getattr(dark, "noise", math.nan),
                                  dark_noise_dof=float(getattr(dark, "n_frames", 0)) - 1.0,
                                  **kw)

    def estimate(self, frames: AnalogChunks, ctx: PointContext) -> Estimate:
        return estimate_frames(frames.means, math.nan, 1.0, ctx, frames.phases)

    def frame_flags(self, frames: AnalogChunks) -> list[int]:
        return frames.block_flags

    def process(self, frames: AnalogChunks, ctx: PointContext,
                rules: FlagRules) -> tuple[Estimate, PointResult]:
        return process_point(frames.means, math.nan, 1.0, frames.dwell_s, ctx,
                             frame_flags=frames.block_flags, rules=rules,
                             sampled_phases=frames.phases)

    def dark_per_bin(self, ctx: PointContext, frames: AnalogChunks) -> np.ndarray:
        return np.full(self.n_bins, float(np.mean(ctx.dark)))


def detection_for(inst: Any) -> Counting | Analog:
    """The detection the board is configured for (``inst.mode``); in analog mode with the
    instrument's host-side binning (``inst.analog_binning``: bins, PEM periods per frame)."""
    mode = getattr(inst, "mode", "counting")
    if mode == "gated":
        return Gated()
    if mode != "analog":
        return Counting()
    bins, periods = getattr(inst, "analog_binning", (16, 5000))
    return Analog(n_bins=int(bins), frame_periods=int(periods))

