"""Re-gating time bins offline: a gate made of contiguous whole time bins of a run measured
with several gates (``--time-bins N``), and a point's result for it through the one point
pipeline.

A run with N time bins of width w from δ counted gate j from δ + j·w to δ + (j + 1)·w after
each pulse, each in its own frames. Any gate from the opening of bin j0 to the end of bin
j1 − 1 is made again from the same complete turns through the bins: the frames of bins
j0 … j1 − 1 of each turn are summed into one frame (:meth:`GatedFrameSet.rotations`). Other
gates cannot be made: the frames hold how many photons fell into each bin, not when.

Dead time: the rate inside the gates falls with the decay, and the non-paralyzable
correction c / (1 − c·τ/t) is not linear in the rate, so each time bin is corrected at its
own in-gate rate and the corrected counts are then summed. Correcting the sum at the new
gate's mean rate would under-correct its early, bright bins (by τ times the spread of the
in-gate rates over the bins).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..demod import Estimate
from .frames import GatedFrameSet
from .pipeline import PointContext, process_point
from .results import FlagRules, PointResult
from .timebins import scale_dark

__all__ = ["EDGE_TOLERANCE", "GateError", "Regate", "choose_bins", "regated_point"]

#: How far a gate's opening or end may lie from a time bin's edge, as a fraction of a bin
#: (the board quantises the bins to its clock; a gate typed to a few digits lands near it).
EDGE_TOLERANCE = 0.01


class GateError(ValueError):
    """A gate that the archive's time bins cannot make (or an archive without time bins)."""


@dataclass(frozen=True)
class Regate:
    """A gate made of the time bins ``first`` … ``stop`` − 1.

    Attributes:
        first, stop: the bins, ``range(first, stop)``.
        delay_s, width_s: the gate they make: its opening after each pulse and its width, s.
    """

    first: int
    stop: int
    delay_s: float
    width_s: float

    @property
    def bins(self) -> range:
        return range(self.first, self.stop)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the reprocessed spectrum's metadata)."""
        return {"delay_s": self.delay_s, "width_s": self.width_s,
                "time_bins": [self.first, self.stop - 1]}


def _gate_text(delay_s: float, width_s: float, step_s: float) -> str:
    return f"{_s(delay_s, step_s)}:{_s(width_s, step_s)}"


def _s(value_s: float, step_s: float) -> str:
    """A time in s to a thousandth of a bin (``step_s``): the board's clock quantises the
    bins' edges (its shortest delay is 80 ns), which a user need not type."""
    q = step_s * 1e-3
    return f"{round(value_s / q) * q:.6g}"


def choose_bins(delay_s: float, width_s: float, bin_delay_s: float, bin_width_s: float,
                n_bins: int) -> Regate:
    """The time bins that make the gate from ``delay_s`` to ``delay_s + width_s`` (s after
    each pulse), of a run with ``n_bins`` bins of ``bin_width_s`` from ``bin_delay_s`` (s).

    Raises:
        GateError: the gate is not finite and positive, lies (partly) outside the measured
            bins (the message gives the range there is), or its ends do not fall on bin
            edges within :data:`EDGE_TOLERANCE` of a bin (the message names the nearest
            gates that can be made).
    """
    d, w = float(delay_s), float(width_s)
    if not (math.isfinite(d) and math.isfinite(w) and d >= 0 and w > 0):
        raise GateError(f"a gate is a delay ≥ 0 s and a width > 0 s, got {d!r} and {w!r}")
    b0, bw, n = float(bin_delay_s), float(bin_width_s), int(n_bins)
    end = b0 + n * bw
    t = lambda x: _s(x, bw)
    asked = f"{d:.6g}:{w:.6g}"
    lo, hi = (d - b0) / bw, (d + w - b0) / bw       # the gate's ends, in bins from the first
    tol = EDGE_TOLERANCE
    bins = f"{n} time bins of {t(bw)} s from {t(b0)} s to {t(end)} s after each pulse"
    if lo < -tol or hi > n + tol:
        raise GateError(f"the gate {asked} s (from {d:.6g} s to {d + w:.6g} s) reaches outside "
                        f"the measured bins: the run counted {bins}; a gate can only be made "
                        f"within {t(b0)} … {t(end)} s (the whole of it: "
                        f"{_gate_text(b0, n * bw, bw)})")
    j0, j1 = round(lo), round(hi)
    if abs(lo - j0) <= tol and abs(hi - j1) <= tol and j1 > j0:
        return Regate(j0, j1, b0 + j0 * bw, (j1 - j0) * bw)
    near = _nearest(lo, hi, n)
    shown = ", ".join(f"{_gate_text(b0 + a * bw, (b - a) * bw, bw)} "
                      f"({f'bins {a}–{b - 1}' if b - a > 1 else f'bin {a}'})" for a, b in near)
    raise GateError(f"the gate {asked} s does not fall on the edges of the time bins (the run "
                    f"counted {bins}, so a gate opens and closes at {t(b0)} s + a whole "
                    f"number of {t(bw)} s); the nearest gates made of whole bins: {shown}")


def _nearest(lo: float, hi: float, n: int) -> list[tuple[int, int]]:
    """The gates of whole bins nearest to the bin positions ``lo`` … ``hi``: rounded, inside
    and around them."""
    out: list[tuple[int, int]] = []
    for a, b in ((round(lo), round(hi)), (math.ceil(lo), math.floor(hi)),
                 (math.floor(lo), math.ceil(hi))):
        a = min(max(a, 0), n - 1)
        b = min(max(b, a + 1), n)
        if (a, b) not in out:
            out.append((a, b))
    return out


def regated_point(frames: GatedFrameSet, ctx: PointContext, gate: Regate, *,
                  frame_flags: Any = (), rules: FlagRules = FlagRules()
                  ) -> tuple[Estimate, PointResult, PointContext, GatedFrameSet]:
    """A point's usable time-bin ``frames`` as if counted through ``gate``: its complete turns'
    bins ``gate.bins`` summed, each bin corrected for the dead time at its own in-gate rate
    first (module docstring), through the point pipeline under the point's context ``ctx``
    with the gate's own open share and the dark scaled to its frames (``ctx.dark`` is per
    frame of a whole turn, as the run fitted it).

    Returns (estimate, result, the context used, the summed frames fitted). The result's ``dwell_s`` is the time the
    gate's bins were counted (s): its rates are per second of that, as a run through that one
    gate reports them.

    Raises:
        GateError: the frames are not time bins, or ``gate`` lies outside their bins.
        ValueError: no complete turn through the bins; counts at the dead-time limit.
    """
    if not isinstance(frames, GatedFrameSet) or frames.n_gates < 2:
        raise GateError("these frames were not counted in time bins: no gate can be made of "
                        "them")
    if gate.stop > frames.n_gates:
        raise GateError(f"bins {gate.first}–{gate.stop - 1} asked of frames with "
                        f"{frames.n_gates} time bins")
    whole = frames.rotations()
    part = frames.rotations(gate.bins, ctx.dead_time_s)
    if part.n_frames == 0:
        raise ValueError("no complete turn through the time bins among the usable frames")
    scale = part.frame_time_s / whole.frame_time_s
    c = replace(ctx, live_fraction=min(1.0, part.live_fraction),
                dark=scale_dark(ctx.dark, scale), dark_sigma=scale_dark(ctx.dark_sigma, scale))
    est, result = process_point(part.counts, part.frame_time_s, part.span, part.dwell_s, c,
                                frame_flags=frame_flags, rules=rules)
    return est, result, c, part
