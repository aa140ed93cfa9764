"""Demodulation: phase-binned counts or ADC samples -> I_L, I_R, g_lum with uncertainties."""
from .estimator import Estimate, estimate

__all__ = ["Estimate", "estimate"]
