"""`machine` for running firmware/board/rp2*.py in the MicroPython unix port: a behavioural
model of the parts of an RP2040 or an RP2350 (chip.py, chosen before import) the board uses,
strict where the real chip or port is.

* Interrupt handlers are called only through `call_irq`, with `micropython.heap_lock()`
  held, as a hard IRQ on the board; any allocation raises MemoryError.
* The unix port is 64-bit, so a value ≥ 2**30 is still a small int here. On the 32-bit rp2
  port it is a long int, and making one in a hard IRQ raises MemoryError: the model raises
  the same for every register address and value that reaches it from an IRQ outside the
  30-bit range (`small`).
* `Timer` takes the keywords of the rp2 port of release VERSION (`hard=` from v1.26.0).
* `mem32` is the register bus of `rp2.py` (ADC, PIO control), not a dict.
"""
from array import array

import micropython

import chip

CHIP = chip.params()

VERSION = (1, 26, 1)       # the MicroPython release modelled; tests may change it
IN_IRQ = [False]
IRQ_ENABLED = [True]
PENDING = []               # (handler, arg) raised while interrupts were disabled
VIOLATIONS = []            # what made a hard IRQ fail, for the test's message
SMALL = 1 << 30


def small(value, what="value"):
    """On the 32-bit port `value` must be a small int if an IRQ handler is to touch it."""
    if IN_IRQ[0] and not (-SMALL <= value < SMALL):
        VIOLATIONS.append(what)  # a str constant: no allocation
        raise MemoryError("heap is locked")
    return value


def call_irq(handler, arg):
    """Run one hard interrupt handler as the chip would: now (or at enable_irq if
    interrupts are disabled), heap locked."""
    if not IRQ_ENABLED[0]:
        PENDING.append((handler, arg))
        return
    IN_IRQ[0] = True
    micropython.heap_lock()
    try:
        handler(arg)
    finally:
        micropython.heap_unlock()
        IN_IRQ[0] = False


def disable_irq():
    was = IRQ_ENABLED[0]
    IRQ_ENABLED[0] = False
    return was


def enable_irq(state):
    IRQ_ENABLED[0] = bool(state)
    if IRQ_ENABLED[0]:
        while PENDING:
            h, a = PENDING.pop(0)
            call_irq(h, a)


class Pin:
    """GPIO pads as the port leaves them: function (None at reset, "sio_in", "sio_out",
    "pio", "pwm", "analog"), pull ("up", "down", None; reset: "down"), input enable ("ie":
    off for an analog pad, and on an RP2350 off from reset) and isolation ("iso": an RP2350's
    pads come up isolated; the port's set-up of a pin, gpio_set_function, lifts it). Tests
    set input levels in `levels`; `level(n)` is what a pin drives; `live(n)` says whether a
    peripheral (PIO, PWM input B) reads the pad's level at all."""
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    levels = {}
    pads = {}

    def __init__(self, n, mode=-1, pull=-1, value=None):
        self.n = n
        pad = Pin.pad(n)
        if mode == Pin.IN:
            pad["func"] = "sio_in"
        elif mode == Pin.OUT:
            pad["func"] = "sio_out"
        if mode != -1:
            pad["ie"] = True
            pad["iso"] = False
            pad["pull"] = {Pin.PULL_UP: "up", Pin.PULL_DOWN: "down"}.get(pull)
        if value is not None:
            pad["out"] = 1 if value else 0

    @staticmethod
    def pad(n):
        p = Pin.pads.get(n)
        if p is None:
            iso = CHIP["pads_isolated"]
            p = Pin.pads[n] = {"func": None, "pull": "down", "ie": not iso, "iso": iso,
                               "out": 0, "pio": 0}
        return p

    @staticmethod
    def connect(n, func):
        """gpio_set_function(n, func) as the SDK does it: input on, isolation off."""
        p = Pin.pad(n)
        p["func"] = func
        p["ie"] = True
        p["iso"] = False
        return p

    @staticmethod
    def live(n):
        """The pad passes its level to the peripherals (input enabled, not isolated)."""
        p = Pin.pad(n)
        return p["ie"] and not p["iso"]

    @staticmethod
    def level(n):
        """The level the chip drives on pin n, or None if it drives none."""
        p = Pin.pad(n)
        if p["func"] == "sio_out":
            return p["out"]
        if p["func"] == "pio":
            return p["pio"]
        return None

    def value(self, *v):
        p = Pin.pad(self.n)
        if v:
            p["out"] = 1 if v[0] else 0
            return None
        if p["func"] == "sio_out":
            return p["out"]
        if p["func"] == "pio":
            return p["pio"]
        if not Pin.live(self.n):
            return 0   # input buffer off or pad isolated: reads 0
        # an input nothing drives reads its pull
        return Pin.levels.get(self.n, 1 if p["pull"] == "up" else 0)

    def toggle(self):
        p = Pin.pad(self.n)
        p["out"] ^= 1


