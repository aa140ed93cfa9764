"""Typed payloads of the device -> host data frames: COUNTS, ADC_BLOCK, STATUS, EVENT.

Each ``decode_*`` takes the payload bytes of one frame (already CRC-checked) and raises
:class:`~cplscope.protocol.errors.MalformedPayload` when they do not match the layout in
docs/protocol.md. Each ``encode_*`` builds a payload and raises ``ValueError`` for values the
layout cannot carry. REPLY and COMMAND live in :mod:`cplscope.protocol.commands`.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Any

import numpy as np
import numpy.typing as npt

from ._fields import check_int32, check_size, check_uint, compact_json, enum_or_int, json_object, utf8
from .errors import MalformedPayload
from .frames import FrameType

MIN_BINS = 2
MAX_BINS = 64
MAX_SAMPLE = 4095


class Flags(IntFlag):
    """Per-frame condition flags of COUNTS and ADC_BLOCK frames."""

    SATURATED = 1 << 0  #: a bin counter wrapped/saturated or an ADC sample clipped
    OVERLOAD = 1 << 1  #: the PMT overload guard tripped (HV cut, shutter closed)
    SHUTTER_OPEN = 1 << 2  #: excitation shutter open for the whole frame
    PEM_LOCKED = 1 << 3  #: PEM reference locked for the whole frame
    MONO_MOVING = 1 << 4  #: the monochromator moved during the frame
    HV_ON = 1 << 5  #: PMT high voltage on for the whole frame
    OVERRUN = 1 << 6  #: the device dropped data frames before this one


_SPOILING = Flags.SATURATED | Flags.OVERLOAD | Flags.MONO_MOVING
_FLAGS: dict[int, Flags] = {}  # Flags(int) is slow next to the rest of a frame's decoding


def _flags(value: int) -> Flags:
    try:
        return _FLAGS[value]
    except KeyError:
        return _FLAGS.setdefault(value, Flags(value))


def usable_flags(flags: int) -> bool:
    """True when a frame with these flags may enter a g_lum estimate (docs/protocol.md, Flags)."""
    return not (flags & _SPOILING) and bool(flags & Flags.PEM_LOCKED)


class EventCode(IntEnum):
    """Codes of EVENT frames."""

    BOOT = 1  #: the firmware started; text holds the firmware version
    OVERLOAD = 2  #: the PMT guard cut HV and closed the shutter; text holds what tripped it
    PEM_LOCK = 3  #: the PEM reference locked
    PEM_UNLOCK = 4  #: the PEM reference was lost
    WATCHDOG = 5  #: the previous run ended in a watchdog reset
    OVERRUN = 6  #: data frames were dropped on the device; text holds how many
    MONO = 7  #: homing finished or a limit switch was hit
    FAULT = 8  #: unexpected firmware error; text holds the exception
    BAD_FRAME = 9  #: a host -> device frame failed its checks and was dropped
    #: a bounded acquisition (START with ``frames``) produced all its data frames and
    #: stopped; text: "acquisition <acq_id> ended after <n> data frames (<m> sent)"
    ACQ_DONE = 10


class Severity(IntEnum):
    """Severity of an EVENT."""

    INFO = 0
    WARNING = 1
    ERROR = 2


# --------------------------------------------------------------------------------------------
# COUNTS

_COUNTS_HEAD = struct.Struct("<HHIiIHH")
_U32LE = np.dtype("<u4")  # = numpy.uint32 on little-endian hosts


@dataclass(slots=True, eq=False)
class Counts:
    """One phase-binned counting frame (type 0x01).

    - ``n_bins``: B, phase bins per PEM period; bin k spans θ ∈ [2π·k·s/B, 2π·(k+1)·s/B) (rad)
      from the reference rising edge, s = ``bin_span`` (see :meth:`bin_edges_rad`).
    - ``flags``: :class:`Flags` of the frame.
    - ``periods``: K, PEM periods accumulated in this frame.
    - ``mono_position``: monochromator position in steps from home.
    - ``pem_period_ps``: mean PEM period over the frame in ps (0 = unknown).
    - ``acq_id``: acquisition id, incremented by every START.
    - ``counts``: photon counts per bin (counts), ``numpy.uint32`` array of length B.
    - ``bin_span``: fraction s ∈ (0, 1] of the PEM period that the B bins cover together, a
      multiple of 1/65536 (1.0 = the whole period; the wire value 0 decodes to 1.0). The rest of
      the period, after the last bin, is not counted.
    - ``seq``, ``timestamp_us``: frame sequence number and device time in µs.
    - ``raw``: the whole frame's bytes when the decoder keeps them, else None.
    """

    n_bins: int
    flags: Flags
    periods: int
    mono_position: int
    pem_period_ps: int
    acq_id: int
    counts: npt.NDArray[np.uint32]
    bin_span: float = field(default=1.0, kw_only=True)
    seq: int = field(default=0, kw_only=True)
    timestamp_us: int = field(default=0, kw_only=True)
    raw: bytes | None = field(default=None, kw_only=True, repr=False)

    TYPE = FrameType.COUNTS

    @property
    def usable(self) -> bool:
        """False when the frame must not enter a g_lum estimate: SATURATED, OVERLOAD or
        MONO_MOVING set, or PEM_LOCKED not set."""
        return usable_flags(self.flags)

    @property
    def pem_period_s(self) -> float:
        """Mean PEM period over the frame in s (NaN when the device did not know it)."""
        return self.pem_period_ps * 1e-12 if self.pem_period_ps else math.nan

    def bin_edges_rad(self) -> npt.NDArray[np.float64]:
        """The B + 1 bin edges as PEM phase θ in rad from the reference rising edge:
        2π·k·s/B for k = 0 … B (s = ``bin_span``)."""
        return 2.0 * math.pi * self.bin_span * np.arange(self.n_bins + 1) / self.n_bins

    def to_payload(self) -> bytes:
        """The COUNTS payload for these fields (see :func:`encode_counts`)."""
        if self.n_bins != len(self.counts):
            raise ValueError(f"n_bins = {self.n_bins} but counts holds {len(self.counts)} bins")
        return encode_counts(self.counts, flags=self.flags, periods=self.periods,
                             mono_position=self.mono_position, pem_period_ps=self.pem_period_ps,
                             acq_id=self.acq_id, bin_span=self.bin_span)


BIN_SPAN_UNIT = 65536  # COUNTS bin_span is carried in units of 1/65536 of the PEM period


def bin_span_to_wire(bin_span: float) -> int:
    """The u16 COUNTS ``bin_span`` for a fraction s ∈ (0, 1] of the PEM period: round(s·65536),
    or 0 when that rounds to 65536 (the whole period). Raises ValueError outside
    [1/65536, 1]."""
    s = float(bin_span)
    if not (math.isfinite(s) and 0.5 / BIN_SPAN_UNIT <= s <= 1.0):
        raise ValueError(f"bin_span = {bin_span!r} must be a fraction of the PEM period in "
                         f"[1/{BIN_SPAN_UNIT}, 1] (1 = the bins cover the whole period)")
    raw = round(s * BIN_SPAN_UNIT)
    return 0 if raw >= BIN_SPAN_UNIT else raw


def bin_span_from_wire(raw: int) -> float:
    """Inverse of :func:`bin_span_to_wire`: the fraction s ∈ (0, 1] (0 → 1.0)."""
    return raw / BIN_SPAN_UNIT if raw else 1.0


def encode_counts(counts: npt.ArrayLike, *, flags: int, periods: int, mono_position: int = 0,
                  pem_period_ps: int = 0, acq_id: int = 0, bin_span: float = 1.0) -> bytes:
    """COUNTS payload: header and ``counts`` (2 … 64 bins, each 0 … 2³²−1 counts).
    ``bin_span`` is the fraction of the PEM period the bins cover (see :class:`Counts`); it is
    sent rounded to the nearest 1/65536."""
    c = np.asarray(counts)
    if c.ndim != 1 or not MIN_BINS <= c.shape[0] <= MAX_BINS:
        raise ValueError(f"counts must be a 1-D sequence of {MIN_BINS} … {MAX_BINS} bins, "
                         f"got shape {c.shape}")
    if c.dtype.kind not in "iu" or (c.size and (c.min() < 0 or c.max() > 0xFFFFFFFF)):
        raise ValueError("counts must be integers in 0 … 4294967295")
    check_uint("flags", int(flags), 16)
    check_uint("periods", periods, 32)
    check_int32("mono_position", mono_position)
    check_uint("pem_period_ps", pem_period_ps, 32)
    check_uint("acq_id", acq_id, 16)
    span = bin_span_to_wire(bin_span)
    head = _COUNTS_HEAD.pack(c.shape[0], int(flags), periods, mono_position, pem_period_ps,
                             acq_id, span)
    return head + c.astype("<u4").tobytes()


def decode_counts(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                  raw: bytes | None = None) -> Counts:
    """Decode a COUNTS payload. Raises MalformedPayload unless B is 2 … 64 and the length is
    20 + 4·B."""
    ft = FrameType.COUNTS
    if len(payload) < _COUNTS_HEAD.size:
        raise MalformedPayload(ft, f"COUNTS payload of {len(payload)} bytes is shorter than its "
                                   f"{_COUNTS_HEAD.size}-byte header")
    n_bins, flags, periods, mono, period_ps, acq_id, span = _COUNTS_HEAD.unpack_from(payload)
    if not MIN_BINS <= n_bins <= MAX_BINS:
        raise MalformedPayload(ft, f"COUNTS n_bins = {n_bins} is outside {MIN_BINS} … {MAX_BINS}")
    expected = _COUNTS_HEAD.size + 4 * n_bins
    if len(payload) != expected:
        raise MalformedPayload(ft, f"COUNTS payload is {len(payload)} bytes but n_bins = {n_bins} "
                                   f"requires 20 + 4·{n_bins} = {expected}")
    counts = np.frombuffer(payload, _U32LE, n_bins, _COUNTS_HEAD.size)
    return Counts(n_bins, _flags(flags), periods, mono, period_ps, acq_id, counts,
                  bin_span=span / BIN_SPAN_UNIT if span else 1.0, seq=seq,
                  timestamp_us=timestamp_us, raw=raw)


# --------------------------------------------------------------------------------------------
# GATED_COUNTS (revision 3)

_GATED_HEAD = struct.Struct("<HHIiIHHHHIIII")
#: most gates (time bins) of one gated configuration a board may count in turn
MAX_GATES = 64


@dataclass(slots=True, eq=False)
class GatedCounts(Counts):
    """One gated counting frame (type 0x06): the phase-binned counts of one gate after each
    excitation pulse. Everything of :class:`Counts` (``counts`` are the photons inside the
    gate), plus:

    - ``gate``: its index j, 0 … ``n_gates`` − 1; gate j opens ``gate_delay_ns`` after each
      pulse (δ + j·w) and stays open ``gate_width_ns``.
    - ``n_gates``: the gates (time bins) of the configuration, counted one frame each in turn.
    - ``pulses``: excitation pulses whose gate this frame counted.
    - ``pulse_period_ns``, ``gate_delay_ns``, ``gate_width_ns``: the timing, ns.
    """

    gate: int = field(default=0, kw_only=True)
    n_gates: int = field(default=1, kw_only=True)
    pulses: int = field(default=0, kw_only=True)
    pulse_period_ns: int = field(default=0, kw_only=True)
    gate_delay_ns: int = field(default=0, kw_only=True)
    gate_width_ns: int = field(default=0, kw_only=True)

    TYPE = FrameType.GATED_COUNTS

    @property
    def live_time_s(self) -> float:
        """How long the gate was open during the frame, pulses × width (s)."""
        return self.pulses * self.gate_width_ns * 1e-9

    @property
    def pulse_period_s(self) -> float:
        return self.pulse_period_ns * 1e-9

    @property
    def gate_delay_s(self) -> float:
        return self.gate_delay_ns * 1e-9

    @property
    def gate_width_s(self) -> float:
        return self.gate_width_ns * 1e-9

    def to_payload(self) -> bytes:
        """The GATED_COUNTS payload for these fields (see :func:`encode_gated_counts`)."""
        if self.n_bins != len(self.counts):
            raise ValueError(f"n_bins = {self.n_bins} but counts holds {len(self.counts)} bins")
        return encode_gated_counts(
            self.counts, flags=self.flags, periods=self.periods,
            mono_position=self.mono_position, pem_period_ps=self.pem_period_ps,
            acq_id=self.acq_id, bin_span=self.bin_span, gate=self.gate, n_gates=self.n_gates,
            pulses=self.pulses, pulse_period_ns=self.pulse_period_ns,
            gate_delay_ns=self.gate_delay_ns, gate_width_ns=self.gate_width_ns)


def encode_gated_counts(counts: npt.ArrayLike, *, flags: int, periods: int, gate: int,
                        n_gates: int, pulses: int, pulse_period_ns: int, gate_delay_ns: int,
                        gate_width_ns: int, mono_position: int = 0, pem_period_ps: int = 0,
                        acq_id: int = 0, bin_span: float = 1.0) -> bytes:
    """GATED_COUNTS payload: the COUNTS header, the gate's fields and ``counts``."""
    head = encode_counts(counts, flags=flags, periods=periods, mono_position=mono_position,
                         pem_period_ps=pem_period_ps, acq_id=acq_id, bin_span=bin_span)
    if not 1 <= int(n_gates) <= MAX_GATES:
        raise ValueError(f"n_gates = {n_gates} must be 1 … {MAX_GATES}")
    if not 0 <= int(gate) < int(n_gates):
        raise ValueError(f"gate = {gate} must be 0 … n_gates − 1 = {int(n_gates) - 1}")
    for name, value in (("pulses", pulses), ("pulse_period_ns", pulse_period_ns),
                        ("gate_delay_ns", gate_delay_ns), ("gate_width_ns", gate_width_ns)):
        check_uint(name, int(value), 32)
    extra = struct.pack("<HHIIII", int(gate), int(n_gates), int(pulses), int(pulse_period_ns),
                        int(gate_delay_ns), int(gate_width_ns))
    return head[:_COUNTS_HEAD.size] + extra + head[_COUNTS_HEAD.size:]


