"""cplscope: an open, scriptable controller for CPL spectrometers.

>>> import cplscope
>>> with cplscope.connect("sim", sample="R-Cs4PbBr6") as inst:     # doctest: +SKIP
...     print(inst.info())

The package's layers, lowest first (docs/architecture.md): :mod:`cplscope.protocol` (the wire
contract with the board) and :mod:`cplscope.demod` (the estimator);
:mod:`cplscope.settings` (calibration and per-instrument settings); :mod:`cplscope.science`
(a point's physics: frames → result); :mod:`cplscope.board` (the board and its link) and
:mod:`cplscope.data` (documents, sinks, archive, spectra); :mod:`cplscope.plans` (point,
scan engine, survey, planning, resume, calibration); :mod:`cplscope.plot`; the CLI
(:mod:`cplscope.cli`); the simulated instrument (:mod:`cplscope.sim`).
"""
__version__ = "0.1.0"

__all__ = ["Instrument", "connect", "__version__"]

from .util.moved import install_aliases as _install_aliases

_install_aliases()


def __getattr__(name: str):
    # Lazy, so that `import cplscope` stays light for scripts that only use the estimator.
    if name == "connect":
        from .connection import connect
        return connect
    if name == "Instrument":
        from .instrument import Instrument
        return Instrument
    raise AttributeError(f"module 'cplscope' has no attribute {name!r}")