# --- PWM: slices with CSR, DIV (8.4 fixed point), CTR, CC and TOP registers ------------------
# CC and TOP are double-buffered, as on both chips (RP2040 datasheet 4.6.2.3, "Double
# Buffering"): software writes one copy, the slice runs on an internal copy taken from it
# when the counter wraps; a slice that is not running takes a write at once.
PWM_BASE = CHIP["pwm_base"]
PWM_SLICES = CHIP["pwm_slices"]  # 8 (RP2040) or 12 (RP2350: 8 … 11 serve GPIO 32 … 47)
PWM_REGS = {}            # (slice, offset) → value (CSR, DIV, TOP as written)
PWM_FRAC = {}            # slice → the fractional divider's remainder, in 1/16 counts
PWM_CTR = array("i", [0] * PWM_SLICES)   # the counters (an IRQ reads them: no tuple key made)
PWM_CC = array("I", [0] * PWM_SLICES)    # CC as software wrote it (an IRQ writes it)
PWM_CC_LIVE = array("I", [0] * PWM_SLICES)   # the copy the slice compares against
PWM_TOP_LIVE = array("i", [0xFFFF] * PWM_SLICES)
PWM_ON = array("b", [0] * PWM_SLICES)    # CSR's EN bit, for the IRQ's store (no tuple key)
CSR_EN = 1
CSR_DIVMODE = 3 << 4     # 0 free-running, 1 gated by input B's level, 2/3 B's edges


