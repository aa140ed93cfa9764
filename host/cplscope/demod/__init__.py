"""Demodulation: phase-binned counts or ADC samples -> I_L, I_R, g_lum with uncertainties."""
from .estimator import Estimate, estimate
from .phase_binning import PhaseBinner, phase_bin

__all__ = ["Estimate", "PhaseBinner", "estimate", "phase_bin"]
