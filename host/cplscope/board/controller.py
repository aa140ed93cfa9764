"""`Controller`: the commands and acquisitions of one CPL controller board, real or simulated.

This is the board as the plans see it (:mod:`cplscope.plans` measure with it); lab scripts use
its subclass :class:`cplscope.Instrument`, which adds the plans as methods. Everything here
goes through :class:`cplscope.board.transport.Transport`, i.e. through pyusb, so a
script runs unchanged on the simulated instrument and on a real board. The instrument keeps
the settings it was given and puts them back by itself when the firmware restarts.
"""
from __future__ import annotations

import logging
import math
import queue
import time
import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import usb.core

from ..settings.calibration import Calibration, load_for
from ..science.frames import FrameSet
from ..science.pipeline import Retardation
from ..science.results import FlagRules
from ..protocol import (MAX_PAYLOAD, AdcBlock, CommandError, Counts, Event, EventCode, Opcode,
                       ReplyStatus)
from ..protocol.gating import Gating
from .transport import ConnectionLost, LinkHealth, Transport

__all__ = ["AcquisitionError", "Controller", "OverloadError", "analog_block_samples"]

log = logging.getLogger(__name__)

#: The firmware's PEM drive calibration after boot (drive 0.5 gives π/2 at 500 nm).
_DRIVE_PER_RAD_NM = 0.0006366

if TYPE_CHECKING:
    from ..settings.rate_limits import RateLimits


def _flag_names(flags: int) -> str:
    from ..protocol import Flags

    names = [f.name for f in Flags if f.name and int(flags) & int(f)]
    return "|".join(n for n in names if n) or "none"


#: wall s a bounded acquisition's stream may be quiet, once each of its data frames has come
#: or been lost on the link, before the host asks (STATUS) whether it is over: its EVENT
#: ACQ_DONE may have been lost
_LOST_END_S = 0.25


class _AcquisitionEnd:
    """Queued behind the data frames of a bounded acquisition when its ACQ_DONE arrives."""

    __slots__ = ("acq_id",)

    def __init__(self, acq_id: int) -> None:
        self.acq_id = acq_id


class AcquisitionError(RuntimeError):
    """An acquisition could not deliver the frames asked for (the text says why)."""


class OverloadError(AcquisitionError):
    """The PMT overload guard tripped: HV was cut and the shutter closed. Lower the HV, close
    the slit or attenuate the excitation, then call :meth:`Controller.clear_fault`."""


#: the longest ADC block a board sends (samples) and the reference edges one block carries
#: (an rp2 board's): docs/protocol.md ADC_BLOCK
MAX_BLOCK_SAMPLES = 4096
MAX_BLOCK_EDGES = 1024


def analog_block_samples(sample_rate_hz: float, pem_hz: float) -> int:
    """The longest ADC block (even, samples) at ``sample_rate_hz`` (Hz) that holds its
    reference edges of a PEM at ``pem_hz`` (Hz; up to 5 % faster) and fits one ADC_BLOCK
    frame, at most :data:`MAX_BLOCK_SAMPLES`."""
    if not sample_rate_hz > 0 or not pem_hz > 0:
        raise ValueError(f"sample_rate_hz and pem_hz must be > 0 Hz, got {sample_rate_hz!r} "
                         f"and {pem_hz!r}")
    n = MAX_BLOCK_SAMPLES
    while n > 2:
        edges = int(n / sample_rate_hz * pem_hz * 1.05) + 2
        if edges <= MAX_BLOCK_EDGES and 32 + 2 * (edges - 1) + 3 * n // 2 <= MAX_PAYLOAD:
            return n
        n -= 2
    return 2


