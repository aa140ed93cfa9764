"""Circular dichroism (CD) from phase-binned transmission counts: ΔA, A, g_abs, ellipticity.

In the CD geometry (lamp → monochromator → polarizer at 45° → PEM → sample → PMT) the light
after the PEM swings between left and right circular, and the sample's transmission gives
the binned model of the CPL estimator with (``docs/cd.md``)

    v = (T_L − T_R)/(T_L + T_R) = −tanh(ln10·ΔA/2),    ΔA = A_L − A_R,
    u = −tanh(ln10·LD/2),                              LD = A(+45°) − A(−45°),

so an :class:`~cplscope.demod.Estimate` of the frames (M, u, v with covariance) carries ΔA
and LD, and its signal rate I, against the rate I_0 of a baseline scan (solvent and cell)
at the same wavelength, the absorbance A = (A_L + A_R)/2:

    ΔA = −(2/ln10)·artanh(v),       A = −log10(I/I_0) − ½·log10(1 − v²) − ½·log10(1 − u²),
    g_abs = ΔA/A,                   θ (mdeg) = 32 980·ΔA.

The two log terms undo the rise of the mean transmission (T_L + T_R)/2 over 10^−A by
cosh(ln10·ΔA/2) (and cosh(ln10·LD/2)); they are of order ΔA².

:func:`cd_point` applies, in order: the CD calibration (ΔA ← cd_sign·cd_scale·ΔA, from a CSA
standard: :func:`fit_csa`), the baseline (A against I_0; the baseline's own ΔA is
subtracted), the σ of every quantity from the counts of both scans, and the flags
(:class:`CDRules`): ``opaque`` (too little light: values NaN, not noise), ``no_baseline``,
``no_absorbance``, ``linear_dichroism``, ``misfit`` (the bin shape does not fit) and
``flicker`` (the frame totals scatter beyond Poisson: the lamp is unsteady, which ΔA does not
feel but A does).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np

from ..demod import Estimate
from .results import FLAG_DWELL_LIMIT, checked_flags, fit_flags

__all__ = [
    "CD_COLUMNS", "CD_CSV_COLUMNS", "CSA_DELTA_EPS_192", "CSA_DELTA_EPS_290", "CSA_EPS_285",
    "CSA_RATIO_192_290", "FLAG_LINEAR_DICHROISM", "FLAG_NO_ABSORBANCE", "FLAG_NO_BASELINE",
    "FLAG_OPAQUE", "MDEG_PER_DELTA_A", "BaselinePoint", "CDCalibration", "CDPointResult",
    "CDRules", "CSAFit", "baseline_from_point", "cd_point", "combine_cd_points", "delta_a_from_v",
    "fit_csa",
    "v_from_delta_a",
]

LN10 = math.log(10.0)
#: Ellipticity in mdeg per unit ΔA, the conventional 32 980 (exactly (ln10/4)(180/π)·1000
#: = 32 982.1; the convention is what instruments and papers use).
MDEG_PER_DELTA_A = 32980.0

#: Accepted CD of d-10-camphorsulfonate (Chen & Yang, Anal. Lett. 1977, 10, 1195; docs/cd.md):
#: Δε = ε_L − ε_R in M⁻¹cm⁻¹ at the band maxima, and the molar absorptivity at 285 nm.
CSA_DELTA_EPS_290 = 2.36
CSA_DELTA_EPS_192 = -4.72
CSA_RATIO_192_290 = CSA_DELTA_EPS_192 / CSA_DELTA_EPS_290
CSA_EPS_285 = 34.5

FLAG_OPAQUE = "opaque"
FLAG_NO_BASELINE = "no_baseline"
FLAG_NO_ABSORBANCE = "no_absorbance"
FLAG_LINEAR_DICHROISM = "linear_dichroism"

#: CD spectrum CSV columns, in file order (docs/data-files.md).
CD_COLUMNS: tuple[str, ...] = (
    "wavelength_nm", "absorbance", "sigma_absorbance", "delta_a", "sigma_delta_a", "g_abs",
    "sigma_g_abs", "ellipticity_mdeg", "linear_dichroism", "chi2_red", "n_frames", "dwell_s",
    "flags",
)
#: Every column written: :data:`CD_COLUMNS` first, then what a later baseline subtraction or a
#: reader needs (the transmitted rate, which a baseline scan hands on as I_0).
CD_CSV_COLUMNS: tuple[str, ...] = CD_COLUMNS + (
    "sigma_linear_dichroism", "intensity", "sigma_intensity")

_NAN = float("nan")


def delta_a_from_v(v: float | np.ndarray) -> float | np.ndarray:
    """ΔA = A_L − A_R from the reduced circular Stokes v of the transmitted light (|v| < 1)."""
    return -(2.0 / LN10) * np.arctanh(v)


def v_from_delta_a(delta_a: float | np.ndarray) -> float | np.ndarray:
    """v = −tanh(ln10·ΔA/2), the inverse of :func:`delta_a_from_v`."""
    return -np.tanh(0.5 * LN10 * np.asarray(delta_a, dtype=float))


@dataclass(frozen=True)
class CDCalibration:
    """Sign and scale of the CD: ΔA = cd_sign·cd_scale·ΔA_raw, ΔA_raw = −(2/ln10)·artanh(v).

    The sign depends on the polarizer's orientation (±45°) and the reference phase of the
    electronics; the scale absorbs an error of the retardation A0 in the CD geometry. Both come
    from a standard of known CD (:func:`fit_csa`), as the CPL handedness comes from a circular
    polarizer; the CPL handedness is not applied to CD.

    Attributes:
        cd_sign: +1 or −1.
        cd_scale: > 0, dimensionless.
        sigma_scale: standard uncertainty of ``cd_scale`` (not propagated into each point's σ:
            it is one systematic factor for the whole spectrum).
        source: where the constants come from (e.g. the CSA fit).
    """

    cd_sign: int = 1
    cd_scale: float = 1.0
    sigma_scale: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.cd_sign not in (1, -1) or isinstance(self.cd_sign, bool):
            raise ValueError(f"cd_sign must be +1 or -1, got {self.cd_sign!r}")
        scale = float(self.cd_scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"cd_scale must be a finite number > 0, got {self.cd_scale!r}")
        sig = float(self.sigma_scale)
        if not (math.isfinite(sig) and sig >= 0):
            raise ValueError(f"sigma_scale must be finite and ≥ 0, got {self.sigma_scale!r}")
        object.__setattr__(self, "cd_scale", scale)
        object.__setattr__(self, "sigma_scale", sig)

    @property
    def factor(self) -> float:
        """cd_sign·cd_scale."""
        return self.cd_sign * self.cd_scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the ``cd`` section of a calibration or of a spectrum's metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CDCalibration:
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        Raises:
            ValueError: on unknown keys or invalid values.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"CD calibration: unknown key(s) {unknown}; allowed {sorted(names)}")
        return cls(**{k: data[k] for k in data})


@dataclass(frozen=True)
class BaselinePoint:
    """The baseline scan (solvent and cell, no sample) at one wavelength.

    Attributes:
        rate_cps: transmitted signal rate I_0, dark subtracted, counts/s (or the analog
            signal's units, as long as the sample's rate is in the same ones).
        sigma_rate_cps: its standard uncertainty.
        delta_a: the baseline's ΔA in the calibrated convention (cell strain, instrument
            offset), subtracted from the sample's.
        sigma_delta_a: its standard uncertainty.
    """

    rate_cps: float
    sigma_rate_cps: float
    delta_a: float = 0.0
    sigma_delta_a: float = 0.0

    def __post_init__(self) -> None:
        for name in ("rate_cps", "sigma_rate_cps", "delta_a", "sigma_delta_a"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"BaselinePoint.{name} must be finite, got {value!r}: the "
                                 "baseline scan has no usable value at this wavelength "
                                 "(opaque?) — measure the baseline again")
            object.__setattr__(self, name, value)
        if self.rate_cps <= 0:
            raise ValueError(f"BaselinePoint.rate_cps must be > 0, got {self.rate_cps!r}: the "
                             "baseline transmits no light at this wavelength — check the lamp, "
                             "the shutter and the cell")
        if self.sigma_rate_cps < 0 or self.sigma_delta_a < 0:
            raise ValueError("BaselinePoint σ values must be ≥ 0")


@dataclass(frozen=True)
class CDRules:
    """Thresholds of the CD flags (docs/cd.md explains them).

    Attributes:
        min_snr: ``opaque`` when the transmitted signal's significance (its score against the
            dark when the estimate gives one, else M/σ_M; in analog mode always M/σ_M) is
            below this. 20 keeps σ(A) from the sample's counts below 0.022.
        max_absorbance: ``opaque`` when A (against the baseline) exceeds this. On a real
            instrument stray light and the detector's linearity make A ≳ 3 unreliable long
            before the counts run out; the twin has no stray light, so this is the only limit
            there at high A with long dwell.
        min_absorbance_snr: ``no_absorbance`` (g_abs NaN) when A/σ_A is below this: g_abs =
            ΔA/A has no meaning where the sample does not absorb.
        ld_nsigma: ``linear_dichroism`` when |LD| > ld_nsigma·σ_LD: linear dichroism leaks
            into the CD through residual strain of the PEM and the cell, so it is reported.
        misfit_tail: ``misfit`` when chi2_red lies outside the central 1 − 2·misfit_tail
            range of χ²(dof)/dof.
    """

    min_snr: float = 20.0
    max_absorbance: float = 3.0
    min_absorbance_snr: float = 3.0
    ld_nsigma: float = 5.0
    misfit_tail: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("min_snr", "max_absorbance", "min_absorbance_snr", "ld_nsigma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"CDRules.{name} must be a finite number ≥ 0, got {value!r}")
        if not 0.0 < self.misfit_tail < 0.5:
            raise ValueError(f"CDRules.misfit_tail must be in (0, 0.5), got {self.misfit_tail!r}")


@dataclass(frozen=True)
class CDPointResult:
    """The CD result at one wavelength, as written to a CD spectrum CSV.

    Attributes:
        wavelength_nm: monochromator wavelength, nm.
        absorbance: A = (A_L + A_R)/2 against the baseline (decadic); NaN without a baseline.
        sigma_absorbance: standard uncertainty of ``absorbance``.
        delta_a: ΔA = A_L − A_R, calibrated, baseline's ΔA subtracted.
        sigma_delta_a: standard uncertainty of ``delta_a``.
        g_abs: ΔA/A; NaN without a baseline or where A is not significant.
        sigma_g_abs: standard uncertainty of ``g_abs``.
        ellipticity_mdeg: θ = 32 980·ΔA, mdeg.
        linear_dichroism: LD = A(+45°) − A(−45°) in the instrument's frame (not sign
            calibrated); NaN when the bin layout cannot identify u.
        chi2_red: reduced χ² of the sample's fit.
        n_frames: frames used.
        dwell_s: counting time of the used frames, s.
        flags: flag names (docs/data-files.md).
        sigma_linear_dichroism: standard uncertainty of ``linear_dichroism``.
        intensity: transmitted signal rate I (dark subtracted), counts/s for photon counting.
        sigma_intensity: its standard uncertainty.
    """

    wavelength_nm: float
    absorbance: float
    sigma_absorbance: float
    delta_a: float
    sigma_delta_a: float
    g_abs: float
    sigma_g_abs: float
    ellipticity_mdeg: float
    linear_dichroism: float
    chi2_red: float
    n_frames: int
    dwell_s: float
    flags: tuple[str, ...] = ()
    sigma_linear_dichroism: float = _NAN
    intensity: float = _NAN
    sigma_intensity: float = _NAN

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", checked_flags(self.flags))
        if self.n_frames < 0:
            raise ValueError(f"n_frames must be ≥ 0, got {self.n_frames}")

    @property
    def sigma_ellipticity_mdeg(self) -> float:
        """Standard uncertainty of ``ellipticity_mdeg``, mdeg."""
        return MDEG_PER_DELTA_A * self.sigma_delta_a

    def has(self, flag: str) -> bool:
        """True when ``flag`` is set."""
        return flag in self.flags

    def as_dict(self) -> dict[str, object]:
        """The CSV columns as a dict (flags as a tuple)."""
        return {name: getattr(self, name) for name in CD_CSV_COLUMNS}


def baseline_from_point(point: CDPointResult) -> BaselinePoint:
    """The :class:`BaselinePoint` that a baseline scan's point hands on (its rate and ΔA).

    Raises:
        ValueError: when the baseline point is opaque or has no finite rate.
    """
    if point.has(FLAG_OPAQUE) or not (math.isfinite(point.intensity) and point.intensity > 0):
        raise ValueError(f"the baseline at {point.wavelength_nm:g} nm is opaque or has no "
                         "signal: a baseline must transmit; check the lamp, the shutter and "
                         "the solvent cell")
    da = point.delta_a if math.isfinite(point.delta_a) else 0.0
    sda = point.sigma_delta_a if math.isfinite(point.sigma_delta_a) else 0.0
    return BaselinePoint(point.intensity, point.sigma_intensity, da, sda)


def cd_point(
    est: Estimate,
    wavelength_nm: float,
    dwell_s: float,
    *,
    baseline: BaselinePoint | None = None,
    calibration: CDCalibration = CDCalibration(),
    rules: CDRules = CDRules(),
    subtract_baseline_cd: bool = True,
    dwell_limit: bool = False,
    frame_flags: Iterable[str] = (),
    lamp: tuple[float, float] | None = None,
) -> CDPointResult:
    """Build the CD result of one wavelength from the estimate of its transmission frames.

    Args:
        est: :func:`cplscope.demod.estimate` of the sample's frames (raw: no handedness).
        wavelength_nm: monochromator wavelength, nm.
        dwell_s: counting time of those frames, s (> 0); photon-counting intensities are
            divided by it to give the rate I in counts/s.
        baseline: the baseline scan at this wavelength (:class:`BaselinePoint`), or None:
            then A and g_abs are NaN and the point is flagged ``no_baseline``.
        calibration: the CD sign and scale.
        rules: flag thresholds.
        subtract_baseline_cd: subtract the baseline's ΔA (the usual CD baseline correction).
        dwell_limit: the point stopped at the maximum dwell before reaching its target σ.
        frame_flags: frame-health flags to pass through.
        lamp: (L, σ_lnL): the lamp's level while the point was measured relative to the
            run's first lamp reading, and the σ of its log (:class:`~cplscope.science.lamp.
            LampDrift`); the rate is divided by L and σ_lnL enters its relative σ, so A and
            σ(A) hold the lamp's drift. None: not monitored (σ(A) is photon noise alone).

    Returns:
        The :class:`CDPointResult`. σ(A) = (1/ln10)·√((σ_I/I)² + (σ_I0/I_0)²); σ(ΔA) from σ_v
        (and the baseline's σ(ΔA)); σ(g_abs) from both, with the covariance of M and v.

    Raises:
        ValueError: on a non-finite or non-positive wavelength or dwell.
    """
    wl = float(wavelength_nm)
    if not (math.isfinite(wl) and wl > 0):
        raise ValueError(f"wavelength_nm must be a positive number of nm, got {wavelength_nm!r}")
    dwell = float(dwell_s)
    if not (math.isfinite(dwell) and dwell > 0):
        raise ValueError(f"dwell_s must be a positive number of seconds, got {dwell_s!r}")
    scale = 1.0 / dwell if est.noise == "poisson" else 1.0
    rate = float(est.intensity) * scale
    sigma_rate = float(est.sigma_intensity) * scale
    flags: list[str] = []
    # the bin shape carries ΔA and LD; the frame totals carry A: lamp flicker shows there
    flags.extend(fit_flags(est, rules.misfit_tail))
    if dwell_limit:
        flags.append(FLAG_DWELL_LIMIT)
    flags.extend(frame_flags)
    if baseline is None:
        flags.insert(0, FLAG_NO_BASELINE)

    # analog: emission_z is a t test at n_frames − 1 dof, whose z cannot pass ~15 with 20
    # frames however bright the light; the rule is about σ(A), i.e. M/σ_M (Wald)
    z = float(getattr(est, "emission_z", _NAN)) if est.noise == "poisson" else _NAN
    snr = z if math.isfinite(z) else (rate / sigma_rate if sigma_rate > 0 else _NAN)
    v, sigma_v = 0.5 * float(est.g_lum), 0.5 * float(est.sigma_g)
    a_raw = _NAN
    if baseline is not None and rate > 0 and baseline.rate_cps > 0:
        a_raw = -math.log10(rate / baseline.rate_cps)
    opaque = (not (math.isfinite(snr) and snr >= rules.min_snr) or not rate > 0
              or not (math.isfinite(v) and abs(v) < 1.0)
              or (math.isfinite(a_raw) and a_raw > rules.max_absorbance))
    if opaque:
        return CDPointResult(wl, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN, _NAN,
                             float(est.chi2_red), int(est.n_frames), dwell,
                             tuple([FLAG_OPAQUE] + flags), _NAN, rate, sigma_rate)
    if lamp is not None:
        level, sigma_log = float(lamp[0]), float(lamp[1])
        rate /= level
        sigma_rate = math.hypot(sigma_rate / level, rate * sigma_log)
        if baseline is not None and baseline.rate_cps > 0:
            a_raw = -math.log10(rate / baseline.rate_cps)

    k = calibration.factor
    dda_dv = -(2.0 / LN10) / (1.0 - v * v)        # d ΔA_raw / dv
    delta_a = k * float(delta_a_from_v(v))
    var_da = (k * dda_dv * sigma_v) ** 2
    u, sigma_u = float(est.linear), float(est.sigma_linear)
    if math.isfinite(u) and abs(u) < 1.0:
        ld = float(delta_a_from_v(u))
        sigma_ld = abs((2.0 / LN10) / (1.0 - u * u)) * sigma_u
        if sigma_ld > 0 and abs(ld) > rules.ld_nsigma * sigma_ld:
            flags.append(FLAG_LINEAR_DICHROISM)
    else:
        ld = sigma_ld = _NAN
    if baseline is not None and subtract_baseline_cd:
        delta_a -= baseline.delta_a
        var_da += baseline.sigma_delta_a ** 2
    sigma_da = math.sqrt(var_da)

    a = sigma_a = g = sigma_g = _NAN
    if baseline is not None:
        a = a_raw - 0.5 * math.log10(1.0 - v * v)
        if math.isfinite(ld):
            a -= 0.5 * math.log10(1.0 - u * u)
        rel_i = sigma_rate / rate
        rel_0 = baseline.sigma_rate_cps / baseline.rate_cps
        sigma_a = math.hypot(rel_i, rel_0) / LN10
        if sigma_a > 0 and abs(a) >= rules.min_absorbance_snr * sigma_a and a > 0:
            g = delta_a / a
            cov = np.asarray(est.covariance, dtype=float)
            cov_mv = float(cov[0, -1]) if cov.shape[0] >= 2 and est.intensity > 0 else 0.0
            if not math.isfinite(cov_mv):
                cov_mv = 0.0
            # A depends on M through −log10(M), ΔA on v: cov(A, ΔA) from cov(M, v)
            cov_a_da = (-1.0 / (LN10 * float(est.intensity))) * (k * dda_dv) * cov_mv
            var_g = (var_da - 2.0 * g * cov_a_da + g * g * sigma_a**2) / (a * a)
            sigma_g = math.sqrt(max(var_g, 0.0))
        else:
            flags.append(FLAG_NO_ABSORBANCE)
    return CDPointResult(
        wavelength_nm=wl, absorbance=a, sigma_absorbance=sigma_a, delta_a=delta_a,
        sigma_delta_a=sigma_da, g_abs=g, sigma_g_abs=sigma_g,
        ellipticity_mdeg=MDEG_PER_DELTA_A * delta_a, linear_dichroism=ld,
        chi2_red=float(est.chi2_red), n_frames=int(est.n_frames), dwell_s=dwell,
        flags=tuple(flags), sigma_linear_dichroism=sigma_ld, intensity=rate,
        sigma_intensity=sigma_rate)


def combine_cd_points(points: Sequence[CDPointResult]) -> CDPointResult:
    """One CD point from repeated measurements of the same wavelength (accumulations)
    against the same baseline.

    - ΔA and LD: inverse-variance weighted means of the finite values.
    - The transmitted rate I: dwell-weighted mean Σ I_i·t_i / Σ t_i (total counts over total
      time), its σ likewise.
    - A: dwell-weighted mean; its σ from the combined rate's relative σ and the baseline's,
      which every accumulation shares and so does not average down
      (σ_A² = σ_A,i² − (σ_I,i/I_i)²/ln10² gives the baseline's part).
    - g_abs = ΔA/A with σ from both (their small covariance left out).
    - chi2_red: frame-weighted mean; n_frames and dwell add up; flags: the union, in order.

    A point that is ``opaque`` in any accumulation is opaque. A single point is returned
    unchanged.
    """
    if not points:
        raise ValueError("combine_cd_points needs at least one point")
    if len(points) == 1:
        return points[0]
    flags = tuple(dict.fromkeys(f for p in points for f in p.flags))
    col = lambda name: np.array([getattr(p, name) for p in points], dtype=np.float64)
    t = col("dwell_s")
    total_t = float(t.sum())
    frames = col("n_frames")
    chi = col("chi2_red")
    ok = np.isfinite(chi)
    chi2 = float(np.sum(chi[ok] * frames[ok]) / np.sum(frames[ok])) if ok.any() else _NAN
    rate = float(np.sum(col("intensity") * t) / total_t)
    sigma_rate = float(math.sqrt(np.sum((col("sigma_intensity") * t) ** 2)) / total_t)
    common: dict[str, Any] = dict(wavelength_nm=points[0].wavelength_nm, chi2_red=chi2,
                                  n_frames=int(frames.sum()), dwell_s=total_t, intensity=rate,
                                  sigma_intensity=sigma_rate)
    if FLAG_OPAQUE in flags:
        return CDPointResult(absorbance=_NAN, sigma_absorbance=_NAN, delta_a=_NAN,
                             sigma_delta_a=_NAN, g_abs=_NAN, sigma_g_abs=_NAN,
                             ellipticity_mdeg=_NAN, linear_dichroism=_NAN, flags=flags,
                             **common)
    da, sigma_da = _inverse_variance(col("delta_a"), col("sigma_delta_a"))
    ld, sigma_ld = _inverse_variance(col("linear_dichroism"), col("sigma_linear_dichroism"))
    a = sigma_a = g = sigma_g = _NAN
    absorbance = col("absorbance")
    if np.isfinite(absorbance).all():
        a = float(np.sum(absorbance * t) / total_t)
        rel_i = col("sigma_intensity") / col("intensity")
        base_var = np.maximum(col("sigma_absorbance") ** 2 - (rel_i / LN10) ** 2, 0.0)
        sigma_a = math.sqrt((sigma_rate / rate / LN10) ** 2 + float(base_var.mean()))
        if FLAG_NO_ABSORBANCE not in flags and a > 0:
            g = da / a
            sigma_g = math.sqrt(sigma_da ** 2 + g * g * sigma_a ** 2) / a
    return CDPointResult(absorbance=a, sigma_absorbance=sigma_a, delta_a=da,
                         sigma_delta_a=sigma_da, g_abs=g, sigma_g_abs=sigma_g,
                         ellipticity_mdeg=MDEG_PER_DELTA_A * da, linear_dichroism=ld,
                         flags=flags, sigma_linear_dichroism=sigma_ld, **common)


def _inverse_variance(values: np.ndarray, sigmas: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(values) & np.isfinite(sigmas) & (sigmas > 0)
    if not ok.any():
        return _NAN, _NAN
    w = 1.0 / sigmas[ok] ** 2
    return float(np.sum(w * values[ok]) / w.sum()), float(1.0 / math.sqrt(w.sum()))


# --- calibration from the CSA standard ----------------------------------------------------

class _CDColumns(Protocol):
    wavelength_nm: np.ndarray
    absorbance: np.ndarray
    sigma_absorbance: np.ndarray
    delta_a: np.ndarray
    sigma_delta_a: np.ndarray


@dataclass(frozen=True)
class CSAFit:
    """Result of :func:`fit_csa`.

    Attributes:
        calibration: the :class:`CDCalibration` that maps the raw ΔA onto the accepted CSA
            value (applied on top of ``applied``: it replaces it).
        measured_delta_a: ΔA at 290.5 nm in the spectrum as measured.
        sigma_measured: its standard uncertainty.
        expected_delta_a: accepted ΔA at 290.5 nm for the sample (Δε·c·l, or 0.068·A_285).
        sigma_expected: its standard uncertainty (from A_285 when the concentration comes
            from the absorbance).
        ratio_192: measured ΔA(192.5)/ΔA(290.5) (accepted −2.00), NaN when the spectrum does
            not reach 192.5 nm with finite values.
        sigma_ratio_192: its standard uncertainty.
    """

    calibration: CDCalibration
    measured_delta_a: float
    sigma_measured: float
    expected_delta_a: float
    sigma_expected: float
    ratio_192: float
    sigma_ratio_192: float

    def text(self) -> str:
        """A short report."""
        c = self.calibration
        out = (f"CSA ΔA(290.5 nm): measured {self.measured_delta_a:+.4e} ± "
               f"{self.sigma_measured:.1e}, accepted {self.expected_delta_a:+.4e} ± "
               f"{self.sigma_expected:.1e} → cd_sign = {c.cd_sign:+d}, cd_scale = "
               f"{c.cd_scale:.4f} ± {c.sigma_scale:.4f}")
        if math.isfinite(self.ratio_192):
            out += (f"\nΔA(192.5)/ΔA(290.5) = {self.ratio_192:.3f} ± {self.sigma_ratio_192:.3f}"
                    f" (accepted {CSA_RATIO_192_290:.2f})")
        return out


def _local_value(lam: np.ndarray, y: np.ndarray, sy: np.ndarray, at: float,
                 window_nm: float) -> tuple[float, float]:
    """Value and σ of a smooth spectrum at ``at`` nm: a weighted quadratic through the points
    within ±window_nm (≥ 4 of them), else linear interpolation between the two neighbours."""
    ok = np.isfinite(lam) & np.isfinite(y) & np.isfinite(sy) & (sy > 0)
    lam, y, sy = lam[ok], y[ok], sy[ok]
    near = np.abs(lam - at) <= window_nm
    if near.sum() >= 4 and lam[near].min() < at < lam[near].max():
        x = lam[near] - at
        w = 1.0 / sy[near] ** 2
        design = np.column_stack([np.ones_like(x), x, x * x])
        fisher = design.T @ (design * w[:, None])
        cov = np.linalg.inv(fisher)
        coef = cov @ (design.T @ (w * y[near]))
        return float(coef[0]), float(math.sqrt(cov[0, 0]))
    below, above = np.flatnonzero(lam <= at), np.flatnonzero(lam >= at)
    if below.size and above.size:
        i, j = below[np.argmax(lam[below])], above[np.argmin(lam[above])]
        if i == j:
            return float(y[i]), float(sy[i])
        if lam[j] - lam[i] <= 2 * window_nm:
            f = (at - lam[i]) / (lam[j] - lam[i])
            return (float((1 - f) * y[i] + f * y[j]),
                    float(math.hypot((1 - f) * sy[i], f * sy[j])))
    raise ValueError(f"the spectrum has no usable points around {at:g} nm (within "
                     f"±{window_nm:g} nm, not opaque): scan across it")


def fit_csa(spectrum: _CDColumns, *, concentration_mol_l: float | None = None,
            path_cm: float = 1.0, applied: CDCalibration = CDCalibration(),
            window_nm: float = 5.0, min_significance: float = 10.0) -> CSAFit:
    """The CD sign and scale from a measured spectrum of the CSA standard.

    The accepted value is Δε(290.5 nm) = +2.36 M⁻¹cm⁻¹ (:data:`CSA_DELTA_EPS_290`), so
    ΔA(290.5) = 2.36·c·l. Without ``concentration_mol_l`` the concentration comes from the
    spectrum's own absorbance at 285 nm (ε = 34.5 M⁻¹cm⁻¹; needs a baseline), which makes
    the path length cancel: ΔA(290.5) = (2.36/34.5)·A(285).

    Args:
        spectrum: a CD spectrum of CSA (anything with the arrays ``wavelength_nm``,
            ``delta_a``, ``sigma_delta_a``, ``absorbance``, ``sigma_absorbance``, such as a
            :class:`~cplscope.data.cd_spectrum.CDSpectrum`) covering 290.5 nm (and 285 nm).
        concentration_mol_l: CSA concentration in mol/L, or None (from A at 285 nm).
        path_cm: cell path length in cm (used with ``concentration_mol_l``).
        applied: the calibration the spectrum was computed with (identity for a raw one).
        window_nm: half-width of the local fit around each band, nm.
        min_significance: the measured band must be this many σ from zero.

    Raises:
        ValueError: when the band is missing, opaque or not significant, or the concentration
            or path is not a positive number.
    """
    lam = np.asarray(spectrum.wavelength_nm, dtype=float)
    da, sda = np.asarray(spectrum.delta_a, float), np.asarray(spectrum.sigma_delta_a, float)
    measured, s_meas = _local_value(lam, da, sda, 290.5, window_nm)
    if not abs(measured) >= min_significance * s_meas:
        raise ValueError(f"the CSA band at 290.5 nm is not significant: ΔA = {measured:.3e} ± "
                         f"{s_meas:.1e}; count longer or check that CSA is in the beam")
    if concentration_mol_l is None:
        a285, s285 = _local_value(lam, np.asarray(spectrum.absorbance, float),
                                  np.asarray(spectrum.sigma_absorbance, float), 285.0, window_nm)
        if not a285 > 0:
            raise ValueError("no absorbance at 285 nm to infer the CSA concentration from: "
                             "measure CSA against a baseline, or give concentration_mol_l")
        expected = CSA_DELTA_EPS_290 / CSA_EPS_285 * a285
        s_exp = CSA_DELTA_EPS_290 / CSA_EPS_285 * s285
    else:
        c, path = float(concentration_mol_l), float(path_cm)
        if not (math.isfinite(c) and c > 0 and math.isfinite(path) and path > 0):
            raise ValueError(f"concentration_mol_l and path_cm must be positive numbers, got "
                             f"{concentration_mol_l!r} and {path_cm!r}")
        expected, s_exp = CSA_DELTA_EPS_290 * c * path, 0.0
    raw = measured / applied.factor          # what the instrument gives before calibration
    s_raw = s_meas / applied.cd_scale
    sign = 1 if raw > 0 else -1
    scale = expected / abs(raw)
    sigma_scale = scale * math.hypot(s_raw / raw, s_exp / expected)
    ratio = s_ratio = _NAN
    try:
        d192, s192 = _local_value(lam, da, sda, 192.5, window_nm)
        ratio = d192 / measured
        s_ratio = abs(ratio) * math.hypot(s192 / d192, s_meas / measured) if d192 else _NAN
    except ValueError:
        pass
    source = (f"CSA standard: ΔA(290.5 nm) raw {raw:+.4e} ± {s_raw:.1e} against the accepted "
              f"{expected:+.4e} (Δε = +2.36 M⁻¹cm⁻¹)")
    cal = CDCalibration(sign, scale, sigma_scale, source)
    return CSAFit(cal, measured, s_meas, expected, s_exp, ratio, s_ratio)