def decode_gated_counts(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                        raw: bytes | None = None) -> GatedCounts:
    """Decode a GATED_COUNTS payload. Raises MalformedPayload unless B is 2 … 64, the length
    is 40 + 4·B, 1 ≤ n_gates ≤ 64, gate < n_gates and the gate's width is not 0."""
    ft = FrameType.GATED_COUNTS
    if len(payload) < _GATED_HEAD.size:
        raise MalformedPayload(ft, f"GATED_COUNTS payload of {len(payload)} bytes is shorter "
                                   f"than its {_GATED_HEAD.size}-byte header")
    (n_bins, flags, periods, mono, period_ps, acq_id, span, gate, n_gates, pulses, pulse_ns,
     delay_ns, width_ns) = _GATED_HEAD.unpack_from(payload)
    if not MIN_BINS <= n_bins <= MAX_BINS:
        raise MalformedPayload(ft, f"GATED_COUNTS n_bins = {n_bins} is outside {MIN_BINS} … "
                                   f"{MAX_BINS}")
    expected = _GATED_HEAD.size + 4 * n_bins
    if len(payload) != expected:
        raise MalformedPayload(ft, f"GATED_COUNTS payload is {len(payload)} bytes but n_bins = "
                                   f"{n_bins} requires 40 + 4·{n_bins} = {expected}")
    if not 1 <= n_gates <= MAX_GATES or gate >= n_gates:
        raise MalformedPayload(ft, f"GATED_COUNTS gate {gate} of n_gates = {n_gates}: needs "
                                   f"1 ≤ n_gates ≤ {MAX_GATES} and gate < n_gates")
    if width_ns == 0:
        raise MalformedPayload(ft, "GATED_COUNTS gate_width_ns is 0")
    counts = np.frombuffer(payload, _U32LE, n_bins, _GATED_HEAD.size)
    return GatedCounts(n_bins, _flags(flags), periods, mono, period_ps, acq_id, counts,
                       bin_span=span / BIN_SPAN_UNIT if span else 1.0, seq=seq,
                       timestamp_us=timestamp_us, raw=raw, gate=gate, n_gates=n_gates,
                       pulses=pulses, pulse_period_ns=pulse_ns, gate_delay_ns=delay_ns,
                       gate_width_ns=width_ns)


