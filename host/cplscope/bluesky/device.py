""":class:`CplScope`: a cplscope instrument as an ophyd-async device.

    from bluesky import RunEngine
    import bluesky.plans as bp
    from ophyd_async.core import init_devices
    from cplscope.bluesky import CplScope

    RE = RunEngine()
    with init_devices():
        cpl = CplScope("sim", sample="R-Cs4PbBr6", seed=1)     # or "usb", "usb://SERIAL"
    RE(bp.scan([cpl], cpl.wavelength, 430, 450, 11))

The device wraps the real :class:`cplscope.Instrument` (the simulated one with ``"sim"``).
Every call to the instrument runs in one worker thread of its own, in order, so the
RunEngine's event loop never blocks on USB. In ophyd-async's mock mode
(``connect(mock=True)``) there is no instrument: the signals are mocks and ``trigger()``
measures nothing, so plans can be tested without the twin.
"""
from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ophyd_async.core import (
    AsyncStatus,
    DeviceConnector,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

__all__ = ["CplScope", "InstrumentLink"]


class InstrumentLink:
    """The instrument behind a :class:`CplScope`: opened on connect, used from one worker
    thread (every call in order), closed with :meth:`close`.

    Args:
        address: ``"sim"``, ``"usb"`` or ``"usb://SERIAL"`` (:func:`cplscope.connect`).
        calibration: a :class:`~cplscope.settings.calibration.Calibration`, the path of a
            calibration file, or None: the one stored for the instrument; a simulated
            instrument with none stored is calibrated first, as ``cplscope calibrate --sim``
            does.
        connect_options: for :func:`cplscope.connect` (``sample=``, ``seed=``, ``faults=``…).
    """

    def __init__(self, address: str, calibration: Any = None, **connect_options: Any) -> None:
        self.address = address
        self.calibration = calibration
        self.options = connect_options
        self.inst: Any = None
        self._pool: ThreadPoolExecutor | None = None

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(instrument, *args, **kwargs)`` in the instrument's thread."""
        if self.inst is None:
            raise RuntimeError(f"the instrument {self.address!r} is not connected: connect "
                               "the device first (init_devices() or await device.connect())")
        pool = self._pool
        assert pool is not None
        return await asyncio.get_running_loop().run_in_executor(
            pool, lambda: fn(self.inst, *args, **kwargs))

    async def open(self) -> None:
        if self.inst is not None:
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cplscope")
        self.inst = await asyncio.get_running_loop().run_in_executor(self._pool, self._open)

    def _open(self) -> Any:
        import cplscope
        from cplscope.settings.calibration import Calibration, load_for

        inst = cplscope.connect(self.address, **self.options)
        try:
            cal = self.calibration
            if isinstance(cal, (str, os.PathLike)):
                cal = Calibration.load(cal, expected_serial=str(inst.info()["serial"]))
            if cal is not None:
                inst.calibration = cal
            elif self.address == "sim" and load_for(str(inst.info()["serial"])).is_default:
                from cplscope.plans.calibrate import calibrate_simulated

                seed = self.options.get("seed")
                inst.calibration = calibrate_simulated(seed=int(seed) if seed is not None else 0)
        except BaseException:
            inst.close()
            raise
        return inst

    def close(self) -> None:
        """Leave the instrument safe (shutter closed, HV off) and close it."""
        inst, pool = self.inst, self._pool
        self.inst, self._pool = None, None
        if inst is None:
            return
        try:
            if inst.transport.connected:
                inst.make_safe()
        finally:
            inst.close()
            if pool is not None:
                pool.shutdown(wait=False)


class _Connector(DeviceConnector):
    """Opens the instrument before the signals connect (real mode only)."""

    def __init__(self, link: InstrumentLink) -> None:
        self.link = link

    async def connect_real(self, device: Any, timeout: float, force_reconnect: bool) -> None:
        await self.link.open()
        await super().connect_real(device, timeout, force_reconnect)
        await device._after_connect()  # noqa: SLF001


class CplScope(StandardReadable):
    """A CPL spectrometer (real or the twin) as an ophyd-async ``StandardReadable``.

    Signals (units in their descriptors):

    - ``wavelength`` (nm): movable; setting it moves the monochromator.
    - configuration: ``dwell`` (s, fixed dwell per point), ``target_sigma`` (σ(g_lum); > 0:
      each point counts until σ_g reaches it, at most ``max_dwell`` s; 0: fixed dwell),
      ``max_dwell`` (s), ``dark_dwell`` (s of dark counts measured at ``stage()``; 0: none),
      ``bins``, ``periods`` (PEM periods per frame), ``retardation`` (rad, the PEM's peak
      A0), ``hv`` (V), ``mode`` (``"counting"``).
    - read, per point: ``g_lum``, ``sigma_g``, ``intensity`` (counts/s), ``delta_i``
      (counts/s), ``u`` (reduced linear polarization), ``flags`` (``;``-separated),
      ``dwell_used`` (s), and ``wavelength``.

    ``stage()`` switches the PMT's HV on, opens the shutter and measures the dark;
    ``trigger()`` measures one point at the current wavelength; ``unstage()`` closes the
    shutter and switches the HV off.

    Args:
        address: ``"sim"`` (the twin), ``"usb"`` or ``"usb://SERIAL"``.
        name: the device's name (``init_devices()`` sets it from the variable).
        calibration: a Calibration or its file; None: the one stored for the instrument.
        **connect_options: for :func:`cplscope.connect`: ``sample=``, ``seed=`` and the
            simulator's options.
    """

    def __init__(self, address: str = "sim", name: str = "", *, calibration: Any = None,
                 **connect_options: Any) -> None:
        self._link = InstrumentLink(address, calibration, **connect_options)
        self._dark: Any = None
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.g_lum, self._set_g = soft_signal_r_and_setter(float, math.nan, precision=6)
            self.sigma_g, self._set_sigma = soft_signal_r_and_setter(float, math.nan,
                                                                     precision=6)
        with self.add_children_as_readables():
            self.wavelength = soft_signal_rw(float, math.nan, units="nm", precision=3,
                                             setter=self._move)
            self.intensity, self._set_i = soft_signal_r_and_setter(
                float, math.nan, units="counts/s", precision=1)
            self.delta_i, self._set_di = soft_signal_r_and_setter(
                float, math.nan, units="counts/s", precision=2)
            self.u, self._set_u = soft_signal_r_and_setter(float, math.nan, precision=6)
            self.flags, self._set_flags = soft_signal_r_and_setter(str, "")
            self.dwell_used, self._set_dwell = soft_signal_r_and_setter(
                float, math.nan, units="s", precision=2)
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.dwell = soft_signal_rw(float, 10.0, units="s", precision=2)
            self.target_sigma = soft_signal_rw(float, 0.0, precision=6)
            self.max_dwell = soft_signal_rw(float, 300.0, units="s", precision=1)
            self.dark_dwell = soft_signal_rw(float, 10.0, units="s", precision=1)
            self.bins = soft_signal_rw(int, 16, setter=self._counting("bins"))
            self.periods = soft_signal_rw(int, 10000, setter=self._counting("periods"))
            self.retardation = soft_signal_rw(float, math.nan, units="rad", precision=4,
                                              setter=self._set_retardation)
            self.hv = soft_signal_rw(float, 800.0, units="V", precision=1,
                                     setter=self._set_hv)
            self.mode = soft_signal_rw(str, "counting", setter=self._set_mode)
        super().__init__(name=name, connector=_Connector(self._link))

    # --- the instrument -----------------------------------------------------------------

    @property
    def instrument(self) -> Any:
        """The :class:`cplscope.Instrument` (None before connecting and in mock mode)."""
        return self._link.inst

    @property
    def link(self) -> InstrumentLink:
        return self._link

    def close(self) -> None:
        """Leave the instrument safe and close it (the twin's processes end)."""
        self._link.close()

    async def _after_connect(self) -> None:
        """Counting mode with the default settings; the signals show what is in force."""
        await self._prepare(await self.bins.get_value(), await self.periods.get_value(),
                            None)

    async def _prepare(self, bins: int, periods: int, a0_rad: float | None) -> None:
        from cplscope.plans.calibrate import default_retardation, prepare

        if self.mocked:
            return
        hv_signal = await self.hv.get_value()

        def do(inst: Any) -> tuple[float, float | None]:
            hv = inst.status().get("hv_set_volts")     # as set, also by a move in parallel
            hv = hv_signal if hv is None else float(hv)
            phase = float(inst.calibration.phase_offset_rad)
            a0 = default_retardation(bins, phase) if a0_rad is None else a0_rad
            prepare(inst, bins=bins, periods=periods, hv_volts=hv, a0_rad=a0,
                    open_shutter=False)
            return a0, inst.wavelength_nm

        a0, wl = await self._link.call(do)
        self.retardation._connector.backend.set_value(a0)  # noqa: SLF001
        if wl is not None:
            self.wavelength._connector.backend.set_value(wl)  # noqa: SLF001
        self._dark = None

    @property
    def mocked(self) -> bool:
        """Connected in ophyd-async's mock mode (no instrument)."""
        return self._mock is not None

    async def _move(self, wavelength_nm: float) -> float:
        if self.mocked:
            return float(wavelength_nm)
        return float(await self._link.call(lambda inst: inst.move_to(float(wavelength_nm))))

    def _counting(self, which: str) -> Callable[[int], Any]:
        async def setter(value: int) -> None:
            bins = value if which == "bins" else await self.bins.get_value()
            periods = value if which == "periods" else await self.periods.get_value()
            await self._prepare(int(bins), int(periods), await self.retardation.get_value())
        return setter

    async def _set_retardation(self, a0_rad: float) -> None:
        if not 0 < a0_rad <= math.pi:
            raise ValueError(f"retardation must be in (0, π] rad, got {a0_rad!r}")
        await self._prepare(await self.bins.get_value(), await self.periods.get_value(),
                            float(a0_rad))

    async def _set_hv(self, volts: float) -> None:
        if not volts >= 0:
            raise ValueError(f"hv must be ≥ 0 V, got {volts!r}")
        if not self.mocked:
            await self._link.call(lambda inst: inst.set_hv(float(volts)))

    async def _set_mode(self, mode: str) -> None:
        if mode != "counting":
            raise ValueError(f"mode {mode!r}: the device measures in 'counting' mode (the "
                             "analog path is for lab scripts: Instrument.configure_analog)")

    # --- the bluesky verbs ----------------------------------------------------------------

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """HV on, shutter open, and the dark measured (``dark_dwell`` s; 0: none)."""
        await super().stage()
        if self.mocked:
            return
        hv, dark_s = await self.hv.get_value(), await self.dark_dwell.get_value()

        def do(inst: Any) -> Any:
            inst.set_hv(hv)
            inst.open_shutter()
            return inst.measure_dark(dark_s) if dark_s > 0 else None

        self._dark = await self._link.call(do)

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        """Shutter closed, HV off."""
        await super().unstage()
        if not self.mocked:
            await self._link.call(lambda inst: inst.make_safe())

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Measure one point at the current wavelength: ``dwell`` s, or adaptive until σ_g
        ≤ ``target_sigma`` (at most ``max_dwell`` s) when ``target_sigma`` > 0. The blank
        stored with the calibration is subtracted where it covers the wavelength."""
        if self.mocked:                    # the readings are the mock's
            return
        target = await self.target_sigma.get_value()
        kw: dict[str, Any] = ({"target_sigma": float(target),
                               "max_dwell_s": float(await self.max_dwell.get_value())}
                              if target > 0 else {"dwell_s": float(await self.dwell.get_value())})
        dark = self._dark
        result = await self._link.call(_measure, dark, kw)
        self._set_g(result.g_lum)
        self._set_sigma(result.sigma_g)
        self._set_i(result.intensity)
        self._set_di(result.delta_i)
        self._set_u(result.linear)
        self._set_flags(";".join(result.flags))
        self._set_dwell(result.dwell_s)


def _measure(inst: Any, dark: Any, kw: dict[str, Any]) -> Any:
    if inst.wavelength_nm is None:
        raise RuntimeError("no wavelength yet: set the device's wavelength first "
                           "(bps.mv(cpl.wavelength, 440))")
    blank = inst.calibration.blank
    wl = float(inst.wavelength_nm)
    at = blank.at(wl) if blank is not None and blank.covers([wl]) else None
    if not inst.status().get("shutter_open"):
        raise RuntimeError("the shutter is closed: stage the device first (the standard "
                           "plans do; by hand: RE(bps.stage(cpl)))")
    return inst.measure(dark=dark, blank=at, **kw).result
