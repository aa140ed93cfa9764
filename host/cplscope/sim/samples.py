"""Sample library of the simulated bench: emission spectrum, g_lum(λ) and linear polarization,
and, for the circular-dichroism (transmission) geometry, absorbance, ΔA(λ) and linear dichroism.

A :class:`Sample` is three tabulated, piecewise-linear functions of wavelength (nm):

- ``emission``: relative spectral intensity I(λ) ≥ 0 (arbitrary units, the built-ins peak at 1);
- ``g_lum``: dissymmetry factor 2(I_L − I_R)/(I_L + I_R), −2 … 2 (so v = g_lum/2);
- ``linear``: reduced Stokes u = U/I at the modulator (linear polarization at ±45°), −1 … 1;

plus ``peak_rate_cps``, the detected photon rate (counts/s, before dead time) of the bench's
photon-counting PMT at the wavelength where the slit-convolved emission × quantum efficiency
peaks, at the nominal high voltage. Outside the tabulated range the emission is zero.

:meth:`Sample.truth` gives what an ideal instrument should recover at a monochromator setting:
the emission, g_lum and linear polarization averaged over the triangular slit function,
weighted by emission. The bench (:mod:`cplscope.sim.bench`) uses exactly these values.

A sample may also carry an :class:`Absorption`: its absorbance A = (A_L + A_R)/2, circular
dichroism ΔA = A_L − A_R and linear dichroism LD = A(+45°) − A(−45°) against wavelength, which
the bench's ``geometry="cd"`` uses (:meth:`Absorption.truth` gives what an ideal CD
instrument recovers). A sample needs emission data, absorption data or both.

Built-in samples: :func:`list_samples`. User samples: JSON files, see :func:`sample_from_file`
and ``docs/simulator.md``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "Absorption",
    "CDTruth",
    "Component",
    "Sample",
    "Truth",
    "gate_fraction",
    "list_samples",
    "load_sample",
    "sample_from_file",
    "slit_kernel",
]

#: Gauss–Legendre nodes per half of the triangular slit function.
_SLIT_NODES = 48
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_SLIT_NODES)

_REQUIRED_KEYS = ("name", "wavelength_nm")
_EMISSION_KEYS = ("emission", "g_lum", "peak_rate_cps")
_ABSORPTION_KEYS = ("absorbance", "delta_a", "g_abs", "linear_dichroism")
_OPTIONAL_KEYS = ("linear", "description", "lifetime_s", "components")
_ALL_KEYS = _REQUIRED_KEYS + _EMISSION_KEYS + _ABSORPTION_KEYS + _OPTIONAL_KEYS
_COMPONENT_KEYS = ("emission", "g_lum", "lifetime_s", "peak_rate_cps")
_COMPONENT_OPTIONAL = ("linear", "name")
_LN10 = math.log(10.0)
#: Lifetimes below this (s) are treated as this long where a finite one is needed (the
#: counting head's view of a prompt burst); 0 in a sample file means "prompt".
MIN_LIFETIME_S = 1e-9


def gate_fraction(lifetime_s: float | np.ndarray, delay_s: float, width_s: float,
                  period_s: float) -> np.ndarray | np.float64:
    """The fraction of a component's photons that a gate [delay, delay + width] after each
    excitation pulse keeps (measurement model §11, earlier pulses included):

        f = (e^(−δ/τ) − e^(−(δ+w)/τ)) / (1 − e^(−T_p/τ))

    Args:
        lifetime_s: τ, s (scalar or array); 0 is a prompt component (scatter), whose photons
            all arrive at t = 0: f = 1 when the gate starts at 0, else 0.
        delay_s, width_s: the gate after each pulse, s (delay ≥ 0, width > 0,
            delay + width ≤ period).
        period_s: the pulse period T_p, s.
    """
    tau = np.asarray(lifetime_s, dtype=float)
    d, w, p = float(delay_s), float(width_s), float(period_s)
    if not (math.isfinite(p) and p > 0 and math.isfinite(d) and d >= 0
            and math.isfinite(w) and w > 0 and d + w <= p * (1 + 1e-12)):
        raise ValueError(f"a gate needs 0 ≤ delay, 0 < width and delay + width ≤ the pulse "
                         f"period (s), got delay {delay_s!r}, width {width_s!r}, period "
                         f"{period_s!r}")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        safe = np.where(tau > 0, tau, 1.0)
        f = (-np.expm1(-w / safe) * np.exp(-d / safe)) / -np.expm1(-p / safe)
    prompt = 1.0 if d == 0 else 0.0
    out = np.where(tau > 0, f, prompt)
    return out if out.ndim else np.float64(out)


@lru_cache(maxsize=64)
def slit_kernel(bandpass_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature for the triangular slit function of full width at half maximum ``bandpass_nm``.

    The slit function is T(x) = (1 − |x|/w)/w for |x| < w (w = bandpass in nm), which has unit
    area, so convolving with it preserves the integrated emission. Returns ``(offsets_nm,
    weights)`` with Σ weights = 1 such that ∫ f(λ + x) T(x) dx ≈ Σ weights·f(λ + offsets).
    Each half of the triangle gets its own Gauss–Legendre rule, so the kink at x = 0 does not
    cost accuracy. A bandpass of 0 means an ideal (infinitely narrow) slit.
    """
    w = float(bandpass_nm)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"bandpass_nm must be a finite number ≥ 0 (nm), got {bandpass_nm!r}")
    if w == 0.0:
        offsets, weights = np.zeros(1), np.ones(1)
    else:
        x = 0.5 * w * (_GL_X + 1.0)  # nodes on (0, w)
        k = 0.5 * w * _GL_W * (1.0 - x / w) / w
        offsets = np.concatenate([-x[::-1], x])
        weights = np.concatenate([k[::-1], k])
        weights /= weights.sum()  # exact to rounding already; removes the last ulp drift
    offsets.setflags(write=False)
    weights.setflags(write=False)
    return offsets, weights


@dataclass(frozen=True)
class Truth:
    """What an ideal instrument recovers at one monochromator setting (scalars or arrays).

    Attributes:
        wavelength_nm: monochromator wavelength in nm.
        bandpass_nm: FWHM of the triangular slit function in nm.
        emission: slit-averaged relative emission (same units as the sample's emission).
        g_lum: emission-weighted g_lum inside the bandpass; NaN where there is no emission.
        linear: emission-weighted u inside the bandpass; NaN where there is no emission.
    """

    wavelength_nm: float | np.ndarray
    bandpass_nm: float
    emission: float | np.ndarray
    g_lum: float | np.ndarray
    linear: float | np.ndarray


