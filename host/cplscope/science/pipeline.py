"""The point pipeline: a point's frames and its full context in, the point's result out.

Every path that turns frames into a spectrum row goes through these pure functions: live
measurement (:func:`cplscope.plans.point.measure`), the combining of accumulations, the blank
subtraction, and :func:`cplscope.plans.reprocess.reprocess`. The raw archive stores each point's
:class:`PointContext`, so reprocessing an archive with the run's own calibration gives back
exactly the rows the run wrote.

::

    frames + PointContext ──process_point──▶ PointResult (one accumulation, no blank)
    PointResults of one λ ──spectrum_row───▶ combine_points, then subtract_blank once
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..settings.calibration import Calibration
from ..demod import Estimate, estimate
from .emission import exclusion_z, planning_mask
from .results import (
    FLAG_NONLINEAR,
    FlagRules,
    PointResult,
    combine_points,
    frame_health_flags,
    point_from_estimate,
    subtract_blank,
)

__all__ = ["PointContext", "Retardation", "estimate_frames", "peak_rate_cps", "process_point",
           "spectrum_row", "with_gain"]

_NAN = float("nan")


@dataclass(frozen=True)
class Retardation:
    """The PEM retardation in force at one point.

    Attributes:
        nominal_rad: A0 by the firmware's PEM model at this wavelength and drive
            (STATUS ``a0_rad``), rad.
        commanded_rad: the A0 last commanded (SET_RETARDATION ``a0_rad``), rad; NaN if not
            known.
        tracking: whether the firmware recomputes the drive at every move to hold A0.
        drive: the PEM drive (0 … 1 of full scale); NaN if not known.
    """

    nominal_rad: float
    commanded_rad: float = _NAN
    tracking: bool = True
    drive: float = _NAN

    def a0_rad(self, calibration: Calibration) -> float:
        """The peak retardation (rad) really in force: the calibration's scale times the
        nominal A0."""
        return calibration.a0_in_force(self.nominal_rad)


@dataclass(frozen=True)
class PointContext:
    """Everything besides the frames that a point's result depends on.

    Attributes:
        wavelength_nm: wavelength of the point, nm.
        a0_rad: peak PEM retardation in force at this point, rad (calibrated).
        phase_offset_rad: φ0, rad.
        handedness: +1 or −1 (multiplies g).
        dead_time_s: counter dead time, s (0: no correction).
        dark: expected dark counts per bin per frame (counting) or the dark level
            (analog), scalar or (B,).
        dark_sigma: standard uncertainty of ``dark``: a scalar error common to all bins, or
            independent per-bin errors (B,).
        dark_source: where the dark came from (``"dark:3"``: the archive's dark 3;
            ``"given"``, ``"none"``).
        accumulation: index of the scan (0, 1, …) the point belongs to.
        noise: ``"poisson"`` (counting) or ``"gaussian"`` (analog).
        target_sigma: the adaptive-dwell target σ_g (NaN for a fixed dwell); a point whose σ
            stays above it carries ``dwell_limit``.
        a0_nominal_rad, a0_commanded_rad, a0_tracking, pem_drive: the retardation as the
            firmware held it (:class:`Retardation`), so that a new calibration can be
            applied to the archived point.
        stopped: why the point's counting ended: ``"dwell"`` (fixed dwell), ``"target"``,
            ``"max_dwell"``, ``"no_emission"`` (stopped early: the data exclude emission
            that matters), ``"hopeless"`` (the target was out of reach within the maximum
            dwell), ``"budget"``.
        matter_rate: the faintest signal that matters for the scan (counts/s of a whole
            period's photons in counting, the analog signal's units in analog mode): the
            point is ``no_emission`` only when its data exclude this rate
            (:func:`cplscope.science.emission.exclusion_z`); NaN: unknown (then ``no_emission``
            means only "not detected").
        plan_every: the point's dwell was planned from every ``plan_every``-th frame (its
            planning frames, :mod:`cplscope.demod.planned`), whose totals the fit then does
            not take the intensity from; 0: a fixed dwell, nothing planned.
        dark_noise, dark_noise_dof: analog only: the σ of one frame's mean dark level and
            its degrees of freedom (the dark's frames − 1), from the dark measurement; the
            emission test and the no-emission decision use it (NaN: unknown).
        g_gain: the detection's gain for the circular term relative to the total (the analog
            front end's |H| at the PEM frequency, from the analog calibration; 1 for photon
            counting): the fitted v, and with it g, ΔI and their σ, are divided by it.
        live_fraction: gated counting: the share of the frame time the gate was open
            (pulses × gate width / frame time; 1 for continuous counting). The photons of a
            gate arrive inside it, at a rate 1/live_fraction times their average: the
            dead-time correction and the non-linearity check use that in-gate rate.
    """

    wavelength_nm: float
    a0_rad: float
    phase_offset_rad: float = 0.0
    handedness: int = 1
    dead_time_s: float = 0.0
    dark: Any = 0.0
    dark_sigma: Any = 0.0
    dark_source: str = "none"
    accumulation: int = 0
    noise: str = "poisson"
    target_sigma: float = _NAN
    a0_nominal_rad: float = _NAN
    a0_commanded_rad: float = _NAN
    a0_tracking: bool = True
    pem_drive: float = _NAN
    stopped: str = "dwell"
    extra_flags: tuple[str, ...] = field(default=())
    matter_rate: float = _NAN
    plan_every: int = 0
    dark_noise: float = _NAN
    dark_noise_dof: float = math.inf
    g_gain: float = 1.0
    live_fraction: float = 1.0

    @classmethod
    def build(cls, wavelength_nm: float, calibration: Calibration, retardation: Retardation,
              **kw: Any) -> PointContext:
        """A context from a calibration and the retardation the firmware holds."""
        return cls(wavelength_nm=float(wavelength_nm), a0_rad=retardation.a0_rad(calibration),
                   phase_offset_rad=calibration.phase_offset_rad,
                   handedness=calibration.handedness, dead_time_s=calibration.dead_time_s,
                   a0_nominal_rad=retardation.nominal_rad,
                   a0_commanded_rad=retardation.commanded_rad,
                   a0_tracking=retardation.tracking, pem_drive=retardation.drive,
                   g_gain=calibration.g_gain, **kw)

    def recalibrated(self, old: Calibration | None, new: Calibration) -> PointContext:
        """This point's context under another calibration: A0 from the nominal A0 (or, for
        contexts that lack it, scaled by the ratio of the calibrations' scales), φ0,
        handedness and dead time from ``new``."""
        if math.isfinite(self.a0_nominal_rad):
            a0 = new.a0_in_force(self.a0_nominal_rad)
        else:
            if old is None:
                raise ValueError("this point does not record the nominal A0 and there is no "
                                 "old calibration to rescale from")
            a0 = self.a0_rad * new.retardation_scale / old.retardation_scale
        return replace(self, a0_rad=a0, phase_offset_rad=new.phase_offset_rad,
                       handedness=new.handedness, dead_time_s=new.dead_time_s,
                       g_gain=new.g_gain)


def estimate_frames(counts: np.ndarray, frame_time_s: float, bin_span: float,
                    ctx: PointContext, sampled_phases: Any = None) -> Estimate:
    """The estimate of (M, u, v) from a point's usable frames under ``ctx``.

    Args:
        counts: (n_frames, B) photon counts (counting) or per-frame bin means (analog, NaN
            for an empty bin).
        frame_time_s: mean duration of one frame, s (for the dead-time correction).
        bin_span: fraction of the PEM period the bins cover, (0, 1].
        sampled_phases: analog only: the phases each bin sampled
            (:class:`cplscope.demod.SampledPhases`), for any sample rate.
    """
    dead = ctx.dead_time_s if ctx.noise == "poisson" else 0.0
    # gated counting: the counts came in the gate's open time only (the in-gate rate)
    live_s = frame_time_s * ctx.live_fraction
    planning = (planning_mask(np.shape(counts)[0], ctx.plan_every)
                if ctx.noise == "poisson" else None)
    est = estimate(counts, ctx.a0_rad, phase_offset=ctx.phase_offset_rad, dark=ctx.dark,
                   dark_sigma=ctx.dark_sigma, dead_time=dead,
                   frame_time=live_s if dead else None,
                   noise=ctx.noise,  # type: ignore[arg-type]
                   bin_span=bin_span, sampled_phases=sampled_phases, shape_only=planning,
                   **({"dark_noise": ctx.dark_noise, "dark_noise_dof": ctx.dark_noise_dof}
                      if ctx.noise == "gaussian" else {}))
    return with_gain(est, ctx.g_gain)


def with_gain(est: Estimate, gain: float) -> Estimate:
    """``est`` with its circular term v divided by ``gain`` (the detection's gain for it
    relative to the total): g, I_L, I_R, σ_g and the covariance's v row and column."""
    if gain == 1.0 or not math.isfinite(est.g_lum):
        return est
    v = 0.5 * est.g_lum / gain
    cov = np.array(est.covariance, dtype=np.float64, copy=True)
    cov[-1, :] /= gain
    cov[:, -1] /= gain
    m = est.intensity
    return replace(est, g_lum=2.0 * v, sigma_g=est.sigma_g / gain, i_left=m * (1.0 + v) / 2.0,
                   i_right=m * (1.0 - v) / 2.0, covariance=cov)


