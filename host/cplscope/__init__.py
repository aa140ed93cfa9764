"""cplscope: an open, scriptable controller for CPL spectrometers.

>>> import cplscope
>>> with cplscope.connect("sim", sample="R-Cs4PbBr6") as inst:     # doctest: +SKIP
...     print(inst.info())

The measurement core lives in :mod:`cplscope.demod`; the wire protocol in
:mod:`cplscope.protocol`; the instrument API in :mod:`cplscope.instrument`.
"""
__version__ = "0.1.0"

__all__ = ["Instrument", "connect", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import cplscope` stays light for scripts that only use the estimator.
    if name == "connect":
        from .connection import connect
        return connect
    if name == "Instrument":
        from .instrument import Instrument
        return Instrument
    raise AttributeError(f"module 'cplscope' has no attribute {name!r}")