@dataclass(frozen=True)
class CDTruth:
    """What an ideal CD (transmission) instrument recovers at one monochromator setting.

    The detected rate through the sample, at PEM retardation δ, is
    r ∝ T·(1 + u·cos δ + v·sin δ) (measurement model §9), averaged over the slit with the
    weight of the light reaching the detector (lamp × quantum efficiency).

    Attributes:
        wavelength_nm: monochromator wavelength in nm.
        bandpass_nm: FWHM of the triangular slit function in nm.
        transmittance: slit-averaged mean transmittance T = (T_L + T_R)/2 (fraction, with
            the linear-dichroism factor as in :meth:`Absorption.point`).
        v: reduced circular Stokes of the transmitted light, (T_L − T_R)/(T_L + T_R).
        u: reduced linear (±45°) Stokes of the transmitted light from linear dichroism.
        absorbance: A = (A_L + A_R)/2 recovered from ``transmittance``, ``v`` and ``u``.
        delta_a: ΔA = A_L − A_R = −(2/ln 10)·artanh(v).
        linear_dichroism: LD = A(+45°) − A(−45°) = −(2/ln 10)·artanh(u).
        g_abs: ΔA / A; NaN where A = 0.
    """

    wavelength_nm: float | np.ndarray
    bandpass_nm: float
    transmittance: float | np.ndarray
    v: float | np.ndarray
    u: float | np.ndarray
    absorbance: float | np.ndarray
    delta_a: float | np.ndarray
    linear_dichroism: float | np.ndarray
    g_abs: float | np.ndarray


@dataclass(frozen=True, eq=False)
class Absorption:
    """Absorbance, circular and linear dichroism of a sample in the beam (CD geometry).

    Values are for the whole cuvette as it sits in the beam (solvent and cell included), so
    a measurement against a ``solvent`` baseline recovers the solute's share. Between the
    tabulated points the spectra are linear; outside the table they keep their end values.

    Attributes:
        wavelength_nm: (n,) strictly increasing wavelengths in nm.
        absorbance: (n,) A = (A_L + A_R)/2, decadic, ≥ 0.
        delta_a: (n,) ΔA = A_L − A_R (decadic), |ΔA| ≤ 2A.
        linear_dichroism: (n,) LD = A(+45°) − A(−45°) along the ±45° axes of the PEM frame
            (decadic), |LD| ≤ 2A.
    """

    wavelength_nm: np.ndarray
    absorbance: np.ndarray
    delta_a: np.ndarray
    linear_dichroism: np.ndarray

    def __post_init__(self) -> None:
        arrays = _check_absorption(
            {"wavelength_nm": self.wavelength_nm, "absorbance": self.absorbance,
             "delta_a": self.delta_a, "linear_dichroism": self.linear_dichroism},
            source="absorption data")
        for key, arr in arrays.items():
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)

    @property
    def g_abs(self) -> np.ndarray:
        """ΔA / A at the tabulated points (NaN where A = 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.absorbance > 0, self.delta_a / np.where(
                self.absorbance > 0, self.absorbance, 1.0), np.nan)

    def point(self, wavelength_nm: float | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T, v, u) at ``wavelength_nm`` (nm) without a slit.

        With A_L,R = A ± ΔA/2 and A(±45°) = A ± LD/2: T = 10^−A·cosh(x)·cosh(y),
        v = −tanh(x), u = −tanh(y), x = ln10·ΔA/2, y = ln10·LD/2. That is exact for a sample
        with only CD or only LD, and for both at once (two diattenuators in series) exact up
        to a factor √(1 − v²) on u, i.e. to O(ΔA²).
        """
        lam = np.asarray(wavelength_nm, dtype=float)
        a = np.interp(lam, self.wavelength_nm, self.absorbance)
        x = 0.5 * _LN10 * np.interp(lam, self.wavelength_nm, self.delta_a)
        y = 0.5 * _LN10 * np.interp(lam, self.wavelength_nm, self.linear_dichroism)
        t = 10.0 ** (-a) * np.cosh(x) * np.cosh(y)
        return t, -np.tanh(x), -np.tanh(y)

    def truth(self, wavelength_nm: float | Sequence[float] | np.ndarray,
              bandpass_nm: float = 2.0,
              weight: Callable[[np.ndarray], np.ndarray] | None = None) -> CDTruth:
        """Slit-averaged transmission truth at monochromator setting(s) ``wavelength_nm``.

        Args:
            wavelength_nm: centre wavelength(s) in nm (scalar or array).
            bandpass_nm: FWHM of the triangular slit function in nm (0 = ideal slit).
            weight: spectral weight of the light that reaches the detector (e.g. lamp × QE),
                a function of wavelength in nm; None = flat.

        Returns:
            :class:`CDTruth` with T = ∫w·T·S / ∫w·S, v = ∫w·T·v·S / ∫w·T·S (likewise u) and
            A, ΔA, LD, g_abs recovered from them as a CD instrument does. Scalars in,
            scalars out.
        """
        lam = np.asarray(wavelength_nm, dtype=float)
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(f"wavelength_nm must be finite and > 0 (nm), got {wavelength_nm!r}")
        offsets, weights = slit_kernel(bandpass_nm)
        grid = lam[..., None] + offsets
        t, v, u = self.point(grid)
        w = weights * (np.ones_like(grid) if weight is None else np.asarray(weight(grid)))
        w_sum = w.sum(axis=-1)
        wt = (w * t).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_eff = wt / w_sum
            v_eff = (w * t * v).sum(axis=-1) / wt
            u_eff = (w * t * u).sum(axis=-1) / wt
            a_eff = (-np.log10(t_eff) - 0.5 * np.log10(1.0 - v_eff**2)
                     - 0.5 * np.log10(1.0 - u_eff**2))
            da = -(2.0 / _LN10) * np.arctanh(v_eff)
            ld = -(2.0 / _LN10) * np.arctanh(u_eff)
            g = np.where(a_eff != 0, da / np.where(a_eff != 0, a_eff, 1.0), np.nan)
        out = (t_eff, v_eff, u_eff, a_eff, da, ld, g)
        if lam.ndim == 0:
            return CDTruth(float(lam), float(bandpass_nm), *(float(x) for x in out))
        return CDTruth(lam, float(bandpass_nm), *out)


