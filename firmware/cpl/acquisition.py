"""Acquisition: configuration, and board counter frames / ADC blocks → COUNTS / ADC_BLOCK
frames. Python only moves whole buffers; nothing here allocates per frame."""
import struct

from board.base import edges_per_block
from cpl import protocol as P
from cpl.args import CommandError, bad_state, in_range, one_of

MODES = ("counting", "analog", "gated")
ADC_HEADER = 32
GATED_HEADER = 40
MAX_FRAMES = 1_000_000_000  # largest START frame count (a small int on a 32-bit port)
TRIGGERS = ("internal", "external")
GATE_KEYS = ("trigger", "pulse_period_ns", "gate_delay_ns", "gate_width_ns", "gates")
MAX_PULSE_PERIOD_NS = 1_000_000_000  # 1 Hz
MIN_PULSE_PERIOD_NS = 100
GATE_DEFAULTS = {"trigger": "internal", "pulse_period_ns": 5_000_000, "trigger_width_ns": 10_000,
                 "gate_delay_ns": 50_000, "gate_width_ns": 2_000_000, "gates": 1}


class Acquisition:
    def __init__(self, board, tx) -> None:
        self._board = board
        self._tx = tx
        self.mode = "counting"
        self.bins = 16
        self.periods = 500
        self.sample_rate_hz = min(250000.0, float(board.max_sample_rate_hz))
        self.block_samples = 1024
        # gated counting: the trigger, the pulse period and the gates as the board quantised
        # them (ns), the number of gates (time bins)
        self._apply_gating(GATE_DEFAULTS)
        self.running = False
        self.acq_id = 0
        self.frames_sent = 0  # data frames of the current/last acquisition
        self.limit = 0  # data frames a bounded acquisition produces (0: unbounded)
        self.produced = 0  # data frames produced in this acquisition: sent, dropped or late
        # the data frames' CRC: the board's native one if it has it (no long ints per frame)
        self.fb = P.FrameBuf(crc_into=board.crc32_into if board.native_crc32 else None)
        self._counts_dst = self.fb.payload[20:20]
        self._adc_dst: dict = {}

    # configuration ---------------------------------------------------------------------
    def validate_config(self, a: dict, pem_hz: float) -> dict:
        if self.running:
            raise bad_state("CONFIGURE is not allowed while running; STOP first")
        mode = a["mode"]
        one_of("mode", mode, MODES)
        allowed: tuple
        if mode == "counting":
            allowed = ("mode", "bins", "periods")
        elif mode == "gated":
            if "trigger" not in a:
                raise CommandError(P.ST_BAD_ARGS, "mode 'gated' needs key 'trigger' (%s)"
                                   % ", ".join(TRIGGERS))
            one_of("trigger", a["trigger"], TRIGGERS)
            allowed = ("mode", "bins", "periods") + GATE_KEYS
            if a.get("trigger") == "internal":
                allowed += ("trigger_width_ns",)
        else:
            allowed = ("mode", "sample_rate_hz", "block_samples")
        for k in a:
            if k not in allowed:
                raise CommandError(P.ST_BAD_ARGS, "key %r does not apply to mode %r; "
                                   "it takes %s" % (k, mode, ", ".join(allowed)))
        for k in allowed:
            if k not in a:
                raise CommandError(P.ST_BAD_ARGS, "mode %r needs key %r" % (mode, k))
        c = dict(a)
        if mode in ("counting", "gated"):
            supported = self._board.counter_bins
            if c["bins"] not in supported:
                raise CommandError(P.ST_OUT_OF_RANGE, "bins=%s is not supported by this board; "
                                   "use one of %s" % (c["bins"],
                                                      ", ".join(str(n) for n in supported)))
            in_range("periods", c["periods"], 1, 100000)
            if mode == "gated":
                self._validate_gates(c)
        else:
            in_range("sample_rate_hz", c["sample_rate_hz"], 1000.0,
                     float(self._board.max_sample_rate_hz), "Hz")
            n = c["block_samples"]
            in_range("block_samples", n, 2, self._board.max_block_samples)
            if n % 2:
                raise CommandError(P.ST_OUT_OF_RANGE, "block_samples=%d must be even" % n)
            size = self.adc_payload_max(n, c["sample_rate_hz"], pem_hz)
            if size > P.MAX_PAYLOAD:
                raise CommandError(P.ST_OUT_OF_RANGE,
                                   "block_samples=%d at %s Hz makes an ADC_BLOCK of up to %d "
                                   "bytes (> %d) with a %s Hz PEM; use fewer samples"
                                   % (n, c["sample_rate_hz"], size, P.MAX_PAYLOAD, pem_hz))
        return c

    def _validate_gates(self, c: dict) -> None:
        """The gated keys in range, then the board's own check; `c` gets the board's
        quantised values."""
        b = self._board
        if c["trigger"] not in b.trigger_sources:
            why = b.trigger_unsupported(c["trigger"])
            raise CommandError(P.ST_OUT_OF_RANGE, "trigger=%r is not supported by this board%s%s"
                               % (c["trigger"], "; it supports " + ", ".join(b.trigger_sources)
                                  if b.trigger_sources else ": it has no gated counting",
                                  " (%s)" % why if why else ""))
        in_range("gates", c["gates"], 1, b.max_gates, "time bins")
        period = c["pulse_period_ns"]
        in_range("pulse_period_ns", period, MIN_PULSE_PERIOD_NS, MAX_PULSE_PERIOD_NS, "ns")
        width = c.get("trigger_width_ns", 0)
        if c["trigger"] == "internal":
            in_range("trigger_width_ns", width, 1, period - 1, "ns (below the pulse period)")
        in_range("gate_delay_ns", c["gate_delay_ns"], 0, period - 1, "ns")
        in_range("gate_width_ns", c["gate_width_ns"], 1, period, "ns")
        end = c["gate_delay_ns"] + c["gates"] * c["gate_width_ns"]
        if end > period:
            raise CommandError(P.ST_OUT_OF_RANGE,
                               "the gates end %d ns after the pulse (gate_delay_ns + gates × "
                               "gate_width_ns), after the next pulse at %d ns; shorten them or "
                               "lengthen pulse_period_ns" % (end, period))
        try:
            q = b.gate_configure(c["trigger"], period, width, c["gate_delay_ns"],
                                 c["gate_width_ns"], c["gates"])
        except ValueError as e:
            raise CommandError(P.ST_OUT_OF_RANGE, "the board cannot run these gates: %s" % e)
        c["pulse_period_ns"], w, c["gate_delay_ns"], c["gate_width_ns"] = q
        if c["trigger"] == "internal":
            c["trigger_width_ns"] = w

    @staticmethod
    def adc_payload_max(n: int, rate: float, pem_hz: float) -> int:
        return ADC_HEADER + 2 * (edges_per_block(n, rate, pem_hz) - 1) + 3 * n // 2

    def apply_config(self, c: dict) -> None:
        self.mode = c["mode"]
        if self.mode in ("counting", "gated"):
            self.bins = c["bins"]
            self.periods = c["periods"]
            if self.mode == "gated":
                self._apply_gating(c)
        else:
            self.sample_rate_hz = c["sample_rate_hz"]
            self.block_samples = c["block_samples"]

    def _apply_gating(self, c: dict) -> None:
        self.trigger = c["trigger"]
        self.pulse_period_ns = c["pulse_period_ns"]
        self.trigger_width_ns = c.get("trigger_width_ns", 0)
        self.gate_delay_ns = c["gate_delay_ns"]
        self.gate_width_ns = c["gate_width_ns"]
        self.gates = c["gates"]

    def config(self) -> dict:
        if self.mode == "counting":
            return {"mode": "counting", "bins": self.bins, "periods": self.periods}
        if self.mode == "gated":
            c = {"mode": "gated", "bins": self.bins, "periods": self.periods,
                 "trigger": self.trigger, "pulse_period_ns": self.pulse_period_ns,
                 "gate_delay_ns": self.gate_delay_ns, "gate_width_ns": self.gate_width_ns,
                 "gates": self.gates}
            if self.trigger == "internal":
                c["trigger_width_ns"] = self.trigger_width_ns
            return c
        return {"mode": "analog", "sample_rate_hz": self.sample_rate_hz,
                "block_samples": self.block_samples}

    def check_pem(self, pem_hz: float) -> None:
        """Raise if the analog blocks would not fit with a PEM at pem_hz."""
        if self.mode == "analog":
            size = self.adc_payload_max(self.block_samples, self.sample_rate_hz, pem_hz)
            if size > P.MAX_PAYLOAD:
                raise CommandError(P.ST_OUT_OF_RANGE, "frequency_hz=%s makes ADC blocks of "
                                   "%d bytes (> %d); CONFIGURE fewer block_samples first"
                                   % (pem_hz, size, P.MAX_PAYLOAD))

    # run -------------------------------------------------------------------------------
    def start(self, frames: int = 0) -> int:
        """Start an acquisition; `frames` > 0 bounds it to that many data frames (COUNTS or
        ADC_BLOCK), after which `done()` is True. Returns the new acq_id."""
        b = self._board
        try:
            if self.mode in ("counting", "gated"):
                b.counter_configure(self.bins, self.periods)
                if self.mode == "gated":
                    b.gate_configure(self.trigger, self.pulse_period_ns, self.trigger_width_ns,
                                     self.gate_delay_ns, self.gate_width_ns, self.gates)
                    head = GATED_HEADER
                else:
                    b.gate_disable()
                    head = 20
                self._counts_dst = self.fb.payload[head:head + 4 * self.bins]
                b.counter_start()
            else:
                b.adc_configure(self.sample_rate_hz, self.block_samples)
                self._adc_dst = {}
                b.adc_start()
        except ValueError as e:
            # the board refuses what it cannot run (and has started nothing)
            raise CommandError(P.ST_OUT_OF_RANGE, "the board cannot run this configuration: "
                               "%s; CONFIGURE another one" % e)
        self.acq_id = (self.acq_id + 1) & 0xFFFF
        self.frames_sent = 0
        self.limit = frames
        self.produced = 0
        self.running = True
        return self.acq_id

    def done(self) -> bool:
        """True when a bounded acquisition has produced all its data frames (those the host
        did not read and those the board collected too late count as produced)."""
        return self.limit > 0 and self.produced >= self.limit

    def stop(self) -> None:
        if self.mode in ("counting", "gated"):
            self._board.counter_stop()
        else:
            self._board.adc_stop()
        self._count_late()
        self.running = False
        # no later frame of this acquisition can carry OVERRUN: report what is pending now
        self._tx.report_overrun()

    def _count_late(self) -> None:
        """Frames the board dropped because they were collected too late."""
        lost = self._board.data_lost()
        if lost:
            self._tx.late(lost)
            self.produced += lost

    def _frame_flags(self, flags: int, saturated, overload, locked) -> int:
        """Add a board frame's own bits (and OVERRUN) to the state bits."""
        if saturated:
            flags |= P.F_SATURATED
        if overload:
            flags |= P.F_OVERLOAD
        if locked:
            flags |= P.F_PEM_LOCKED
        if self._tx.overrun():
            flags |= P.F_OVERRUN
        return flags

    def pump(self, flags: int, mono_position: int) -> bool:
        """Turn one completed board frame into a data frame. `flags` holds the state bits
        (SHUTTER_OPEN, HV_ON, MONO_MOVING); the frame's own bits are added here. Returns
        True if the board had a frame."""
        if self.mode != "analog":
            f = self._board.counter_poll()
            self._count_late()
            if f is None:
                return False
            flags = self._frame_flags(flags, f.saturated, f.overload, f.pem_locked)
            pl = self.fb.payload
            struct.pack_into("<HHIiIHH", pl, 0, self.bins, flags, f.periods, mono_position,
                             f.pem_period_ps, self.acq_id, f.bin_span)
            if self.mode == "gated":
                struct.pack_into("<HHIIII", pl, 20, f.gate, self.gates, f.pulses,
                                 self.pulse_period_ns, f.gate_delay_ns, self.gate_width_ns)
                n = GATED_HEADER + 4 * self.bins
                ftype = P.GATED_COUNTS
            else:
                n = 20 + 4 * self.bins
                ftype = P.COUNTS
            self._counts_dst[:] = f.counts
            ticks = f.ticks_us
        else:
            blk = self._board.adc_poll()
            self._count_late()
            if blk is None:
                return False
            flags = self._frame_flags(flags, blk.clipped, blk.overload, blk.pem_locked)
            pl = self.fb.payload
            pl[0:8] = blk.t0
            struct.pack_into("<IfiHHHH", pl, 8, self._board.tick_hz, self.sample_rate_hz,
                             mono_position, flags, blk.n_samples, blk.n_edges, self.acq_id)
            ne = len(blk.edges)
            if ne == 0:
                struct.pack_into("<I", pl, 28, 0)
                ne = 4
            else:
                pl[28:28 + ne] = blk.edges
            off = 28 + ne
            ns = len(blk.samples)
            dst = self._adc_dst.get(off)
            if dst is None:
                dst = self._adc_dst[off] = pl[off:off + ns]
            dst[:] = blk.samples
            n = off + ns
            ftype = P.ADC_BLOCK
            ticks = blk.ticks_us
        if self._tx.data(self.fb, ftype, n, ticks):
            self.frames_sent += 1
        self.produced += 1
        return True
