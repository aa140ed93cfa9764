"""The simulated optical bench: what the PMT and the PEM reference hand the board.

Model (``docs/simulator.md`` has the full list of parameters and assumptions; the physics and
sign conventions are those of the measurement model, sections 2, 3 and 6):

    sample → excitation (flicker, drift) → PEM (A0 = drive/(k·λ), phase offset φ0)
    → analyzer at 45° → monochromator (triangular slit) → PMT (QE(λ), HV, dark, dead time)

or, with ``geometry="cd"`` (circular dichroism, measurement model §9):

    lamp (spectrum, flicker, drift) → monochromator (triangular slit) → linear polarizer
    at ±45° → PEM → sample (A, ΔA, LD) → PMT (UV-extended QE, HV, dark, dead time)

  where the detected rate is r(θ) ∝ T·(1 + u·cos δ(θ) + v·sin δ(θ)) with T = (T_L + T_R)/2,
  v = (T_L − T_R)/(T_L + T_R) = −tanh(ln10·ΔA/2) and u from the linear dichroism: the same
  binned model, so the board gets the same counter frames and ADC blocks. The shutter is the
  lamp shutter (closed = dark counts only).

- Counting mode (:meth:`Bench.counts_frame`): phase-binned counts over K PEM periods, with
  expected counts μ_k = M·(w_k + u·C_k + v·S_k) + d_k, Poisson statistics and the
  non-paralyzable dead time of the counting head.
- Analog mode (:meth:`Bench.adc_block`): 12-bit ADC samples of the anode signal (shot noise with
  the PMT excess-noise factor, read noise, offset, clipping) and the times of the PEM
  reference rising edges.

The bench does no I/O and keeps no clock of its own: every call carries an explicit
:class:`InstrumentState`, including the instrument time. Only the excitation flicker has
memory (it is a random process in instrument time).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np

from .samples import (MIN_LIFETIME_S, CDTruth, Component, Sample, Truth, gate_fraction,
                      load_sample, slit_kernel)

__all__ = [
    "AdcBlock",
    "Bench",
    "CountsFrame",
    "Gate",
    "GatedFrame",
    "InstrumentState",
    "bialkali_qe",
    "bin_integrals",
    "uv_bialkali_qe",
    "xenon_lamp",
]

GEOMETRIES = ("cpl", "cd")

_U32_MAX = 2**32 - 1
ADC_FULL_SCALE = 4095  #: the 12-bit ADC's largest reading (counts)
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class InstrumentState:
    """What the board has set on the instrument when it asks for data.

    Attributes:
        wavelength_nm: emission monochromator setting in nm.
        pem_drive: PEM drive as a fraction of full scale (0 … 1 on the real controller);
            A0 = drive / (k·λ) with k = ``Bench.pem_drive_per_rad_nm`` (per rad per nm).
        shutter_open: excitation shutter; closed means dark counts only.
        hv_volts: PMT high voltage in V (0 = off: no pulses, no dark counts).
        time_s: instrument time in s at the start of the frame or ADC block.
    """

    wavelength_nm: float
    pem_drive: float
    shutter_open: bool
    hv_volts: float
    time_s: float = 0.0


class CountsFrame(NamedTuple):
    """One phase-binned counting frame, as the PIO counters produce it."""

    counts: np.ndarray  #: uint32[B], counts per phase bin
    pem_period_s: float  #: mean PEM period over the frame, s
    saturated: bool  #: a bin counter reached 2**32 − 1
    overload_rate_cps: float  #: true pulse rate at the anode (before dead time), counts/s


class Gate(NamedTuple):
    """Pulsed excitation and the gate counted after each pulse (measurement model §11)."""

    period_s: float  #: T_p, the time between excitation pulses, s
    delay_s: float  #: δ, from each pulse to the gate's opening, s
    width_s: float  #: w, how long the gate stays open, s

    def check(self) -> "Gate":
        gate_fraction(1.0, self.delay_s, self.width_s, self.period_s)  # raises if impossible
        return self


class GatedFrame(NamedTuple):
    """One gated counting frame: the phase-binned counts of one gate over K PEM periods."""

    counts: np.ndarray  #: uint32[B], counts per phase bin inside the gate
    pulses: int  #: excitation pulses whose gate fell in the frame
    pem_period_s: float  #: mean PEM period over the frame, s
    saturated: bool  #: a bin counter reached 2**32 − 1
    overload_rate_cps: float  #: the highest mean pulse rate at the anode, counts/s (guard)


class AdcBlock(NamedTuple):
    """One block of raw ADC samples with the PEM reference rising edges inside it."""

    samples: np.ndarray  #: uint16[n], 12-bit samples; sample i at t0 + i/sample_rate
    edge_times_s: np.ndarray  #: float64, instrument times of reference rising edges, s
    clipped: bool  #: a sample hit 0 or 4095 because the signal was out of range


def bialkali_qe(wavelength_nm: float | np.ndarray) -> np.ndarray:
    """Quantum efficiency of a bialkali photocathode behind borosilicate glass (fraction).

    A smooth stand-in for a typical datasheet curve: 26 % at 400 nm, ~15 % at 500 nm, ~3 % at
    600 nm, ~0.2 % at 700 nm, and the glass cut-off near 300 nm.
    """
    lam = np.asarray(wavelength_nm, dtype=float)
    width = np.where(lam < 400.0, 250.0, 135.0)
    window = 1.0 / (1.0 + np.exp(-(lam - 305.0) / 8.0))
    return 0.26 * np.exp(-(((lam - 400.0) / width) ** 2)) * window


def uv_bialkali_qe(wavelength_nm: float | np.ndarray) -> np.ndarray:
    """Quantum efficiency of a bialkali photocathode behind a fused-silica (UV) window
    (fraction): the curve of :func:`bialkali_qe` without the borosilicate cut-off, ~21 % at
    290 nm and ~13 % at 192 nm, with the window's cut-off near 180 nm. The CD geometry's
    default, so that the far-UV CSA bands are measurable."""
    lam = np.asarray(wavelength_nm, dtype=float)
    width = np.where(lam < 400.0, 250.0, 135.0)
    window = 1.0 / (1.0 + np.exp(-(lam - 180.0) / 4.0))
    return 0.26 * np.exp(-(((lam - 400.0) / width) ** 2)) * window


def xenon_lamp(wavelength_nm: float | np.ndarray) -> np.ndarray:
    """Relative spectral output of a xenon arc lamp through a fused-silica envelope and the
    monochromator (peak 1): a 6000 K Planck curve (the arc's continuum, peak near 480 nm;
    ~47 % of the peak at 290 nm, ~6 % at 192 nm) times the envelope's cut-off near 185 nm.
    Xenon's emission lines in the near infrared are left out."""
    lam = np.asarray(wavelength_nm, dtype=float)
    x = 1.4388e7 / (lam * 6000.0)  # hc/(λkT)
    peak_x = 4.965114231744276     # Wien: x at the maximum of x⁵/(eˣ − 1)
    planck = (x / peak_x) ** 5 * math.expm1(peak_x) / np.expm1(x)
    return planck / (1.0 + np.exp(-(lam - 185.0) / 3.0))