class Controller:
    """A CPL spectrometer controller board (real or simulated): its commands and acquisitions.

    Lab scripts get the :class:`cplscope.Instrument` subclass from :func:`cplscope.connect`.
    Use it as a context manager, or call :meth:`close`.

    Units: wavelengths in nm, times in s, retardation in rad, HV in V, counts in counts.
    """

    def __init__(self, transport: Transport, *, sim: Any = None, address: str = "",
                 sim_seed: int | None = None) -> None:
        self._t = transport
        self.sim = sim
        """The simulated instrument's session (:class:`cplscope.sim.launcher.SimSession`), or
        None for a real board."""
        self.sim_seed = sim_seed
        """The seed of the simulated instrument's noise (None for a real board)."""
        self.address = address
        self._info: dict[str, Any] | None = None
        self._settings: dict[Opcode, dict[str, Any]] = {}
        self._homed = False
        self._wavelength_nm: float | None = None
        self._restarts_seen = self._t.health().restarts
        self._reconnects_seen = self._t.health().reconnects
        self._t.on_event = self._on_event
        self._overload: Event | None = None
        self._calibration: Calibration | None = None
        self._rate_limits: RateLimits | None = None
        self.analog_binning: tuple[int, int] = (16, 5000)
        """Analog mode's host-side phase binning: (bins, PEM periods per frame)."""

    # --- identity ---------------------------------------------------------------------------

    @property
    def device(self) -> usb.core.Device:
        """The pyusb ``usb.core.Device`` of the board."""
        return self._t.device

    @property
    def transport(self) -> Transport:
        return self._t

    def info(self) -> dict[str, Any]:
        """Identity of the board: ``implementation`` (its ``sys.implementation.name``),
        ``board``, ``firmware_version``, ``protocol_version``, ``serial``, plus ``address``
        and, for the simulated instrument, ``sim_seed`` (the seed of its noise: every run's
        metadata records it)."""
        if self._info is None:
            self._info = {**self._command(Opcode.IDENTIFY), "address": self.address}
            if self.sim_seed is not None:
                self._info["sim_seed"] = int(self.sim_seed)
        return dict(self._info)

    @property
    def calibration(self) -> Calibration:
        """The calibration in force: the one stored for this board's serial
        (``cplscope.settings.calibration.default_path``), or uncalibrated defaults
        (``.is_default``) until one is set or saved."""
        if self._calibration is None:
            self._calibration = load_for(str(self.info()["serial"]))
        return self._calibration

    @calibration.setter
    def calibration(self, value: Calibration) -> None:
        serial = str(self.info()["serial"])
        if value.serial != serial:
            raise ValueError(f"this calibration belongs to instrument {value.serial}, not to "
                             f"{serial}")
        self._calibration = value

    @property
    def rate_limits(self) -> RateLimits:
        """The counting head's linear-range and damage count-rate limits (counts/s), as
        stored for this board's serial (:mod:`cplscope.settings.rate_limits`; defaults until set)."""
        if self._rate_limits is None:
            from ..settings.rate_limits import load_limits
            self._rate_limits = load_limits(str(self.info()["serial"]))
        return self._rate_limits

    def set_rate_limits(self, *, linear_cps: float | None = None,
                        damage_cps: float | None = None, high_fraction: float | None = None,
                        save: bool = True) -> RateLimits:
        """Set the linear-range limit (points above it are flagged ``nonlinear``) and the
        damage limit (the board's guard cuts the HV above it), in counts/s, and the photon
        input's high time per guard window that trips the guard (fraction 0.01 … 0.99);
        ``save`` keeps them for this instrument. The board gets the guard's limits at once."""
        from ..settings.rate_limits import RateLimits, save_limits
        old = self.rate_limits
        new = RateLimits(linear_cps=float(linear_cps) if linear_cps is not None else old.linear_cps,
                         damage_cps=float(damage_cps) if damage_cps is not None
                         else old.damage_cps,
                         high_fraction=float(high_fraction) if high_fraction is not None
                         else old.high_fraction)
        self.set_limits(max_count_rate_cps=new.damage_cps, max_high_fraction=new.high_fraction)
        if save:
            save_limits(str(self.info()["serial"]), new)
        self._rate_limits = new
        return new

    def flag_rules(self) -> FlagRules:
        """The default flag thresholds for this instrument (its linear-range limit)."""
        return FlagRules(nonlinear_rate_cps=self.rate_limits.linear_cps)

    def retardation(self) -> Retardation:
        """The PEM retardation the firmware holds now: its nominal A0 at the present
        wavelength (STATUS ``a0_rad``, rad), the commanded A0, the tracking state and the
        drive (:class:`cplscope.science.pipeline.Retardation`)."""
        nominal = self.status().get("a0_rad")
        cmd = self._settings.get(Opcode.SET_RETARDATION, {})
        k = float(self._settings.get(Opcode.PEM_CONFIG, {}).get("drive_per_rad_nm",
                                                                 _DRIVE_PER_RAD_NM))
        nominal_f = float(nominal) if nominal is not None else math.nan
        wl = self._wavelength_nm
        drive = nominal_f * wl * k if wl is not None and math.isfinite(nominal_f) else math.nan
        return Retardation(nominal_rad=nominal_f,
                           commanded_rad=float(cmd.get("a0_rad", math.nan)),
                           tracking=bool(cmd.get("track_wavelength", True)), drive=drive)

    def status(self) -> dict[str, Any]:
        """The board's STATUS object (docs/protocol.md)."""
        return self._command(Opcode.STATUS)

    def self_test(self) -> dict[str, Any]:
        """Run the board's self-test: ``{"passed": bool, "checks": {name: bool}}``."""
        return self._command(Opcode.SELF_TEST)

    def health(self) -> LinkHealth:
        """Stream health: frames, rejected (corrupt), missing (gaps), restarts, reconnects."""
        return self._t.health()

    # --- settings (each is remembered and replayed after a firmware restart) ---------------

    def configure_counting(self, bins: int = 16, periods: int = 5000) -> dict[str, Any]:
        """Photon counting in ``bins`` phase bins, ``periods`` PEM periods per frame."""
        return self._setting(Opcode.CONFIGURE, {"mode": "counting", "bins": int(bins),
                                                "periods": int(periods)})

    def configure_gated(self, gating: Gating, *, bins: int = 16,
                        periods: int = 5000) -> dict[str, Any]:
        """Gated counting under pulsed excitation (protocol revision 3): ``bins`` phase bins,
        ``periods`` PEM periods per frame, and only the photons inside the gate(s) of
        ``gating`` after each pulse. Returns the configuration the board accepted, its
        timing quantised to the board's clock (:attr:`gating` then holds it).

        Raises ValueError when the board cannot do it (a board without gated counting, a
        gate its clock cannot make), with the board's reason."""
        args = {"mode": "gated", "bins": int(bins), "periods": int(periods),
                **gating.configure_args()}
        try:
            return self._setting(Opcode.CONFIGURE, args)
        except CommandError as e:
            revision = self.info().get("protocol_revision", 1)
            if revision < 3:
                raise ValueError(f"this board's firmware speaks protocol revision {revision} "
                                 "and has no gated counting: update it (cplscope flash)") from e
            raise ValueError(f"the board refused the gating ({gating.describe()}): "
                             f"{e}") from e

    @property
    def gating(self) -> Gating | None:
        """The gating in force as the board quantised it (None unless in gated mode)."""
        config = self._settings.get(Opcode.CONFIGURE, {})
        return Gating.from_config(config) if config.get("mode") == "gated" else None

    def configure_analog(self, sample_rate_hz: float = 48e6 / 192.25,
                         block_samples: int | None = None) -> dict[str, Any]:
        """Raw ADC streaming at ``sample_rate_hz`` (Hz) in blocks of ``block_samples``.

        The default rate, 249.675 kHz (the RP2040 ADC clock 48 MHz / 192.25), is deliberately
        not a simple multiple of common PEM frequencies (50 kHz): the samples then walk
        through every phase of the period and fill every bin. A rate such as 250 kHz with a
        50 kHz PEM samples the same 5 phases forever and leaves most bins empty.

        The default block is the longest one a board sends at this rate with the configured
        PEM (:func:`analog_block_samples`; 4096 samples at the default rate and 50 kHz): the
        board's CPU has a fixed cost per block, and on an RP2040 shorter blocks at this rate
        leave it too little time (docs/performance.md)."""
        if block_samples is None:
            pem = self._settings.get(Opcode.PEM_CONFIG) or self.configure_pem()
            block_samples = analog_block_samples(sample_rate_hz, float(pem["frequency_hz"]))
        return self._setting(Opcode.CONFIGURE, {"mode": "analog",
                                                "sample_rate_hz": float(sample_rate_hz),
                                                "block_samples": int(block_samples)})

    def set_limits(self, *, max_count_rate_cps: float | None = None,
                   max_adc_level: int | None = None,
                   max_hv_volts: float | None = None,
                   max_high_fraction: float | None = None) -> dict[str, Any]:
        """PMT protection limits: count rate (counts/s), ADC level (0…4094), HV (V), and the
        photon input's high time per guard window (fraction 0.01…0.99; rp2 board:
        docs/hardware.md, "PMT overload guard")."""
        args = {k: v for k, v in {"max_count_rate_cps": max_count_rate_cps,
                                  "max_adc_level": max_adc_level,
                                  "max_high_fraction": max_high_fraction,
                                  "max_hv_volts": max_hv_volts}.items() if v is not None}
        return self._setting(Opcode.SET_LIMITS, args)

    def limits(self) -> dict[str, Any]:
        """The protection limits in force (``max_count_rate_cps``, ``max_adc_level``,
        ``max_high_fraction``, ``max_hv_volts``): SET_LIMITS with no keys, which changes
        nothing."""
        return self._command(Opcode.SET_LIMITS, {})

    def configure_pem(self, *, source: str | None = None, frequency_hz: float | None = None,
                      drive_per_rad_nm: float | None = None) -> dict[str, Any]:
        """PEM reference source (``"external"``/``"internal"``), frequency (Hz) and drive
        calibration (A0 = drive / (λ·drive_per_rad_nm))."""
        args = {k: v for k, v in {"source": source, "frequency_hz": frequency_hz,
                                  "drive_per_rad_nm": drive_per_rad_nm}.items()
                if v is not None}
        return self._setting(Opcode.PEM_CONFIG, args)

    def configure_monochromator(self, **config: float) -> dict[str, Any]:
        """``steps_per_nm``, ``home_nm``, ``backlash_steps``, ``min_nm``, ``max_nm``."""
        return self._setting(Opcode.MONO_CONFIG, dict(config))

    def home(self, timeout: float = 120.0) -> dict[str, Any]:
        """Home the monochromator (blocks until the home switch is found)."""
        result = self._command(Opcode.HOME, timeout=timeout)
        self._homed = True
        return result

    def move_to(self, wavelength_nm: float, *, wait: bool = True,
                timeout: float = 120.0) -> float:
        """Move the monochromator to ``wavelength_nm`` (nm); with ``wait``, return once it has
        stopped. Returns the wavelength reached (nm)."""
        if not self._homed:
            self.home()
        result = self._command(Opcode.MOVE, {"wavelength_nm": float(wavelength_nm)})
        self._wavelength_nm = float(result["wavelength_nm"])
        if wait:
            self._wait_stopped(int(result["position"]), timeout)
        return self._wavelength_nm

    @property
    def wavelength_nm(self) -> float | None:
        """The wavelength last moved to, nm (None before the first move)."""
        return self._wavelength_nm

    def set_retardation(self, a0_rad: float = math.pi / 2, *,
                        track_wavelength: bool = True) -> dict[str, Any]:
        """Set the PEM peak retardation A0 (rad), held constant across wavelengths by default."""
        if not self._homed:
            self.home()
        return self._setting(Opcode.SET_RETARDATION, {"a0_rad": float(a0_rad),
                                                      "track_wavelength": track_wavelength})

    def configure_hv_model(self, **model: Any) -> dict[str, Any]:
        """The detector's HV model (HV_CONFIG): ``kind`` ("supply", "module",
        "counting_head") and optional ``volts_per_control_v``, ``min_volts``, ``max_volts``
        (V), ``monitor``, ``settle_ms``; a counting head is powered at once. Returns the
        model in force. The stored one is :func:`cplscope.settings.hv_model.load_hv_model`."""
        if model.get("kind") != "supply" and Opcode.SET_HV in self._settings:
            self._settings[Opcode.SET_HV] = {"volts": 0.0}  # the board sets the HV to 0
        return self._setting(Opcode.HV_CONFIG, dict(model))

    def enter_maintenance(self) -> dict[str, Any]:
        """MAINTENANCE: the board shuts down (HV off) and restarts into maintenance mode,
        leaving its REPL to mpremote (``cplscope flash``). The board disconnects."""
        return self._command(Opcode.MAINTENANCE)

    def set_hv(self, volts: float) -> dict[str, Any]:
        """Set the PMT high voltage (V); returns the set value and the read-back."""
        return self._setting(Opcode.SET_HV, {"volts": float(volts)})

    def open_shutter(self) -> None:
        """Open the excitation shutter."""
        self._setting(Opcode.SHUTTER, {"open": True})

    def close_shutter(self) -> None:
        """Close the excitation shutter (for dark measurements)."""
        self._setting(Opcode.SHUTTER, {"open": False})

    def make_safe(self) -> None:
        """Close the excitation shutter and switch the PMT HV off (end of a session)."""
        self._setting(Opcode.SHUTTER, {"open": False})
        self._setting(Opcode.SET_HV, {"volts": 0.0})

    def clear_fault(self) -> dict[str, Any]:
        """Leave the fault state after an overload (HV stays off until set again)."""
        self._overload = None
        self._settings.pop(Opcode.SET_HV, None)
        return self._command(Opcode.CLEAR_FAULT)

    # --- acquisition ------------------------------------------------------------------------

    #: False once the board refused START's ``frames`` (a firmware older than bounded
    #: acquisitions): the instrument then falls back to START … STOP.
    _bounded_start = True

    def acquire(self, *, n_frames: int | None = None, duration_s: float | None = None,
                timeout: float | None = None,
                progress: Callable[[list[Counts], float], bool | None] | None = None,
                ) -> FrameSet:
        """Count until ``n_frames`` usable frames or ``duration_s`` s of usable counting time.

        The board is asked for exactly the frames needed (a bounded START; the frame time
        K·T_PEM comes from STATUS) and stops by itself, so the frames measured never depend
        on how fast the host or the machine is: on the simulated instrument the same seed and
        the same calls give the same frames. Frames that must not enter an estimate
        (saturated, overload, monochromator moving, PEM unlocked) are excluded and counted in
        ``FrameSet.excluded``; another bounded acquisition then counts the remainder. A USB
        disconnect or a firmware restart does not lose the frames already received: the
        acquisition waits for the board, puts its settings back and carries on. Frames of
        consecutive calls join with :meth:`FrameSet.extend`.

        ``progress(frames, dwell_s)`` (deprecated: call ``acquire(n_frames=…)`` in chunks
        instead) is called after each usable frame with the frames so far and their
        counting time (s); returning True ends the acquisition there. With it the board
        counts in chunks of about 1 s, and the frames of the chunk computed after an early
        end are discarded, so that the result still does not depend on timing.

        Raises:
            OverloadError: the PMT guard tripped.
            AcquisitionError: no usable frame for ``timeout`` s (default 30) of wall time, or
                the board is gone.
        """
        if n_frames is None and duration_s is None:
            raise ValueError("give n_frames or duration_s (s)")
        if n_frames is not None and n_frames < 1:
            raise ValueError(f"n_frames must be ≥ 1, got {n_frames}")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration_s must be > 0 s, got {duration_s}")
        if progress is not None:
            warnings.warn("acquire(progress=...) is deprecated: call acquire(n_frames=...) "
                          "in chunks and join them with FrameSet.extend", DeprecationWarning,
                          stacklevel=2)
        frame_s = self.frame_time_s()
        chunk = max(1, math.ceil(1.0 / frame_s)) if progress is not None else None
        frames: list[Counts] = []
        received: list[Counts] = []
        excluded = 0
        dwell = 0.0
        ended = False
        last_usable = time.monotonic()
        while not ended:
            if n_frames is not None:
                need = n_frames - len(frames)
            else:
                left = duration_s * (1 - 1e-9) - dwell  # type: ignore[operator]
                per_frame = dwell / len(frames) if frames and dwell > 0 else frame_s
                need = math.ceil(left / per_frame) if left > 0 else 0
            if need <= 0:
                break
            if chunk is not None:
                need = min(need, chunk)
            for msg in self._acquisition(Counts, timeout, frames=need, since=last_usable):
                if ended:
                    continue  # computed after the early end: discarded
                received.append(msg)
                if not msg.usable:
                    excluded += 1
                    continue
                last_usable = time.monotonic()
                frames.append(msg)
                dwell += msg.periods * msg.pem_period_ps * 1e-12
                if progress is not None and progress(frames, dwell):
                    ended = True
        return FrameSet.from_frames(frames, excluded=excluded, received=received)

    def acquire_analog(self, *, duration_s: float, n_bins: int = 16,
                       frame_periods: int = 5000, timeout: float | None = None):
        """Stream raw ADC blocks for ``duration_s`` s of sampling and phase-bin them on the host
        into frames of ``frame_periods`` PEM periods and ``n_bins`` bins. Needs
        :meth:`configure_analog` first. Returns :class:`cplscope.science.analog.AnalogFrames`.

        The board is asked for a bounded number of blocks (enough for ``duration_s`` plus two
        frames, since a frame only counts once complete) and stops by itself; blocks after
        ``duration_s`` is reached are discarded, and a shortfall (unusable blocks) is counted
        in another bounded acquisition, so the result does not depend on timing."""
        from ..science.analog import AnalogCollector

        if not duration_s > 0:
            raise ValueError(f"duration_s must be > 0 s, got {duration_s}")
        config = self._settings.get(Opcode.CONFIGURE, {})
        if config.get("mode") != "analog":
            raise ValueError("the instrument is not in analog mode: call configure_analog()")
        block_s = float(config["block_samples"]) / float(config["sample_rate_hz"])
        frame_s = frame_periods * self._pem_period_s()
        collector = AnalogCollector(n_bins, frame_periods)
        last_usable = time.monotonic()
        # a frame holds a whole number of samples, a hair more or less than frame_s: n whole
        # frames are enough for n·frame_s, not n + 1
        goal = duration_s - 0.01 * frame_s
        while collector.dwell_s < goal:
            need = math.ceil((duration_s - collector.dwell_s + 2 * frame_s) / block_s)
            for block in self._acquisition(AdcBlock, timeout, frames=need, since=last_usable):
                if collector.dwell_s >= goal:
                    continue  # beyond the duration asked for: discarded
                if block.usable:
                    last_usable = time.monotonic()
                collector.feed(block)
        return collector.frames()

    def _poll_status(self) -> dict[str, Any]:
        """STATUS (a reply lost on the link is asked for again by the transport)."""
        return self._command(Opcode.STATUS)

    def _pem_period_s(self, status: dict[str, Any] | None = None) -> float:
        """The PEM period (s) from STATUS, or the nominal one while the PEM is unlocked."""
        st = self._poll_status() if status is None else status
        ps = st.get("pem_period_ps")
        if ps:
            return float(ps) * 1e-12
        hz = self._settings.get(Opcode.PEM_CONFIG, {}).get("frequency_hz", 50_000.0)
        return 1.0 / float(hz)

    def frame_time_s(self) -> float:
        """Duration of one counting frame, K·T_PEM (s), from STATUS (the nominal PEM period
        while it is not locked)."""
        st = self._poll_status()
        return max(1, int(st.get("periods") or 1)) * self._pem_period_s(st)

    @property
    def mode(self) -> str:
        """``"counting"``, ``"analog"`` or ``"gated"``, as last configured (counting by
        default)."""
        return str(self._settings.get(Opcode.CONFIGURE, {}).get("mode", "counting"))

    # --- plumbing -----------------------------------------------------------------------------

    def _acquisition(self, kind: type, timeout: float | None, *, frames: int | None = None,
                     since: float | None = None) -> Generator[Any, None, None]:
        """START, then yield the data frames of type ``kind`` (Counts or AdcBlock) of this
        acquisition, usable or not.

        With ``frames`` the START is bounded: the board stops by itself after that many data
        frames and the generator ends at its EVENT ACQ_DONE, when every frame it sent has
        been yielded (a board without bounded START is stopped after that many frames
        arrived). Without, the stream runs until the consumer closes the generator (STOP).
        A disconnect or firmware restart is bridged: an unbounded stream restarts
        (:meth:`_resume`), a bounded one ends there, for the caller to ask for the rest.
        Raises OverloadError when the PMT guard trips, and AcquisitionError when for
        ``timeout`` s (default 30) of wall time since ``since`` (default: now) or the last
        usable frame no frame arrived, or frames arrived but none was usable."""
        stall = timeout if timeout is not None else 30.0
        acq_id = self._start(frames)
        # after START's reply, so that a lost reply to it is not taken for a lost data frame
        # (one lost among the first frames, before this line runs, is missed: the end is then
        # found at the stall timeout if the ACQ_DONE is lost too)
        losses = self._losses()
        bounded = frames is not None and self._bounded_start
        running = True
        seen = 0
        last = since if since is not None else time.monotonic()  # the last usable frame
        heard = time.monotonic()  # the last frame of this acquisition
        over = False  # STATUS says the board stopped: take what is queued, then end
        try:
            while True:
                if self._overload is not None:
                    raise OverloadError(f"PMT overload guard tripped: {self._overload.text}; "
                                        "HV is off and the shutter closed. Lower the HV or "
                                        "the light level, then clear_fault()")
                if self._restarted() or not self._t.connected:
                    if bounded:
                        self._resume(start=False)
                        running = False
                        return
                    acq_id = self._resume()
                    last = time.monotonic()
                    continue
                try:
                    msg = self._t.data.get(timeout=0.2)
                except queue.Empty:
                    if over:
                        running = False
                        return
                    if (bounded and frames is not None
                            and time.monotonic() - heard > _LOST_END_S
                            and seen + self._losses() - losses >= frames):
                        # every data frame came or was lost, and the stream went quiet: was
                        # the ACQ_DONE lost too? (asked only once the board has made its last
                        # data frame, so the reply never lands among them, unless the frame
                        # lost was not a data frame)
                        heard = time.monotonic()
                        over = self._poll_status().get("state") != "running"
                        continue
                    if time.monotonic() - last > stall:
                        if bounded and self._poll_status().get("state") != "running":
                            over = True  # its end and its last frames were lost on the link
                            continue
                        raise AcquisitionError(f"no data frame for {stall:g} s: the board "
                                               "stopped streaming (check `cplscope info`)")
                    continue
                if isinstance(msg, _AcquisitionEnd):
                    if bounded and msg.acq_id == acq_id:
                        running = False
                        return
                    continue
                if not isinstance(msg, kind) or msg.acq_id != acq_id:
                    continue
                heard = time.monotonic()
                if msg.usable:
                    last = time.monotonic()
                elif time.monotonic() - last > stall:
                    raise AcquisitionError(
                        f"frames arrive but none was usable for {stall:g} s (last flags: "
                        f"{_flag_names(msg.flags)}): check the PEM lock, the light level "
                        "(saturation) and the overload guard")
                yield msg
                seen += 1
                if frames is not None and not bounded and seen >= frames:
                    return
        finally:
            if running:
                self._stop()

    def _command(self, opcode: Opcode, args: dict[str, Any] | None = None, *,
                 timeout: float | None = None) -> dict[str, Any]:
        if timeout is None:
            timeout = 2 * self._t.reply_timeout
        deadline = time.monotonic() + self._t.reconnect_timeout
        while True:
            self._check_reconnect()
            try:
                return self._t.command(opcode, args, timeout=timeout)
            except ConnectionLost:
                if time.monotonic() > deadline or not self._t.wait_connected(
                        max(0.0, deadline - time.monotonic())):
                    raise
            except CommandError:
                # refused by a board that rebooted while this command waited for it?
                if not self._check_reconnect():
                    raise

    def _check_reconnect(self) -> bool:
        """After a reconnect, find out whether the board rebooted meanwhile and if so put the
        settings back; True if it did. Right after a reconnect the reader may not have seen a
        frame of the new firmware yet, so ask for a STATUS: its reply carries the new
        firmware's sequence number, and the decoder has counted the reboot once it is in."""
        reconnects = self._t.health().reconnects
        if reconnects == self._reconnects_seen:
            return False
        self._reconnects_seen = reconnects
        try:
            self._t.command(Opcode.STATUS, timeout=5.0)
        except (ConnectionLost, TimeoutError):
            pass
        if not self._restarted():
            return False
        self._replay()
        return True

    def _setting(self, opcode: Opcode, args: dict[str, Any]) -> dict[str, Any]:
        result = self._command(opcode, args)
        if opcode == Opcode.CONFIGURE:
            # a mode's keys replace another mode's (a replay must not mix them); gated timing
            # is kept as the board quantised it
            self._settings[opcode] = (dict(result) if args.get("mode") == "gated"
                                      and isinstance(result, dict) and "mode" in result
                                      else dict(args))
        else:
            self._settings[opcode] = {**self._settings.get(opcode, {}), **args}
        return result

    def _start(self, frames: int | None = None) -> int:
        """START (bounded to ``frames`` data frames if given and the board can); the acq_id."""
        self._t.drain()
        args = {"frames": int(frames)} if frames is not None and self._bounded_start else None
        try:
            return int(self._command(Opcode.START, args)["acq_id"])
        except CommandError as exc:
            if args is not None and exc.status == ReplyStatus.BAD_ARGS and "frames" in exc.text:
                log.warning("the board's firmware has no bounded START (%s): stopping "
                            "acquisitions from the host, whose frames then depend on timing; "
                            "update the firmware (`cplscope flash`)", exc.text)
                self._bounded_start = False
                return self._start(frames)
            if "already running" in exc.text:
                self._command(Opcode.STOP)
                return int(self._command(Opcode.START, args)["acq_id"])
            if exc.status == ReplyStatus.BAD_STATE and "overload" in exc.text:
                # a board whose guard watches all the time (a Pico's PIO guard) trips before
                # START as soon as the light exceeds the limit: the same fault as during one
                raise OverloadError(f"PMT overload guard tripped: {exc.text}; HV is off and "
                                    "the shutter closed. Lower the HV or the light level, "
                                    "then clear_fault()") from exc
            raise

    def _stop(self) -> None:
        """STOP, without waiting for a board that is gone to come back (a board that
        rebooted is stopped; one that comes back running is stopped by the next START)."""
        try:
            self._t.command(Opcode.STOP, timeout=5.0)
        except (ConnectionLost, TimeoutError) as exc:
            log.warning("could not stop the acquisition: %s", exc)

    def _losses(self) -> int:
        """Frames the link lost so far, each counted once."""
        return self._t.lost_frames()

    def _restarted(self) -> bool:
        return self._t.health().restarts != self._restarts_seen

    def _resume(self, start: bool = True) -> int:
        """After a disconnect or a firmware restart: wait, restore the settings (or stop the
        acquisition that ran on), then START again if ``start``; returns the new acq_id
        (-1 without START)."""
        if not self._t.wait_connected(self._t.reconnect_timeout):
            raise AcquisitionError("the board disconnected and did not come back within "
                                   f"{self._t.reconnect_timeout:g} s")
        if not self._check_reconnect():
            if self._restarted():
                self._replay()
            else:
                self._stop()
        return self._start() if start else -1

    def _replay(self) -> None:
        """Put every remembered setting back after a firmware restart."""
        self._restarts_seen = self._t.health().restarts
        log.warning("firmware restart detected: restoring the instrument settings")
        order = [Opcode.HV_CONFIG, Opcode.SET_LIMITS, Opcode.PEM_CONFIG, Opcode.MONO_CONFIG,
                 Opcode.CONFIGURE]
        for op in order:
            if op in self._settings:
                self._t.command(op, self._settings[op], timeout=10.0)
        if self._homed:
            self._t.command(Opcode.HOME, timeout=120.0)
        if Opcode.SET_RETARDATION in self._settings:
            self._t.command(Opcode.SET_RETARDATION, self._settings[Opcode.SET_RETARDATION])
        if self._wavelength_nm is not None:
            result = self._t.command(Opcode.MOVE, {"wavelength_nm": self._wavelength_nm})
            self._wait_stopped(int(result["position"]), 120.0)
        for op in (Opcode.SET_HV, Opcode.SHUTTER):
            if op in self._settings:
                self._t.command(op, self._settings[op])
        self._restarts_seen = self._t.health().restarts

    def _wait_stopped(self, target: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        previous = None
        while time.monotonic() < deadline:
            st = self._poll_status()  # survives a disconnect during the move
            moving = st.get("moving")
            pos = st.get("mono_position")
            if moving is False or (moving is None and pos == target and previous == target):
                return
            previous = pos
            time.sleep(0.02)
        raise AcquisitionError(f"the monochromator did not reach step {target} within "
                               f"{timeout:g} s")

    def _on_event(self, event: Event) -> None:
        if event.code == EventCode.OVERLOAD:
            self._overload = event
        done = event.acq_done
        if done is not None:  # in stream order, behind the acquisition's last data frame
            self._t.data.put(_AcquisitionEnd(done[0]))  # type: ignore[arg-type]
        if event.code == EventCode.BAD_FRAME:
            # a command damaged on the way: the transport sends the command that waits for
            # its reply again (stream health counts the retry); no news for the user
            log.info("board event BAD_FRAME: %s", event.text)
        elif event.severity >= 1:
            log.warning("board event %s: %s", getattr(event.code, "name", event.code),
                        event.text)

    def close(self) -> None:
        """Stop any acquisition, release the USB interface and end the simulator's processes."""
        try:
            if self._t.connected:
                self._t.command(Opcode.STOP, timeout=1.0)
        except Exception:
            pass
        self._t.close()
        if self.sim is not None:
            self.sim.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<cplscope.{type(self).__name__} {self.address or 'usb'}>"
