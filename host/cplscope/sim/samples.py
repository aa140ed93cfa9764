"""Sample library of the simulated bench: emission spectrum, g_lum(λ) and linear polarization.

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
    "Sample",
    "Truth",
    "list_samples",
    "load_sample",
    "sample_from_file",
    "slit_kernel",
]

#: Gauss–Legendre nodes per half of the triangular slit function.
_SLIT_NODES = 48
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_SLIT_NODES)

_REQUIRED_KEYS = ("name", "wavelength_nm", "emission", "g_lum", "peak_rate_cps")
_OPTIONAL_KEYS = ("linear", "description")


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
    """

    name: str
    wavelength_nm: np.ndarray
    emission: np.ndarray
    g_lum: np.ndarray
    linear: np.ndarray
    peak_rate_cps: float
    description: str = ""
    assumptions: tuple[str, ...] = field(default=())

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

    @property
    def has_emission(self) -> bool:
        """True when the sample emits anywhere in its tabulated range."""
        return bool(np.any(self.emission > 0))

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
              bandpass_nm: float = 2.0) -> Truth:
        """Slit-weighted ground truth at monochromator setting(s) ``wavelength_nm`` (nm).

        Args:
            wavelength_nm: centre wavelength(s) of the monochromator in nm (scalar or array).
            bandpass_nm: FWHM of the triangular slit function in nm (0 = ideal slit).

        Returns:
            :class:`Truth` with emission = ∫I(λ')T(λ−λ')dλ', g_lum = ∫I·g·T / ∫I·T and
            linear = ∫I·u·T / ∫I·T (NaN where ∫I·T = 0). Scalars in, scalars out.
        """
        lam = np.asarray(wavelength_nm, dtype=float)
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError(
                f"wavelength_nm must be finite and > 0 (nm), got {wavelength_nm!r}"
            )
        offsets, weights = slit_kernel(bandpass_nm)
        e, g, u = self.spectrum(lam[..., None] + offsets)
        e_slit = e @ weights
        with np.errstate(invalid="ignore", divide="ignore"):
            g_slit = np.where(e_slit > 0, (e * g) @ weights / e_slit, np.nan)
            u_slit = np.where(e_slit > 0, (e * u) @ weights / e_slit, np.nan)
        if lam.ndim == 0:
            return Truth(float(lam), float(bandpass_nm), float(e_slit), float(g_slit),
                         float(u_slit))
        return Truth(lam, float(bandpass_nm), e_slit, g_slit, u_slit)

    def to_dict(self) -> dict[str, Any]:
        """The sample as a JSON-ready dict in the user-file format."""
        return {
            "name": self.name,
            "description": self.description,
            "wavelength_nm": self.wavelength_nm.tolist(),
            "emission": self.emission.tolist(),
            "g_lum": self.g_lum.tolist(),
            "linear": self.linear.tolist(),
            "peak_rate_cps": self.peak_rate_cps,
        }

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
                f"file needs {', '.join(_REQUIRED_KEYS)} (optional: {', '.join(_OPTIONAL_KEYS)})"
            )
        unknown = sorted(set(data) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {', '.join(repr(k) for k in unknown)}; allowed keys "
                f"are {', '.join(_REQUIRED_KEYS + _OPTIONAL_KEYS)}"
            )
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{source}: key 'name' must be a non-empty string, got {name!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError(
                f"{source}: key 'description' must be a string, got {type(description).__name__}"
            )
        lists = {}
        for key in ("wavelength_nm", "emission", "g_lum", "linear"):
            if key in data:
                lists[key] = _number_list(data[key], key, source)
        n = len(lists["wavelength_nm"])
        if "linear" not in lists:
            lists["linear"] = np.zeros(n)
        arrays = _check_spectra(name, lists, source=source)
        return cls(
            name=name,
            wavelength_nm=arrays["wavelength_nm"],
            emission=arrays["emission"],
            g_lum=arrays["g_lum"],
            linear=arrays["linear"],
            peak_rate_cps=_check_number(data["peak_rate_cps"], "peak_rate_cps", source),
            description=description,
        )


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


def _check_spectra(name: str, arrays: Mapping[str, Any], *, source: str) -> dict[str, np.ndarray]:
    """Validate the tabulated spectra; return them as float64 copies."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{source}: 'name' must be a non-empty string, got {name!r}")
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
            raise ValueError(
                f"{source}: key {key!r}: element {bad[0]} is {arr[bad[0]]}; all values must be "
                "finite numbers"
            )
        out[key] = arr
    lam = out["wavelength_nm"]
    if lam.size < 2:
        raise ValueError(
            f"{source}: key 'wavelength_nm' has {lam.size} value(s); at least 2 are needed"
        )
    for key in ("emission", "g_lum", "linear"):
        if out[key].size != lam.size:
            raise ValueError(
                f"{source}: key {key!r} has {out[key].size} values but 'wavelength_nm' has "
                f"{lam.size}; every spectrum needs one value per wavelength"
            )
    if lam[0] <= 0:
        raise ValueError(
            f"{source}: key 'wavelength_nm' starts at {lam[0]}; wavelengths are nm > 0")
    steps = np.flatnonzero(np.diff(lam) <= 0)
    if steps.size:
        i = steps[0]
        raise ValueError(
            f"{source}: key 'wavelength_nm' is not strictly increasing: element {i + 1} "
            f"({lam[i + 1]} nm) follows {lam[i]} nm; sort the table and remove duplicates"
        )

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


def _cs4pbbr6(sign: int, label: str) -> Sample:
    e, g = _bands([(438.0, 18.0, 1.0, sign * 6e-4), (504.0, 20.0, 0.03, 0.0)])
    return Sample(f"{label}-Cs4PbBr6", _GRID, e, g, np.zeros_like(_GRID), peak_rate_cps=1.5e6,
                  description=f"{label}-Cs4PbBr6 nanocrystals, {_PAPER}",
                  assumptions=_CS4_ASSUMED)


def _dark(name: str, description: str, assumptions: tuple[str, ...] = ()) -> Sample:
    zero = np.zeros_like(_GRID)
    return Sample(name, _GRID, zero, zero, zero, peak_rate_cps=0.0, description=description,
                  assumptions=assumptions)


def _cspbbr3() -> Sample:
    e, g = _bands([(510.0, 20.0, 1.0, 0.0)])
    return Sample("CsPbBr3", _GRID, e, g, np.zeros_like(_GRID), peak_rate_cps=1.5e6,
                  description=f"achiral CsPbBr3 nanocrystals, {_PAPER}",
                  assumptions=("Gaussian line shape, FWHM 20 nm", "peak_rate_cps = 1.5e6"))


def _europium() -> Sample:
    e, g = _bands([(595.0, 4.0, 0.3, -0.8), (613.0, 5.0, 1.0, +0.4)])
    return Sample(
        "Eu(facam)3", _GRID, e, g, np.zeros_like(_GRID), peak_rate_cps=5e5,
        description="Eu(facam)3-like CPL standard (handedness / phase reference)",
        assumptions=(
            "5D0→7F1 line at 595 nm: FWHM 4 nm, 30 % of the 613 nm line, g_lum = −0.8",
            "5D0→7F2 line at 613 nm: FWHM 5 nm, g_lum = +0.4",
            "other Eu lines omitted; peak_rate_cps = 5e5",
        ),
    )


def _polarizer(name: str, u: float, g: float, description: str) -> Sample:
    e = _broadband()
    return Sample(name, _GRID, e, np.full_like(_GRID, g), np.full_like(_GRID, u),
                  peak_rate_cps=1e6, description=description,
                  assumptions=("flat source 350 … 850 nm", "peak_rate_cps = 1e6"))


_LIBRARY: dict[str, Callable[[], Sample]] = {
    "R-Cs4PbBr6": lambda: _cs4pbbr6(+1, "R"),
    "S-Cs4PbBr6": lambda: _cs4pbbr6(-1, "S"),
    "N-Cs4PbBr6": lambda: _dark(
        "N-Cs4PbBr6", f"achiral N-Cs4PbBr6 nanocrystals: no detectable emission, {_PAPER}",
        ("no scattered excitation light reaches the detector",)),
    "CsPbBr3": _cspbbr3,
    "Eu(facam)3": _europium,
    "linear-polarizer-45": lambda: _polarizer(
        "linear-polarizer-45", 1.0, 0.0,
        "broadband source behind a linear polarizer at 45° (u = 1): A0/φ0 calibration"),
    "circular-polarizer-L": lambda: _polarizer(
        "circular-polarizer-L", 0.0, 2.0,
        "broadband source behind a left-circular polarizer (v = +1, g_lum = +2)"),
    "circular-polarizer-R": lambda: _polarizer(
        "circular-polarizer-R", 0.0, -2.0,
        "broadband source behind a right-circular polarizer (v = −1, g_lum = −2)"),
    "blank": lambda: _dark("blank", "empty sample holder: dark counts only"),
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
