"""Point results: one wavelength's g_lum, intensities and linear polarization, with honest flags.

:func:`point_from_estimate` turns a :class:`cplscope.demod.Estimate` into a
:class:`PointResult`. It applies, in this order:

1. **dwell normalization**: photon-counting intensities (counts summed over the used frames)
   are divided by ``dwell_s``, so every intensity column is a rate in counts/s (cps) and points
   with different dwell compare directly. Analog (``noise="gaussian"``) intensities are
   already period-mean levels and are kept in their signal units.
2. **handedness** h = ±1 (a calibration constant): g_lum and ΔI are multiplied by h, and for
   h = −1 i_left and i_right are swapped. The linear polarization u is not touched.
3. **blank subtraction**: g ← g − g_blank, σ_g² ← σ_g² + σ_blank², with g_blank, σ_blank the
   g of an achiral reference at this wavelength, already in the handedness-corrected
   convention. ΔI, i_left and i_right are then recomputed from the corrected g.
4. **flags** (:class:`FlagRules` holds the thresholds; docs/data-files.md explains them):
   ``no_emission``, ``undetected``, ``linear_pol``, ``linear_unknown``, ``misfit``,
   ``dwell_limit``, plus frame-health flags from the caller (``overload``, ``saturated``, …).

When the emission is not significant, g_lum, sigma_g, ΔI, i_left, i_right, linear and
sigma_linear are NaN: a noisy g is never printed for a sample that does not emit. Such a
point is ``no_emission`` when its data exclude the signal that matters for the scan
(``exclusion_z``, :mod:`cplscope.science.emission`), else ``undetected``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from statistics import NormalDist

import numpy as np

from ..demod import Estimate
from ..demod import _stats
from ..protocol import Flags

__all__ = [
    "CSV_COLUMNS", "FLAG_DWELL_LIMIT", "FLAG_FEW_FRAMES", "FLAG_FLICKER", "FLAG_LINEAR_POL",
    "FLAG_LINEAR_UNKNOWN", "FLAG_MISFIT", "FLAG_ORDER", "FLAG_NONLINEAR", "FLAG_NO_EMISSION",
    "FLAG_SCATTER", "FLAG_UNDETECTED", "FlagRules", "MIN_DOF_SIGMA", "PointResult",
    "chi2_misfit", "chi2_quantile", "checked_flags", "chi2_sf", "combine_points", "emission_significance",
    "fit_flags", "frame_health_flags", "ordered_flags", "point_from_estimate", "signal_flags",
    "subtract_blank",
]

FLAG_NO_EMISSION = "no_emission"
#: Emission neither detected (``emission_z`` < snr_min) nor excluded (``exclusion_z`` <
#: exclude_z): the point may emit more faintly than its dwell could show.
FLAG_UNDETECTED = "undetected"
FLAG_LINEAR_POL = "linear_pol"
FLAG_LINEAR_UNKNOWN = "linear_unknown"
FLAG_MISFIT = "misfit"
FLAG_DWELL_LIMIT = "dwell_limit"
#: The frame totals fluctuate beyond Poisson (lamp flicker, drift) while the bin shape fits:
#: g is unaffected (the fluctuation is common to all bins), the source is unsteady.
FLAG_FLICKER = "flicker"
#: A frame's count rate exceeded the counting head's linear range (kept, dead-time corrected).
FLAG_NONLINEAR = "nonlinear"
#: Set when repeated measurements of a wavelength disagree beyond their σ (combine_points).
FLAG_SCATTER = "scatter"
#: σ was estimated from the scatter of too few frames (analog mode): ``dof_sigma`` <
#: :data:`MIN_DOF_SIGMA`. σ is then itself uncertain by more than 24 % (1/√(2·dof)) and a
#: ±2σ interval covers far less than 95 %: use Student's t at ``dof_sigma``.
FLAG_FEW_FRAMES = "few_frames"
#: Degrees of freedom of σ below which a point is flagged ``few_frames``: 9, i.e. fewer than
#: 10 frames of an analog point (docs/estimator.md, "How many analog frames").
MIN_DOF_SIGMA = 9.0
#: The order in which flags are kept and written (docs/data-files.md, "Flags"): what the
#: signal is, how the fit went, why counting ended, the counting head, then lost frames. A
#: flag not listed goes after these, in alphabetical order.
FLAG_ORDER: tuple[str, ...] = (
    FLAG_NO_EMISSION, "undetected", "opaque", "no_baseline", "no_absorbance", "lamp_unknown",
    FLAG_LINEAR_POL, FLAG_LINEAR_UNKNOWN, "linear_dichroism", FLAG_SCATTER, FLAG_MISFIT,
    FLAG_FLICKER, FLAG_FEW_FRAMES, FLAG_DWELL_LIMIT, "hopeless", FLAG_NONLINEAR, "saturated",
    "overload", "mono_moving", "overrun", "pem_unlocked")
_FLAG_RANK = {name: i for i, name in enumerate(FLAG_ORDER)}
#: The flags the signal decision sets; recomputed whenever g or the intensity changes.
_SIGNAL_FLAGS = frozenset({FLAG_NO_EMISSION, FLAG_UNDETECTED, FLAG_LINEAR_POL,
                           FLAG_LINEAR_UNKNOWN, FLAG_SCATTER})
#: Flags recomputed from σ's degrees of freedom whenever they change (blank, combining).
_SIGMA_FLAGS = frozenset({FLAG_FEW_FRAMES})

#: CSV columns, in file order (docs/data-files.md).
CSV_COLUMNS: tuple[str, ...] = (
    "wavelength_nm", "intensity", "i_left", "i_right", "delta_i", "g_lum", "sigma_g",
    "linear", "sigma_linear", "chi2_red", "n_frames", "dwell_s", "flags",
    "sigma_intensity", "accumulations", "emission_z", "exclusion_z", "dof_sigma",
)

_FLAG_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_NAN = float("nan")


@dataclass(frozen=True)
class PointResult:
    """The result at one wavelength, as written to a spectrum CSV.

    Intensities (``intensity``, ``i_left``, ``i_right``, ``delta_i``, ``sigma_intensity``) are
    in counts/s (cps) for photon counting, or in the analog signal's units; they are signal
    only (dark removed, dead time corrected).

    Attributes:
        wavelength_nm: emission wavelength, nm.
        intensity: I = I_L + I_R.
        i_left: I_L.
        i_right: I_R.
        delta_i: ΔI = I_L − I_R.
        g_lum: 2ΔI/I after handedness and blank correction; NaN with ``no_emission``.
        sigma_g: standard uncertainty of ``g_lum``.
        linear: u = U/I, reduced linear (±45°) polarization; NaN when not identifiable.
        sigma_linear: standard uncertainty of ``linear``.
        chi2_red: reduced χ² of the fit (≈ 1 when the model holds).
        n_frames: frames used.
        dwell_s: counting time of the used frames, s.
        flags: flag names (docs/data-files.md), empty when nothing is wrong.
        sigma_intensity: standard uncertainty of ``intensity``.
        accumulations: number of scans averaged into this point.
        emission_z: significance of the emission, the score statistic of the counts against
            the dark under the no-signal hypothesis (one-sided normal; NaN when the estimate
            does not provide it, then ``intensity/sigma_intensity`` is used).
        exclusion_z: how strongly the data exclude a signal of the rate that matters for the
            scan (one-sided normal score, :func:`cplscope.science.emission.exclusion_z`);
            NaN when that rate is unknown (then a point that is not detected is
            ``no_emission``).
        dof_sigma: degrees of freedom of ``sigma_g`` (and ``sigma_linear``,
            ``sigma_intensity``): inf for photon counting (σ from the Fisher information);
            in analog mode σ is estimated from the frames' scatter and (g − g_true)/σ_g
            follows Student's t with ``dof_sigma`` degrees of freedom
            (:meth:`coverage_factor`). Files and archives without it read as inf.
    """

    wavelength_nm: float
    intensity: float
    i_left: float
    i_right: float
    delta_i: float
    g_lum: float
    sigma_g: float
    linear: float
    sigma_linear: float
    chi2_red: float
    n_frames: int
    dwell_s: float
    flags: tuple[str, ...] = ()
    sigma_intensity: float = _NAN
    accumulations: int = 1
    emission_z: float = _NAN
    exclusion_z: float = _NAN
    dof_sigma: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", checked_flags(self.flags))
        if not self.dof_sigma > 0 and not math.isnan(self.dof_sigma):
            raise ValueError(f"dof_sigma must be > 0 (inf: σ is exact), got {self.dof_sigma}")
        if self.accumulations < 1:
            raise ValueError(f"accumulations must be ≥ 1, got {self.accumulations}")
        if self.n_frames < 0:
            raise ValueError(f"n_frames must be ≥ 0, got {self.n_frames}")

    @property
    def snr(self) -> float:
        """Significance of the emission: :attr:`emission_z` when known, else
        intensity / sigma_intensity."""
        return emission_significance(self.intensity, self.sigma_intensity, self.emission_z)

    def has(self, flag: str) -> bool:
        """True when ``flag`` is set."""
        return flag in self.flags

    def coverage_factor(self, z: float = 1.0) -> float:
        """Factor k so that g ± k·z·σ_g covers what ±z·σ of a normal distribution covers:
        t_{dof}(Φ(z))/z at ``dof_sigma`` (1 in counting mode; 1.25 at z = 2 with 9)."""
        return coverage_factor(self.dof_sigma, z)

    def as_dict(self) -> dict[str, object]:
        """Field name -> value, in CSV column order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def coverage_factor(dof: float, z: float = 1.0) -> float:
    """t_{dof}(Φ(z))/z: how much wider than ±z·σ an interval must be when σ has ``dof``
    degrees of freedom (1 for inf, NaN when dof is not a positive number)."""
    if not z > 0:
        raise ValueError(f"z must be > 0, got {z!r}")
    if math.isinf(dof):
        return 1.0
    if not dof > 0:
        return _NAN
    return _stats.t_quantile(1.0 - _stats.upper_tail_from_z(z), dof) / z


