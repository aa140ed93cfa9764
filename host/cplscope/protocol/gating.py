"""Gated counting's settings as a user gives them (pulse rate in Hz, gate in s) and as the
board's CONFIGURE takes them (ns, docs/protocol.md, mode "gated"), with the checks every
board shares: what is wrong, and what to do, before anything is sent."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GATES_MAX", "Gating", "MAX_PULSE_PERIOD_S", "MIN_PULSE_PERIOD_S", "TRIGGERS",
           "parse_gate"]

#: CONFIGURE gated ``pulse_period_ns``: 100 ns … 1 s (a board may allow less; the rp2
#: board's trigger PWM reaches about 134 ms).
MIN_PULSE_PERIOD_S = 100e-9
MAX_PULSE_PERIOD_S = 1.0
#: Most gates (time bins) the protocol carries; a board may take fewer (32 on the simulator).
GATES_MAX = 64
TRIGGERS = ("internal", "external")
#: Default width of the board's trigger pulse, s (capped at a tenth of the pulse period).
DEFAULT_TRIGGER_WIDTH_S = 10e-6


@dataclass(frozen=True)
class Gating:
    """Pulsed excitation and the gates counted after each pulse.

    Attributes:
        pulse_rate_hz: excitation pulses per second (1 / the pulse period), Hz.
        delay_s: δ, from each pulse to the first gate's opening, s.
        width_s: w, each gate's width, s.
        gates: contiguous gates (time bins) after each pulse: gate j is open from δ + j·w
            to δ + (j+1)·w.
        trigger: ``"internal"`` (the board drives the trigger output) or ``"external"`` (a
            laser's sync on the board's sync input).
        trigger_width_s: the trigger pulse's width, s (internal trigger; None: the default,
            10 µs or a tenth of the period if shorter).
    """

    pulse_rate_hz: float
    delay_s: float
    width_s: float
    gates: int = 1
    trigger: str = "internal"
    trigger_width_s: float | None = None

    def __post_init__(self) -> None:
        rate, d, w = self.pulse_rate_hz, self.delay_s, self.width_s
        for name, value in (("pulse rate", rate), ("gate delay", d), ("gate width", w)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"the {name} must be a finite number, got {value!r}")
        if rate <= 0:
            raise ValueError(f"the pulse rate must be > 0 Hz, got {rate:g} Hz")
        period = 1.0 / rate
        if not MIN_PULSE_PERIOD_S <= period <= MAX_PULSE_PERIOD_S:
            raise ValueError(f"a pulse rate of {rate:g} Hz is outside 1 Hz … 10 MHz (a pulse "
                             f"period of {MIN_PULSE_PERIOD_S:g} … {MAX_PULSE_PERIOD_S:g} s)")
        if d < 0:
            raise ValueError(f"the gate delay must be ≥ 0 s, got {d:g} s")
        if w <= 0:
            raise ValueError(f"the gate width must be > 0 s, got {w:g} s")
        if not isinstance(self.gates, int) or not 1 <= self.gates <= GATES_MAX:
            raise ValueError(f"gates (time bins) must be 1 … {GATES_MAX}, got {self.gates!r}")
        if self.trigger not in TRIGGERS:
            raise ValueError(f"the trigger must be one of {', '.join(TRIGGERS)}, got "
                             f"{self.trigger!r}")
        end = d + self.gates * w
        if end > period * (1 + 1e-9):
            what = (f"the gate ({d:g} s delay + {w:g} s width)" if self.gates == 1 else
                    f"the {self.gates} time bins ({d:g} s delay + {self.gates} × {w:g} s)")
            raise ValueError(f"{what} would end {end:g} s after the pulse, after the next pulse "
                             f"({period:g} s at {rate:g} Hz): shorten the gate, or lower "
                             f"the pulse rate to at most {1.0 / end:.4g} Hz")
        tw = self.trigger_width_s
        if tw is not None:
            if self.trigger == "external":
                raise ValueError("an external trigger has no trigger width: the laser sets "
                                 "its own pulse")
            if not (isinstance(tw, (int, float)) and math.isfinite(tw) and 0 < tw < period):
                raise ValueError(f"the trigger width must be > 0 and shorter than the pulse "
                                 f"period {period:g} s, got {tw!r}")

    @property
    def period_s(self) -> float:
        """The pulse period, s."""
        return 1.0 / self.pulse_rate_hz

    @property
    def live_fraction(self) -> float:
        """The share of the time one gate is open: w / T_p."""
        return self.width_s / self.period_s

    def gate_delays_s(self) -> list[float]:
        """The opening of gates 0 … gates − 1 after each pulse, s."""
        return [self.delay_s + j * self.width_s for j in range(self.gates)]

    def configure_args(self) -> dict[str, Any]:
        """CONFIGURE's gated keys (ns; ``mode``, ``bins`` and ``periods`` not included)."""
        ns = lambda s: max(1, round(s * 1e9)) if s > 0 else 0
        a: dict[str, Any] = {"trigger": self.trigger, "pulse_period_ns": ns(self.period_s),
                             "gate_delay_ns": ns(self.delay_s),
                             "gate_width_ns": ns(self.width_s), "gates": int(self.gates)}
        if self.trigger == "internal":
            tw = self.trigger_width_s
            if tw is None:
                tw = min(DEFAULT_TRIGGER_WIDTH_S, self.period_s / 10)
            a["trigger_width_ns"] = ns(tw)
        return a

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Gating:
        """The gating a board accepted (its CONFIGURE reply or a stored ``as_dict``)."""
        if "pulse_period_ns" in config:
            tw = config.get("trigger_width_ns")
            return cls(pulse_rate_hz=1e9 / float(config["pulse_period_ns"]),
                       delay_s=float(config["gate_delay_ns"]) * 1e-9,
                       width_s=float(config["gate_width_ns"]) * 1e-9,
                       gates=int(config.get("gates", 1)),
                       trigger=str(config.get("trigger", "internal")),
                       trigger_width_s=float(tw) * 1e-9 if tw else None)
        return cls(**{k: config[k] for k in ("pulse_rate_hz", "delay_s", "width_s", "gates",
                                             "trigger", "trigger_width_s") if k in config})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (run metadata, archives)."""
        return asdict(self)

    def describe(self) -> str:
        g = (f"gate {self.delay_s:g} s + {self.width_s:g} s" if self.gates == 1 else
             f"{self.gates} time bins of {self.width_s:g} s from {self.delay_s:g} s")
        return f"pulsed at {self.pulse_rate_hz:g} Hz ({self.trigger} trigger), {g}"


def parse_gate(text: str) -> tuple[float, float]:
    """``"DELAY:WIDTH"`` in s (e.g. ``"50e-6:2e-3"``) → (delay, width); ValueError that
    says what is wrong."""
    parts = str(text).split(":")
    if len(parts) != 2:
        raise ValueError(f"a gate is DELAY:WIDTH in seconds (e.g. 50e-6:2e-3), got {text!r}")
    try:
        delay, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"a gate is DELAY:WIDTH in seconds (e.g. 50e-6:2e-3), got "
                         f"{text!r}") from None
    if not (math.isfinite(delay) and delay >= 0):
        raise ValueError(f"the gate delay must be ≥ 0 s, got {parts[0]!r}")
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"the gate width must be > 0 s, got {parts[1]!r}")
    return delay, width
