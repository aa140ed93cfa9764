"""Calibration constants of one instrument, stored as JSON (docs/data-files.md, "Calibration").

A :class:`Calibration` holds what turns counts into a signed g_lum: the PEM retardation A0 and
phase offset φ0, the handedness sign, the counter dead time, and optionally a blank (the g of
an achiral reference against wavelength) to subtract.

Files live at :func:`default_path` (``calibration-<serial>.json`` under ``$CPLSCOPE_HOME``, else
``$XDG_CONFIG_HOME/cplscope`` or ``~/.config/cplscope``). :func:`load_for` returns the stored
calibration of an instrument, or :func:`default_calibration` with ``source="default"`` so the
caller can warn that the instrument is uncalibrated.

A file whose serial differs from the instrument's is refused with :class:`CalibrationMismatch`:
A0, φ0 and above all the handedness sign belong to one optical setup, and a wrong sign or A0
gives plausible-looking but wrong g_lum that no later check catches. To use another
instrument's constants deliberately, load the file with ``expected_serial=None`` and
``dataclasses.replace`` the serial.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..util.clock import utc_now_iso
from ..util.files import write_text_atomic

__all__ = [
    "MODES", "AnalogCalibration", "Blank", "Calibration", "CalibrationError",
    "CalibrationMismatch", "config_dir",
    "default_calibration",
    "default_path", "load_for",
]

FORMAT = "cplscope-calibration"
VERSION = 1
#: The detection modes a calibration can be made in.
MODES = ("counting", "analog")
_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


class CalibrationError(ValueError):
    """A calibration file or value is invalid; the message says which field and why."""


class CalibrationMismatch(CalibrationError):
    """The calibration belongs to another instrument (serial numbers differ)."""


@dataclass(frozen=True, eq=False)
class Blank:
    """g_lum of an achiral reference against wavelength, for baseline subtraction.

    Values are in the handedness-corrected convention (as :func:`cplscope.science.results.
    point_from_estimate` reports them without a blank).

    Attributes:
        wavelength_nm: strictly increasing wavelengths, nm.
        g: the reference's g_lum at each wavelength.
        sigma_g: standard uncertainty of ``g`` (≥ 0).
    """

    wavelength_nm: np.ndarray
    g: np.ndarray
    sigma_g: np.ndarray

    def __post_init__(self) -> None:
        arrays = []
        for name in ("wavelength_nm", "g", "sigma_g"):
            try:
                a = np.array(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise CalibrationError(f"blank.{name} must be a list of numbers: {exc}") from None
            if a.ndim != 1:
                raise CalibrationError(f"blank.{name} must be 1-D, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                raise CalibrationError(f"blank.{name} must hold finite numbers only")
            a.setflags(write=False)
            object.__setattr__(self, name, a)
            arrays.append(a)
        wl, _, sigma = arrays
        if not (len(wl) == len(arrays[1]) == len(sigma)) or len(wl) == 0:
            raise CalibrationError(
                "blank.wavelength_nm, blank.g and blank.sigma_g must have the same, non-zero "
                f"length; got {len(wl)}, {len(arrays[1])}, {len(sigma)}")
        if np.any(np.diff(wl) <= 0):
            raise CalibrationError("blank.wavelength_nm must be strictly increasing")
        if np.any(sigma < 0):
            raise CalibrationError("blank.sigma_g must be ≥ 0")

    def at(self, wavelength_nm: float) -> tuple[float, float]:
        """(g, σ_g) of the blank at ``wavelength_nm`` (nm), linearly interpolated.

        Raises CalibrationError outside the measured range: a blank is never extrapolated.
        """
        wl = float(wavelength_nm)
        lo, hi = float(self.wavelength_nm[0]), float(self.wavelength_nm[-1])
        if not lo <= wl <= hi:
            raise CalibrationError(
                f"the blank covers {lo:g} … {hi:g} nm, not {wl:g} nm: measure the blank over "
                "the whole scan range or scan without blank subtraction")
        return (float(np.interp(wl, self.wavelength_nm, self.g)),
                float(np.interp(wl, self.wavelength_nm, self.sigma_g)))

    def covers(self, wavelengths_nm: Any) -> bool:
        """True when every wavelength (nm) lies inside the blank's range."""
        w = np.asarray(wavelengths_nm, dtype=np.float64)
        return bool(np.all((w >= self.wavelength_nm[0]) & (w <= self.wavelength_nm[-1])))

    def to_dict(self) -> dict[str, list[float]]:
        return {"wavelength_nm": self.wavelength_nm.tolist(), "g": self.g.tolist(),
                "sigma_g": self.sigma_g.tolist()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Blank):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n))
                   for n in ("wavelength_nm", "g", "sigma_g"))


