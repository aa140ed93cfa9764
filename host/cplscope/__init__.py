"""cplscope: an open, scriptable controller for CPL spectrometers.

The measurement core lives in :mod:`cplscope.demod`; the wire protocol in
:mod:`cplscope.protocol`.
"""
__version__ = "0.1.0"