_BIN_NODES, _BIN_WEIGHTS = np.polynomial.legendre.leggauss(32)


@lru_cache(maxsize=512)
def bin_integrals(n_bins: int, a0_rad: float, phi0_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """(S_k, C_k) of the measurement model, section 3, for B equal bins (read-only arrays).

    S_k = (1/2π)∫_bin sin δ dθ and C_k = (1/2π)∫_bin cos δ dθ with δ = A0·sin(θ − φ0),
    bin k spanning θ ∈ [2πk/B, 2π(k+1)/B). Each bin is split in two halves with a 32-node
    Gauss–Legendre rule on each (the integrand is entire, so this is exact to rounding for
    A0 ≤ 2π and any B ≥ 1).
    """
    half_edges = np.pi * np.arange(2 * n_bins + 1) / n_bins  # edges of the half-bins
    lo, hi = half_edges[:-1, None], half_edges[1:, None]
    theta = 0.5 * (lo + hi) + 0.5 * (hi - lo) * _BIN_NODES
    delta = a0_rad * np.sin(theta - phi0_rad)
    scale = 0.5 * (np.pi / n_bins) / (2.0 * np.pi)
    s_half = scale * (np.sin(delta) @ _BIN_WEIGHTS)
    c_half = scale * (np.cos(delta) @ _BIN_WEIGHTS)
    s = s_half[0::2] + s_half[1::2]
    c = c_half[0::2] + c_half[1::2]
    s.setflags(write=False)
    c.setflags(write=False)
    return s, c


def _positive(name: str, value: float, *, allow_zero: bool = False, unit: str = "") -> float:
    x = float(value)
    ok = math.isfinite(x) and (x >= 0 if allow_zero else x > 0)
    if not ok:
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}{unit}, got {value!r}")
    return x