@dataclass(frozen=True)
class FlagRules:
    """Thresholds of the automatic flags (docs/data-files.md, "Flags").

    Attributes:
        snr_min: g is reported only when the emission's significance (the score statistic
            ``emission_z`` of the counts against the dark, else intensity/sigma_intensity) is
            at least snr_min. 5 keeps the chance that pure dark noise passes below 3e-7
            (one-sided Gaussian).
        exclude_z: a point below snr_min is ``no_emission`` when ``exclusion_z`` ≥
            exclude_z (the data exclude the signal that matters: a point that emits at that
            rate is called so with probability ≤ 1.3e-3 at 3), else ``undetected``.
        linear_ratio: ``linear_pol`` when |u| > linear_ratio·max(|g|, σ_g) and u is
            significant. A residual static retardation δ_r of the PEM and optics turns u into
            an apparent g of −2·δ_r·u; with δ_r = 0.005 rad, ratio 10 flags the points where
            that artifact could reach 10 % of the reported g or of its σ.
        linear_nsigma: u counts as significant when |u| > linear_nsigma·σ_u.
        misfit_tail: ``misfit`` when chi2_red lies outside the central 1 − 2·misfit_tail range
            of χ²(dof)/dof (Wilson–Hilferty quantiles).
        nonlinear_rate_cps: ``nonlinear`` when a frame's observed count rate (all bins,
            counts/s) exceeds the counting head's linear range (:mod:`cplscope.settings.rate_limits`);
            the point is kept, dead-time corrected. inf: never.
    """

    snr_min: float = 5.0
    exclude_z: float = 3.0
    linear_ratio: float = 10.0
    linear_nsigma: float = 3.0
    misfit_tail: float = 1e-3
    nonlinear_rate_cps: float = 2.0e6

    def __post_init__(self) -> None:
        for name in ("snr_min", "exclude_z", "linear_ratio", "linear_nsigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"FlagRules.{name} must be a finite number ≥ 0, got {value!r}")
        if not self.nonlinear_rate_cps > 0:
            raise ValueError("FlagRules.nonlinear_rate_cps must be > 0 counts/s, got "
                             f"{self.nonlinear_rate_cps!r}")
        if not 0.0 < self.misfit_tail < 0.5:
            raise ValueError(f"FlagRules.misfit_tail must be in (0, 0.5), got {self.misfit_tail!r}")


def point_from_estimate(
    est: Estimate,
    wavelength_nm: float,
    dwell_s: float,
    *,
    handedness: int = 1,
    blank: tuple[float, float] | None = None,
    dwell_limit: bool = False,
    frame_flags: Iterable[str] = (),
    rules: FlagRules = FlagRules(),
    accumulations: int = 1,
    exclusion_z: float = _NAN,
) -> PointResult:
    """Build the :class:`PointResult` of one wavelength from an estimate.

    Args:
        est: the estimate from :func:`cplscope.demod.estimate`.
        wavelength_nm: emission wavelength, nm.
        dwell_s: counting time of the frames that went into ``est``, s (> 0).
        handedness: +1 or −1, the instrument's sign calibration.
        blank: (g_blank, sigma_blank) of an achiral reference at this wavelength, in the
            handedness-corrected convention, or None (see :func:`subtract_blank`).
        dwell_limit: True when the point stopped at the maximum dwell before reaching the
            target σ.
        frame_flags: frame-health flags to pass through (e.g. from
            :func:`frame_health_flags`); lower-case names of letters, digits and ``_``.
        rules: thresholds of the automatic flags.
        accumulations: number of scans this point stands for.
        exclusion_z: how strongly the data exclude the signal that matters
            (:func:`cplscope.science.emission.exclusion_z`); NaN: unknown.

    Returns:
        The corrected, flagged point.

    Raises:
        ValueError: on a non-finite wavelength, a dwell ≤ 0, a handedness other than ±1, a
            non-finite blank or a negative blank σ, or a malformed flag name.
    """
    wl = float(wavelength_nm)
    if not math.isfinite(wl) or wl <= 0:
        raise ValueError(f"wavelength_nm must be a positive number of nm, got {wavelength_nm!r}")
    dwell = float(dwell_s)
    if not math.isfinite(dwell) or dwell <= 0:
        raise ValueError(f"dwell_s must be a positive number of seconds, got {dwell_s!r}")
    if handedness not in (1, -1):
        raise ValueError(f"handedness must be +1 or -1, got {handedness!r}")

    scale = 1.0 / dwell if est.noise == "poisson" else 1.0
    intensity = est.intensity * scale
    sigma_i = est.sigma_intensity * scale
    z = float(getattr(est, "emission_z", _NAN))
    flags, (g, sigma_g, u, sigma_u) = signal_flags(
        intensity, sigma_i, handedness * est.g_lum, est.sigma_g, est.linear, est.sigma_linear,
        rules, emission_z=z, exclusion_z=exclusion_z)
    flags.extend(fit_flags(est, rules.misfit_tail))
    dof_sigma = float(getattr(est, "dof_sigma", math.inf))
    flags.extend(sigma_flags(dof_sigma))
    if dwell_limit:
        flags.append(FLAG_DWELL_LIMIT)
    flags.extend(frame_flags)

    delta_i = intensity * g / 2.0
    point = PointResult(
        wavelength_nm=wl, intensity=intensity,
        i_left=(intensity + delta_i) / 2.0, i_right=(intensity - delta_i) / 2.0,
        delta_i=delta_i, g_lum=g, sigma_g=sigma_g, linear=u, sigma_linear=sigma_u,
        chi2_red=est.chi2_red, n_frames=int(est.n_frames), dwell_s=dwell,
        flags=tuple(flags), sigma_intensity=sigma_i, accumulations=int(accumulations),
        emission_z=z, exclusion_z=float(exclusion_z), dof_sigma=dof_sigma)
    return subtract_blank(point, blank, rules) if blank is not None else point


def sigma_flags(dof_sigma: float) -> list[str]:
    """``few_frames`` when σ has fewer than :data:`MIN_DOF_SIGMA` degrees of freedom."""
    return [FLAG_FEW_FRAMES] if dof_sigma < MIN_DOF_SIGMA else []


def fit_flags(est: Estimate, misfit_tail: float = 1e-3) -> list[str]:
    """``misfit`` when the bin-shape χ² (blind to common-mode flicker) is out of range: the
    modulation model does not describe the frames; else ``flicker`` when the plain χ² is:
    the frame totals fluctuate while the shape fits. An estimate without a shape χ² is judged
    on its plain χ² alone (``misfit``)."""
    shape_red = float(getattr(est, "chi2_shape_red", math.nan))
    dof_shape = int(getattr(est, "dof_shape", 0))
    if math.isfinite(shape_red) and dof_shape > 0:
        if chi2_misfit(shape_red, dof_shape, misfit_tail):
            return [FLAG_MISFIT]
        if chi2_misfit(est.chi2_red, est.dof, misfit_tail):
            return [FLAG_FLICKER]
        return []
    return [FLAG_MISFIT] if chi2_misfit(est.chi2_red, est.dof, misfit_tail) else []


def subtract_blank(point: PointResult, blank: tuple[float, float] | None,
                   rules: FlagRules = FlagRules()) -> PointResult:
    """``point`` with the blank's g subtracted: g ← g − g_blank, σ_g² ← σ_g² + σ_blank².

    ``blank`` is (g_blank, sigma_blank) of an achiral reference at this wavelength, in the
    handedness-corrected convention, or None (nothing to subtract). ΔI, I_L and I_R are
    recomputed from the corrected g, and ``linear_pol`` is re-evaluated against it. A blank
    is one measurement: subtract it once, from the combined point of all accumulations
    (:func:`combine_points`), never from each accumulation. The blank's σ is taken as exact:
    a finite ``dof_sigma`` grows by Welch–Satterthwaite, ν·((σ² + σ_b²)/σ²)².
    """
    if blank is None:
        return point
    g_blank, sigma_blank = (float(x) for x in blank)
    if not (math.isfinite(g_blank) and math.isfinite(sigma_blank) and sigma_blank >= 0):
        raise ValueError(f"blank must be (g, sigma) with finite g and sigma ≥ 0, got {blank!r}")
    if not math.isfinite(point.g_lum):
        return point
    g, sigma_g = point.g_lum - g_blank, math.hypot(point.sigma_g, sigma_blank)
    auto, _ = signal_flags(point.intensity, point.sigma_intensity, g, sigma_g, point.linear,
                           point.sigma_linear, rules, emission_z=point.emission_z,
                           exclusion_z=point.exclusion_z)
    dof = _welch_known(point.dof_sigma, point.sigma_g ** 2, sigma_blank ** 2)
    kept = [f for f in point.flags if f not in _SIGNAL_FLAGS | _SIGMA_FLAGS]
    delta_i = point.intensity * g / 2.0
    return replace(point, g_lum=g, sigma_g=sigma_g, delta_i=delta_i,
                   i_left=(point.intensity + delta_i) / 2.0,
                   i_right=(point.intensity - delta_i) / 2.0,
                   flags=tuple(auto + sigma_flags(dof) + kept), dof_sigma=dof)


def _welch_known(dof: float, var_estimated: float, var_known: float) -> float:
    """Welch–Satterthwaite degrees of freedom of var_estimated (``dof``) + var_known (exact)."""
    if math.isinf(dof) or not var_estimated > 0:
        return dof
    return dof * ((var_estimated + var_known) / var_estimated) ** 2


def combine_points(points: Sequence[PointResult], rules: FlagRules = FlagRules()) -> PointResult:
    """One point from repeated measurements of the same wavelength (accumulations).

    - g_lum and u: weighted means of the points with a finite value. With exact σ (photon
      counting, ``dof_sigma`` inf) the weights are 1/σ_i². When σ_i was estimated from few
      frames (analog mode, finite ``dof_sigma``), 1/σ̂_i² would favour the accumulations whose
      σ̂ came out low by chance, and the combined σ would be too small (pull SD 1.96 for
      3 × 5 frames); the weights are then the expected inverse variances, ∝ dwell_s (the
      same noise per frame), which do not depend on the noise of σ̂. The combined σ² is
      Σ w_i²·σ̂_i² / (Σ w_i)², with Welch–Satterthwaite degrees of freedom
      (Σ w_i²σ̂_i²)² / Σ (w_i²σ̂_i²)²/ν_i (docs/estimator.md, "Accumulations in analog mode").
    - intensity: dwell-weighted mean Σ I_i·t_i / Σ t_i, i.e. total counts over total time
      (σ propagated likewise); ΔI, I_L, I_R then follow from the combined I and g.
    - emission_z and exclusion_z: Σ √t_i·z_i / √Σ t_i (exact for emission_z when the dark
      rate is the same in every accumulation; for exclusion_z when the accumulations are
      alike).
    - chi2_red: frame-weighted mean; n_frames, dwell_s and accumulations add up.
    - flags: ``no_emission``, ``linear_pol``, ``linear_unknown`` and ``few_frames`` are
      re-evaluated on the combined point with ``rules``; every other flag of any point is
      kept; ``scatter`` is set when the points' g values disagree (χ² of g_i about the mean,
      each term taken through Student's t at its dof when σ was estimated, upper tail <
      ``rules.misfit_tail``).

    The points are treated as independent: none may have had a blank subtracted
    (:func:`subtract_blank` comes after combining). A single point is returned unchanged.
    """
    if not points:
        raise ValueError("combine_points needs at least one point")
    if len(points) == 1:
        return points[0]
    col = lambda name: np.array([getattr(p, name) for p in points], dtype=np.float64)
    t = col("dwell_s")
    total_t = float(t.sum())
    intensity = float(np.sum(col("intensity") * t) / total_t)
    sigma_i = float(math.sqrt(np.sum((col("sigma_intensity") * t) ** 2)) / total_t)
    dofs = col("dof_sigma")
    expected = bool(np.any(np.isfinite(dofs)))
    weights = t if expected else None
    g, sigma_g, dof, chi2_g, n_g = _weighted(col("g_lum"), col("sigma_g"), dofs, weights)
    u, sigma_u, _, _, _ = _weighted(col("linear"), col("sigma_linear"), dofs, weights)
    z, z_excl = (_pooled_z(col(name), t) for name in ("emission_z", "exclusion_z"))
    frames = col("n_frames")
    chi = col("chi2_red")
    ok = np.isfinite(chi)
    chi2_red = float(np.sum(chi[ok] * frames[ok]) / np.sum(frames[ok])) if ok.any() else math.nan
    if not expected:
        dof = math.inf
    elif math.isnan(dof):        # no finite g: the σ of the intensity's accumulations
        dof = float(np.sum(dofs[np.isfinite(dofs)]))

    flags, (g, sigma_g, u, sigma_u) = signal_flags(intensity, sigma_i, g, sigma_g, u, sigma_u,
                                                   rules, emission_z=z, exclusion_z=z_excl)
    if math.isfinite(g) and n_g >= 2 and chi2_sf(chi2_g, n_g - 1) < rules.misfit_tail:
        flags.append(FLAG_SCATTER)
    flags.extend(sigma_flags(dof))
    for p in points:
        flags.extend(f for f in p.flags if f not in _SIGNAL_FLAGS | _SIGMA_FLAGS)
    delta_i = intensity * g / 2.0
    return PointResult(
        wavelength_nm=points[0].wavelength_nm, intensity=intensity,
        i_left=(intensity + delta_i) / 2.0, i_right=(intensity - delta_i) / 2.0,
        delta_i=delta_i, g_lum=g, sigma_g=sigma_g, linear=u, sigma_linear=sigma_u,
        chi2_red=chi2_red, n_frames=int(frames.sum()), dwell_s=total_t, flags=tuple(flags),
        sigma_intensity=sigma_i, accumulations=sum(p.accumulations for p in points),
        emission_z=z, exclusion_z=z_excl, dof_sigma=dof)


def _pooled_z(zs: np.ndarray, t: np.ndarray) -> float:
    """Σ √t_i·z_i / √Σ t_i, or NaN when any z_i is not finite."""
    if not np.all(np.isfinite(zs)):
        return _NAN
    return float(np.sum(np.sqrt(t) * zs) / math.sqrt(t.sum()))


def _weighted(values: np.ndarray, sigmas: np.ndarray, dofs: np.ndarray,
              weights: np.ndarray | None) -> tuple[float, float, float, float, int]:
    """Weighted mean of the usable values, its σ, the degrees of freedom of that σ, the χ² of
    the values about it and the count of usable values.

    ``weights`` None: inverse-variance weights 1/σ_i² (σ exact, dof inf). Otherwise the given
    weights (expected inverse variances), σ² = Σ w_i²σ_i² / (Σ w_i)² with Welch–Satterthwaite
    dof, and the χ² terms (v_i − mean)²/Var(v_i − mean) each mapped through Student's t at
    the dof of σ_i to the normal score of equal tail, so the sum is χ²(n − 1) for any dof.
    """
    ok = np.isfinite(values) & np.isfinite(sigmas) & (sigmas > 0)
    if not ok.any():
        return math.nan, math.nan, math.nan, math.nan, 0
    v, s = values[ok], sigmas[ok]
    if weights is None:
        w = 1.0 / s ** 2
        mean = float(np.sum(w * v) / np.sum(w))
        return (mean, float(1.0 / math.sqrt(np.sum(w))), math.inf,
                float(np.sum(w * (v - mean) ** 2)), int(ok.sum()))
    w = weights[ok] / np.sum(weights[ok])
    nu = dofs[ok]
    mean = float(np.sum(w * v))
    parts = (w * s) ** 2
    var = float(parts.sum())
    finite = np.isfinite(nu)
    denominator = float(np.sum(parts[finite] ** 2 / nu[finite]))
    dof = var * var / denominator if denominator > 0 else math.inf
    # Var(v_i − mean) = σ_i²(1 − 2w_i) + Σ w_j²σ_j²
    pulls = np.abs(v - mean) / np.sqrt(np.maximum(s ** 2 * (1.0 - 2.0 * w) + var, 1e-300))
    return mean, math.sqrt(var), dof, _t_chi2(pulls, nu), int(ok.sum())


def _t_chi2(pulls: np.ndarray, dofs: np.ndarray) -> float:
    """Σ z_i², z_i the normal score with the tail of |pull_i| under Student's t at dofs_i.
    A t tail is heavier than the normal one, so z_i ≤ |pull_i|: the exact tails are worked
    out only when the plain Σ pull² could be significant."""
    plain = float(np.sum(pulls ** 2))
    if len(pulls) < 2 or chi2_sf(plain, len(pulls) - 1) > 0.01:
        return plain
    chi2 = 0.0
    for t, n in zip(pulls.tolist(), dofs.tolist()):
        p = _stats.t_upper_tail(t, n)
        chi2 += _stats.z_from_upper_tail(min(max(p, 1e-300), 0.5)) ** 2
    return chi2


def emission_significance(intensity: float, sigma_intensity: float,
                          emission_z: float = _NAN) -> float:
    """The significance a ``no_emission`` decision is made on: the score statistic
    ``emission_z`` when it is finite, else the Wald ratio intensity / sigma_intensity."""
    if math.isfinite(emission_z):
        return float(emission_z)
    return intensity / sigma_intensity if sigma_intensity > 0 else _NAN


def signal_flags(intensity: float, sigma_intensity: float, g: float, sigma_g: float,
                 u: float, sigma_u: float, rules: FlagRules = FlagRules(), *,
                 emission_z: float = _NAN, exclusion_z: float = _NAN,
                 ) -> tuple[list[str], tuple[float, float, float, float]]:
    """The ``no_emission`` / ``undetected`` / ``linear_unknown`` / ``linear_pol`` decision
    for one point.

    Returns the flags and (g, σ_g, u, σ_u), all four NaN when the emission is not significant
    (:func:`emission_significance` < ``rules.snr_min``, not finite, or g undefined); such a
    point is ``no_emission`` when ``exclusion_z`` ≥ ``rules.exclude_z`` or is NaN (nothing to
    judge it against), else ``undetected``.
    """
    snr = emission_significance(intensity, sigma_intensity, emission_z)
    if not (math.isfinite(snr) and snr >= rules.snr_min and math.isfinite(g)):
        undecided = not math.isnan(exclusion_z) and not exclusion_z >= rules.exclude_z
        return ([FLAG_UNDETECTED] if undecided else [FLAG_NO_EMISSION]), (_NAN, _NAN, _NAN,
                                                                            _NAN)
    if not math.isfinite(u):
        return [FLAG_LINEAR_UNKNOWN], (g, sigma_g, u, sigma_u)
    if abs(u) > rules.linear_nsigma * sigma_u and abs(u) > rules.linear_ratio * max(abs(g), sigma_g):
        return [FLAG_LINEAR_POL], (g, sigma_g, u, sigma_u)
    return [], (g, sigma_g, u, sigma_u)


def chi2_misfit(chi2_red: float, dof: int, tail: float = 1e-3) -> bool:
    """True when ``chi2_red`` lies outside the central (1 − 2·tail) range of χ²(dof)/dof.

    A NaN ``chi2_red`` or dof ≤ 0 (nothing to test) gives False.
    """
    if dof <= 0 or not math.isfinite(chi2_red):
        return False
    lo = chi2_quantile(tail, dof) / dof
    hi = chi2_quantile(1.0 - tail, dof) / dof
    return not lo <= chi2_red <= hi


def chi2_quantile(p: float, dof: float) -> float:
    """Quantile of the χ² distribution with ``dof`` degrees of freedom (Wilson–Hilferty).

    The cube root of χ²/dof is nearly normal. At p = 0.001 … 0.999 the relative error is below
    1 % for dof ≥ 30 (tested against scipy) and shrinks as 1/dof; at dof = 10 the 0.1 % lower
    quantile is 7 % low. Frame fits have dof = n_frames·B − 3, in the thousands.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if not dof > 0:
        raise ValueError(f"dof must be > 0, got {dof!r}")
    c = 2.0 / (9.0 * dof)
    z = NormalDist().inv_cdf(p)
    return dof * max(1.0 - c + z * math.sqrt(c), 0.0) ** 3


def chi2_sf(x: float, dof: float) -> float:
    """Survival function P(χ²(dof) > x) by the Wilson–Hilferty approximation."""
    if not dof > 0:
        raise ValueError(f"dof must be > 0, got {dof!r}")
    if x <= 0:
        return 1.0
    c = 2.0 / (9.0 * dof)
    z = ((x / dof) ** (1.0 / 3.0) - (1.0 - c)) / math.sqrt(c)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


_HEALTH = ((Flags.SATURATED, "saturated"), (Flags.OVERLOAD, "overload"),
           (Flags.MONO_MOVING, "mono_moving"), (Flags.OVERRUN, "overrun"))


def frame_health_flags(frame_flags: Iterable[int] | np.ndarray) -> tuple[str, ...]:
    """Frame-health flags of a point from the protocol flags of all frames it received.

    Returns ``saturated``, ``overload``, ``mono_moving``, ``overrun`` when any frame carried
    that protocol flag, and ``pem_unlocked`` when any frame lacked PEM_LOCKED. Such frames are
    excluded from the estimate (docs/protocol.md), so these flags mean "the point lost frames
    to this condition".
    """
    arr = np.asarray(list(frame_flags) if not isinstance(frame_flags, np.ndarray)
                     else frame_flags, dtype=np.int64)
    if arr.size == 0:
        return ()
    seen = int(np.bitwise_or.reduce(arr))
    out = [name for bit, name in _HEALTH if seen & int(bit)]
    if np.any((arr & int(Flags.PEM_LOCKED)) == 0):
        out.append("pem_unlocked")
    return tuple(out)


def ordered_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """``flags`` without repeats, in the one fixed order of :data:`FLAG_ORDER` (unlisted
    flags after it, alphabetically): the same flags are always written the same way."""
    unique = dict.fromkeys(flags)
    return tuple(sorted(unique, key=lambda f: (_FLAG_RANK.get(f, len(_FLAG_RANK)), f)))


def checked_flags(flags: Iterable[str]) -> tuple[str, ...]:
    """``flags`` as a tuple of valid, distinct names in the fixed order (:data:`FLAG_ORDER`);
    ValueError for a name that cannot go into a CSV cell."""
    if isinstance(flags, str):
        raise ValueError(f"flags must be a tuple of names, not the string {flags!r}")
    out: list[str] = []
    for f in flags:
        if not isinstance(f, str) or not _FLAG_NAME.match(f):
            raise ValueError(f"flag {f!r} is not a valid name: use lower-case letters, digits "
                             "and '_', starting with a letter (it is written into CSV cells)")
        if f not in out:
            out.append(f)
    return ordered_flags(out)