@dataclass(frozen=True)
class AnalogCalibration:
    """The analog (ADC) mode's own constants, made in analog mode (``cplscope calibrate
    --mode analog``) and kept next to the counting ones.

    The analog front end is a low-pass filter between the PMT and the ADC: it delays the PEM
    harmonics (a phase lag that adds to φ0) and attenuates them (the 1f term that carries g
    by the front end's gain at the PEM frequency, |H(f)|), and the ADC's sampling clock and
    the reference timer have their own offset. Photon counting sees none of it, so the
    counting calibration's φ0 would bias analog g: the analog mode fits its own A0 and φ0 to
    the linear polarizer, its own handedness to the circular reference, and the ratio of the
    reference's g in analog to its g in counting mode (or to its nominal |g|) as ``g_gain``.

    Attributes:
        a0_rad, phase_offset_rad, handedness, a0_command_rad, reference_wavelength_nm,
        sigma_a0_rad, sigma_phase_offset_rad: as :class:`Calibration`, in analog mode.
        g_gain: measured g of the reference over its true g (> 0): analog g is divided by it.
        sigma_g_gain: its standard uncertainty (a systematic factor of the whole spectrum, not
            in each point's σ).
        phase_lag_rad: φ0(analog) − φ0(counting), the front end's lag plus the ADC's clock
            offset, rad; None when no counting calibration was there to compare.
        sample_rate_hz: the ADC rate it was made at, Hz.
        date, source, note: as :class:`Calibration`.
    """

    a0_rad: float
    phase_offset_rad: float
    handedness: int
    date: str
    source: str
    g_gain: float = 1.0
    sigma_g_gain: float | None = None
    a0_command_rad: float | None = None
    reference_wavelength_nm: float | None = None
    sigma_a0_rad: float | None = None
    sigma_phase_offset_rad: float | None = None
    phase_lag_rad: float | None = None
    sample_rate_hz: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not 0.0 < _number("analog.a0_rad", self.a0_rad) <= math.pi:
            raise CalibrationError(f"analog.a0_rad must be in (0, π] rad, got {self.a0_rad!r}")
        _number("analog.phase_offset_rad", self.phase_offset_rad)
        if isinstance(self.handedness, bool) or self.handedness not in (1, -1):
            raise CalibrationError(f"analog.handedness must be +1 or -1, got "
                                   f"{self.handedness!r}")
        if not _number("analog.g_gain", self.g_gain) > 0:
            raise CalibrationError(f"analog.g_gain must be > 0, got {self.g_gain!r}")
        for name in ("sigma_g_gain", "sigma_a0_rad", "sigma_phase_offset_rad"):
            value = getattr(self, name)
            if value is not None and not _number(f"analog.{name}", value) >= 0:
                raise CalibrationError(f"analog.{name} must be ≥ 0 or null, got {value!r}")
        for name in ("a0_command_rad", "reference_wavelength_nm", "sample_rate_hz"):
            value = getattr(self, name)
            if value is not None and not _number(f"analog.{name}", value) > 0:
                raise CalibrationError(f"analog.{name} must be > 0 or null, got {value!r}")
        if self.phase_lag_rad is not None:
            _number("analog.phase_lag_rad", self.phase_lag_rad)
        try:
            datetime.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise CalibrationError(f"analog.date must be an ISO 8601 date/time, got "
                                   f"{self.date!r}") from None
        if not isinstance(self.source, str) or not self.source:
            raise CalibrationError("analog.source must be a non-empty string")
        if not isinstance(self.note, str):
            raise CalibrationError("analog.note must be a string")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> AnalogCalibration:
        if not isinstance(data, dict):
            raise CalibrationError("analog must be an object (from `cplscope calibrate --mode "
                                   "analog`) or null")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise CalibrationError(f"analog: unknown key(s) {sorted(unknown)}")
        missing = [n for n in ("a0_rad", "phase_offset_rad", "handedness", "date", "source")
                   if n not in data]
        if missing:
            raise CalibrationError(f"analog: missing key(s) {missing}")
        return cls(**data)