@dataclass(frozen=True, eq=False)
class Component:
    """One emitting species of a multi-component sample, on the sample's wavelength grid.

    Attributes:
        emission: (n,) relative emission ≥ 0 (any scale: ``peak_rate_cps`` sets it).
        g_lum: (n,) its dissymmetry factor, |g_lum| ≤ 2.
        linear: (n,) its reduced linear Stokes u, |u| ≤ 1.
        lifetime_s: τ of its exponential decay after a pulse, s (0: prompt, e.g. scattered
            excitation light).
        peak_rate_cps: its time-averaged detected count rate (counts/s, before dead time, at
            the nominal HV) at the wavelength where its slit-convolved emission × QE peaks.
        name: a label (optional).
    """

    emission: np.ndarray
    g_lum: np.ndarray
    linear: np.ndarray
    lifetime_s: float
    peak_rate_cps: float
    name: str = ""

    def spectrum(self, grid: np.ndarray, lam: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point values (emission, g_lum, linear) at ``lam`` (nm) on the table ``grid``."""
        e = np.interp(lam, grid, self.emission, left=0.0, right=0.0)
        g = np.interp(lam, grid, self.g_lum, left=0.0, right=0.0)
        u = np.interp(lam, grid, self.linear, left=0.0, right=0.0)
        return e, g, u


@dataclass(frozen=True, eq=False)
class Sample:
    """An emitter on the bench. Build one with :func:`load_sample` or :meth:`from_dict`.

    Attributes:
        name: sample name.
        wavelength_nm: (n,) strictly increasing wavelengths in nm.
        emission: (n,) relative emission ≥ 0.
        g_lum: (n,) dissymmetry factor, |g_lum| ≤ 2.
        linear: (n,) reduced Stokes u = U/I, |u| ≤ 1, with u² + (g_lum/2)² ≤ 1.
        peak_rate_cps: detected count rate in counts/s at the emission peak (see module doc).
        description: free text, e.g. the source of the parameters.
        assumptions: parameters that are assumed rather than taken from a measurement.
        absorption: absorbance and dichroism for the CD geometry, or None (emission only).
        lifetime_s: τ of the emission's decay after an excitation pulse, s (0: prompt).
        components: the emitting species of a multi-component sample (:class:`Component`),
            each with its own spectrum, g_lum, lifetime and rate; then ``emission``,
            ``g_lum``, ``linear`` and ``peak_rate_cps`` hold the continuous-excitation mix
            (each component scaled to its ``peak_rate_cps`` at its own emission peak, without
            slit or QE) and ``lifetime_s`` is NaN. Empty: one component, the sample itself.
    """

    name: str
    wavelength_nm: np.ndarray
    emission: np.ndarray
    g_lum: np.ndarray
    linear: np.ndarray
    peak_rate_cps: float
    description: str = ""
    assumptions: tuple[str, ...] = field(default=())
    absorption: Absorption | None = None
    lifetime_s: float = 0.0
    components: tuple[Component, ...] = field(default=())

    def __post_init__(self) -> None:
        arrays = _check_spectra(
            self.name,
            {
                "wavelength_nm": self.wavelength_nm,
                "emission": self.emission,
                "g_lum": self.g_lum,
                "linear": self.linear,
            },
            source=f"sample {self.name!r}",
        )
        for key, arr in arrays.items():
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        rate = _check_number(self.peak_rate_cps, "peak_rate_cps", f"sample {self.name!r}")
        if rate < 0:
            raise ValueError(
                f"sample {self.name!r}: key 'peak_rate_cps' is {rate}; expected a detected "
                "count rate ≥ 0 in counts/s (e.g. 1.5e6)"
            )
        object.__setattr__(self, "peak_rate_cps", rate)
        object.__setattr__(self, "assumptions", tuple(self.assumptions))
        object.__setattr__(self, "components", tuple(self.components))
        if not self.components:
            tau = _check_number(self.lifetime_s, "lifetime_s", f"sample {self.name!r}")
            if tau < 0:
                raise ValueError(f"sample {self.name!r}: key 'lifetime_s' is {tau}; expected "
                                 "a lifetime ≥ 0 s (0: prompt)")
            object.__setattr__(self, "lifetime_s", tau)
        if self.absorption is not None and not isinstance(self.absorption, Absorption):
            raise ValueError(f"sample {self.name!r}: absorption must be an Absorption or None, "
                             f"got {type(self.absorption).__name__}")

    @property
    def has_emission(self) -> bool:
        """True when the sample emits anywhere in its tabulated range."""
        return bool(np.any(self.emission > 0))

    @property
    def parts(self) -> tuple[Component, ...]:
        """The emitting components: ``components``, or the sample itself as one component."""
        if self.components:
            return self.components
        return (Component(self.emission, self.g_lum, self.linear, self.lifetime_s,
                          self.peak_rate_cps, self.name),)

    @property
    def has_absorption(self) -> bool:
        """True when the sample has absorbance data (it can sit in the CD geometry)."""
        return self.absorption is not None

    def spectrum(
        self, wavelength_nm: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point values (emission, g_lum, linear) at ``wavelength_nm`` (nm), without a slit."""
        lam = np.asarray(wavelength_nm, dtype=float)
        e = np.interp(lam, self.wavelength_nm, self.emission, left=0.0, right=0.0)
        g = np.interp(lam, self.wavelength_nm, self.g_lum, left=0.0, right=0.0)
        u = np.interp(lam, self.wavelength_nm, self.linear, left=0.0, right=0.0)
        return e, g, u

    def truth(self, wavelength_nm: float | Sequence[float] | np.ndarray,
              bandpass_nm: float = 2.0, *,
              gate: tuple[float, float, float] | None = None) -> Truth:
        """Slit-weighted ground truth at monochromator setting(s) ``wavelength_nm`` (nm).

        Args:
            wavelength_nm: centre wavelength(s) of the monochromator in nm (scalar or array).
            bandpass_nm: FWHM of the triangular slit function in nm (0 = ideal slit).
            gate: (delay_s, width_s, period_s): what a gate after each excitation pulse
                keeps (:func:`gate_fraction`, each component weighted by its fraction;
                ``emission`` is then the gated emission per unit of time-averaged emission);
                None: continuous excitation.

        Returns:
            :class:`Truth` with emission = ∫I(λ')T(λ−λ')dλ', g_lum = ∫I·g·T / ∫I·T and
            linear = ∫I·u·T / ∫I·T (NaN where ∫I·T = 0). Scalars in, scalars out. The
            components are weighted as in ``emission`` (no QE: the bench's own
            :meth:`cplscope.sim.bench.Bench.truth` weighs them as its detector does).
        """
        lam = np.asarray(wavelength_nm, dtype=float)
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(
                f"wavelength_nm must be finite and > 0 (nm), got {wavelength_nm!r}"
            )
        offsets, weights = slit_kernel(bandpass_nm)
        if gate is not None or self.components:
            e, g, u = self._mixed(lam[..., None] + offsets, gate)
        else:
            e, g, u = self.spectrum(lam[..., None] + offsets)
        e_slit = e @ weights
        with np.errstate(invalid="ignore", divide="ignore"):
            g_slit = np.where(e_slit > 0, (e * g) @ weights / e_slit, np.nan)
            u_slit = np.where(e_slit > 0, (e * u) @ weights / e_slit, np.nan)
        if lam.ndim == 0:
            return Truth(float(lam), float(bandpass_nm), float(e_slit), float(g_slit),
                         float(u_slit))
        return Truth(lam, float(bandpass_nm), e_slit, g_slit, u_slit)

    def _mixed(self, lam: np.ndarray, gate: tuple[float, float, float] | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(emission, g, u) at ``lam`` of the components, each scaled to its peak rate (the
        sample's own emission for a single-component one) and by its gate fraction."""
        parts = self.parts
        scale = self._part_scales()
        e_sum = np.zeros(np.shape(lam))
        eg = np.zeros(np.shape(lam))
        eu = np.zeros(np.shape(lam))
        for c, k in zip(parts, scale):
            f = 1.0 if gate is None else float(gate_fraction(c.lifetime_s, *gate))
            e, g, u = c.spectrum(self.wavelength_nm, lam)
            e = e * (k * f)
            e_sum += e
            eg += e * g
            eu += e * u
        with np.errstate(invalid="ignore", divide="ignore"):
            g_mix = np.where(e_sum > 0, eg / np.where(e_sum > 0, e_sum, 1.0), 0.0)
            u_mix = np.where(e_sum > 0, eu / np.where(e_sum > 0, e_sum, 1.0), 0.0)
        return e_sum, g_mix, u_mix

    def _part_scales(self) -> list[float]:
        """Each component's emission scale in the units of ``emission`` (the mix, peak 1)."""
        if not self.components:
            return [1.0]
        return _component_scales(self.components)

    def to_dict(self) -> dict[str, Any]:
        """The sample as a JSON-ready dict in the user-file format (one wavelength grid: when
        the emission and absorption tables differ, both are put on the union of the grids,
        which reproduces every tabulated value and the linear interpolation between them,
        except the emission just outside its table)."""
        ab = self.absorption
        lam = self.wavelength_nm
        if ab is not None and not np.array_equal(lam, ab.wavelength_nm):
            lam = np.union1d(lam, ab.wavelength_nm)
        out: dict[str, Any] = {"name": self.name, "description": self.description,
                               "wavelength_nm": lam.tolist()}
        if self.components:
            out["components"] = [
                {"name": c.name, "emission": c.spectrum(self.wavelength_nm, lam)[0].tolist(),
                 "g_lum": c.spectrum(self.wavelength_nm, lam)[1].tolist(),
                 "linear": c.spectrum(self.wavelength_nm, lam)[2].tolist(),
                 "lifetime_s": c.lifetime_s, "peak_rate_cps": c.peak_rate_cps}
                for c in self.components]
        elif self.has_emission or ab is None:
            e, g, u = self.spectrum(lam)
            out.update(emission=e.tolist(), g_lum=g.tolist(), linear=u.tolist(),
                       peak_rate_cps=self.peak_rate_cps)
            if self.lifetime_s:
                out["lifetime_s"] = self.lifetime_s
        if ab is not None:
            out.update(
                absorbance=np.interp(lam, ab.wavelength_nm, ab.absorbance).tolist(),
                delta_a=np.interp(lam, ab.wavelength_nm, ab.delta_a).tolist(),
                linear_dichroism=np.interp(lam, ab.wavelength_nm, ab.linear_dichroism).tolist())
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sample data") -> "Sample":
        """Build a sample from a dict in the user-file format, with full validation.

        Raises:
            ValueError: naming the key, what is wrong with it and what is expected.
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{source}: expected a JSON object with keys {', '.join(_REQUIRED_KEYS)}, "
                f"got {type(data).__name__}"
            )
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise ValueError(
                f"{source}: missing key(s) {', '.join(repr(k) for k in missing)}; a sample "
                f"file needs {', '.join(_REQUIRED_KEYS)}, then {', '.join(_EMISSION_KEYS)} "
                "(emission) and/or 'absorbance' (CD); optional: 'delta_a' or 'g_abs', "
                f"'linear_dichroism', {', '.join(_OPTIONAL_KEYS)}"
            )
        unknown = sorted(set(data) - set(_ALL_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(repr(k) for k in unknown)}; allowed keys "
                f"are {', '.join(_ALL_KEYS)}"
            )
        has_components = "components" in data
        has_emission = any(k in data for k in _EMISSION_KEYS + ("linear", "lifetime_s"))
        if has_components and has_emission:
            extra = [k for k in _EMISSION_KEYS + ("linear", "lifetime_s") if k in data]
            raise ValueError(
                f"{source}: give either 'components' (each with its own "
                f"{', '.join(_COMPONENT_KEYS)}) or the single-component keys "
                f"({', '.join(extra)}), not both")
        has_absorption = any(k in data for k in _ABSORPTION_KEYS)
        if not (has_emission or has_absorption or has_components):
            raise ValueError(
                f"{source}: no spectra: give the emission keys ({', '.join(_EMISSION_KEYS)}) "
                "for the CPL geometry and/or 'absorbance' (with 'delta_a' or 'g_abs') for "
                "the CD geometry")
        if has_emission:
            lacking = [k for k in _EMISSION_KEYS if k not in data]
            if lacking:
                raise ValueError(
                    f"{source}: missing key(s) {', '.join(repr(k) for k in lacking)}; "
                    f"emission data needs all of {', '.join(_EMISSION_KEYS)} (a CD-only "
                    "sample gives 'absorbance' and no emission keys)")
        if has_absorption and "absorbance" not in data:
            raise ValueError(
                f"{source}: 'delta_a', 'g_abs' and 'linear_dichroism' need 'absorbance' "
                "(decadic absorbance A = (A_L + A_R)/2 on the 'wavelength_nm' grid)")
        if "delta_a" in data and "g_abs" in data:
            raise ValueError(
                f"{source}: give either 'delta_a' (ΔA = A_L − A_R) or 'g_abs' (ΔA/A), not both")
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{source}: key 'name' must be a non-empty string, got {name!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError(
                f"{source}: key 'description' must be a string, got {type(description).__name__}"
            )
        lists = {}
        for key in ("wavelength_nm", "emission", "g_lum", "linear") + _ABSORPTION_KEYS:
            if key in data:
                lists[key] = _number_list(data[key], key, source)
        n = len(lists["wavelength_nm"])
        components: tuple[Component, ...] = ()
        if has_components:
            raw = data["components"]
            if not isinstance(raw, (list, tuple)) or not raw:
                raise ValueError(f"{source}: key 'components' must be a non-empty list of "
                                 f"objects with keys {', '.join(_COMPONENT_KEYS)}")
            lam = _float_arrays({"wavelength_nm": lists["wavelength_nm"]}, source)
            grid = _check_grid(lam, (), source)
            components = tuple(_check_component(c, i, grid, source) for i, c in enumerate(raw))
        absorption = None
        if has_absorption:
            ab = {k: lists[k] for k in ("wavelength_nm",) + _ABSORPTION_KEYS if k in lists}
            ab.setdefault("linear_dichroism", np.zeros(n))
            if "g_abs" in ab:
                ab = _check_absorption(ab, source=source, shapes_only=True)
                ab["delta_a"] = ab.pop("g_abs") * ab["absorbance"]
            ab.setdefault("delta_a", np.zeros(n))
            ab = _check_absorption(ab, source=source)
            absorption = Absorption(ab["wavelength_nm"], ab["absorbance"], ab["delta_a"],
                                    ab["linear_dichroism"])
        if components:
            mixed = mix_components(name, lists["wavelength_nm"], components,
                                   description=description, absorption=absorption)
            return mixed
        lifetime = 0.0
        if "lifetime_s" in data:
            lifetime = _check_number(data["lifetime_s"], "lifetime_s", source)
        if has_emission:
            if "linear" not in lists:
                lists["linear"] = np.zeros(n)
            em = {k: lists[k] for k in ("wavelength_nm", "emission", "g_lum", "linear")}
            rate = _check_number(data["peak_rate_cps"], "peak_rate_cps", source)
        else:
            zero = np.zeros(n)
            em = {"wavelength_nm": lists["wavelength_nm"], "emission": zero, "g_lum": zero,
                  "linear": zero}
            rate = 0.0
        arrays = _check_spectra(name, em, source=source)
        return cls(
            name=name,
            wavelength_nm=arrays["wavelength_nm"],
            emission=arrays["emission"],
            g_lum=arrays["g_lum"],
            linear=arrays["linear"],
            peak_rate_cps=rate,
            description=description,
            absorption=absorption,
            lifetime_s=lifetime,
        )


def _component_scales(components: Sequence[Component]) -> list[float]:
    """Scale of each component's emission in a mix whose peak is 1: component c counts
    ``peak_rate_cps`` at its own emission peak (no slit, no QE)."""
    raw = [c.peak_rate_cps / float(c.emission.max()) if c.emission.max() > 0 else 0.0
           for c in components]
    total = sum(k * c.emission for k, c in zip(raw, components))
    top = float(np.max(total)) if np.size(total) else 0.0
    return [k / top if top > 0 else 0.0 for k in raw]


def mix_components(name: str, wavelength_nm: Any, components: Sequence[Component], *,
                   description: str = "", assumptions: Sequence[str] = (),
                   absorption: Absorption | None = None) -> Sample:
    """A multi-component :class:`Sample` on one wavelength grid: its ``emission``,
    ``g_lum``, ``linear`` and ``peak_rate_cps`` are the continuous-excitation mix."""
    lam = np.asarray(wavelength_nm, dtype=float)
    comps = tuple(components)
    if not comps:
        raise ValueError(f"sample {name!r}: 'components' is empty; give at least one")
    scales = _component_scales(comps)
    e = sum(k * c.emission for k, c in zip(scales, comps))
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(e > 0, sum(k * c.emission * c.g_lum for k, c in zip(scales, comps))
                     / np.where(e > 0, e, 1.0), 0.0)
        u = np.where(e > 0, sum(k * c.emission * c.linear for k, c in zip(scales, comps))
                     / np.where(e > 0, e, 1.0), 0.0)
    raw = [c.peak_rate_cps / float(c.emission.max()) if c.emission.max() > 0 else 0.0
           for c in comps]
    top = float(np.max(sum(k * c.emission for k, c in zip(raw, comps))))
    return Sample(name, lam, np.asarray(e, dtype=float), g, u, peak_rate_cps=top,
                  description=description, assumptions=tuple(assumptions),
                  absorption=absorption, lifetime_s=math.nan, components=comps)


def _check_component(data: Any, i: int, lam: np.ndarray, source: str) -> Component:
    """One entry of a sample file's ``components``, validated on the grid ``lam``."""
    where = f"{source}: components[{i}]"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object with keys {', '.join(_COMPONENT_KEYS)}, "
                         f"got {type(data).__name__}")
    missing = [k for k in _COMPONENT_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}; a "
                         f"component needs {', '.join(_COMPONENT_KEYS)} (optional: "
                         f"{', '.join(_COMPONENT_OPTIONAL)})")
    unknown = sorted(set(data) - set(_COMPONENT_KEYS + _COMPONENT_OPTIONAL))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
                         f"allowed keys are {', '.join(_COMPONENT_KEYS + _COMPONENT_OPTIONAL)}")
    label = data.get("name", "")
    if not isinstance(label, str):
        raise ValueError(f"{where}: key 'name' must be a string, got {label!r}")
    arrays = {"wavelength_nm": lam}
    for key in ("emission", "g_lum", "linear"):
        if key in data:
            arrays[key] = _number_list(data[key], key, where)
    arrays.setdefault("linear", np.zeros(lam.size))
    checked = _check_spectra(label or f"component {i}", arrays, source=where)
    tau = _check_number(data["lifetime_s"], "lifetime_s", where)
    if tau < 0:
        raise ValueError(f"{where}: key 'lifetime_s' is {tau}; expected a lifetime ≥ 0 s "
                         "(0: prompt, e.g. scattered excitation light)")
    rate = _check_number(data["peak_rate_cps"], "peak_rate_cps", where)
    if rate < 0:
        raise ValueError(f"{where}: key 'peak_rate_cps' is {rate}; expected its time-averaged "
                         "count rate ≥ 0 in counts/s at its emission maximum")
    for key in ("emission", "g_lum", "linear"):
        checked[key].setflags(write=False)
    return Component(checked["emission"], checked["g_lum"], checked["linear"], tau, rate,
                     label)


