"""The board interface: everything the portable core (`cpl/`) needs from the hardware.

`board/rp2.py` implements it on an RP2040/RP2350 (PIO, DMA, USB vendor interface);
`board/sim.py` implements it in the MicroPython unix port over the sim link
(docs/sim-link.md). The core never imports `machine`, `rp2` or `usb.device`.

Rules for implementers
----------------------
* Nothing here may block except `wait()`. Every method returns in well under 1 ms.
* The streaming methods (`counter_poll`, `adc_poll`, `usb_read_into`, `usb_write`,
  `ticks_us`, `wait`, `watchdog_feed`) must not allocate: reuse preallocated objects and
  buffers, and never do per-sample or per-photon work in interpreted Python.
* Units: time in µs (`ticks_us`), ADC edge/sample times in board ticks (`tick_hz`),
  high voltage in V, PEM frequency in Hz, PEM period in ps, stepper position in steps.
* The overload guard is the board's job: when it trips, the board itself cuts the HV and
  closes the shutter within 1 ms (in hardware or an IRQ), and latches `guard_tripped()`
  until `guard_reset()`. The core only reports it and keeps the instrument in fault.
"""

# reset_cause() values
RESET_POWER_ON = 0
RESET_WATCHDOG = 1
RESET_SOFT = 2
RESET_OTHER = 3

# ticks_us() wraps like time.ticks_us(): values are in [0, TICKS_PERIOD).
TICKS_PERIOD = 1 << 30  # a long int on a 32-bit port: arithmetic with it allocates
TICKS_MASK = TICKS_PERIOD - 1  # these two are small ints: use them in the loop
TICKS_HALF = TICKS_PERIOD // 2

PEM_FREQ_TOLERANCE = 1.05  # ADC blocks are sized for a PEM up to 5 % above nominal


def edges_per_block(block_samples: int, sample_rate_hz: float, pem_hz: float) -> int:
    """Reference edges an ADC block of `block_samples` at `sample_rate_hz` (Hz) may hold with
    a PEM at `pem_hz` (Hz) or up to PEM_FREQ_TOLERANCE faster."""
    return int(block_samples / sample_rate_hz * pem_hz * PEM_FREQ_TOLERANCE) + 2


PEM_INTERNAL = "internal"
PEM_EXTERNAL = "external"


class CounterFrame:
    """One completed phase-binned counting frame. The board owns one (or a few) of these,
    preallocated, and hands the same object back from every `counter_poll()`; the core copies
    what it needs before it polls again.

    counts        memoryview of 4*B bytes: B little-endian uint32 counts, bin k spans
                  θ ∈ [2π·k·s/B, 2π·(k+1)·s/B) from the PEM reference rising edge
    bin_span      s, the fraction of the PEM period the B bins cover, in units of 1/65536
                  (0 … 65535, a small int); 0 = the whole period (docs/protocol.md, COUNTS)
    periods       K, PEM periods accumulated (counts)
    pem_period_ps mean PEM period over the frame in ps, 0 if unknown
    saturated     a bin counter wrapped or saturated
    overload      the guard tripped during this frame
    pem_locked    the PEM reference was locked for the whole frame
    ticks_us      instrument time at the end of the frame, same clock as `Board.ticks_us()`

    Gated counting (`Board.gate_configure`) adds, for the one gate the frame counted:
    gate          its index j, 0 … gates−1 (time bin j opens δ + j·w after each pulse)
    pulses        excitation pulses whose gate j the frame counted
    gate_delay_ns δ + j·w, from the pulse to the gate's opening, ns
    """

    def __init__(self, max_bins: int) -> None:
        self.buf = bytearray(4 * max_bins)
        self.counts = memoryview(self.buf)[:0]
        self.bin_span = 0
        self.periods = 0
        self.pem_period_ps = 0
        self.saturated = self.overload = self.pem_locked = False
        self.ticks_us = 0
        self.gate = self.pulses = self.gate_delay_ns = 0

    def set_bins(self, bins: int) -> None:
        self.counts = memoryview(self.buf)[: 4 * bins]


