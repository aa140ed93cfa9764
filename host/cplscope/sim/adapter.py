"""Adapter between the sim link's bench interface (`cplscope.sim.link.LinkBench`) and the
optical bench (`cplscope.sim.bench.Bench`): units, board ticks, PEM lock and the overload
guard as the board's hardware would see them."""
from __future__ import annotations

import dataclasses
import math

from typing import Sequence

from .bench import ADC_FULL_SCALE, Bench, Gate, InstrumentState
from .link import AdcAnswer, CounterAnswer, GatedAnswer, LinkState

__all__ = ["BenchAdapter", "TICK_HZ", "INTERNAL_LOCK_RANGE"]

#: Board tick rate (RP2040 system clock), ticks/s.
TICK_HZ = 125_000_000
#: In internal mode the board searches ±1 % around the configured frequency for the PEM
#: resonance (docs/hardware.md); outside that range it never finds it.
INTERNAL_LOCK_RANGE = 0.01


class BenchAdapter:
    """Answers the sim board's counter and ADC requests from a :class:`Bench`.

    - Instrument time: ``time_s = time_us · 1e-6`` at the start of the frame or block.
    - PEM lock: with an external controller (``pem_internal`` false) the reference is always
      there, at the bench's resonance. In internal mode the board drives the PEM itself and
      locks when the drive is on and its configured frequency is within ±1 % of the bench's
      resonance (the board's search range); unlocked, the PEM does not move (A0 = 0), counting
      frames use the board's own period 1/f and ADC blocks carry no reference edges.
    - Overload guard: a counting frame trips it when the anode pulse rate (before dead time)
      exceeds ``guard_max_rate_cps``; an ADC block when a sample exceeds
      ``guard_max_adc_level``.
    """

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.frames = 0
        self.blocks = 0
        #: the wavelength (nm) the monochromator was at for the last frame or block computed
        self.last_wavelength_nm: float | None = None
        self._adc_next_t0_s: float | None = None

    # PEM -----------------------------------------------------------------------------------
    def _locked(self, state: LinkState) -> bool:
        if not state.pem_internal:
            return True
        f0 = self.bench.pem_frequency_hz
        return (state.pem_drive > 0.0
                and abs(state.pem_frequency_hz - f0) <= INTERNAL_LOCK_RANGE * f0)

    def _period_s(self, state: LinkState, locked: bool) -> float:
        if locked or state.pem_frequency_hz <= 0:
            return self.bench.pem_period_s
        return 1.0 / state.pem_frequency_hz

    def pem_status(self, state: LinkState) -> tuple[bool, int]:
        """(locked, reference period in ps)."""
        locked = self._locked(state)
        return locked, round(self._period_s(state, locked) * 1e12)

    def _bench_state(self, state: LinkState, locked: bool) -> InstrumentState:
        self.last_wavelength_nm = state.wavelength_nm
        return InstrumentState(wavelength_nm=state.wavelength_nm,
                               pem_drive=state.pem_drive if locked else 0.0,
                               shutter_open=state.shutter_open,
                               hv_volts=max(0.0, state.hv_volts),
                               time_s=state.time_us * 1e-6)

    # link bench interface --------------------------------------------------------------------
    def counter_frame(self, state: LinkState, bins: int, periods: int) -> CounterAnswer:
        """K = `periods` PEM periods into `bins` phase bins, starting at `state.time_us`."""
        locked = self._locked(state)
        period_s = self._period_s(state, locked)
        f = self.bench.counts_frame(self._bench_state(state, locked), bins, periods)
        self.frames += 1
        trip = f.overload_rate_cps if f.overload_rate_cps > state.guard_max_rate_cps else None
        return CounterAnswer(counts=f.counts.tolist(), periods=periods,
                             pem_period_ps=round(period_s * 1e12),
                             duration_us=round(periods * period_s * 1e6),
                             saturated=f.saturated, trip_rate_cps=trip)

    def gated_frame(self, state: LinkState, bins: int, periods: int, pulse_period_ns: int,
                    gate_delay_ns: int, gate_width_ns: int, external: bool) -> GatedAnswer:
        """K = `periods` PEM periods of pulsed excitation into `bins` phase bins, counting
        one gate (ns) after each pulse. The sample is excited while the shutter is open and
        the pulses come: the board's trigger (`state.trigger_on`), or an external laser."""
        locked = self._locked(state)
        period_s = self._period_s(state, locked)
        bench_state = self._bench_state(state, locked)
        if not (external or state.trigger_on):
            bench_state = dataclasses.replace(bench_state, shutter_open=False)
        gate = Gate(pulse_period_ns * 1e-9, gate_delay_ns * 1e-9, gate_width_ns * 1e-9)
        f = self.bench.gated_frame(bench_state, bins, periods, gate)
        self.frames += 1
        trip = f.overload_rate_cps if f.overload_rate_cps > state.guard_max_rate_cps else None
        return GatedAnswer(counts=f.counts.tolist(), pulses=f.pulses, periods=periods,
                           pem_period_ps=round(period_s * 1e12),
                           duration_us=round(periods * period_s * 1e6),
                           saturated=f.saturated, trip_rate_cps=trip)

    def adc_block(self, state: LinkState, sample_rate_hz: float, n_samples: int) -> AdcAnswer:
        """n 12-bit samples at `sample_rate_hz` (Hz) from `state.time_us`, with the reference
        edges in ticks after sample 0."""
        locked = self._locked(state)
        t0_s = state.time_us * 1e-6
        # The hub's clock counts whole µs, a block lasts n/fs. A block that follows the
        # previous one within that rounding continues it exactly, as DMA into ping-pong
        # buffers does on the board; otherwise it starts a new stream.
        nxt = self._adc_next_t0_s
        if nxt is not None and abs(t0_s - nxt) < 2e-6:
            t0_s = nxt
        self._adc_next_t0_s = t0_s + n_samples / sample_rate_hz
        blk = self.bench.adc_block(self._bench_state(state, locked), n_samples, sample_rate_hz,
                                   t0_s)
        self.blocks += 1
        edges = [round((e - t0_s) * TICK_HZ) for e in blk.edge_times_s.tolist()] if locked else []
        top = int(blk.samples.max())
        trip = top if top > state.guard_max_adc_level else None
        return AdcAnswer(samples=blk.samples.tolist(), edges_ticks=edges,
                         t0_ticks=round(t0_s * TICK_HZ),
                         duration_us=max(0, round(self._adc_next_t0_s * 1e6) - state.time_us),
                         # as the rp2 board flags it: a sample at full scale (the front end
                         # sits above 0 in the dark, so 0 is in range there)
                         clipped=top >= ADC_FULL_SCALE, trip_level=trip)

    # ground truth ----------------------------------------------------------------------------
    def truth(self, wavelength_nm: float, gate: Sequence[float] | None = None
              ) -> dict[str, float]:
        """The sample's g_lum, linear polarization u and emission (relative; for a
        multi-component sample the detected rate) at `wavelength_nm` (nm) through the
        bench's bandpass; NaN where there is no emission. `gate` = (period, delay, width)
        in s: what a gate after each excitation pulse keeps (measurement model §11)."""
        x = float(wavelength_nm)
        if not (math.isfinite(x) and x > 0):
            raise ValueError(f"wavelength_nm must be a finite wavelength > 0 nm, got "
                             f"{wavelength_nm!r}")
        if gate is not None or self.bench.sample.components:
            state = InstrumentState(wavelength_nm=x, pem_drive=0.0, shutter_open=True,
                                    hv_volts=self.bench.hv_nominal_volts)
            t = self.bench.truth(state, Gate(*gate) if gate is not None else None)
        else:
            t = self.bench.sample.truth(x, self.bench.slit_fwhm_nm)
        return {"wavelength_nm": x, "bandpass_nm": self.bench.slit_fwhm_nm,
                "g_lum": float(t.g_lum), "linear": float(t.linear),
                "emission": float(t.emission)}