def _check_number(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{source}: key {key!r} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{source}: key {key!r} must be finite, got {value!r}")
    return x


def _number_list(value: Any, key: str, source: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        seq = value.tolist()
    elif isinstance(value, (list, tuple)):
        seq = value
    else:
        raise ValueError(
            f"{source}: key {key!r} must be a list of numbers, got {type(value).__name__}"
        )
    for i, x in enumerate(seq):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(
                f"{source}: key {key!r}: element {i} is {x!r}; expected a number"
            )
    return np.asarray(seq, dtype=float)


def _float_arrays(arrays: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    """Every value as a flat float64 copy of finite numbers (ValueError naming the key)."""
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        try:
            arr = np.array(value, dtype=float, copy=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: key {key!r} must be a list of numbers ({exc})") from exc
        if arr.ndim != 1:
            raise ValueError(f"{source}: key {key!r} must be a flat list of numbers")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(f"{source}: key {key!r}: element {bad[0]} is {arr[bad[0]]}; all "
                             "values must be finite numbers")
        out[key] = arr
    return out


def _check_grid(out: Mapping[str, np.ndarray], keys: Sequence[str], source: str) -> np.ndarray:
    """The table's ``wavelength_nm``, checked: at least 2 values, > 0 nm, strictly
    increasing, and one value of each of ``keys`` per wavelength."""
    lam = out["wavelength_nm"]
    if lam.size < 2:
        raise ValueError(
            f"{source}: key 'wavelength_nm' has {lam.size} value(s); at least 2 are needed")
    for key in keys:
        if out[key].size != lam.size:
            raise ValueError(
                f"{source}: key {key!r} has {out[key].size} values but 'wavelength_nm' has "
                f"{lam.size}; every spectrum needs one value per wavelength")
    if lam[0] <= 0:
        raise ValueError(
            f"{source}: key 'wavelength_nm' starts at {lam[0]}; wavelengths are nm > 0")
    steps = np.flatnonzero(np.diff(lam) <= 0)
    if steps.size:
        i = steps[0]
        raise ValueError(
            f"{source}: key 'wavelength_nm' is not strictly increasing: element {i + 1} "
            f"({lam[i + 1]} nm) follows {lam[i]} nm; sort the table and remove duplicates")
    return lam


def _check_spectra(name: str, arrays: Mapping[str, Any], *, source: str) -> dict[str, np.ndarray]:
    """Validate the tabulated spectra; return them as float64 copies."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{source}: 'name' must be a non-empty string, got {name!r}")
    out = _float_arrays(arrays, source)
    lam = _check_grid(out, ("emission", "g_lum", "linear"), source)

    def _first(mask: np.ndarray, key: str, rule: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            i = idx[0]
            raise ValueError(
                f"{source}: key {key!r}: value {out[key][i]} at {lam[i]} nm (element {i}) "
                f"{rule}"
            )

    _first(out["emission"] < 0, "emission", "is negative; emission must be ≥ 0")
    _first(np.abs(out["g_lum"]) > 2, "g_lum",
           "is outside −2 … 2; g_lum = 2(I_L − I_R)/(I_L + I_R)")
    _first(np.abs(out["linear"]) > 1, "linear", "is outside −1 … 1; linear is u = U/I")
    dop2 = out["linear"] ** 2 + (out["g_lum"] / 2) ** 2
    _first(dop2 > 1 + 1e-12, "linear",
           "together with g_lum gives a degree of polarization above 1; "
           "need linear² + (g_lum/2)² ≤ 1")
    return out


def _check_absorption(arrays: Mapping[str, Any], *, source: str,
                      shapes_only: bool = False) -> dict[str, np.ndarray]:
    """Validate absorption tables (wavelength_nm, absorbance, delta_a or g_abs,
    linear_dichroism); return float64 copies. ``shapes_only`` skips the physical bounds."""
    out = _float_arrays(arrays, source)
    lam = _check_grid(out, tuple(out), source)
    if shapes_only:
        return out
    a = out["absorbance"]

    def _first(mask: np.ndarray, key: str, rule: str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            i = idx[0]
            raise ValueError(f"{source}: key {key!r}: value {out[key][i]} at {lam[i]} nm "
                             f"(element {i}) {rule}")

    _first(a < 0, "absorbance", "is negative; absorbance (decadic, whole cuvette) must be ≥ 0")
    for key in ("delta_a", "linear_dichroism"):
        if key in out:
            _first(np.abs(out[key]) > 2 * a * (1 + 1e-12), key,
                   "exceeds twice the absorbance there; A_L = A + ΔA/2 and A_R = A − ΔA/2 "
                   "(likewise for LD) must both be ≥ 0")
    return out


# --- built-in library -------------------------------------------------------------------------

_GRID = np.linspace(300.0, 900.0, 30001)  # 0.02 nm steps


def _gauss(lam: np.ndarray, centre: float, fwhm: float) -> np.ndarray:
    return np.exp(-4.0 * math.log(2.0) * ((lam - centre) / fwhm) ** 2)


def _bands(bands: Sequence[tuple[float, float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of Gaussian bands (centre nm, FWHM nm, amplitude, g) → (emission, g_lum).

    g_lum at each wavelength is the emission-weighted mean of the bands' g.
    """
    parts = [amp * _gauss(_GRID, c, w) for c, w, amp, _ in bands]
    total = np.sum(parts, axis=0)
    cpl = np.sum([p * g for p, (_, _, _, g) in zip(parts, bands)], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(total > 0, cpl / np.where(total > 0, total, 1.0), 0.0)
    return total / total.max(), g


def _broadband() -> np.ndarray:
    """Flat lamp-like emission 350 … 850 nm with smooth (10 nm) edges, peak 1."""
    return 1.0 / (1.0 + np.exp(-(_GRID - 350.0) / 10.0)) / (1.0 + np.exp((_GRID - 850.0) / 10.0))


_PAPER = "Zhao, Wang, Wang, Wang, Inorg. Chem. Front. 2024, 11, 4424 (doi 10.1039/d4qi01006j)"
_CS4_ASSUMED = (
    "Gaussian line shapes (FWHM 18 nm at 438 nm, 20 nm at 504 nm)",
    "504 nm band at 3 % of the 438 nm peak, with g_lum = 0",
    "g_lum = +6e-4 for R (sign assumed; the paper gives |g_lum|) across the whole 438 nm band",
    "peak_rate_cps = 1.5e6",
)


# --- absorption (CD geometry) -----------------------------------------------------------------

#: Wavelength grid of the built-in absorption tables, nm (0.1 nm steps).
_CD_GRID = np.linspace(170.0, 900.0, 7301)

_SOLVENT_ASSUMED = (
    "1 cm fused-silica cell with a UV-transparent solvent (water, hexane): flat A = 0.04 "
    "(cell reflections) plus a solvent cut-off rising to A = 1 at 185 nm (e-folding 6 nm)",
    "every built-in absorbing sample is measured in this cell: its table is the solute's "
    "absorbance plus this baseline",
)


def _solvent_a(lam: np.ndarray) -> np.ndarray:
    return 0.04 + np.exp(-(lam - 185.0) / 6.0)


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _absorption(solute_a: np.ndarray, delta_a: np.ndarray | None = None) -> Absorption:
    """Absorption of a solute in the solvent cell: the tables add the solvent baseline."""
    zero = np.zeros_like(_CD_GRID)
    return Absorption(_CD_GRID, solute_a + _solvent_a(_CD_GRID),
                      zero if delta_a is None else delta_a, zero)


def _cs4_solute_a(with_436: bool) -> np.ndarray:
    lam = _CD_GRID
    a = 1.2 * _gauss(lam, 313.0, 20.0)                      # 0D [PbBr6] exciton
    a += 3.5 * _logistic((285.0 - lam) / 6.0)               # band-to-band edge: opaque < 275 nm
    a += 0.05 * (400.0 / lam) ** 4                          # Rayleigh-like scattering
    if with_436:
        a += 0.6 * _gauss(lam, 436.0, 20.0)                 # exciton of the chiral crystals
    return a


def _cs4_delta_a(sign: int) -> np.ndarray:
    """ΔA of R (sign +1) or S (−1): a bisignate couplet on the 436-nm exciton (positive on
    its blue side for R) and a positive band on the 313-nm exciton, scaled so that g_abs
    over 300–450 nm peaks at +8.5e-3 (R) or bottoms at −8.8e-3 (S)."""
    lam = _CD_GRID
    solute = _cs4_solute_a(True)
    shape = (0.6 * _gauss(lam, 436.0, 20.0) * np.tanh((436.0 - lam) / 5.0)
             + 0.3 * 1.2 * _gauss(lam, 313.0, 20.0))
    window = (lam >= 300.0) & (lam <= 450.0)
    g_top = float(np.max(shape[window] / solute[window]))
    return (8.5e-3 if sign > 0 else -8.8e-3) / g_top * shape


_CS4_CD_ASSUMED = (
    "absorbance (line shapes not in the paper): Gaussian excitons at 313 nm (A = 1.2, "
    "FWHM 20 nm) and 436 nm (A = 0.6, FWHM 20 nm), a band edge rising to A ≈ 3.5 below "
    "285 nm (opaque below ~275 nm) and 0.05·(400 nm/λ)⁴ scattering, in the `solvent` cell",
    "CD shape (not in the paper): a bisignate couplet on the 436-nm exciton, ΔA ∝ "
    "A_436(λ)·tanh((436 nm − λ)/5 nm), positive on the blue side for R, plus a positive band "
    "∝ A_313 with 30 % of the couplet's weight; S is the mirror image",
    "scale: max g_abs = ΔA/A(solute) over 300–450 nm = +8.5e-3 for R; min = −8.8e-3 for S",
)


def _cs4pbbr6(sign: int, label: str) -> Sample:
    e, g = _bands([(438.0, 18.0, 1.0, sign * 6e-4), (504.0, 20.0, 0.03, 0.0)])
    # the paper's mean lifetimes: R 42.10 ns, S 50.36 ns
    return Sample(f"{label}-Cs4PbBr6", _GRID, e, g, np.zeros_like(_GRID), peak_rate_cps=1.5e6,
                  description=f"{label}-Cs4PbBr6 nanocrystals, {_PAPER}",
                  assumptions=_CS4_ASSUMED + _CS4_CD_ASSUMED + _SOLVENT_ASSUMED
                  + ("one exponential decay with the paper's mean lifetime",),
                  absorption=_absorption(_cs4_solute_a(True), _cs4_delta_a(sign)),
                  lifetime_s=42.10e-9 if sign > 0 else 50.36e-9)


def _dark(name: str, description: str, assumptions: tuple[str, ...] = (),
          absorption: Absorption | None = None) -> Sample:
    zero = np.zeros_like(_GRID)
    return Sample(name, _GRID, zero, zero, zero, peak_rate_cps=0.0, description=description,
                  assumptions=assumptions, absorption=absorption)


def _cspbbr3() -> Sample:
    e, g = _bands([(510.0, 20.0, 1.0, 0.0)])
    lam = _CD_GRID
    solute = (0.5 * _gauss(lam, 485.0, 20.0) + 0.4 * _logistic((475.0 - lam) / 10.0)
              + 0.05 * (400.0 / lam) ** 4)
    return Sample("CsPbBr3", _GRID, e, g, np.zeros_like(_GRID), peak_rate_cps=1.5e6,
                  lifetime_s=7e-9,
                  description=f"achiral CsPbBr3 nanocrystals, {_PAPER}",
                  assumptions=("Gaussian line shape, FWHM 20 nm", "peak_rate_cps = 1.5e6",
                               "absorbance: Gaussian band at 485 nm (A = 0.5, FWHM 20 nm) on a "
                               "continuum of A = 0.4 below 475 nm and 0.05·(400 nm/λ)⁴ "
                               "scattering, in the `solvent` cell; no CD",
                               "lifetime 7 ns (one exponential)")
                  + _SOLVENT_ASSUMED,
                  absorption=_absorption(solute))


#: Accepted CD of d-10-camphorsulfonate (Chen & Yang, Anal. Lett. 1977, 10, 1195; docs/cd.md):
#: Δε = ε_L − ε_R in M⁻¹cm⁻¹ at the two band maxima, and ε at 285 nm.
CSA_DELTA_EPS_290 = 2.36
CSA_DELTA_EPS_192 = -4.72
CSA_EPS_285 = 34.5
#: Built-in CSA standard: 1.000 g/L ammonium d-10-camphorsulfonate (249.33 g/mol), mol/L.
CSA_CONCENTRATION_M = 1.0 / 249.33


def _csa(path_cm: float, name: str) -> Sample:
    lam = _CD_GRID
    c = CSA_CONCENTRATION_M
    eps = CSA_EPS_285 * _gauss(lam, 285.0, 40.0) + 1200.0 * np.exp(-(lam - 192.5) / 9.0)
    d_eps = CSA_DELTA_EPS_290 * _gauss(lam, 290.5, 34.0) + CSA_DELTA_EPS_192 * _gauss(
        lam, 192.5, 16.0)
    return _dark(
        name, f"CD standard: ammonium d-10-camphorsulfonate (CSA), 1.000 g/L in water, "
              f"{path_cm:g} cm path (4.011 mM)",
        ("Δε: Gaussian bands of +2.36 M⁻¹cm⁻¹ at 290.5 nm (FWHM 34 nm) and −4.72 at 192.5 nm "
         "(FWHM 16 nm), the accepted values (ratio −2.00); the band widths are assumed",
         "ε: 34.5 M⁻¹cm⁻¹ at 285 nm (accepted) as a Gaussian of FWHM 40 nm, plus an assumed "
         "far-UV rise 1200·exp(−(λ − 192.5 nm)/9 nm) M⁻¹cm⁻¹",
         f"path {path_cm:g} cm; the cell's baseline is that of `solvent`") + _SOLVENT_ASSUMED,
        absorption=_absorption(eps * c * path_cm, d_eps * c * path_cm))


def _polarizer_absorption(kind: str, sign: int) -> Absorption:
    """An imperfect polarizer in the CD beam: 80 % transmission for the passed state, 1e-5 for
    the crossed one (A = 0.097 and 5). ``kind`` 'linear' puts the difference into LD (+45°
    passed for sign +1), 'circular' into ΔA (left passed for sign +1)."""
    a_pass, a_block = -math.log10(0.8), 5.0
    mean = np.full_like(_CD_GRID, 0.5 * (a_pass + a_block))
    diff = np.full_like(_CD_GRID, sign * (a_pass - a_block))
    zero = np.zeros_like(_CD_GRID)
    if kind == "linear":
        return Absorption(_CD_GRID, mean, zero, diff)
    return Absorption(_CD_GRID, mean, diff, zero)


def _europium() -> Sample:
    e, g = _bands([(595.0, 4.0, 0.3, -0.8), (613.0, 5.0, 1.0, +0.4)])
    return Sample(
        "Eu(facam)3", _GRID, e, g, np.zeros_like(_GRID), peak_rate_cps=5e5,
        description="Eu(facam)3-like CPL standard (handedness / phase reference)",
        assumptions=(
            "5D0→7F1 line at 595 nm: FWHM 4 nm, 30 % of the 613 nm line, g_lum = −0.8",
            "5D0→7F2 line at 613 nm: FWHM 5 nm, g_lum = +0.4",
            "other Eu lines omitted; peak_rate_cps = 5e5",
            "lifetime 0.5 ms (one exponential)",
        ),
        lifetime_s=0.5e-3,
    )


#: The Eu(III)-like sample on a fluorescent background (for time-gated CPL): the europium
#: lines' lifetime (s) and the 5D0→7F1 band's g_lum.
EU_LIFETIME_S = 1e-3
EU_7F1_G = 0.2
EU_BACKGROUND_LIFETIME_S = 5e-9


def _eu_background() -> Sample:
    """A Eu(III) complex (1 ms) in a matrix whose short-lived fluorescence (5 ns, g = 0)
    outshines its 5D0→7F1 band about tenfold: gating on the lifetime recovers the band's g."""
    eu_e, eu_g = _bands([(579.5, 2.0, 0.03, 0.0), (590.5, 3.5, 0.45, EU_7F1_G),
                         (595.5, 3.5, 0.25, EU_7F1_G), (614.0, 6.0, 1.0, -0.05),
                         (652.0, 5.0, 0.06, 0.0), (700.0, 8.0, 0.35, 0.03)])
    bg_e = _gauss(_GRID, 580.0, 70.0)
    zero = np.zeros_like(_GRID)
    return mix_components(
        "Eu-background", _GRID,
        (Component(eu_e, eu_g, zero, EU_LIFETIME_S, 1e5, "Eu(III)"),
         Component(bg_e, zero, zero, EU_BACKGROUND_LIFETIME_S, 1e6, "background")),
        description="Eu(III)-like complex (τ = 1 ms, |g_lum| = 0.2 on 5D0→7F1) on a "
                    "short-lived achiral fluorescence background (τ = 5 ns, g = 0)",
        assumptions=(
            "Eu lines as Gaussians: 7F0 579.5 nm (3 %), 7F1 590.5 + 595.5 nm (45 % + 25 %, "
            "FWHM 3.5 nm, g_lum = +0.2), 7F2 614 nm (100 %, FWHM 6 nm, g_lum = −0.05), 7F3 "
            "652 nm (6 %), 7F4 700 nm (35 %, g_lum = +0.03); one exponential, τ = 1 ms",
            "Eu peak_rate_cps = 1e5 (on 7F2)",
            "background: Gaussian at 580 nm, FWHM 70 nm, g = 0, τ = 5 ns, peak_rate_cps = "
            "1e6 (at the peak of its emission × QE): about ten times the 7F1 band near 591 nm "
            "under continuous excitation, with the bench's bialkali QE",
        ))


def _polarizer(name: str, u: float, g: float, description: str) -> Sample:
    e = _broadband()
    kind, sign = ("linear", int(np.sign(u))) if u else ("circular", int(np.sign(g)))
    return Sample(name, _GRID, e, np.full_like(_GRID, g), np.full_like(_GRID, u),
                  peak_rate_cps=1e6, description=description,
                  assumptions=("flat source 350 … 850 nm", "peak_rate_cps = 1e6",
                               "CD geometry: the polarizer is the sample, 80 % transmission "
                               "for the passed state and 1e-5 for the crossed one"),
                  absorption=_polarizer_absorption(kind, sign))


_LIBRARY: dict[str, Callable[[], Sample]] = {
    "R-Cs4PbBr6": lambda: _cs4pbbr6(+1, "R"),
    "S-Cs4PbBr6": lambda: _cs4pbbr6(-1, "S"),
    "N-Cs4PbBr6": lambda: _dark(
        "N-Cs4PbBr6", f"achiral N-Cs4PbBr6 nanocrystals: no detectable emission, {_PAPER}",
        ("no scattered excitation light reaches the detector",
         "absorbance: as R/S-Cs4PbBr6 without the 436-nm exciton (313-nm exciton, band edge, "
         "scattering), in the `solvent` cell; no CD") + _SOLVENT_ASSUMED,
        absorption=_absorption(_cs4_solute_a(False))),
    "CsPbBr3": _cspbbr3,
    "Eu(facam)3": _europium,
    "Eu-background": _eu_background,
    "linear-polarizer-45": lambda: _polarizer(
        "linear-polarizer-45", 1.0, 0.0,
        "broadband source behind a linear polarizer at 45° (u = 1): A0/φ0 calibration"),
    "circular-polarizer-L": lambda: _polarizer(
        "circular-polarizer-L", 0.0, 2.0,
        "broadband source behind a left-circular polarizer (v = +1, g_lum = +2)"),
    "circular-polarizer-R": lambda: _polarizer(
        "circular-polarizer-R", 0.0, -2.0,
        "broadband source behind a right-circular polarizer (v = −1, g_lum = −2)"),
    "blank": lambda: _dark("blank", "empty sample holder: dark counts only (CPL); an empty "
                                    "beam, A = 0 (CD)",
                           absorption=Absorption(_CD_GRID, *np.zeros((3, _CD_GRID.size)))),
    "solvent": lambda: _dark(
        "solvent", "CD baseline: the 1 cm cell with solvent only (no emission)",
        _SOLVENT_ASSUMED[:1], absorption=_absorption(np.zeros_like(_CD_GRID))),
    "CSA": lambda: _csa(1.0, "CSA"),
    "CSA-1mm": lambda: _csa(0.1, "CSA-1mm"),
}


def list_samples() -> list[str]:
    """Names of the built-in samples, usable with :func:`load_sample`."""
    return list(_LIBRARY)


@lru_cache(maxsize=None)
def _builtin(name: str) -> Sample:
    return _LIBRARY[name]()


def sample_from_file(path: str | Path) -> Sample:
    """Read a user sample file (JSON, format in ``docs/simulator.md``) and validate it.

    Raises:
        ValueError: the file cannot be read or parsed, or a key is missing or invalid.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read sample file {str(p)!r}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"sample file {str(p)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from exc
    return Sample.from_dict(data, source=f"sample file {str(p)!r}")


def load_sample(name_or_path: str | Path) -> Sample:
    """A built-in sample by name (case-insensitive), or a user sample from a JSON file path.

    Raises:
        ValueError: unknown name and no such file, or an invalid file.
    """
    if isinstance(name_or_path, str):
        if name_or_path in _LIBRARY:
            return _builtin(name_or_path)
        folded = {k.casefold(): k for k in _LIBRARY}
        if name_or_path.casefold() in folded:
            return _builtin(folded[name_or_path.casefold()])
    p = Path(name_or_path)
    if p.suffix.lower() == ".json" or p.exists():
        return sample_from_file(p)
    raise ValueError(
        f"unknown sample {str(name_or_path)!r}: not a built-in sample and not a JSON file; "
        f"built-ins are {', '.join(_LIBRARY)}"
    )
