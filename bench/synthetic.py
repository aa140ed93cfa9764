"""A counting instrument drawn straight from the binned Poisson model, for statistics.

:class:`SyntheticCounter` answers the calls the scan engine makes (``status``, ``move_to``,
``acquire``, the shutter, ``frame_time_s``, …) with frames whose counts are Poisson draws of
the measurement model §3, μ_k = t·[R·(w_k + v·S_k) + D·w_k] per frame, with no firmware,
optics, dead time, flicker or drift in the loop. The engine, the point loop, the survey and
the planner run unchanged on it, thousands of times faster than on the twin, so their
statistical behaviour (bias of a stopping rule, miss rate of the no-emission decision) can be
measured with many trials. The twin (``cplscope.connect("sim", …)``) is the end-to-end check.

Used by ``bench/bench_faint.py`` and by the statistical tests (``from bench.synthetic import
SyntheticCounter`` from the repository root).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cplscope.demod.bins import bin_layout
from cplscope.demod.retardation import optimal_retardation
from cplscope.protocol import Flags
from cplscope.science.frames import FrameSet
from cplscope.science.pipeline import Retardation
from cplscope.settings.calibration import Calibration

__all__ = ["SyntheticCounter", "from_sample"]

#: Rate (signal photons/s, unpolarized-equivalent) and g_lum at a wavelength (nm).
Truth = Callable[[float], tuple[float, float]]


@dataclass
class _Health:
    frames: int = 0
    rejected: int = 0
    missing: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"frames": self.frames, "rejected": 0, "missing": 0, "reconnects": 0}


class SyntheticCounter:
    """A photon-counting instrument whose frames follow the binned Poisson model exactly.

    Args:
        truth: (rate in signal photons/s, g_lum) at a wavelength in nm.
        dark_cps: dark counts/s over all bins (spread evenly over the bins).
        seed: of the numpy generator (PCG64): the same seed and calls give the same frames.
        n_bins: B.
        frame_s: duration of one frame, s (acquisitions are whole frames, at least one).
        phase_offset_rad: φ0.
        a0_rad: A0 (default: the counting optimum for B and φ0).
    """

    mode = "counting"

    def __init__(self, truth: Truth, dark_cps: float, *, seed: int, n_bins: int = 16,
                 frame_s: float = 0.2, phase_offset_rad: float = 0.3,
                 a0_rad: float | None = None) -> None:
        self.truth, self.dark_cps = truth, float(dark_cps)
        self.rng = np.random.default_rng(seed)
        self.n_bins, self.frame_s = int(n_bins), float(frame_s)
        self.phi0 = float(phase_offset_rad)
        self.a0 = float(a0_rad) if a0_rad is not None else optimal_retardation(n_bins, self.phi0)
        self.calibration = Calibration(
            a0_rad=self.a0, phase_offset_rad=self.phi0, handedness=1, dead_time_s=0.0,
            serial="synthetic", date="2024-01-01T00:00:00+00:00", source="manual",
            a0_command_rad=self.a0)
        self.wavelength_nm: float | None = None
        self.shutter_open = True
        self.time_s = 0.0
        self._health = _Health()
        self._layout = bin_layout(self.n_bins, self.a0, self.phi0)
        self._seq = 0

    # -- what the plans ask of an instrument --

    def status(self) -> dict[str, Any]:
        return {"bins": self.n_bins, "periods": int(round(self.frame_s * 50_000)),
                "shutter_open": self.shutter_open, "a0_rad": self.a0, "hv_set_volts": 800.0}

    def info(self) -> dict[str, Any]:
        return {"implementation": "synthetic", "board": "synthetic", "firmware_version": "0",
                "protocol_version": 1, "serial": "synthetic"}

    def retardation(self) -> Retardation:
        return Retardation(nominal_rad=self.a0, commanded_rad=self.a0)

    def frame_time_s(self) -> float:
        return self.frame_s

    def health(self) -> _Health:
        return self._health

    def move_to(self, wavelength_nm: float) -> None:
        self.wavelength_nm = float(wavelength_nm)

    def close_shutter(self) -> None:
        self.shutter_open = False

    def open_shutter(self) -> None:
        self.shutter_open = True

    def acquire(self, *, duration_s: float) -> FrameSet:
        """Whole frames covering ``duration_s`` s (at least one)."""
        n = max(1, int(math.floor(duration_s / self.frame_s + 0.5)))
        counts = self.rng.poisson(self.mean_counts(self.frame_s), size=(n, self.n_bins))
        periods = int(round(self.frame_s * 50_000))
        seq = np.arange(self._seq, self._seq + n, dtype=np.int64)
        self._seq += n
        self._health.frames += n
        self.time_s += n * self.frame_s
        col = lambda v: np.full(n, v, dtype=np.int64)
        return FrameSet(counts.astype(np.uint32), seq, col(0), col(int(Flags.PEM_LOCKED)),
                        col(periods), col(20_000_000), col(0), col(0))

    # -- the model --

    def mean_counts(self, seconds: float) -> np.ndarray:
        """μ_k in ``seconds`` s at the present wavelength and shutter state."""
        lay = self._layout
        dark = self.dark_cps * lay.w / lay.w.sum()
        if not self.shutter_open or self.wavelength_nm is None:
            return seconds * dark
        rate, g = self.truth(self.wavelength_nm)
        return seconds * (rate * (lay.w + 0.5 * g * lay.s) + dark)


def from_sample(sample: Any) -> Truth:
    """The truth of a :class:`cplscope.sim.samples.Sample` with an ideal slit: rate =
    ``peak_rate_cps`` × emission / its maximum (no quantum efficiency), g from the table."""
    peak = float(np.max(sample.emission)) if np.max(sample.emission) > 0 else 1.0

    def truth(wl: float) -> tuple[float, float]:
        t = sample.truth(wl, 0.0)
        rate = float(sample.peak_rate_cps) * float(t.emission) / peak
        g = float(t.g_lum) if math.isfinite(float(t.g_lum)) else 0.0
        return rate, g

    return truth