# --------------------------------------------------------------------------------------------
# ADC_BLOCK

_ADC_HEAD = struct.Struct("<QIfiHHHHI")


@dataclass(slots=True, eq=False)
class AdcBlock:
    """A block of raw ADC samples with the PEM reference edges that fell into it (type 0x02).

    - ``t0_ticks``: device tick count at sample 0 (ticks).
    - ``tick_hz``: tick frequency in Hz.
    - ``sample_rate_hz``: ADC sample rate in Hz; sample i is taken ``i / sample_rate_hz`` s
      after sample 0.
    - ``mono_position``: monochromator position in steps from home.
    - ``flags``: :class:`Flags` of the block.
    - ``acq_id``: acquisition id.
    - ``samples``: ADC readings (0 … 4095, ADC counts), ``numpy.uint16``; even length.
    - ``edges_ticks``: PEM reference rising edges in ticks after ``t0_ticks`` (``numpy.int64``,
      non-decreasing).
    - ``seq``, ``timestamp_us``, ``raw``: as in :class:`Counts`.
    """

    t0_ticks: int
    tick_hz: int
    sample_rate_hz: float
    mono_position: int
    flags: Flags
    acq_id: int
    samples: npt.NDArray[np.uint16]
    edges_ticks: npt.NDArray[np.int64]
    seq: int = field(default=0, kw_only=True)
    timestamp_us: int = field(default=0, kw_only=True)
    raw: bytes | None = field(default=None, kw_only=True, repr=False)

    TYPE = FrameType.ADC_BLOCK

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edges_ticks.shape[0])

    @property
    def usable(self) -> bool:
        """Same rule as :attr:`Counts.usable` (SATURATED here means a clipped sample)."""
        return usable_flags(self.flags)

    def edge_times_s(self) -> npt.NDArray[np.float64]:
        """Reference rising edges in s after sample 0 (float64)."""
        return self.edges_ticks / float(self.tick_hz)

    def sample_times_s(self) -> npt.NDArray[np.float64]:
        """Sampling instants in s after sample 0 (float64)."""
        return np.arange(self.n_samples) / self.sample_rate_hz

    def to_payload(self) -> bytes:
        """The ADC_BLOCK payload for these fields (see :func:`encode_adc_block`)."""
        return encode_adc_block(self.samples, self.edges_ticks, t0_ticks=self.t0_ticks,
                                tick_hz=self.tick_hz, sample_rate_hz=self.sample_rate_hz,
                                mono_position=self.mono_position, flags=self.flags,
                                acq_id=self.acq_id)


