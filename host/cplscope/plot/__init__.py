"""Figures: the CPL figure and mirror-pair report (:mod:`cplscope.plot.cpl`) and the CD figure
(:mod:`cplscope.plot.cd`)."""
from .cpl import MirrorReport, mirror_report, plot_cpl

__all__ = ["MirrorReport", "mirror_report", "plot_cpl"]
