"""`Instrument`: one CPL spectrometer controller, real or simulated, for lab scripts.

It is the board's :class:`~cplscope.board.controller.Controller` (commands, acquisitions,
settings restored after a firmware restart) with the plans of :mod:`cplscope.plans` as
methods: ``inst.measure(...)`` is :func:`cplscope.plans.point.measure` on it, ``inst.scan``
is :func:`cplscope.plans.scan.scan`. Get one with :func:`cplscope.connect`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .board.controller import AcquisitionError, Controller, OverloadError
from .data.spectrum import Spectrum
from .plans.calibrate import prepare as prepare_plan
from .protocol.gating import Gating
from .plans.point import DEFAULT_MAX_DWELL_S, PointMeasurement, measure as measure_point
from .plans.point import measure_dark as measure_dark_plan
from .plans.resume import resume_scan
from .plans.scan import scan as scan_plan
from .science.results import FlagRules
from .settings.calibration import Calibration

__all__ = ["AcquisitionError", "Instrument", "OverloadError"]


class Instrument(Controller):
    """A CPL spectrometer controller board (real or simulated), with the measurement plans
    as methods.

    Get one with :func:`cplscope.connect`. Use it as a context manager, or call
    :meth:`close`.

    Units: wavelengths in nm, times in s, retardation in rad, HV in V, counts in counts.
    """

    def prepare(self, *, bins: int = 16, periods: int | None = None,
                hv_volts: float = 800.0, a0_rad: float | None = None,
                open_shutter: bool = True, mode: str = "counting",
                gating: Gating | None = None) -> None:
        """Counting (or ``mode="analog"``, or ``mode="gated"`` with a ``gating``: photon
        counting in a gate after each excitation pulse) mode, ready to measure: ``bins``
        phase bins, ``periods`` PEM periods per frame (None: 10000 counting and gated, 5000
        analog), PMT HV (V), A0 (rad) held constant across wavelengths, shutter open.
        ``a0_rad`` None: the counting default
        (:func:`cplscope.plans.calibrate.default_retardation`), π/2 in analog mode.

        Gated, e.g. ``Gating(pulse_rate_hz=200, delay_s=50e-6, width_s=2e-3)``
        (:class:`cplscope.protocol.gating.Gating`): the board pulses its trigger output 200
        times a second and counts the photons from 50 µs to 2.05 ms after each pulse."""
        prepare_plan(self, bins=bins, periods=periods, hv_volts=hv_volts, a0_rad=a0_rad,
                     open_shutter=open_shutter, mode=mode, gating=gating)

    def measure(self, *, dwell_s: float | None = None, target_sigma: float | None = None,
                max_dwell_s: float | None = None, min_dwell_s: float | None = None,
                calibration: Calibration | None = None, dark: Any = None,
                rules: FlagRules | None = None, blank: tuple[float, float] | None = None,
                wavelength_nm: float | None = None,
                skip_hopeless: bool = False) -> PointMeasurement:
        """Measure g_lum at the current wavelength: a fixed ``dwell_s`` (s), or adaptive
        until σ_g ≤ ``target_sigma`` or ``max_dwell_s`` (s, default
        :data:`cplscope.plans.point.DEFAULT_MAX_DWELL_S`). See :func:`cplscope.plans.point.measure`
        for every argument."""
        return measure_point(self, dwell_s=dwell_s, target_sigma=target_sigma,
                             max_dwell_s=DEFAULT_MAX_DWELL_S if max_dwell_s is None else max_dwell_s,
                             min_dwell_s=min_dwell_s, calibration=calibration, dark=dark,
                             rules=rules if rules is not None else self.flag_rules(), blank=blank,
                             wavelength_nm=wavelength_nm, skip_hopeless=skip_hopeless)

    def measure_dark(self, dwell_s: float = 10.0) -> Any:
        """Dark counts per bin with the shutter closed (:func:`cplscope.plans.point.measure_dark`)."""
        return measure_dark_plan(self, dwell_s)

    def scan(self, start: float, stop: float, step: float, *, dwell_s: float | None = None,
             target_sigma: float | None = None, max_dwell_s: float | None = None,
             accumulations: int = 1, dark: Any = True, dark_dwell_s: float | None = None,
             calibration: Calibration | None = None, blank: Any = None,
             callback: Callable[..., None] | None = None, output: Any = None,
             archive: Any = None, progress: bool = False, sample: str = "",
             rules: FlagRules | None = None, settings: dict[str, Any] | None = None,
             skip_hopeless: bool = False, overwrite: bool = False,
             sinks: Any = (), time_budget_s: float | None = None,
             survey: bool | float = False,
             survey_callback: Callable[..., None] | None = None) -> Spectrum:
        """Scan from ``start`` to ``stop`` nm in ``step`` nm and return the spectrum
        (:func:`cplscope.plans.scan.scan` documents every argument): a fixed ``dwell_s`` (s), an
        adaptive ``target_sigma``, or a ``time_budget_s`` (s) for the whole scan."""
        return scan_plan(self, start, stop, step, dwell_s=dwell_s, target_sigma=target_sigma,
                         max_dwell_s=DEFAULT_MAX_DWELL_S if max_dwell_s is None else max_dwell_s,
                         accumulations=accumulations, dark=dark, dark_dwell_s=dark_dwell_s,
                         calibration=calibration, blank=blank, callback=callback, output=output,
                         archive=archive, progress=progress, sample=sample,
                         rules=rules if rules is not None else self.flag_rules(), settings=settings,
                         skip_hopeless=skip_hopeless, overwrite=overwrite, sinks=sinks,
                         time_budget_s=time_budget_s, survey=survey,
                         survey_callback=survey_callback)

    def resume(self, archive: Any, *, output: Any = None, progress: bool = False,
               callback: Callable[..., None] | None = None, sinks: Any = (),
               overwrite: bool = False) -> Spectrum:
        """Continue an interrupted scan from its raw archive without repeating or losing a
        point (:func:`cplscope.plans.resume.resume_scan`)."""
        return resume_scan(self, archive, output=output, progress=progress,
                           callback=callback, sinks=sinks, overwrite=overwrite)
