"""Simulated instrument: the optical bench (:mod:`cplscope.sim.bench`) and its sample library
(:mod:`cplscope.sim.samples`).

This package file stays light on purpose: import the submodule you need, e.g.
``from cplscope.sim.bench import Bench, InstrumentState``.
"""