class Bench:
    """Numerical model of the CPL bench for one sample.

    Not thread-safe (one random generator, one flicker process): call it from one thread.

    Args:
        sample: a :class:`~cplscope.sim.samples.Sample`, a built-in name or a JSON file path.
        seed: seed of the random generator (numpy PCG64); equal seeds and equal call sequences
            give identical data. ``None`` draws fresh entropy.
        pem_frequency_hz: PEM resonance frequency, Hz.
        pem_phase_offset_rad: φ0, phase of the zero crossing of δ after the reference edge, rad.
        pem_drive_per_rad_nm: k in A0 = drive/(k·λ), drive (fraction of full scale) per rad of
            retardation per nm. The default 1/(500π) (drive 0.5 gives π/2 at 500 nm) equals the
            firmware's default calibration; set it differently to simulate a miscalibrated PEM.
        pem_edge_jitter_s: RMS timing noise of the reported reference edges (ADC mode), s.
        slit_fwhm_nm: FWHM of the triangular monochromator bandpass, nm.
        qe: quantum efficiency of the photocathode vs wavelength (nm → fraction); None =
            :func:`bialkali_qe` in the CPL geometry, :func:`uv_bialkali_qe` in the CD one.
        geometry: ``"cpl"`` (emission, the default) or ``"cd"`` (transmission: lamp →
            monochromator → polarizer → PEM → sample → PMT; the sample needs absorption data).
        lamp: CD geometry: relative lamp spectrum through the monochromator (nm → ≥ 0);
            None = :func:`xenon_lamp`.
        lamp_rate_cps: CD geometry: detected count rate (before dead time) with an empty beam
            at the wavelength where the slit-averaged lamp × QE peaks, at nominal HV, counts/s.
        cd_polarizer_deg: CD geometry: angle of the linear polarizer to the PEM axis, +45 or
            −45 degrees (−45 flips the sign of the CD and LD signals).
        dark_rate_cps: PMT dark count rate on the counting plateau, counts/s.
        dead_time_s: non-paralyzable dead time of the photon-counting head, s.
        hv_nominal_volts: HV at which ``sample.peak_rate_cps`` and ``dark_rate_cps`` hold, V.
        hv_plateau_volts: HV at which the counting efficiency is half its plateau value, V.
        hv_plateau_width_volts: width of the logistic rise of the counting efficiency, V.
        gain_exponent: analog PMT gain ∝ HV**gain_exponent.
        flicker_rms: relative RMS of the excitation intensity fluctuation (instantaneous).
        flicker_time_s: correlation time of the flicker (Ornstein–Uhlenbeck process), s.
        drift_rel: relative amplitude of the slow sinusoidal excitation drift.
        drift_period_s: period of that drift, s.
        enf: excess-noise factor of the PMT gain (analog mode), ≥ 1.
        adc_counts_per_mcps: mean ADC level above offset per 1e6 photoelectrons/s at nominal HV.
        adc_offset: ADC level with no light, ADC counts.
        adc_read_noise: Gaussian read noise of the ADC and amplifier, ADC counts RMS.
        adc_window_s: effective integration time of the analog front end, s (sets shot noise).
        adc_bandwidth_hz: −3 dB bandwidth of the analog front end (a single pole), Hz: the
            PEM harmonics of the light reach the ADC delayed and attenuated by
            1/(1 + j·n·f/f_c); inf (the default) passes them untouched.
    """

    def __init__(
        self,
        sample: Sample | str,
        *,
        seed: int | np.random.SeedSequence | None,
        pem_frequency_hz: float = 50_000.0,
        pem_phase_offset_rad: float = 0.3,
        pem_drive_per_rad_nm: float = 1.0 / (500.0 * math.pi),
        pem_edge_jitter_s: float = 0.0,
        slit_fwhm_nm: float = 2.0,
        qe: Callable[[np.ndarray], np.ndarray] | None = None,
        dark_rate_cps: float = 20.0,
        dead_time_s: float = 18e-9,
        hv_nominal_volts: float = 800.0,
        hv_plateau_volts: float = 550.0,
        hv_plateau_width_volts: float = 35.0,
        gain_exponent: float = 7.0,
        flicker_rms: float = 0.002,
        flicker_time_s: float = 0.01,
        drift_rel: float = 0.01,
        drift_period_s: float = 600.0,
        enf: float = 1.2,
        adc_counts_per_mcps: float = 200.0,
        adc_offset: float = 100.0,
        adc_read_noise: float = 1.5,
        adc_window_s: float = 1e-6,
        adc_bandwidth_hz: float = math.inf,
        geometry: str = "cpl",
        lamp: Callable[[np.ndarray], np.ndarray] | None = None,
        lamp_rate_cps: float = 1e6,
        cd_polarizer_deg: float = 45.0,
    ) -> None:
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be 'cpl' (emission) or 'cd' (transmission, "
                             f"circular dichroism), got {geometry!r}")
        self.geometry = geometry
        self.lamp = xenon_lamp if lamp is None else lamp
        self.lamp_rate_cps = _positive("lamp_rate_cps", lamp_rate_cps, unit=" counts/s")
        if cd_polarizer_deg not in (45, -45):
            raise ValueError(f"cd_polarizer_deg must be 45 or -45 (degrees to the PEM axis), "
                             f"got {cd_polarizer_deg!r}")
        self._cd_sign = 1.0 if cd_polarizer_deg == 45 else -1.0
        if qe is None:
            qe = uv_bialkali_qe if geometry == "cd" else bialkali_qe
        self.pem_frequency_hz = _positive("pem_frequency_hz", pem_frequency_hz, unit=" Hz")
        phi0 = float(pem_phase_offset_rad)
        if not math.isfinite(phi0):
            raise ValueError(f"pem_phase_offset_rad must be finite (rad), got {phi0!r}")
        self.pem_phase_offset_rad = phi0
        self.pem_drive_per_rad_nm = _positive("pem_drive_per_rad_nm", pem_drive_per_rad_nm)
        self.pem_edge_jitter_s = _positive("pem_edge_jitter_s", pem_edge_jitter_s,
                                           allow_zero=True, unit=" s")
        self.slit_fwhm_nm = _positive("slit_fwhm_nm", slit_fwhm_nm, allow_zero=True, unit=" nm")
        self.qe = qe
        self.dark_rate_cps = _positive("dark_rate_cps", dark_rate_cps, allow_zero=True,
                                       unit=" counts/s")
        self.dead_time_s = _positive("dead_time_s", dead_time_s, allow_zero=True, unit=" s")
        self.hv_nominal_volts = _positive("hv_nominal_volts", hv_nominal_volts, unit=" V")
        self.hv_plateau_volts = _positive("hv_plateau_volts", hv_plateau_volts, unit=" V")
        self.hv_plateau_width_volts = _positive("hv_plateau_width_volts",
                                                hv_plateau_width_volts, unit=" V")
        self.gain_exponent = _positive("gain_exponent", gain_exponent)
        self.flicker_rms = _positive("flicker_rms", flicker_rms, allow_zero=True)
        self.flicker_time_s = _positive("flicker_time_s", flicker_time_s, unit=" s")
        self.drift_rel = _positive("drift_rel", drift_rel, allow_zero=True)
        self.drift_period_s = _positive("drift_period_s", drift_period_s, unit=" s")
        if not (math.isfinite(float(enf)) and float(enf) >= 1.0):
            raise ValueError(f"enf (PMT excess-noise factor) must be ≥ 1, got {enf!r}")
        self.enf = float(enf)
        self.adc_counts_per_mcps = _positive("adc_counts_per_mcps", adc_counts_per_mcps)
        self.adc_offset = float(adc_offset)
        if not math.isfinite(self.adc_offset):
            raise ValueError(f"adc_offset must be finite (ADC counts), got {adc_offset!r}")
        self.adc_read_noise = _positive("adc_read_noise", adc_read_noise, allow_zero=True)
        self.adc_window_s = _positive("adc_window_s", adc_window_s, unit=" s")
        bandwidth = float(adc_bandwidth_hz)
        if not bandwidth > 0:
            raise ValueError(f"adc_bandwidth_hz must be > 0 Hz (inf: no filter), got "
                             f"{adc_bandwidth_hz!r}")
        self.adc_bandwidth_hz = bandwidth
        self._filtered_cache: dict[tuple[float, float, float], np.ndarray] = {}
        if flicker_rms >= 0.5:
            raise ValueError(
                f"flicker_rms is {flicker_rms}; the Gaussian flicker model needs a relative RMS "
                "well below 1 (use ≤ 0.2)"
            )

        self.pem_period_s = 1.0 / self.pem_frequency_hz
        self.rng = np.random.default_rng(seed)
        self._flicker_x = 0.0
        self._flicker_t: float | None = None
        self._pe_per_lamp_cached: float | None = None
        self.set_sample(sample)

    # --- configuration ------------------------------------------------------------------------

    def set_sample(self, sample: Sample | str) -> None:
        """Put another sample on the bench (a Sample, a built-in name or a JSON path).

        Raises:
            ValueError: in the CD geometry, for a sample without absorption data.
        """
        new = sample if isinstance(sample, Sample) else load_sample(sample)
        if self.geometry == "cd" and not new.has_absorption:
            raise ValueError(
                f"sample {new.name!r} has no absorbance data, so it cannot sit in the CD "
                "(transmission) geometry: give its file 'absorbance' (and 'delta_a' or "
                "'g_abs'), or use a built-in with absorption data such as solvent, CSA, "
                "R-Cs4PbBr6")
        self.sample = new
        self._lambda_cache: dict[float, tuple[float, float, float]] = {}
        self._parts_cache: dict[float, tuple[np.ndarray, ...]] = {}
        self._frame_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self._gate_cache: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.geometry == "cd":
            self._pe_per_emission = 0.0
            self._pe_parts: list[float] = []
            self._pe_per_lamp = self._calibrate_lamp()
        elif new.components:
            self._pe_per_emission = 0.0
            self._pe_parts = [self._calibrate(c) for c in new.components]
        else:
            self._pe_per_emission = self._calibrate()
            self._pe_parts = [self._pe_per_emission]

    def _lamp_qe(self, lam: np.ndarray) -> np.ndarray:
        return np.asarray(self.lamp(lam), dtype=float) * np.asarray(self.qe(lam), dtype=float)

    def _lamp_slit(self, wavelength_nm: float | np.ndarray) -> np.ndarray:
        """Slit-averaged lamp × QE at monochromator setting(s) (relative)."""
        offsets, weights = slit_kernel(self.slit_fwhm_nm)
        lam = np.asarray(wavelength_nm, dtype=float)
        return self._lamp_qe(lam[..., None] + offsets) @ weights

    def _calibrate_lamp(self) -> float:
        """Photoelectrons/s per unit of slit-averaged lamp × QE × transmittance, from
        ``lamp_rate_cps`` (an empty beam at the lamp × QE peak, nominal HV)."""
        if self._pe_per_lamp_cached is not None:
            return self._pe_per_lamp_cached
        grid = np.arange(150.0, 1200.0, 0.5)
        best = float(grid[int(np.argmax(self._lamp_slit(grid)))])
        fine = np.linspace(best - 0.5, best + 0.5, 201)
        top = float(np.max(self._lamp_slit(fine)))
        if not (math.isfinite(top) and top > 0):
            raise ValueError("the lamp spectrum × QE is zero or not finite everywhere between "
                             "150 and 1200 nm: check the bench's lamp and qe functions")
        plateau = self._counting_efficiency(self.hv_nominal_volts)
        scale = self.lamp_rate_cps / (top * plateau)
        self._pe_per_lamp_cached = scale
        return scale

    def cd_truth(self, wavelength_nm: float | np.ndarray,
                 baseline: Sample | str | None = None) -> CDTruth:
        """What an ideal CD instrument recovers here (CD geometry): the sample's slit- and
        lamp × QE-weighted :class:`~cplscope.sim.samples.CDTruth`, in the bench's sign
        convention (a −45° polarizer flips ΔA and LD). With ``baseline`` (e.g. "solvent"),
        ``absorbance`` and ``g_abs`` are relative to it, as measured against a baseline scan.
        """
        ab = self.sample.absorption
        if ab is None:
            raise ValueError(f"sample {self.sample.name!r} has no absorption data")
        t = ab.truth(wavelength_nm, self.slit_fwhm_nm, self._lamp_qe)
        a = t.absorbance
        if baseline is not None:
            b = baseline if isinstance(baseline, Sample) else load_sample(baseline)
            if b.absorption is None:
                raise ValueError(f"baseline {b.name!r} has no absorption data")
            a = a - b.absorption.truth(wavelength_nm, self.slit_fwhm_nm, self._lamp_qe).absorbance
        k = self._cd_sign
        with np.errstate(invalid="ignore", divide="ignore"):
            g_arr = np.where(a != 0, k * t.delta_a / np.where(a != 0, a, 1.0), np.nan)
        g: float | np.ndarray = float(g_arr) if np.ndim(g_arr) == 0 else g_arr
        return dataclasses.replace(t, absorbance=a, v=k * t.v, u=k * t.u,
                                   delta_a=k * t.delta_a, linear_dichroism=k * t.linear_dichroism,
                                   g_abs=g)

    def _calibrate(self, part: Component | None = None) -> float:
        """Photoelectrons/s per unit of slit-averaged emission × QE, from peak_rate_cps (of
        the sample, or of one of its components)."""
        s = self.sample
        emission = s.emission if part is None else part.emission
        rate = s.peak_rate_cps if part is None else part.peak_rate_cps
        if rate == 0 or not np.any(emission > 0):
            return 0.0
        lit = s.wavelength_nm[emission > 0]
        pad = self.slit_fwhm_nm + 0.1
        grid = np.arange(max(lit[0] - pad, 1.0), lit[-1] + pad, 0.1)
        best = self._peak_of(grid, part)
        fine = np.linspace(max(best - 0.1, 1.0), best + 0.1, 101)
        best = self._peak_of(fine, part)
        top = float(self._emission_qe(np.array([best]), part)[0])
        plateau = self._counting_efficiency(self.hv_nominal_volts)
        return rate / (top * plateau)

    def _slit_part(self, part: Component, lam: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(emission, g, u) of one component through the bench's slit at ``lam`` (nm)."""
        offsets, weights = slit_kernel(self.slit_fwhm_nm)
        lam = np.asarray(lam, dtype=float)
        e, g, u = part.spectrum(self.sample.wavelength_nm, lam[..., None] + offsets)
        e_slit = e @ weights
        with np.errstate(invalid="ignore", divide="ignore"):
            g_slit = np.where(e_slit > 0, (e * g) @ weights / e_slit, 0.0)
            u_slit = np.where(e_slit > 0, (e * u) @ weights / e_slit, 0.0)
        return e_slit, g_slit, u_slit

    def _emission_qe(self, lam: np.ndarray, part: Component | None = None) -> np.ndarray:
        if part is None:
            e = self.sample.truth(lam, self.slit_fwhm_nm).emission
        else:
            e = self._slit_part(part, lam)[0]
        return e * np.asarray(self.qe(lam))

    def _peak_of(self, grid: np.ndarray, part: Component | None = None) -> float:
        chunks = np.array_split(grid, 1 + grid.size // 2000)
        vals = np.concatenate([self._emission_qe(c, part) for c in chunks])
        return float(grid[int(np.argmax(vals))])

    # --- instrument response ------------------------------------------------------------------

    def retardation(self, state: InstrumentState) -> float:
        """A0 in rad for the state's PEM drive and wavelength: A0 = drive/(k·λ)."""
        return state.pem_drive / (self.pem_drive_per_rad_nm * state.wavelength_nm)

    def truth(self, state: InstrumentState, gate: Gate | None = None) -> Truth:
        """Ground truth at the state's wavelength with this bench's slit (see Sample.truth):
        what an ideal instrument recovers under continuous excitation, or with ``gate``
        what it recovers inside that gate. A multi-component sample's components are
        weighted as this bench detects them (their rates through the slit × QE); its
        ``emission`` is then the detected rate (photoelectrons/s at full efficiency; with a
        gate, those the gate keeps), not a relative emission."""
        if not self.sample.components and gate is None:
            return self.sample.truth(state.wavelength_nm, self.slit_fwhm_nm)
        lam = float(state.wavelength_nm)
        rates, u, v, tau = self._parts_at(lam)
        if gate is not None:
            rates = rates * gate_fraction(tau, gate.delay_s, gate.width_s, gate.period_s)
        total = float(rates.sum())
        if total > 0:
            g, lin = float(2.0 * (rates @ v) / total), float((rates @ u) / total)
        else:
            g = lin = math.nan
        return Truth(lam, self.slit_fwhm_nm, total, g, lin)

    def _counting_efficiency(self, hv: float) -> float:
        """Fraction of photoelectron pulses above the discriminator at HV ``hv`` (V)."""
        if hv <= 0:
            return 0.0
        z = (hv - self.hv_plateau_volts) / self.hv_plateau_width_volts
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def _analog_gain(self, hv: float) -> float:
        """PMT gain relative to the gain at nominal HV."""
        return (hv / self.hv_nominal_volts) ** self.gain_exponent if hv > 0 else 0.0

    def _parts_at(self, wavelength_nm: float) -> tuple[np.ndarray, ...]:
        """Per component at a wavelength setting: (photoelectron rate in 1/s at full
        excitation, u, v, lifetime s), each (C,)."""
        hit = self._parts_cache.get(wavelength_nm)
        if hit is None:
            parts = self.sample.parts
            qe = float(np.asarray(self.qe(np.array([wavelength_nm])))[0])
            rows = []
            for c, pe in zip(parts, self._pe_parts):
                e, g, u = (float(x) for x in self._slit_part(c, np.array(wavelength_nm)))
                rows.append((pe * e * qe, u, g / 2.0, c.lifetime_s))
            arr = np.array(rows, dtype=float).reshape(len(parts), 4)
            rates = np.where(arr[:, 0] > 0, arr[:, 0], 0.0)
            hit = (rates, arr[:, 1], arr[:, 2], arr[:, 3])
            if len(self._parts_cache) >= _CACHE_LIMIT:
                self._parts_cache.clear()
            self._parts_cache[wavelength_nm] = hit
        return hit

    def _at_wavelength(self, wavelength_nm: float) -> tuple[float, float, float]:
        """(signal photoelectron rate in 1/s at full excitation, u, v) at a wavelength setting
        (continuous excitation: a multi-component sample's components add up)."""
        hit = self._lambda_cache.get(wavelength_nm)
        if hit is None and self.geometry == "cd":
            hit = self._cd_at_wavelength(wavelength_nm)
        if hit is None and self.sample.components:
            rates, u, v, _ = self._parts_at(wavelength_nm)
            total = float(rates.sum())
            hit = ((total, float(rates @ u) / total, float(rates @ v) / total) if total > 0
                   else (0.0, 0.0, 0.0))
            self._lambda_cache[wavelength_nm] = hit
        if hit is None:
            t = self.sample.truth(wavelength_nm, self.slit_fwhm_nm)
            qe = float(np.asarray(self.qe(np.array([wavelength_nm])))[0])
            rate = self._pe_per_emission * float(t.emission) * qe
            if rate > 0:
                hit = (rate, float(t.linear), float(t.g_lum) / 2.0)
            else:
                hit = (0.0, 0.0, 0.0)
            if len(self._lambda_cache) >= _CACHE_LIMIT:
                self._lambda_cache.clear()
            self._lambda_cache[wavelength_nm] = hit
        return hit

    def _cd_at_wavelength(self, wavelength_nm: float) -> tuple[float, float, float]:
        """CD geometry: (photoelectron rate in 1/s through the sample, u, v)."""
        ab = self.sample.absorption
        assert ab is not None  # set_sample checks it for the CD geometry
        t = ab.truth(wavelength_nm, self.slit_fwhm_nm, self._lamp_qe)
        rate = self._pe_per_lamp * float(self._lamp_slit(wavelength_nm)) * float(t.transmittance)
        hit: tuple[float, float, float]
        if rate > 0 and math.isfinite(rate):
            hit = (rate, self._cd_sign * float(t.u), self._cd_sign * float(t.v))
        else:
            hit = (0.0, 0.0, 0.0)
        if len(self._lambda_cache) >= _CACHE_LIMIT:
            self._lambda_cache.clear()
        self._lambda_cache[wavelength_nm] = hit
        return hit

    def _check_state(self, state: InstrumentState) -> None:
        lam, drive, hv, t = state.wavelength_nm, state.pem_drive, state.hv_volts, state.time_s
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"state.wavelength_nm must be a finite wavelength > 0 nm, got {lam!r}")
        if not (math.isfinite(drive) and drive >= 0):
            raise ValueError(
                f"state.pem_drive must be finite and ≥ 0 (fraction of full scale), got {drive!r}")
        if not (math.isfinite(hv) and hv >= 0):
            raise ValueError(f"state.hv_volts must be finite and ≥ 0 V, got {hv!r}")
        if not math.isfinite(t):
            raise ValueError(f"state.time_s must be a finite instrument time in s, got {t!r}")

    def _per_period(self, state: InstrumentState, n_bins: int):
        """Cached true counts per PEM period: (signal[B] at unit excitation, dark[B])."""
        key = (state.wavelength_nm, state.pem_drive, state.hv_volts, state.shutter_open, n_bins)
        hit = self._frame_cache.get(key)
        if hit is not None:
            return hit
        self._check_state(state)
        eff = self._counting_efficiency(state.hv_volts)
        rate, u, v = self._at_wavelength(state.wavelength_nm)
        s, c = bin_integrals(n_bins, self.retardation(state), self.pem_phase_offset_rad)
        per_signal = eff * rate * self.pem_period_s if state.shutter_open else 0.0
        signal = per_signal * (1.0 / n_bins + u * c + v * s)
        dark = np.full(n_bins, eff * self.dark_rate_cps * self.pem_period_s / n_bins)
        signal.setflags(write=False)
        dark.setflags(write=False)
        if len(self._frame_cache) >= _CACHE_LIMIT:
            self._frame_cache.clear()
        hit = (signal, dark)
        self._frame_cache[key] = hit
        return hit

    # --- excitation ---------------------------------------------------------------------------

    def _drift(self, t_mid: float) -> float:
        return 1.0 + self.drift_rel * math.sin(2.0 * math.pi * t_mid / self.drift_period_s)

    def _flicker_mean(self, t0: float, duration: float) -> float:
        """Mean relative flicker over [t0, t0 + duration], drawn exactly from the OU process.

        The flicker x(t) is an Ornstein–Uhlenbeck process (stationary RMS σ = flicker_rms,
        correlation time τ). The bench remembers x at the end of the last interval; a later
        interval continues the same realization, an earlier one (time went back) restarts it.
        """
        sigma, tau = self.flicker_rms, self.flicker_time_s
        if sigma == 0.0:
            return 0.0
        z0, z1, z2 = self.rng.standard_normal(3)
        last = self._flicker_t
        if last is None or t0 < last:
            x0 = sigma * z0
        else:
            decay = math.exp(-(t0 - last) / tau)
            x0 = self._flicker_x * decay + sigma * math.sqrt(max(0.0, 1.0 - decay * decay)) * z0
        a = duration / tau
        one_minus_e = -math.expm1(-a)
        e = 1.0 - one_minus_e
        var_end = sigma * sigma * one_minus_e * (1.0 + e)
        var_mean = sigma * sigma * max(0.0, 2.0 * (a + math.expm1(-a)) - one_minus_e**2) / (a * a)
        cov = sigma * sigma * one_minus_e**2 / a
        x_end = x0 * e + math.sqrt(var_end) * z1
        mean = x0 * one_minus_e / a
        if var_end > 0.0:
            mean += cov / var_end * (x_end - x0 * e)
            mean += math.sqrt(max(0.0, var_mean - cov * cov / var_end)) * z2
        self._flicker_x, self._flicker_t = x_end, t0 + duration
        return mean

    def _excitation(self, t0: float, duration: float) -> float:
        """Mean excitation intensity over an interval, relative to nominal (≥ 0)."""
        level = self._drift(t0 + 0.5 * duration) * (1.0 + self._flicker_mean(t0, duration))
        return level if level > 0.0 else 0.0

    # --- counting mode ------------------------------------------------------------------------

    def expected_counts(self, state: InstrumentState, n_bins: int, periods: int, *,
                        dead_time: bool = True) -> np.ndarray:
        """Expected counts per bin (float, no flicker, drift included) of a frame.

        With ``dead_time`` the non-paralyzable expectation μ_k/(1 + μ_k·τ/t_k) is returned,
        t_k = K·T_PEM/B being the time spent in bin k; without it, the true μ_k.
        """
        n_bins, periods = self._check_frame_args(n_bins, periods)
        signal, dark = self._per_period(state, n_bins)
        frame_s = periods * self.pem_period_s
        mu = (signal * self._drift(state.time_s + 0.5 * frame_s) + dark) * periods
        if dead_time:
            mu = mu / (1.0 + mu * (self.dead_time_s * n_bins / frame_s))
        return mu

    @staticmethod
    def _check_frame_args(n_bins: int, periods: int) -> tuple[int, int]:
        if isinstance(n_bins, bool) or int(n_bins) != n_bins or not 2 <= n_bins <= 1024:
            raise ValueError(f"n_bins must be an integer 2 … 1024 (phase bins), got {n_bins!r}")
        if isinstance(periods, bool) or int(periods) != periods or periods < 1:
            raise ValueError(f"periods must be an integer ≥ 1 (PEM periods), got {periods!r}")
        return int(n_bins), int(periods)

    def counts_frame(self, state: InstrumentState, n_bins: int, periods: int) -> CountsFrame:
        """Accumulate K = ``periods`` PEM periods into ``n_bins`` phase bins, starting at
        ``state.time_s``.

        The true counts of bin k have mean μ_k (measurement model §3), the signal scaled by
        the mean excitation of this frame (flicker + drift, common to all bins). The counting
        head's non-paralyzable dead time τ gives observed counts with mean
        m_k = μ_k/(1 + r_k·τ), r_k = μ_k/t_k, t_k = K·T_PEM/B, and variance m_k/(1 + r_k·τ)²
        (the renewal-process result for counts ≫ 1); without dead time they are Poisson. The
        draw is Poisson with its deviation from the mean shrunk by 1/(1 + r_k·τ), then
        rounded: exact in mean, right in variance for counts ≫ 1, an approximation (a
        variance too large by ≤ 1/12 count²) for a handful of counts.
        """
        n_bins, periods = self._check_frame_args(n_bins, periods)
        if not math.isfinite(state.time_s):
            raise ValueError(f"state.time_s must be a finite instrument time in s, got "
                             f"{state.time_s!r}")
        signal, dark = self._per_period(state, n_bins)
        frame_s = periods * self.pem_period_s
        mu = signal * (self._excitation(state.time_s, frame_s) * periods) + dark * periods
        overload = float(mu.sum()) / frame_s
        counts = self._dead_time_draw(mu, self.dead_time_s * n_bins / frame_s)
        saturated = bool(counts.max() >= _U32_MAX)
        if saturated:
            np.minimum(counts, _U32_MAX, out=counts)
        return CountsFrame(counts.astype(np.uint32), self.pem_period_s, saturated, overload)

    def _dead_time_draw(self, mu: np.ndarray, tau_per_live: float) -> np.ndarray:
        """Observed counts (float, integral) for true means ``mu``; ``tau_per_live`` = τ/t_k.

        Draws P ~ Poisson(m_k) with m_k = μ_k·s_k, s_k = 1/(1 + r_k·τ), then shrinks the
        deviation from the mean by s_k and rounds: n_k = rint(m_k + s_k·(P − m_k)). Mean m_k,
        variance m_k·s_k² (+1/12 from the rounding), as for a non-paralyzable counter.
        """
        if tau_per_live == 0.0:
            return self.rng.poisson(mu).astype(float)
        s = 1.0 / (1.0 + mu * tau_per_live)
        mean = mu * s
        draw = self.rng.poisson(mean)
        return np.rint(mean * (1.0 - s) + s * draw)

    # --- pulsed excitation: gated counting ------------------------------------------------------

    @staticmethod
    def pulses_in(t0_s: float, duration_s: float, period_s: float) -> int:
        """Excitation pulses in [t0, t0 + duration) of a pulse train at k·T_p (instrument
        time 0 is a pulse: the board's trigger runs on the instrument clock)."""
        eps = 1e-9
        return max(0, math.ceil((t0_s + duration_s) / period_s - eps)
                   - math.ceil(t0_s / period_s - eps))

    def _per_gate(self, state: InstrumentState, n_bins: int, gate: Gate
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cached, per pulse at unit excitation: (signal[B] counts, dark[B] counts, κ[B]).

        κ_k = w·∫r_k² / (∫r_k)² over the gate: how much more the counting head loses to
        dead time than at the gate's mean rate, r_k(t) being the rate at t after the pulse
        while the PEM is in bin k (components decaying, dark constant): 1 for a constant
        rate, above 1 for a decay."""
        key = (state.wavelength_nm, state.pem_drive, state.hv_volts, state.shutter_open,
               n_bins, gate)
        hit = self._gate_cache.get(key)
        if hit is not None:
            return hit
        self._check_state(state)
        eff = self._counting_efficiency(state.hv_volts)
        rates, u, v, tau = self._parts_at(state.wavelength_nm)
        s, c = bin_integrals(n_bins, self.retardation(state), self.pem_phase_offset_rad)
        p, d, w = gate.period_s, gate.delay_s, gate.width_s
        on = eff if state.shutter_open else 0.0
        # per pulse, component c has R·T_p photons; f of them fall in the gate
        frac = gate_fraction(tau, d, w, p)
        shape = 1.0 / n_bins + np.outer(u, c) + np.outer(v, s)          # (C, B)
        signal = (on * rates * p * frac) @ shape                         # (B,)
        dark_rate = eff * self.dark_rate_cps
        dark = np.full(n_bins, dark_rate * w / n_bins)
        # rate densities a_c(t) = A_c·e^(−t/τ_c) with ∫_0^T_p a_c = R_c·T_p
        t = np.maximum(tau, MIN_LIFETIME_S)
        amp = on * rates * p / t / -np.expm1(-p / t)                     # (C,)
        m = shape * n_bins                                               # (C, B) modulation
        i1 = t * np.exp(-d / t) * -np.expm1(-w / t)                      # ∫_gate e^(−t/τ)
        lam = 1.0 / t[:, None] + 1.0 / t[None, :]
        i2 = np.exp(-d * lam) * -np.expm1(-w * lam) / lam                # ∫_gate e^(−tλ)
        first = (amp * i1) @ m + dark_rate * w                            # ∫ r_k
        am = amp[:, None] * m                                            # (C, B)
        second = (np.einsum("cb,ce,eb->b", am, i2, am)
                  + 2.0 * dark_rate * ((amp * i1) @ m) + dark_rate ** 2 * w)
        with np.errstate(invalid="ignore", divide="ignore"):
            kappa = np.where(first > 0, w * second / np.where(first > 0, first, 1.0) ** 2, 1.0)
        for arr in (signal, dark, kappa):
            arr.setflags(write=False)
        hit = (signal, dark, kappa)
        if len(self._gate_cache) >= _CACHE_LIMIT:
            self._gate_cache.clear()
        self._gate_cache[key] = hit
        return hit

    def expected_gated_counts(self, state: InstrumentState, n_bins: int, pulses: int,
                              gate: Gate, *, dead_time: bool = True) -> np.ndarray:
        """Expected counts per phase bin (float, no flicker, drift at ``state.time_s``) of a
        gated frame of ``pulses`` pulses. With ``dead_time`` the counting head's expected
        loss inside the gate, μ_k/(1 + r̄_k·τ·κ_k) with r̄_k = μ_k/t_k, t_k = pulses·w/B
        (κ_k from :meth:`_per_gate`); without it, the true μ_k."""
        gate = Gate(*gate).check()
        signal, dark, kappa = self._per_gate(state, n_bins, gate)
        mu = (signal * self._drift(state.time_s) + dark) * pulses
        if dead_time and pulses > 0:
            live = pulses * gate.width_s / n_bins
            mu = mu / (1.0 + mu * (self.dead_time_s * kappa / live))
        return mu

    def gated_frame(self, state: InstrumentState, n_bins: int, periods: int,
                    gate: Gate) -> GatedFrame:
        """K = ``periods`` PEM periods of pulsed excitation from ``state.time_s``: the
        photons inside ``gate`` after each pulse, phase-binned.

        Each component's photons follow its exponential decay after every pulse (earlier
        pulses included, measurement model §11): the gate keeps the fraction f of them. The
        pulses in the frame (:meth:`pulses_in`) each contribute their whole gate; the pulse
        phases against the PEM are taken as evenly spread (a pulse rate incommensurate with
        the PEM), so every phase bin sees the gate's time equally, w/B per pulse. Dark counts
        come at their rate during the gate. The counting head's dead time acts on the rate
        inside the gate, which decays: mean μ_k/(1 + r̄_k·τ·κ_k), variance shrunk likewise
        (as :meth:`counts_frame`)."""
        n_bins, periods = self._check_frame_args(n_bins, periods)
        gate = Gate(*gate).check()
        if not math.isfinite(state.time_s):
            raise ValueError(f"state.time_s must be a finite instrument time in s, got "
                             f"{state.time_s!r}")
        frame_s = periods * self.pem_period_s
        pulses = self.pulses_in(state.time_s, frame_s, gate.period_s)
        signal, dark, kappa = self._per_gate(state, n_bins, gate)
        exc = self._excitation(state.time_s, frame_s)
        mu = (signal * exc + dark) * pulses
        if pulses:
            live = pulses * gate.width_s / n_bins
            s = 1.0 / (1.0 + mu * (self.dead_time_s * kappa / live))
            mean = mu * s
            counts = np.rint(mean * (1.0 - s) + s * self.rng.poisson(mean))
        else:
            counts = np.zeros(n_bins)
        saturated = bool(counts.max() >= _U32_MAX)
        if saturated:
            np.minimum(counts, _U32_MAX, out=counts)
        return GatedFrame(counts.astype(np.uint32), pulses, self.pem_period_s, saturated,
                          self._window_rate(state, gate, exc))

    #: the rp2 overload guard counts pulse edges in windows of this long (s)
    GUARD_WINDOW_S = 200e-6

    def _window_rate(self, state: InstrumentState, gate: Gate, exc: float) -> float:
        """What the overload guard sees under pulsed excitation: the pulse edges in its
        first window after a pulse, per second (a component's burst counted as the head
        counts it at its peak rate, N/(1 + a(0)·τ_dead)), or the frame's mean anode rate if
        higher."""
        eff = self._counting_efficiency(state.hv_volts)
        on = eff * exc if state.shutter_open else 0.0
        rates, _, _, tau = self._parts_at(state.wavelength_nm)
        p, win = gate.period_s, min(self.GUARD_WINDOW_S, gate.period_s)
        t = np.maximum(tau, MIN_LIFETIME_S)
        amp = on * rates * p / t / -np.expm1(-p / t)
        n_win = amp * t * -np.expm1(-win / t)
        edges = float(np.sum(n_win / (1.0 + amp * self.dead_time_s)))
        dark = eff * self.dark_rate_cps
        return max(edges / win + dark, on * float(rates.sum()) + dark)

    # --- analog mode --------------------------------------------------------------------------

    def _sample_phases(self, n_samples: int, sample_rate_hz: float, t0: float) -> np.ndarray:
        """PEM phase θ (rad, from the last reference edge) of each sample."""
        f = self.pem_frequency_hz
        start = math.fmod(f * t0, 1.0)
        if start < 0:
            start += 1.0
        cycles = start + np.arange(n_samples) * (f / sample_rate_hz)
        return 2.0 * np.pi * (cycles - np.floor(cycles))

    def expected_adc(self, state: InstrumentState, times_s: np.ndarray) -> np.ndarray:
        """Expected ADC level (counts, before rounding and clipping; no flicker, drift at
        ``state.time_s``) at instrument times ``times_s`` (s)."""
        self._check_state(state)
        t = np.asarray(times_s, dtype=float)
        cycles = np.mod(self.pem_frequency_hz * t, 1.0)
        rate = self._pe_rates(state, 2.0 * np.pi * cycles, self._drift(state.time_s))
        return self.adc_offset + self._adc_scale(state) * rate * self.adc_window_s

    def _pe_rates(self, state: InstrumentState, theta: np.ndarray, excitation: float) -> np.ndarray:
        """Photoelectron rate (1/s) at PEM phases ``theta``; analog mode has no discriminator."""
        rate, u, v = self._at_wavelength(state.wavelength_nm)
        if not state.shutter_open:
            rate = 0.0
        a0 = self.retardation(state)
        dark = self.dark_rate_cps / self._counting_efficiency(self.hv_nominal_volts)
        if math.isfinite(self.adc_bandwidth_hz):
            grid = self._filtered_modulation(a0, u, v)
            n = grid.size - 1
            modulation = np.interp(theta, 2.0 * np.pi * np.arange(n + 1) / n, grid)
        else:
            delta = a0 * np.sin(theta - self.pem_phase_offset_rad)
            modulation = 1.0 + u * np.cos(delta) + v * np.sin(delta)
        return rate * excitation * modulation + dark

    def _filtered_modulation(self, a0: float, u: float, v: float) -> np.ndarray:
        """1 + u·cos δ + v·sin δ through the front end's single pole, on a grid of 1024 phases
        over one period (the first repeated at the end), each harmonic n times
        1/(1 + j·n·f/f_c)."""
        key = (a0, u, v)
        hit = self._filtered_cache.get(key)
        if hit is None:
            n = 1024
            theta = 2.0 * np.pi * np.arange(n) / n
            delta = a0 * np.sin(theta - self.pem_phase_offset_rad)
            spec = np.fft.rfft(1.0 + u * np.cos(delta) + v * np.sin(delta))
            spec /= 1.0 + 1j * np.arange(spec.size) * self.pem_frequency_hz / self.adc_bandwidth_hz
            out = np.fft.irfft(spec, n)
            hit = np.append(out, out[0])
            if len(self._filtered_cache) >= _CACHE_LIMIT:
                self._filtered_cache.clear()
            self._filtered_cache[key] = hit
        return hit

    def _adc_scale(self, state: InstrumentState) -> float:
        """ADC counts per photoelectron collected in the front-end window."""
        return self.adc_counts_per_mcps * 1e-6 / self.adc_window_s * self._analog_gain(
            state.hv_volts)

    def adc_block(self, state: InstrumentState, n_samples: int, sample_rate_hz: float,
                  t0_s: float | None = None) -> AdcBlock:
        """Raw 12-bit ADC samples of the PMT anode signal and the PEM reference edges.

        Sample i is taken at t0 + i/``sample_rate_hz`` (t0 = ``t0_s``, or ``state.time_s``
        when omitted). Its expected level is offset + gain·r(θ_i)·t_w, r being the
        photoelectron rate at the sample's PEM phase (the front end is fast compared with the
        PEM period: its window t_w only sets the shot noise). The photoelectron number in the
        window is Poisson, each photoelectron's charge is Gamma-distributed with relative
        variance ENF² − 1, then Gaussian read noise, rounding, and clipping to 0 … 4095.

        Returns:
            :class:`AdcBlock`; ``edge_times_s`` are the reference rising edges in
            [t0, t0 + n/sample_rate), in s of instrument time (θ = 0 at each edge).
        """
        if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be an integer ≥ 1, got {n_samples!r}")
        n_samples = int(n_samples)
        fs = _positive("sample_rate_hz", sample_rate_hz, unit=" Hz")
        t0 = state.time_s if t0_s is None else float(t0_s)
        self._check_state(state)
        if not math.isfinite(t0):
            raise ValueError(f"t0_s must be a finite instrument time in s, got {t0_s!r}")
        duration = n_samples / fs
        excitation = self._excitation(t0, duration)
        theta = self._sample_phases(n_samples, fs, t0)
        pe = self.rng.poisson(self._pe_rates(state, theta, excitation) * self.adc_window_s)
        if self.enf > 1.0:
            shape = 1.0 / (self.enf * self.enf - 1.0)
            charge = self.rng.gamma(pe * shape, 1.0 / shape)
        else:
            charge = pe.astype(float)
        level = self.adc_offset + self._adc_scale(state) * charge
        if self.adc_read_noise > 0:
            level += self.adc_read_noise * self.rng.standard_normal(n_samples)
        raw = np.rint(level)
        clipped = bool(raw.min() < 0 or raw.max() > ADC_FULL_SCALE)
        samples = np.clip(raw, 0, ADC_FULL_SCALE).astype(np.uint16)
        return AdcBlock(samples, self._edges(t0, duration), clipped)

    def _edges(self, t0: float, duration: float) -> np.ndarray:
        f = self.pem_frequency_hz
        # Edge k is at k/f. Consecutive blocks must agree on an edge that falls exactly on
        # their common boundary (it belongs to the later block), so the cycle counts are
        # rounded with a tolerance far above float64 rounding at hours of instrument time.
        eps = 1e-6
        k0 = math.ceil(f * t0 - eps)
        k1 = math.ceil(f * (t0 + duration) - eps)
        rel = np.arange(k0, max(k0, k1)) / f - t0
        if self.pem_edge_jitter_s > 0 and rel.size:
            rel = rel + self.pem_edge_jitter_s * self.rng.standard_normal(rel.size)
        return t0 + rel