@dataclass(frozen=True)
class Calibration:
    """Calibration constants of one instrument.

    Attributes:
        a0_rad: peak PEM retardation A0 in rad, 0 < A0 ≤ π, that the PEM really produced at
            ``reference_wavelength_nm`` when the firmware was told to hold
            ``a0_command_rad`` (SET_RETARDATION).
        phase_offset_rad: φ0 in rad, δ(θ) = A0·sin(θ − φ0).
        handedness: +1 or −1; multiplies g_lum and ΔI.
        dead_time_s: non-paralyzable counter dead time τ in s (≥ 0).
        serial: serial number of the instrument (IDENTIFY ``serial``).
        date: when the calibration was made, ISO 8601.
        source: how it was obtained, e.g. ``"linear-polarizer"``, ``"circular-polarizer-L"``,
            ``"reference-emitter"``, ``"manual"``, ``"default"``.
        reference_wavelength_nm: wavelength (nm) at which ``a0_rad`` was set, or None.
        sigma_a0_rad, sigma_phase_offset_rad, sigma_dead_time_s: standard uncertainties, or
            None when unknown.
        blank: g of an achiral reference against wavelength, or None.
        note: free text.
        a0_command_rad: the A0 (rad) the firmware was told to hold when ``a0_rad`` was
            measured; None (files before it was recorded) means π/2. The ratio
            ``a0_rad / a0_command_rad`` (:attr:`retardation_scale`) is the PEM's drive
            calibration: the retardation in force at any wavelength and any command is that
            ratio times the firmware's nominal A0 (STATUS ``a0_rad``, which follows the drive
            and the wavelength, tracking or not).
        cd: the CD mode's sign and scale from the CSA standard
            (:class:`cplscope.science.cd.CDCalibration` as a dict: ``cd_sign``, ``cd_scale``,
            ``sigma_scale``, ``source``), or None until ``cplscope cd-calibrate`` stores it.
        mode: the detection mode A0, φ0 and the handedness were made in: ``"counting"`` for
            a stored calibration; ``"analog"`` for the one :meth:`for_mode` builds from
            ``analog``.
        analog: the analog mode's own constants (:class:`AnalogCalibration`), or None until
            ``cplscope calibrate --mode analog`` stores them.
        g_gain: g is divided by it (the analog front end's gain at the PEM frequency; 1 in
            counting mode).
    """

    a0_rad: float
    phase_offset_rad: float
    handedness: int
    dead_time_s: float
    serial: str
    date: str
    source: str
    reference_wavelength_nm: float | None = None
    sigma_a0_rad: float | None = None
    sigma_phase_offset_rad: float | None = None
    sigma_dead_time_s: float | None = None
    blank: Blank | None = field(default=None)
    note: str = ""
    a0_command_rad: float | None = None
    cd: dict[str, Any] | None = None
    mode: str = "counting"
    analog: AnalogCalibration | None = None
    g_gain: float = 1.0

    def __post_init__(self) -> None:
        a0 = _number("a0_rad", self.a0_rad)
        if not 0.0 < a0 <= math.pi:
            raise CalibrationError(f"a0_rad must be in (0, π] rad, got {a0!r}; quarter-wave is π/2")
        _number("phase_offset_rad", self.phase_offset_rad)
        if isinstance(self.handedness, bool) or self.handedness not in (1, -1):
            raise CalibrationError(f"handedness must be +1 or -1, got {self.handedness!r}")
        if _number("dead_time_s", self.dead_time_s) < 0:
            raise CalibrationError(f"dead_time_s must be ≥ 0 s, got {self.dead_time_s!r}")
        _check_serial(self.serial)
        try:
            datetime.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise CalibrationError(
                f"date must be an ISO 8601 date/time such as 2024-05-01T12:00:00+00:00, got "
                f"{self.date!r}") from None
        if not isinstance(self.source, str) or not self.source:
            raise CalibrationError(f"source must be a non-empty string, got {self.source!r}")
        if self.reference_wavelength_nm is not None and not (
                _number("reference_wavelength_nm", self.reference_wavelength_nm) > 0):
            raise CalibrationError("reference_wavelength_nm must be > 0 nm")
        for name in ("sigma_a0_rad", "sigma_phase_offset_rad", "sigma_dead_time_s"):
            value = getattr(self, name)
            if value is not None and not _number(name, value) >= 0:
                raise CalibrationError(f"{name} must be ≥ 0 or null, got {value!r}")
        if self.blank is not None and not isinstance(self.blank, Blank):
            raise CalibrationError(f"blank must be a Blank or None, got {type(self.blank).__name__}")
        if not isinstance(self.note, str):
            raise CalibrationError("note must be a string")
        if self.cd is not None:
            if not isinstance(self.cd, dict) or not {"cd_sign", "cd_scale"} <= set(self.cd):
                raise CalibrationError("cd must be an object with cd_sign and cd_scale (from "
                                       "`cplscope cd-calibrate`), or null")
            if self.cd["cd_sign"] not in (1, -1) or not (
                    _number("cd.cd_scale", self.cd["cd_scale"]) > 0):
                raise CalibrationError(f"cd: cd_sign must be ±1 and cd_scale > 0, got {self.cd}")
        if self.a0_command_rad is not None and not (
                0.0 < _number("a0_command_rad", self.a0_command_rad) <= math.pi):
            raise CalibrationError(f"a0_command_rad must be in (0, π] rad, got "
                                   f"{self.a0_command_rad!r}")
        if self.mode not in MODES:
            raise CalibrationError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.analog is not None and not isinstance(self.analog, AnalogCalibration):
            raise CalibrationError("analog must be an AnalogCalibration or None")
        if not _number("g_gain", self.g_gain) > 0:
            raise CalibrationError(f"g_gain must be > 0, got {self.g_gain!r}")

    def for_mode(self, mode: str) -> Calibration:
        """The calibration a measurement in detection ``mode`` uses: for ``"analog"`` the
        analog constants (A0, φ0, handedness, g gain; no dead time) when stored, else this
        calibration itself (check ``.mode``: then the front end's lag and gain are not
        corrected); for ``"counting"`` and ``"gated"`` (photon counting in a gate), this
        one."""
        if mode == "gated":
            mode = "counting"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if self.mode == mode or mode == "counting" or self.analog is None:
            return self
        a = self.analog
        return dataclasses.replace(
            self, a0_rad=a.a0_rad, phase_offset_rad=a.phase_offset_rad,
            handedness=a.handedness, dead_time_s=0.0, date=a.date, source=a.source,
            reference_wavelength_nm=a.reference_wavelength_nm, sigma_a0_rad=a.sigma_a0_rad,
            sigma_phase_offset_rad=a.sigma_phase_offset_rad, sigma_dead_time_s=None,
            note=a.note, a0_command_rad=a.a0_command_rad, mode="analog", analog=None,
            g_gain=a.g_gain)

    @property
    def retardation_scale(self) -> float:
        """Actual A0 over the firmware's nominal A0: ``a0_rad / a0_command_rad`` (1 for the
        uncalibrated defaults)."""
        return self.a0_rad / (self.a0_command_rad if self.a0_command_rad is not None
                              else math.pi / 2)

    def a0_in_force(self, nominal_a0_rad: float) -> float:
        """The peak retardation (rad) the PEM really produces when the firmware's PEM model
        says ``nominal_a0_rad`` (STATUS ``a0_rad`` at the present wavelength and drive)."""
        a0 = float(nominal_a0_rad)
        if not (math.isfinite(a0) and a0 > 0):
            raise CalibrationError(
                f"the PEM retardation is {nominal_a0_rad!r} rad (PEM off?): set a retardation "
                "first (Instrument.set_retardation or Instrument.prepare)")
        return a0 * self.retardation_scale

    @property
    def is_default(self) -> bool:
        """True for the uncalibrated defaults of :func:`default_calibration`."""
        return self.source == "default"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including the ``format`` and ``version`` keys."""
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION}
        for name in _FIELDS:
            value = getattr(self, name)
            d[name] = value.to_dict() if isinstance(value, (Blank, AnalogCalibration)) else value
        return d

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "calibration") -> Calibration:
        """Build from :meth:`to_dict` output; raises CalibrationError naming ``where``."""
        if not isinstance(data, dict):
            raise CalibrationError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise CalibrationError(f"{where}: not a cplscope calibration "
                                   f"(format is {data.get('format')!r}, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise CalibrationError(f"{where}: calibration format version {data.get('version')!r} "
                                   f"is not supported (this cplscope reads version {VERSION})")
        unknown = set(data) - set(_FIELDS) - {"format", "version"}
        if unknown:
            raise CalibrationError(f"{where}: unknown key(s) {sorted(unknown)}; "
                                   f"allowed: {', '.join(_FIELDS)}")
        missing = [n for n in _REQUIRED if n not in data]
        if missing:
            raise CalibrationError(f"{where}: missing key(s) {missing}")
        kwargs = {n: data[n] for n in _FIELDS if n in data}
        blank = kwargs.get("blank")
        try:
            if kwargs.get("analog") is not None:
                kwargs["analog"] = AnalogCalibration.from_dict(kwargs["analog"])
            if blank is not None:
                if not isinstance(blank, dict) or set(blank) != {"wavelength_nm", "g", "sigma_g"}:
                    raise CalibrationError(
                        "blank must be an object with exactly wavelength_nm, g and sigma_g lists")
                kwargs["blank"] = Blank(**blank)
            return cls(**kwargs)
        except CalibrationError as exc:
            raise CalibrationError(f"{where}: {exc}") from None

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the calibration as JSON, atomically (a crash leaves the old file or the new
        one, never half of it). ``path`` defaults to :func:`default_path` of the serial.
        Returns the path written."""
        target = Path(path) if path is not None else default_path(self.serial)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        write_text_atomic(target, text)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             expected_serial: str | None = None) -> Calibration:
        """Read a calibration file.

        Raises:
            CalibrationError: the file is not valid JSON or a field is invalid (the message
                names the file and the field).
            CalibrationMismatch: ``expected_serial`` is given and differs from the file's.
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{p}: not valid JSON ({exc})") from None
        cal = cls.from_dict(data, where=str(p))
        if expected_serial is not None and cal.serial != expected_serial:
            raise CalibrationMismatch(
                f"{p} is the calibration of instrument {cal.serial!r}, but this instrument is "
                f"{expected_serial!r}: calibrate this instrument (A0/φ0 with a linear polarizer, "
                "handedness with a circular polarizer or reference emitter)")
        return cal


_FIELDS = ("a0_rad", "phase_offset_rad", "handedness", "dead_time_s", "serial", "date",
           "source", "reference_wavelength_nm", "sigma_a0_rad", "sigma_phase_offset_rad",
           "sigma_dead_time_s", "blank", "note", "a0_command_rad", "cd", "mode", "analog",
           "g_gain")
_REQUIRED = _FIELDS[:7]


def default_calibration(serial: str) -> Calibration:
    """Uncalibrated defaults: A0 = π/2, φ0 = 0, handedness +1, no dead time,
    ``source="default"`` and today's date. g_lum measured with these has an unknown sign and
    scale; callers should warn."""
    return Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.0, handedness=1, dead_time_s=0.0,
                       serial=serial, date=utc_now_iso(),
                       source="default", note="uncalibrated defaults",
                       a0_command_rad=math.pi / 2)


def config_dir() -> Path:
    """``$CPLSCOPE_HOME``, else ``$XDG_CONFIG_HOME/cplscope``, else ``~/.config/cplscope``."""
    home = os.environ.get("CPLSCOPE_HOME")
    if home:
        return Path(home)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "cplscope"


def default_path(serial: str) -> Path:
    """Where the calibration of instrument ``serial`` is stored: ``config_dir()/
    calibration-<serial>.json``."""
    _check_serial(serial)
    return config_dir() / f"calibration-{serial}.json"


def load_for(serial: str, path: str | os.PathLike[str] | None = None) -> Calibration:
    """The stored calibration of instrument ``serial`` (from ``path`` or
    :func:`default_path`), or :func:`default_calibration` when no file exists (check
    ``.is_default`` and warn).

    Raises CalibrationError on an invalid file and CalibrationMismatch when the file belongs
    to another serial.
    """
    p = Path(path) if path is not None else default_path(serial)
    if not p.exists():
        return default_calibration(serial)
    return Calibration.load(p, expected_serial=serial)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise CalibrationError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise CalibrationError(f"{name} must be finite, got {value!r}")
    return x


def _check_serial(serial: Any) -> None:
    if not isinstance(serial, str) or not _SERIAL.match(serial):
        raise CalibrationError(
            f"serial must be 1–64 characters of letters, digits, '.', '_' or '-' (it names the "
            f"calibration file), got {serial!r}")
