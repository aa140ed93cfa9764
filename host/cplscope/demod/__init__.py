"""Demodulation: phase-binned counts or ADC samples -> I_L, I_R, g_lum with uncertainties."""
from .bins import SampledPhases
from .estimator import EMISSION_Z_MIN, U_SIGMA_MAX, Estimate, estimate
from .lockin import demodulate, rising_edges
from .phase_binning import PhaseBinner, phase_bin, sampled_phases

__all__ = ["EMISSION_Z_MIN", "U_SIGMA_MAX", "Estimate", "PhaseBinner", "SampledPhases",
           "demodulate", "estimate", "phase_bin", "rising_edges", "sampled_phases"]