def pack12(samples: npt.ArrayLike) -> bytes:
    """Pack an even number of 12-bit samples, two into three bytes, as the protocol lays out."""
    s = np.asarray(samples)
    if s.ndim != 1 or s.shape[0] % 2:
        raise ValueError(f"samples must be a 1-D sequence of even length, got shape {s.shape}")
    if s.size and (s.dtype.kind not in "iu" or s.min() < 0 or s.max() > MAX_SAMPLE):
        raise ValueError(f"samples must be integers in 0 … {MAX_SAMPLE}")
    a = s[0::2].astype(np.uint16)
    b = s[1::2].astype(np.uint16)
    out = np.empty((a.shape[0], 3), dtype=np.uint8)
    out[:, 0] = a & 0xFF
    out[:, 1] = (a >> 8) | ((b & 0x0F) << 4)
    out[:, 2] = b >> 4
    return out.tobytes()


def unpack12(packed: bytes, n_samples: int, offset: int = 0) -> npt.NDArray[np.uint16]:
    """Inverse of :func:`pack12`: ``n_samples`` (even) samples from ``packed[offset:]``."""
    trip = np.frombuffer(packed, dtype=np.uint8, count=3 * (n_samples // 2), offset=offset)
    trip = trip.reshape(-1, 3).astype(np.uint16)
    out = np.empty(n_samples, dtype=np.uint16)
    out[0::2] = trip[:, 0] | ((trip[:, 1] & 0x0F) << 8)
    out[1::2] = (trip[:, 1] >> 4) | (trip[:, 2] << 4)
    return out


def encode_adc_block(samples: npt.ArrayLike, edges_ticks: npt.ArrayLike, *, t0_ticks: int,
                     tick_hz: int, sample_rate_hz: float, mono_position: int = 0, flags: int = 0,
                     acq_id: int = 0) -> bytes:
    """ADC_BLOCK payload. ``edges_ticks`` are edge times in ticks after ``t0_ticks``: the first
    must fit in u32 and each step to the next in u16 (0 … 65535 ticks)."""
    s = np.asarray(samples)
    edges = np.asarray(edges_ticks)
    if edges.ndim != 1 or (edges.size and edges.dtype.kind not in "iu"):
        raise ValueError("edges_ticks must be a 1-D sequence of integers")
    if edges.shape[0] > 0xFFFF:
        raise ValueError(f"{edges.shape[0]} edges do not fit in the u16 n_edges field")
    check_uint("t0_ticks", t0_ticks, 64)
    check_uint("tick_hz", tick_hz, 32)
    if tick_hz == 0:
        raise ValueError("tick_hz must be positive")
    try:
        rate_f32 = struct.unpack("<f", struct.pack("<f", sample_rate_hz))[0]
    except (OverflowError, struct.error):
        rate_f32 = math.nan
    if not (math.isfinite(rate_f32) and rate_f32 > 0):
        raise ValueError(f"sample_rate_hz = {sample_rate_hz} must be positive and fit in an f32")
    check_int32("mono_position", mono_position)
    check_uint("flags", int(flags), 16)
    check_uint("acq_id", acq_id, 16)
    edge0 = 0
    deltas: np.ndarray = np.zeros(0, dtype=np.int64)
    if edges.size:
        edge0 = int(edges[0])
        check_uint("edges_ticks[0]", edge0, 32)
        deltas = np.diff(edges.astype(np.int64))
        if deltas.size and (deltas.min() < 0 or deltas.max() > 0xFFFF):
            raise ValueError("successive edges must be 0 … 65535 ticks apart (u16 deltas)")
    packed = pack12(s)
    n_samples = 2 * len(packed) // 3
    if n_samples > 0xFFFF:
        raise ValueError(f"{n_samples} samples do not fit in the u16 n_samples field")
    head = _ADC_HEAD.pack(t0_ticks, tick_hz, sample_rate_hz, mono_position, int(flags), n_samples,
                          edges.shape[0], acq_id, edge0)
    payload = head + deltas.astype("<u2").tobytes() + packed
    return check_size(FrameType.ADC_BLOCK, payload)


def decode_adc_block(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                     raw: bytes | None = None) -> AdcBlock:
    """Decode an ADC_BLOCK payload. Raises MalformedPayload when n_samples is odd, the length
    differs from 32 + 2·(n_edges−1) + 3·n_samples/2, tick_hz is 0, the sample rate is not a
    positive finite number, or edge0_ticks is non-zero without edges."""
    ft = FrameType.ADC_BLOCK
    if len(payload) < _ADC_HEAD.size:
        raise MalformedPayload(ft, f"ADC_BLOCK payload of {len(payload)} bytes is shorter than its "
                                   f"{_ADC_HEAD.size}-byte header")
    (t0, tick_hz, rate, mono, flags, n_samples, n_edges, acq_id,
     edge0) = _ADC_HEAD.unpack_from(payload)
    if n_samples % 2:
        raise MalformedPayload(ft, f"ADC_BLOCK n_samples = {n_samples} is odd; samples are packed "
                                   "in pairs")
    n_deltas = max(n_edges - 1, 0)
    expected = _ADC_HEAD.size + 2 * n_deltas + 3 * n_samples // 2
    if len(payload) != expected:
        raise MalformedPayload(ft, f"ADC_BLOCK payload is {len(payload)} bytes but n_edges = "
                                   f"{n_edges} and n_samples = {n_samples} require {expected}")
    if tick_hz == 0:
        raise MalformedPayload(ft, "ADC_BLOCK tick_hz is 0; edge times cannot be converted")
    if not (math.isfinite(rate) and rate > 0):
        raise MalformedPayload(ft, f"ADC_BLOCK sample_rate_hz = {rate} is not a positive number")
    if n_edges == 0 and edge0 != 0:
        raise MalformedPayload(ft, f"ADC_BLOCK has no edges but edge0_ticks = {edge0} (must be 0)")
    edges = np.empty(n_edges, dtype=np.int64)
    if n_edges:
        edges[0] = edge0
        deltas = np.frombuffer(payload, dtype="<u2", count=n_deltas, offset=_ADC_HEAD.size)
        np.cumsum(deltas, dtype=np.int64, out=edges[1:])
        edges[1:] += edge0
    samples = unpack12(payload, n_samples, offset=_ADC_HEAD.size + 2 * n_deltas)
    return AdcBlock(t0, tick_hz, rate, mono, _flags(flags), acq_id, samples, edges,
                    seq=seq, timestamp_us=timestamp_us, raw=raw)


# --------------------------------------------------------------------------------------------
# STATUS

_STATUS_KEYS: dict[str, type | tuple[type, ...]] = {
    "state": str, "mode": str, "bins": int, "periods": int, "pem_locked": bool,
    "pem_period_ps": (int, float), "a0_rad": (int, float), "wavelength_nm": (int, float),
    "mono_position": int, "moving": bool, "homed": bool, "hv_volts": (int, float),
    "hv_set_volts": (int, float),
    "shutter_open": bool, "overload": bool, "frames_sent": int, "frames_dropped": int,
    "frames_late": int, "uptime_us": int,
}
#: keys a newer firmware sends and an older one may lack: value None when absent
_STATUS_OPTIONAL: dict[str, type | tuple[type, ...]] = {"fault": str, "loop_max_us": int,
                                                         "replayed": int, "trigger_on": bool}
_STATES = ("idle", "running", "fault")
_MODES = ("counting", "analog", "gated")


@dataclass(slots=True)
class Status:
    """The device's STATUS object (type 0x03, or the result of the STATUS command).

    ``state``: "idle" | "running" | "fault"; ``mode``: "counting" | "analog" | "gated";
    ``bins``: B;
    ``periods``: K per frame; ``pem_locked``; ``pem_period_ps``: PEM period in ps;
    ``a0_rad``: peak retardation in rad; ``wavelength_nm``: monochromator wavelength in nm;
    ``mono_position``: steps from home; ``moving``: the monochromator is moving; ``homed``;
    ``hv_volts``: PMT HV read back in V;
    ``hv_set_volts``: HV set point in V; ``shutter_open``; ``overload``: latched until
    CLEAR_FAULT; ``frames_sent``: data frames handed to USB; ``frames_dropped``: data frames
    sealed but dropped because the host did not read (they leave sequence gaps);
    ``frames_late``: counter frames the board dropped because the firmware collected them too
    late (no sequence gap); ``uptime_us``: device time in µs. Numeric values may be None when the device does not know them. ``fault``: why the
    device is in fault (None when it is not, or from a firmware that does not send the key).
    ``loop_max_us``: the longest pass of the firmware's main loop since the last START, in
    µs (None from a firmware that does not send it): frames go late when it exceeds the
    time the board's data rings hold. ``replayed``: retried commands the device answered from
    its reply cache since boot (None from a firmware before protocol revision 2).
    ``trigger_on``: the board's excitation trigger output is pulsing (sent in gated mode;
    None otherwise and from a firmware before protocol revision 3). ``extra``
    holds keys that protocol version 1 does not define.
    """

    state: str
    mode: str
    bins: int | None
    periods: int | None
    pem_locked: bool
    pem_period_ps: float | None
    a0_rad: float | None
    wavelength_nm: float | None
    mono_position: int | None
    moving: bool
    homed: bool
    hv_volts: float | None
    hv_set_volts: float | None
    shutter_open: bool
    overload: bool
    frames_sent: int | None
    frames_dropped: int | None
    frames_late: int | None
    uptime_us: int | None
    fault: str | None = field(default=None, kw_only=True)
    loop_max_us: int | None = field(default=None, kw_only=True)
    replayed: int | None = field(default=None, kw_only=True)
    trigger_on: bool | None = field(default=None, kw_only=True)
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)
    seq: int = field(default=0, kw_only=True)
    timestamp_us: int = field(default=0, kw_only=True)
    raw: bytes | None = field(default=None, kw_only=True, repr=False, compare=False)

    TYPE = FrameType.STATUS

    @classmethod
    def from_dict(cls, obj: dict[str, Any], *, seq: int = 0, timestamp_us: int = 0,
                  raw: bytes | None = None) -> Status:
        """Build from the parsed JSON object; raises ValueError (MalformedPayload) naming every
        missing key and every value of the wrong type."""
        problems = [f"missing {k!r}" for k in _STATUS_KEYS if k not in obj]
        for key, kind in _STATUS_KEYS.items():
            if key not in obj:
                continue
            value = obj[key]
            numeric = kind is not bool and kind is not str
            if value is None and numeric:
                continue
            if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
                problems.append(f"{key!r} = {value!r} is not {_kind_name(kind)}")
        for key, kind in _STATUS_OPTIONAL.items():
            value = obj.get(key)
            if value is not None and ((isinstance(value, bool) and kind is not bool)
                                      or not isinstance(value, kind)):
                problems.append(f"{key!r} = {value!r} is not {_kind_name(kind)} or null")
        if obj.get("state") not in _STATES and isinstance(obj.get("state"), str):
            problems.append(f"'state' = {obj['state']!r} is not one of {_STATES}")
        if obj.get("mode") not in _MODES and isinstance(obj.get("mode"), str):
            problems.append(f"'mode' = {obj['mode']!r} is not one of {_MODES}")
        if problems:
            raise MalformedPayload(FrameType.STATUS, "STATUS object: " + "; ".join(problems))
        extra = {k: v for k, v in obj.items()
                 if k not in _STATUS_KEYS and k not in _STATUS_OPTIONAL}
        return cls(**{k: obj[k] for k in _STATUS_KEYS}, fault=obj.get("fault"),
                   loop_max_us=obj.get("loop_max_us"), replayed=obj.get("replayed"),
                   trigger_on=obj.get("trigger_on"), extra=extra,
                   seq=seq, timestamp_us=timestamp_us, raw=raw)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the version-1 keys, ``fault``, ``loop_max_us``, ``replayed`` and
        ``trigger_on`` when set, then ``extra``."""
        d = {k: getattr(self, k) for k in _STATUS_KEYS}
        for k in _STATUS_OPTIONAL:
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d.update(self.extra)
        return d

    def to_payload(self) -> bytes:
        return encode_status(self.to_dict())


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if kind is str:
        return "a string"
    if kind is bool:
        return "a boolean"
    if kind is int:
        return "an integer"
    return "a number"


def encode_status(obj: dict[str, Any]) -> bytes:
    """STATUS payload: ``obj`` as compact UTF-8 JSON (checked against the version-1 keys)."""
    Status.from_dict(obj)  # the same checks a receiver applies
    return check_size(FrameType.STATUS, compact_json(obj, "STATUS object"))


def decode_status(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                  raw: bytes | None = None) -> Status:
    """Decode a STATUS payload: a UTF-8 JSON object with every version-1 key."""
    obj = json_object(FrameType.STATUS, payload, "payload")
    return Status.from_dict(obj, seq=seq, timestamp_us=timestamp_us, raw=raw)


# --------------------------------------------------------------------------------------------
# EVENT

_EVENT_HEAD = struct.Struct("<HH")


@dataclass(slots=True)
class Event:
    """An asynchronous device event (type 0x04).

    ``code``: :class:`EventCode` (a plain int if version 1 does not define it); ``severity``:
    :class:`Severity` (likewise); ``text``: the event's detail.
    """

    code: EventCode | int
    severity: Severity | int
    text: str
    seq: int = field(default=0, kw_only=True)
    timestamp_us: int = field(default=0, kw_only=True)
    raw: bytes | None = field(default=None, kw_only=True, repr=False, compare=False)

    TYPE = FrameType.EVENT

    def to_payload(self) -> bytes:
        return encode_event(self.code, self.severity, self.text)

    @property
    def acq_done(self) -> tuple[int, int] | None:
        """For an ACQ_DONE event: (acq_id, data frames produced) from its text, else None."""
        if self.code != EventCode.ACQ_DONE:
            return None
        m = _ACQ_DONE.match(self.text)
        return (int(m.group(1)), int(m.group(2))) if m else None


_ACQ_DONE = re.compile(r"acquisition (\d+) ended after (\d+) data frames")


def encode_event(code: int, severity: int, text: str = "") -> bytes:
    """EVENT payload: code (u16), severity (u16), UTF-8 text."""
    check_uint("code", int(code), 16)
    check_uint("severity", int(severity), 16)
    return check_size(FrameType.EVENT, _EVENT_HEAD.pack(int(code), int(severity)) + text.encode())


def decode_event(payload: bytes, *, seq: int = 0, timestamp_us: int = 0,
                 raw: bytes | None = None) -> Event:
    """Decode an EVENT payload (at least 4 bytes, text in UTF-8)."""
    ft = FrameType.EVENT
    if len(payload) < _EVENT_HEAD.size:
        raise MalformedPayload(ft, f"EVENT payload of {len(payload)} bytes is shorter than 4")
    code, severity = _EVENT_HEAD.unpack_from(payload)
    text = utf8(ft, payload[_EVENT_HEAD.size:], "text")
    return Event(enum_or_int(EventCode, code), enum_or_int(Severity, severity), text,
                 seq=seq, timestamp_us=timestamp_us, raw=raw)