def _pwm_read(off):
    if off % 0x14 == 0x08:
        return PWM_CTR[off // 0x14]
    if off % 0x14 == 0x0C:
        return PWM_CC[off // 0x14]
    return PWM_REGS.get((off // 0x14, off % 0x14), 0)


def pwm_cc_store(sl, v):
    """Software writes slice `sl`'s CC (no allocation: an IRQ handler's store lands here)."""
    PWM_CC[sl] = v
    if not PWM_ON[sl]:
        PWM_CC_LIVE[sl] = v


def _pwm_write(off, v):
    sl = off // 0x14
    if off % 0x14 == 0x08:
        PWM_CTR[sl] = v & 0xFFFF
        return
    if off % 0x14 == 0x0C:
        pwm_cc_store(sl, v)
        return
    PWM_REGS[(sl, off % 0x14)] = v
    if off % 0x14 == 0x00:
        PWM_ON[sl] = v & CSR_EN
    if off % 0x14 == 0x10 and not PWM_ON[sl]:
        PWM_TOP_LIVE[sl] = v


def _pwm_wrapped(sl):
    """The counter wrapped: the slice takes CC and TOP as software last wrote them."""
    PWM_CC_LIVE[sl] = PWM_CC[sl]
    PWM_TOP_LIVE[sl] = PWM_REGS.get((sl, 0x10), 0xFFFF)


def pwm_cc(sl):
    """Slice `sl`'s CC as software wrote it."""
    return PWM_CC[sl]


def pwm_cc_live(sl):
    """The CC slice `sl` compares against now."""
    return PWM_CC_LIVE[sl]


def pwm_run(sl, cycles):
    """A free-running slice (DIVMODE 0, enabled, an integer divider) runs for `cycles`
    system-clock cycles: returns [(offset, cc)] for each wrap in that time, its offset in
    cycles from the run's start and the CC the slice compares against from there on (taken
    from software's copy at the wrap). A disabled slice does not move."""
    csr = PWM_REGS.get((sl, 0x00), 0)
    if not csr & CSR_EN:
        return []
    if csr & CSR_DIVMODE:
        raise AssertionError("pwm_run of a slice that counts its input B")
    div16 = PWM_REGS.get((sl, 0x04), 16) or 4096
    if div16 % 16:
        raise AssertionError("pwm_run models integer dividers only")
    div = div16 // 16
    pos = PWM_CTR[sl] * div + PWM_FRAC.get(sl, 0) // 16     # cycles into the period
    out = []
    t = 0
    while True:
        period = (PWM_TOP_LIVE[sl] + 1) * div
        if pos + (cycles - t) < period:
            break
        t += period - pos
        pos = 0
        _pwm_wrapped(sl)
        out.append((t, PWM_CC_LIVE[sl]))
    pos += cycles - t
    PWM_CTR[sl] = pos // div
    PWM_FRAC[sl] = (pos % div) * 16
    return out


def pwm_slice(gpio):
    """The slice of a GPIO: (gpio >> 1) & 7 below 32 on both chips; an RP2350's GPIO 32 …
    47 (the QFN-80 package) belong to slices 8 … 11."""
    if gpio < 32 or PWM_SLICES == 8:
        return (gpio >> 1) & 7
    return 8 + ((gpio >> 1) & 3)


def _pwm_b_pin(gpio):
    """The slice of an odd GPIO that feeds its slice's input B (PWM function, live pad)."""
    pad = Pin.pad(gpio)
    if gpio % 2 != 1 or pad["func"] != "pwm" or not Pin.live(gpio):
        return None
    return pwm_slice(gpio)


def _pwm_advance(sl, events16):
    """The counter of slice `sl` advances by events16/16 divider inputs (the 8.4 divider's
    fraction carried over) and wraps from TOP to 0."""
    div16 = PWM_REGS.get((sl, 0x04), 16) or 4096  # DIV 0 counts as 256
    top = PWM_TOP_LIVE[sl]
    acc = PWM_FRAC.get(sl, 0) + events16
    ctr = PWM_CTR[sl] + acc // div16
    PWM_FRAC[sl] = acc % div16
    PWM_CTR[sl] = ctr % (top + 1)
    if ctr > top:
        _pwm_wrapped(sl)


def _pwm_b_count(gpio, divmode, events16):
    """Events at input B of GPIO `gpio`'s slice: counted (events16 / 16 divider inputs) if
    the slice is enabled in DIVMODE `divmode`. The pin must not be a B output (DIVMODE 0 with
    the PWM function): that would drive the line it should read."""
    sl = _pwm_b_pin(gpio)
    if sl is None:
        return
    csr = PWM_REGS.get((sl, 0x00), 0)
    mode = (csr & CSR_DIVMODE) >> 4
    if mode == 0:
        raise AssertionError("GP%d is PWM output B: it drives the line it should count" % gpio)
    if mode == divmode and csr & CSR_EN:
        _pwm_advance(sl, events16)


def pwm_b_input(gpio, high_cycles):
    """Input B of a slice (an odd GPIO with the PWM function) was high for `high_cycles`
    system-clock cycles: in DIVMODE 1 (level-gated) the counter advances by high_cycles / DIV
    (the 8.4 divider's fraction carried over, as the chip's first-order sigma-delta does)
    and wraps from TOP to 0."""
    _pwm_b_count(gpio, 1, 16 * high_cycles)


def pwm_b_edges(gpio, rising):
    """Input B of a slice saw `rising` rising edges: in DIVMODE 2 (rising edges) the counter
    advances by rising / DIV and wraps from TOP to 0."""
    _pwm_b_count(gpio, 2, 16 * rising)


def pwm_pin_output(gpio):
    """The PWM drives GPIO `gpio` (its function is PWM and its slice's channel is an
    output: channel A, or B in DIVMODE 0)."""
    if Pin.pad(gpio)["func"] != "pwm":
        return False
    return gpio % 2 == 0 or not PWM_REGS.get((pwm_slice(gpio), 0x00), 0) & CSR_DIVMODE


def pwm_freq(slice_):
    """The frequency a slice runs at: f_clk·16 / ((TOP + 1)·DIV)."""
    div = PWM_REGS.get((slice_, 0x04), 16)
    top = PWM_REGS.get((slice_, 0x10), 0xFFFF)
    return _FREQ[0] * 16 / ((top + 1) * div)


PWM_B_OUTPUTS = []   # odd GPIOs that got the PWM function while their slice was in DIVMODE 0


class PWM:
    """As the rp2 port: freq() picks the smallest integer divider whose TOP fits in 16 bits
    (at PEM frequencies: divider 1, TOP = f_clk/f - 1 rounded); duty_u16 scales to TOP."""

    def __init__(self, pin):
        # as the port: the pin's function becomes PWM (input enabled); nothing else changes
        self.pin = pin
        self.slice = pwm_slice(pin.n)
        self.d = 0
        Pin.connect(pin.n, "pwm")
        if pin.n % 2 == 1 and not PWM_REGS.get((self.slice, 0x00), 0) & CSR_DIVMODE:
            PWM_B_OUTPUTS.append(pin.n)   # a B output now (what the tests check it is not)

    def freq(self, f=None):
        if f is not None:
            if not 8 <= f <= 62_500_000:
                raise ValueError("freq out of range")
            div = 1
            while _FREQ[0] / (div * f) > 65536:
                div += 1
            PWM_REGS[(self.slice, 0x04)] = 16 * div
            PWM_REGS[(self.slice, 0x10)] = int(_FREQ[0] / (div * f) + 0.5) - 1
            if not PWM_ON[self.slice]:
                PWM_TOP_LIVE[self.slice] = PWM_REGS[(self.slice, 0x10)]
        return int(pwm_freq(self.slice))

    def duty_u16(self, d=None):
        if d is not None:
            if not 0 <= d <= 65535:
                raise ValueError("duty out of range")
            self.d = d
        return self.d


# --- ADC: registers and FIFO ---------------------------------------------------------------
ADC_BASE = CHIP["adc_base"]
CS_EN = 1
CS_START_ONCE = 1 << 2
CS_START_MANY = 1 << 3
CS_READY = 1 << 8
FCS_EN = 1
FCS_DREQ_EN = 1 << 3
FCS_EMPTY = 1 << 8
FCS_UNDER = 1 << 10
FCS_OVER = 1 << 11
FIFO_DEPTH = 4


class AdcModel:
    def __init__(self):
        self.cs = 0
        self.fcs = 0
        self.div = 0
        self.fifo = []
        self.over = False
        self.under = False
        self.source = [lambda i: 0] * 5   # per AINSEL channel: sample i → 12-bit value
        self.n = 0                        # conversions so far
        self.log = []                     # (register, value) writes, in order

    @property
    def ainsel(self):
        return (self.cs >> 12) & ((1 << CHIP["ainsel_bits"]) - 1)

    def running(self):
        return bool(self.cs & CS_EN and self.cs & CS_START_MANY)

    def read(self, off):
        if off == 0x00:
            return self.cs | CS_READY
        if off == 0x04:
            return self.source[self.ainsel](self.n) if self.cs & CS_EN else 0
        if off == 0x08:
            v = self.fcs | (len(self.fifo) << 16)
            if not self.fifo:
                v |= FCS_EMPTY
            if self.over:
                v |= FCS_OVER
            if self.under:
                v |= FCS_UNDER
            return v
        if off == 0x0C:
            if not self.fifo:
                self.under = True
                return 0
            return self.fifo.pop(0)
        if off == 0x10:
            return self.div
        raise AssertionError("ADC register %#x not modelled" % off)

    def write(self, off, v):
        self.log.append((off, v))
        if off == 0x00:
            self.cs = v & ~CS_START_ONCE
            if v & CS_START_ONCE:
                self.convert(1)
        elif off == 0x08:
            if v & FCS_OVER:
                self.over = False
            if v & FCS_UNDER:
                self.under = False
            self.fcs = v & ~(FCS_OVER | FCS_UNDER | FCS_EMPTY)
        elif off == 0x10:
            self.div = v
        else:
            raise AssertionError("ADC register %#x not writable in the model" % off)

    def convert(self, count):
        """`count` conversions of the selected input (free-running or one-shot)."""
        for _ in range(count):
            v = self.source[self.ainsel](self.n) & 0xFFF
            self.n += 1
            if self.fcs & FCS_EN:
                if len(self.fifo) >= FIFO_DEPTH:
                    self.over = True
                else:
                    self.fifo.append(v)
            if BUS.on_fifo is not None:
                BUS.on_fifo()

    def dreq(self):
        return bool(self.fcs & FCS_DREQ_EN and self.fifo)


ADC_MODEL = AdcModel()


class ADC:
    def __init__(self, ch):
        # as the port: ADC(Pin) makes the pad analog (input and pulls off); ADC(channel)
        # leaves the pad as it is (until v1.26 at least)
        if isinstance(ch, Pin):
            if not 26 <= ch.n <= 29:
                raise ValueError("Pin doesn't have ADC capabilities")
            p = Pin.connect(ch.n, "analog")   # gpio_set_function(NULL): isolation off
            p["ie"] = False
            p["pull"] = None
            ch = ch.n - 26
        if not 0 <= ch <= 4:
            raise ValueError("ADC channel")
        self.ch = ch

    def read_u16(self):
        # as the port does: select the channel (for good) and convert once
        m = ADC_MODEL
        m.cs = (m.cs & ~(15 << 12)) | (self.ch << 12) | CS_EN
        v = m.source[self.ch](m.n) & 0xFFF
        m.n += 1
        return v << 4 | v >> 8


class _Bus:
    """Register accesses by address: the ADC here, PIO and DMA registers from rp2.py."""

    def __init__(self):
        self.devices = []   # (base, size, read(off), write(off, v))
        self.on_fifo = None
        self.stores = []    # every store, in order: (address, value)

    def add(self, base, size, read, write):
        self.devices.append((base, size, read, write))

    def _find(self, addr):
        for base, size, rd, wr in self.devices:
            if base <= addr < base + size:
                return base, rd, wr
        raise AssertionError("no register at %#x in the model" % addr)

    def read(self, addr):
        small(addr, "register address")
        base, rd, _ = self._find(addr)
        return small(rd(addr - base), "register value")

    def write(self, addr, v):
        small(addr, "register address")
        small(v, "register value")
        if not 0 <= v < 1 << 32:
            raise AssertionError("a 32-bit register got %r" % v)
        self.stores.append((addr, v))
        base, _, wr = self._find(addr)
        wr(addr - base, v)


BUS = _Bus()
BUS.add(ADC_BASE, 0x24, ADC_MODEL.read, ADC_MODEL.write)
BUS.add(PWM_BASE, 0x14 * PWM_SLICES, _pwm_read, _pwm_write)


class _Mem:
    def __getitem__(self, a):
        return BUS.read(a)

    def __setitem__(self, a, v):
        BUS.write(a, v)


mem32 = _Mem()


# --- watchdog: REASON and scratch 4 (the SDK's magic while machine.WDT runs) ---------------
WATCHDOG_BASE = CHIP["watchdog_base"]
WATCHDOG = {0x08: 0, 0x1C: 0}


def _wd_read(off):
    return WATCHDOG.get(off, 0)


def _wd_write(off, v):
    WATCHDOG[off] = v


BUS.add(WATCHDOG_BASE, 0x30, _wd_read, _wd_write)
RESETS = []   # machine.reset() calls


def reset():
    RESETS.append(1)
    raise SystemExit("machine.reset()")


class WDT:
    def __init__(self, timeout=5000):
        if not 1 <= timeout <= 8388:
            raise ValueError("timeout")
        self.timeout = timeout
        WATCHDOG[0x1C] = 0x6AB73121
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1
    all = []

    def __init__(self, id=-1, **kw):
        allowed = ["mode", "freq", "period", "tick_hz", "callback"]
        if VERSION >= (1, 26, 0):
            allowed.append("hard")
        for k in kw:
            if k not in allowed:
                raise TypeError("unexpected keyword argument '%s'" % k)
        if id != -1:
            raise ValueError("Timer doesn't exist")
        self.kw = kw
        self.callback = kw.get("callback")
        self.hard = kw.get("hard", False)
        Timer.all.append(self)

    def deinit(self):
        self.callback = None
        if self in Timer.all:
            Timer.all.remove(self)

    @staticmethod
    def fire_all():
        for t in list(Timer.all):
            if t.callback is not None:
                if not t.hard:
                    raise AssertionError("a soft Timer callback would run late and allocate")
                call_irq(t.callback, t)


WDT_RESET = 3
PWRON_RESET = 1
_FREQ = [CHIP["clock_hz"]]   # MicroPython's default: 125 MHz (RP2040), 150 MHz (RP2350)


def freq():
    return _FREQ[0]


def unique_id():
    return b"\xe6\x61\x41\x04\x03\x5a\x2b\x22"


CAUSE = [1]


def reset_cause():
    return CAUSE[0]


def idle():
    pass