def process_point(counts: np.ndarray, frame_time_s: float, bin_span: float, dwell_s: float,
                  ctx: PointContext, *, frame_flags: Any = (),
                  rules: FlagRules = FlagRules(),
                  sampled_phases: Any = None) -> tuple[Estimate, PointResult]:
    """One accumulation of one point: the estimate and its result, without a blank.

    Args:
        counts: the usable frames (see :func:`estimate_frames`).
        frame_time_s: mean frame duration, s.
        bin_span: fraction of the PEM period the bins cover.
        dwell_s: counting time of the usable frames, s.
        ctx: the point's context.
        frame_flags: the protocol flags of every frame received for the point (usable or
            not), turned into frame-health flags.
        rules: flag thresholds.
        sampled_phases: analog only, see :func:`estimate_frames`.
    """
    est = estimate_frames(counts, frame_time_s, bin_span, ctx, sampled_phases)
    sigma_reached = est.sigma_g <= ctx.target_sigma
    # "target": the stopping rule judged the target reached from the planning frames (at
    # g = 0); the fitted σ may differ from that prediction by its own scatter
    dwell_limit = (math.isfinite(ctx.target_sigma) and not sigma_reached
                   and ctx.stopped not in ("no_emission", "hopeless", "target"))
    health = tuple(frame_health_flags(frame_flags))
    if (ctx.noise == "poisson" and peak_rate_cps(counts, frame_time_s * ctx.live_fraction)
            > rules.nonlinear_rate_cps):
        health += (FLAG_NONLINEAR,)
    result = point_from_estimate(est, ctx.wavelength_nm, dwell_s, handedness=ctx.handedness,
                                 dwell_limit=dwell_limit,
                                 frame_flags=health + tuple(ctx.extra_flags), rules=rules,
                                 exclusion_z=exclusion_z(counts, frame_time_s, bin_span, ctx))
    return est, result


def peak_rate_cps(counts: np.ndarray, frame_time_s: float) -> float:
    """The highest observed count rate of a point's frames, all bins, counts/s (0 when the
    frame time is unknown)."""
    c = np.asarray(counts)
    if c.size == 0 or not (math.isfinite(frame_time_s) and frame_time_s > 0):
        return 0.0
    return float(c.sum(axis=1, dtype=np.float64).max() / frame_time_s)


def spectrum_row(accumulations: Sequence[PointResult], blank: tuple[float, float] | None,
                 rules: FlagRules = FlagRules()) -> PointResult:
    """The spectrum's row for one wavelength: its accumulations combined, then the blank
    subtracted once."""
    return subtract_blank(combine_points(accumulations, rules), blank, rules)
