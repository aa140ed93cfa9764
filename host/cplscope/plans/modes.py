"""Measurement modes: what differs between a CPL (emission) and a CD (transmission) scan.

The scan engine (:mod:`cplscope.plans.engine`) and the point loop
(:func:`cplscope.plans.point.measure_point`) are the same for every mode. Both modes fit a
point's phase-binned frames with the same binned model (:mod:`cplscope.science.pipeline`);
a mode supplies only what differs:

- :meth:`Mode.evaluate`: the figure of merit the adaptive dwell and the time planner drive
  down (σ of g_lum; σ of ΔA or of g_abs), and whether a point has nothing more to give
  (``no_emission``; ``opaque``);
- :meth:`Mode.context`: what the point's context records of the target;
- :meth:`Mode.assembler`: how the accumulations of a wavelength become its spectrum row, and
  which spectrum (and so which CSV columns) the run writes;
- :meth:`Mode.correction_at`: the reference subtracted once after the accumulations (the
  blank of g_lum; the baseline of A and ΔA);
- :meth:`Mode.metadata`: what the mode adds to the run metadata (for resume and reprocess).

The physics stays in :mod:`cplscope.science` (:func:`~cplscope.science.pipeline.process_point`,
:func:`~cplscope.science.cd.cd_point`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..data.cd_spectrum import CDAssembler, cd_metadata, with_flags
from ..data.documents import SpectrumAssembler
from ..demod import Estimate
from ..science.cd import (
    FLAG_NO_ABSORBANCE,
    FLAG_OPAQUE,
    BaselinePoint,
    CDCalibration,
    CDRules,
    cd_point,
)
from ..science.lamp import LampMonitor
from ..science.pipeline import PointContext
from ..science.results import (
    FLAG_DWELL_LIMIT,
    FLAG_NO_EMISSION,
    FlagRules,
    emission_significance,
    frame_health_flags,
)
from ..settings.calibration import Blank

__all__ = ["CD_BINNED_RULES", "Emission", "Mode", "Transmission", "mode_from_metadata"]

#: Emission significance below which the adaptive dwell stops a CPL point early when no
#: signal that matters is known to judge it against (the analog path).
EARLY_EMPTY_Z = 2.0
#: The binned model's flag rules for the archive's point rows of a CD scan (its CPL-style
#: view; the CD flags are :class:`~cplscope.science.cd.CDRules`).
CD_BINNED_RULES = FlagRules(nonlinear_rate_cps=math.inf)


class Mode(Protocol):
    """What a measurement mode supplies to the scan engine (see the module docstring)."""

    name: str
    """``"cpl"`` or ``"cd"``: the run metadata's ``mode``."""
    binned_rules: FlagRules
    """Flag rules of the binned point results (what the archive stores)."""
    target_name: str
    """The settings key of the target σ (``"target_sigma_g"``, ``"target_sigma_delta_a"``, …)."""
    splits: bool
    """Whether an adaptive or planned point plans from its planning frames only
    (:mod:`cplscope.demod.planned`) and judges its emission against the signal that matters."""

    def evaluate(self, est: Estimate, ctx: PointContext, dwell_s: float,
                 frame_flags: Sequence[int], raw: Any = None) -> tuple[float, str | None, Any]:
        """(figure of merit, why the point cannot give more or None, the mode's result);
        ``raw`` is the binned result of the same frames."""
        ...

    def context(self, ctx: PointContext, target: float | None, stopped: str,
                extra_flags: tuple[str, ...]) -> PointContext:
        """The point's final context: how it stopped, its target and its extra flags."""
        ...

    def finish(self, est: Estimate, ctx: PointContext, raw: Any,
               frame_flags: Sequence[int]) -> tuple[float, Any]:
        """(figure of merit, the mode's result or None) of a finished point whose binned
        result is ``raw``."""
        ...

    def emits(self, m: Any) -> bool:
        """Whether a measured point (:class:`~cplscope.plans.point.PointMeasurement`) has
        signal worth more time."""
        ...

    def assembler(self, metadata: Mapping[str, Any]) -> Any:
        """A fresh assembler of the run's spectrum (``add``, ``spectrum``)."""
        ...

    def correction_at(self, wavelength_nm: float) -> Any:
        """The reference subtracted at this wavelength after the accumulations, or None."""
        ...

    def metadata(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` run metadata with the mode's own sections."""
        ...

    def check_grid(self, wavelengths_nm: Sequence[float]) -> None:
        """Raise a ValueError before anything is measured when the mode cannot scan these
        wavelengths (a baseline without them)."""
        ...


@dataclass(frozen=True)
class Emission:
    """CPL: g_lum of the emission, the default mode.

    Attributes:
        rules: flag thresholds of the points (:class:`~cplscope.science.results.FlagRules`).
        blank: the achiral reference subtracted from g after the accumulations, or None.
    """

    rules: FlagRules = FlagRules()
    blank: Blank | None = None
    name: str = "cpl"
    target_name: str = "target_sigma_g"
    splits: bool = True

    @property
    def binned_rules(self) -> FlagRules:
        return self.rules

    def evaluate(self, est: Estimate, ctx: PointContext, dwell_s: float,
                 frame_flags: Sequence[int], raw: Any = None) -> tuple[float, str | None, Any]:
        """A point stops early as ``no_emission`` once its data exclude the signal that
        matters (its result is flagged so), or, when none is known, once its emission is
        not even :data:`EARLY_EMPTY_Z` σ above the dark."""
        if raw is not None and not math.isnan(ctx.matter_rate):
            return est.sigma_g, ("no_emission" if raw.has(FLAG_NO_EMISSION) else None), None
        z = emission_significance(est.intensity, est.sigma_intensity,
                                  float(getattr(est, "emission_z", math.nan)))
        return est.sigma_g, (None if z >= EARLY_EMPTY_Z else "no_emission"), None

    def context(self, ctx: PointContext, target: float | None, stopped: str,
                extra_flags: tuple[str, ...]) -> PointContext:
        return replace(ctx, stopped=stopped, extra_flags=extra_flags,
                       target_sigma=float(target) if target is not None else math.nan)

    def finish(self, est: Estimate, ctx: PointContext, raw: Any,
               frame_flags: Sequence[int]) -> tuple[float, Any]:
        return raw.sigma_g, None

    def emits(self, m: Any) -> bool:
        return not m.result.has(FLAG_NO_EMISSION)

    def assembler(self, metadata: Mapping[str, Any]) -> SpectrumAssembler:
        return SpectrumAssembler(metadata, self.rules)

    def correction_at(self, wavelength_nm: float) -> tuple[float, float] | None:
        return self.blank.at(float(wavelength_nm)) if self.blank is not None else None

    def metadata(self, base: Mapping[str, Any]) -> dict[str, Any]:
        return dict(base)

    def check_grid(self, wavelengths_nm: Sequence[float]) -> None:
        return None


@dataclass(frozen=True)
class Transmission:
    """CD: ΔA, A, g_abs and ellipticity in the transmission light path (docs/cd.md).

    Attributes:
        calibration: the CD sign and scale.
        baseline: the baseline scan (solvent and cell) per wavelength, nm → point; empty for
            a baseline scan itself (then A and g_abs are NaN, ``no_baseline``).
        baseline_label: where the baseline came from (its CSV), for the metadata.
        rules: the CD flag thresholds.
        merit: ``"delta_a"``: the adaptive dwell and the planner drive σ(ΔA) down;
            ``"g_abs"``: σ(g_abs) (needs a baseline).
        lamp: how the scan watches its lamp (:class:`~cplscope.science.lamp.LampMonitor`:
            readings at a reference wavelength that correct A for the lamp's drift and put
            it into σ(A)), or None: not watched, σ(A) is photon noise alone.
    """

    calibration: CDCalibration = CDCalibration()
    baseline: Mapping[float, BaselinePoint] = field(default_factory=dict)
    baseline_label: str | None = None
    rules: CDRules = CDRules()
    merit: str = "delta_a"
    name: str = "cd"
    splits: bool = False
    lamp: LampMonitor | None = None

    def __post_init__(self) -> None:
        if self.merit not in ("delta_a", "g_abs"):
            raise ValueError(f"merit must be 'delta_a' or 'g_abs', got {self.merit!r}")
        if self.merit == "g_abs" and not self.baseline:
            raise ValueError("a target σ(g_abs) needs a baseline (g_abs = ΔA/A): give a "
                             "baseline scan, or use a target σ(ΔA)")

    @property
    def target_name(self) -> str:  # type: ignore[override]
        return f"target_sigma_{self.merit}"

    @property
    def binned_rules(self) -> FlagRules:
        return CD_BINNED_RULES

    def evaluate(self, est: Estimate, ctx: PointContext, dwell_s: float,
                 frame_flags: Sequence[int], raw: Any = None) -> tuple[float, str | None, Any]:
        point = cd_point(est, ctx.wavelength_nm, dwell_s,
                         baseline=self.correction_at(ctx.wavelength_nm),
                         calibration=self.calibration, rules=self.rules,
                         frame_flags=frame_health_flags(frame_flags))
        sigma = point.sigma_delta_a if self.merit == "delta_a" else point.sigma_g_abs
        stop = next((f for f in (FLAG_OPAQUE, FLAG_NO_ABSORBANCE) if point.has(f)), None)
        return float(sigma), stop, point

    def context(self, ctx: PointContext, target: float | None, stopped: str,
                extra_flags: tuple[str, ...]) -> PointContext:
        # the binned result's target is σ(g); a CD point's is σ(ΔA) or σ(g_abs): record the
        # outcome as a flag instead
        if target is not None and stopped == "max_dwell":
            extra_flags = extra_flags + (FLAG_DWELL_LIMIT,)
        return replace(ctx, stopped=stopped, extra_flags=extra_flags)

    def finish(self, est: Estimate, ctx: PointContext, raw: Any,
               frame_flags: Sequence[int]) -> tuple[float, Any]:
        sigma, _, point = self.evaluate(est, ctx, raw.dwell_s, frame_flags)
        return sigma, with_flags(point, ctx.extra_flags)

    def emits(self, m: Any) -> bool:
        point = m.product
        if point is None or point.has(FLAG_OPAQUE):
            return False
        return not (self.merit == "g_abs" and point.has(FLAG_NO_ABSORBANCE))

    def assembler(self, metadata: Mapping[str, Any]) -> CDAssembler:
        return CDAssembler(metadata, self.calibration, self.rules)

    def correction_at(self, wavelength_nm: float) -> BaselinePoint | None:
        if not self.baseline:
            return None
        return self.baseline.get(round(float(wavelength_nm), 6))

    def metadata(self, base: Mapping[str, Any]) -> dict[str, Any]:
        meta = cd_metadata(base, cd_calibration=self.calibration.to_dict(),
                           baseline=self.baseline_label if self.baseline else None)
        if self.baseline:
            meta["baseline_points"] = [
                {"wavelength_nm": wl, "rate_cps": b.rate_cps,
                 "sigma_rate_cps": b.sigma_rate_cps, "delta_a": b.delta_a,
                 "sigma_delta_a": b.sigma_delta_a} for wl, b in sorted(self.baseline.items())]
        meta["cd_rules"] = {"min_snr": self.rules.min_snr,
                            "max_absorbance": self.rules.max_absorbance,
                            "min_absorbance_snr": self.rules.min_absorbance_snr,
                            "ld_nsigma": self.rules.ld_nsigma,
                            "misfit_tail": self.rules.misfit_tail}
        meta["cd_merit"] = self.merit
        meta["lamp"] = (self.lamp.to_dict() if self.lamp is not None else
                        "not watched: σ(A) is photon noise alone, without the lamp's drift")
        return meta

    def check_grid(self, wavelengths_nm: Sequence[float]) -> None:
        if not self.baseline:
            return
        missing = [w for w in wavelengths_nm if self.correction_at(w) is None]
        if missing:
            have = sorted(self.baseline)
            raise ValueError(f"the baseline has no usable point at {missing[0]:g} nm (it has "
                             f"{len(have)} points, {have[0]:g}–{have[-1]:g} nm, opaque ones "
                             "left out): measure the baseline on the sample's grid")

    @classmethod
    def with_baseline(cls, baseline: Any, *, label: str | None = None,
                      wavelengths_nm: Sequence[float] = (), **kw: Any) -> Transmission:
        """A CD mode whose baseline is ``baseline`` (a :class:`~cplscope.data.cd_spectrum.
        CDSpectrum`, in the calibration's convention after conversion) at the scan's
        wavelengths."""
        cal = kw.get("calibration", CDCalibration())
        conv = _baseline_conversion(baseline, cal)
        points: dict[float, BaselinePoint] = {}
        for wl in wavelengths_nm:
            b = baseline.baseline_at(float(wl))
            if conv != 1.0:
                b = BaselinePoint(b.rate_cps, b.sigma_rate_cps, conv * b.delta_a,
                                  abs(conv) * b.sigma_delta_a)
            points[round(float(wl), 6)] = b
        return cls(baseline=points, baseline_label=label, **kw)


def _baseline_conversion(base: Any, cal: CDCalibration) -> float:
    """Factor that puts the baseline's ΔA into ``cal``'s convention (1 when it was measured
    with the same CD calibration, or says nothing about it)."""
    meta = base.metadata.get("cd_calibration")
    if not isinstance(meta, dict):
        return 1.0
    try:
        used = CDCalibration(int(meta.get("cd_sign", 1)), float(meta.get("cd_scale", 1.0)))
    except (TypeError, ValueError):
        return 1.0
    return cal.factor / used.factor


def mode_from_metadata(meta: Mapping[str, Any], *, rules: FlagRules, blank: Blank | None,
                       baseline: Any = None, cd_calibration: CDCalibration | None = None,
                       wavelengths_nm: Sequence[float] = ()) -> Emission | Transmission:
    """The mode a run was measured in, rebuilt from its metadata (resume, reprocess).

    ``baseline`` (a CD spectrum, taken at ``wavelengths_nm``) and ``cd_calibration`` replace
    the run's own for a CD run.
    """
    if meta.get("mode") != "cd":
        return Emission(rules=rules, blank=blank)
    stored = meta.get("cd_calibration")
    cal = cd_calibration or (CDCalibration.from_dict(stored) if isinstance(stored, dict)
                             else CDCalibration())
    cd_rules = CDRules(**meta["cd_rules"]) if isinstance(meta.get("cd_rules"), dict) else CDRules()
    merit = str(meta.get("cd_merit") or "delta_a")
    lamp = (LampMonitor.from_dict(meta["lamp"]) if isinstance(meta.get("lamp"), Mapping)
            else None)
    if baseline is not None:
        return Transmission.with_baseline(baseline, label=str(meta.get("baseline")),
                                          wavelengths_nm=wavelengths_nm, calibration=cal,
                                          rules=cd_rules, merit=merit, lamp=lamp)
    points = {round(float(p["wavelength_nm"]), 6): BaselinePoint(
        p["rate_cps"], p["sigma_rate_cps"], p["delta_a"], p["sigma_delta_a"])
        for p in meta.get("baseline_points") or []}
    label = meta.get("baseline")
    return Transmission(calibration=cal, baseline=points,
                        baseline_label=str(label) if points and label else None,
                        rules=cd_rules, merit=merit if points else "delta_a", lamp=lamp)