class AdcBlock:
    """One completed raw-ADC block with PEM reference edges (same ownership rule as
    `CounterFrame`). The byte fields are already in wire format (docs/protocol.md, ADC_BLOCK).

    t0         memoryview of 8 bytes: little-endian u64 board tick count at sample 0
    n_samples  number of samples (even)
    samples    memoryview of 3*n_samples/2 bytes: 12-bit samples packed in pairs
    n_edges    number of PEM reference rising edges in the block
    edges      memoryview of 4 + 2*(n_edges-1) bytes (empty if n_edges == 0): u32 first
               edge in ticks after t0, then u16 ticks from each edge to the next
    clipped    a sample hit 0 or 4095
    overload   the guard tripped during this block
    pem_locked the PEM reference was locked for the whole block
    ticks_us   instrument time at the end of the block (µs, `Board.ticks_us()` clock)
    """

    def __init__(self, max_samples: int, max_edges: int) -> None:
        self.t0 = memoryview(bytearray(8))
        self.sample_buf = bytearray(3 * max_samples // 2)
        self.edge_buf = bytearray(4 + 2 * max(max_edges - 1, 0))
        self.n_samples = 0
        self.samples = memoryview(self.sample_buf)[:0]
        self.n_edges = 0
        self.edges = memoryview(self.edge_buf)[:0]
        self.clipped = False
        self.overload = False
        self.pem_locked = False
        self.ticks_us = 0


class Board:
    """Abstract board. Subclasses override every method; the defaults raise."""

    name = "base"
    tick_hz = 1_000_000  # frequency of the ADC t0/edge ticks, Hz
    max_hv_volts = 0.0  # hardware ceiling of the PMT supply, V
    max_bins = 64  # largest B the counter supports
    # every B the counter supports, ascending. The rp2 counter's DMA rings wrap on powers of
    # two; other boards support the same set so that a script that runs on one runs on all.
    counter_bins = (2, 4, 8, 16, 32, 64)
    max_block_samples = 4096  # largest ADC block, samples
    max_sample_rate_hz = 250_000.0
    # True if `crc32_into` is implemented: the core then seals data frames with it
    native_crc32 = False

    # identity --------------------------------------------------------------------------
    def serial(self) -> str:
        """Unique board id as a hex string."""
        raise NotImplementedError

    def reset_cause(self) -> int:
        """Why the firmware started: one of RESET_POWER_ON, RESET_WATCHDOG, RESET_SOFT,
        RESET_OTHER."""
        raise NotImplementedError

    # clock -----------------------------------------------------------------------------
    def ticks_us(self) -> int:
        """Instrument time in µs modulo TICKS_PERIOD (real time on hardware, virtual time
        owned by the sim hub in the simulator)."""
        raise NotImplementedError

    def wait(self, timeout_us: int) -> None:
        """Sleep until USB OUT data or a completed counter frame / ADC block may be ready,
        or until `timeout_us` (µs of instrument time) has passed. May return early."""
        raise NotImplementedError

    def idle(self, timeout_us: int) -> None:
        """Like `wait()`, when the core has nothing to do until the host writes: no
        acquisition, no move, no partial command frame. A simulated board may then hold its
        clock until the host writes (docs/sim-link.md); a real board just waits. The default
        calls `wait(timeout_us)`."""
        self.wait(timeout_us)

    # photon counter --------------------------------------------------------------------
    def counter_configure(self, bins: int, periods: int) -> None:
        """Set B phase bins per PEM period (one of `counter_bins`) and K periods per frame.
        Raises ValueError for values the counter cannot do."""
        raise NotImplementedError

    def counter_start(self) -> None:
        """Start counting. Raises ValueError, having started nothing, if the configuration
        cannot run with the present PEM (e.g. bins too short for its period)."""
        raise NotImplementedError

    def counter_stop(self) -> None:
        """Stop counting and discard any partial frame."""
        raise NotImplementedError

    def counter_poll(self) -> "CounterFrame | None":
        """The next completed frame, or None if none is ready. Never blocks."""
        raise NotImplementedError

    def data_lost(self) -> int:
        """Completed counter frames or ADC blocks the board dropped since the last call,
        because the CPU collected them too late (the hardware had started to overwrite
        them); 0 if none. The core calls it after every `counter_poll` / `adc_poll` and after
        stopping, so a loss found when there is no frame to return is still reported. A
        dropped ADC block also shows as a gap in the next block's t0. Never blocks."""
        raise NotImplementedError

    # gated counting (pulsed excitation) ------------------------------------------------------
    # Under pulsed excitation the counter counts only the photons inside a gate after each
    # pulse (docs/protocol.md, CONFIGURE mode "gated"). The excitation trigger output runs
    # only while `trigger_enable(True)` holds AND the shutter is open: `shutter_set(False)`
    # and a guard trip stop it on the board's own account.
    trigger_sources: tuple = ()  # "internal" (the board drives the trigger), "external" (sync input)
    max_gates = 0  # most time bins (gates) of one configuration; 0: no gated counting

    def gate_configure(self, trigger: str, pulse_period_ns: int, trigger_width_ns: int,
                       gate_delay_ns: int, gate_width_ns: int, gates: int) -> tuple:
        """Check and store a gated configuration for the next `counter_start()` (with
        `counter_configure`'s bins and periods); the counter then counts gate j = 0 … gates−1
        in turn, one frame each, gate j open from δ + j·w to δ + (j+1)·w after each pulse.
        Returns the values the board will use, quantised to its clock: (pulse_period_ns,
        trigger_width_ns, gate_delay_ns, gate_width_ns). Raises ValueError for what it
        cannot do."""
        raise ValueError("this board has no gated counting")

    def trigger_unsupported(self, trigger: str) -> str:
        """Why this board cannot follow `trigger` (one not in `trigger_sources`), for the
        error CONFIGURE answers; "" if there is nothing more to say."""
        return ""

    def gate_disable(self) -> None:
        """The next `counter_start()` counts every photon (continuous counting)."""

    def trigger_enable(self, on: bool) -> None:
        """Run the excitation trigger (internal trigger, gated counting running) or stop it.
        The board runs it only while the shutter is open."""

    def trigger_on(self) -> bool:
        """True while the trigger output is pulsing."""
        return False

    # ADC -------------------------------------------------------------------------------
    def adc_configure(self, sample_rate_hz: float, block_samples: int) -> None:
        """Sample rate in Hz and samples per block (even, ≤ max_block_samples)."""
        raise NotImplementedError

    def adc_start(self) -> None:
        raise NotImplementedError

    def adc_stop(self) -> None:
        raise NotImplementedError

    def adc_poll(self) -> "AdcBlock | None":
        """The next completed block, or None. Never blocks."""
        raise NotImplementedError

    # PEM -------------------------------------------------------------------------------
    def pem_configure(self, source: str, frequency_hz: float) -> None:
        """Reference source PEM_INTERNAL (the board generates the drive reference at
        `frequency_hz`) or PEM_EXTERNAL (the PEM controller's reference output is
        measured; `frequency_hz` is the nominal value)."""
        raise NotImplementedError

    def pem_set_drive(self, fraction: float) -> None:
        """PEM drive amplitude as a fraction 0 … 1 of full scale."""
        raise NotImplementedError

    def pem_period_ps(self) -> int:
        """Latest measured reference period in ps, 0 if unknown."""
        raise NotImplementedError

    def pem_locked(self) -> bool:
        """True while the reference is present and stable."""
        raise NotImplementedError

    # monochromator stepper ----------------------------------------------------------------
    def step(self, n: int) -> None:
        """Start moving n steps (signed, + = longer wavelength). Returns at once; a move
        started while `moving()` is added to the remaining one."""
        raise NotImplementedError

    def position(self) -> int:
        """Current position in steps since boot (signed); follows a move in progress."""
        raise NotImplementedError

    def moving(self) -> bool:
        raise NotImplementedError

    def home_switch(self) -> bool:
        """True while the home switch is closed (at or below the home position)."""
        raise NotImplementedError

    # PMT high voltage and shutter ---------------------------------------------------------
    def hv_set(self, volts: float) -> None:
        """Set the PMT high voltage in V (0 = off). The core has checked the limits."""
        raise NotImplementedError

    def hv_read(self) -> float:
        """Measured PMT high voltage in V."""
        raise NotImplementedError

    def shutter_set(self, is_open: bool) -> None:
        raise NotImplementedError

    def shutter_open(self) -> bool:
        """Shutter state read back from the hardware."""
        raise NotImplementedError

    # overload guard -----------------------------------------------------------------------
    def guard_arm(self, max_count_rate_cps: float, max_adc_level: int,
                  max_high_fraction: float = 0.5) -> None:
        """Arm the PMT guard: a count rate above `max_count_rate_cps` (counts/s), an ADC
        sample above `max_adc_level` (0 … 4095), or the photon input high for more than
        `max_high_fraction` (0 … 1) of a guard window (a stuck or paralyzed input, where a
        board can measure it) trips it."""
        raise NotImplementedError

    def guard_tripped(self) -> bool:
        """Latched: True from the trip until `guard_reset()`."""
        raise NotImplementedError

    def guard_reason(self) -> str:
        """What tripped the guard, e.g. 'PMT rate 3.2e6 cps > limit 2.0e6 cps'."""
        raise NotImplementedError

    def guard_reset(self) -> None:
        """Clear the latch. HV and shutter stay as they are (off/closed)."""
        raise NotImplementedError

    # USB vendor interface -----------------------------------------------------------------
    def usb_read_into(self, buf: memoryview) -> int:
        """Copy up to len(buf) bytes of bulk OUT data into buf; return the count (0 if none).
        Never blocks."""
        raise NotImplementedError

    def usb_write(self, buf: memoryview) -> bool:
        """Queue a copy of buf (≤ 8216 bytes) for bulk IN. Returns False without queueing
        when both IN buffers are busy (the host is not reading). Never blocks."""
        raise NotImplementedError

    def usb_connected(self) -> bool:
        raise NotImplementedError

    # watchdog -----------------------------------------------------------------------------
    def hv_configure(self, kind: str, volts_per_control_v: float, min_volts: float,
                     max_volts: float, monitor: bool, settle_ms: int, power: bool) -> None:
        """The detector's HV model (cpl.hvmodel). Raises ValueError for a kind the board
        cannot drive."""
        if kind != "supply":
            raise ValueError("this board models an HV supply only, not a %s" % kind)

    def hv_on(self) -> bool:
        """HV enable is on (an HV supply set above 0 V, or a counting head powered)."""
        return False

    def hv_settled(self):
        """HV enable is on and the detector past its settling time (HV_CONFIG settle_ms);
        None where the board cannot tell (the core then goes by the HV set)."""
        return None

    def shutdown(self) -> None:
        """Leave the hardware safe when the firmware stops (main.py's `finally`): HV off,
        shutter closed, acquisition hardware stopped. Nothing to do where the outputs end
        with the program (the simulated board: the hub owns them)."""

    def guard_fault(self) -> str:
        """Why a guard no longer guards (the main loop then enters fault), or ""."""
        return ""

    def watchdog_start(self, timeout_ms: int) -> None:
        raise NotImplementedError

    def watchdog_feed(self) -> None:
        raise NotImplementedError

    # frame CRC (optional) -------------------------------------------------------------------
    def crc32_into(self, buf: bytearray, n: int) -> None:
        """Write the CRC-32 of buf[0:n] (IEEE 802.3, as binascii.crc32) little-endian into
        buf[n:n+4], without allocating. Optional: a board that has it sets `native_crc32`.
        Why: on a 32-bit port binascii.crc32 returns a long int (one heap allocation) for
        the ~3/4 of CRCs that are ≥ 2**30."""
        raise NotImplementedError

    # self test ----------------------------------------------------------------------------
    def self_test(self) -> dict:
        """Board-specific checks, name → passed. The core adds its own generic checks."""
        return {}
