"""`rp2` for the unix-port tests of firmware/board/rp2*.py: PIO state machines with FIFOs,
and a behavioural DMA (see machine.py for the interrupt and small-int rules).

DMA: channels with READ_ADDR / WRITE_ADDR that advance by the transfer size and wrap on
their ring, a live transfer count that a trigger reloads from the value written last
(writing `count` sets only that reload value), chain-to on completion, completion IRQs
(unless irq_quiet), DREQ pacing from the PIO FIFOs and the ADC FIFO. Memory transfers go to
the real buffers (uctypes), but only inside buffers a test registered with `allow()`: a
transfer anywhere else fails the test instead of corrupting the heap. `pack_ctrl` returns
the CTRL word packed as the chip (chip.py) lays it out, and the channels decode it in that
layout. TRANS_COUNT: on an RP2040 the board keeps counts below 2**28 (bits 31:28 are the
RP2350's MODE field), so a count with any of those bits is refused; on an RP2350 they are
MODE: 0 normal, 1 TRIGGER_SELF (the channel re-triggers itself at completion), 0xF ENDLESS
(the count never decrements), anything else reserved (refused).

PIO: two blocks (state machines 0 … 7) on an RP2040, three (0 … 11, PIO2 at 0x5040_0000) on
an RP2350. A state machine's pins are set up as the port does (set, side-set and out pins
to the PIO function), and when it is started every pad it reads (in_base, jmp_pin, and for
gate_window GSTART, 17 above in_base) must pass its level (machine.Pin.live).
"""
import uctypes

import chip
import machine

PIOS = machine.CHIP["pios"]
PIO_BASE = (0x5020_0000, 0x5030_0000, 0x5040_0000)[:PIOS]
FIFO_DEPTH = 4
DREQ_ADC = machine.CHIP["dreq_adc"]
DREQ_FORCE = 0x3F
DMA_CHANNELS = machine.CHIP["dma_channels"]
# CTRL field positions (RP2040 / RP2350 datasheet, DMA CH0_CTRL_TRIG): the RP2350 adds the
# INCR_READ_REV and INCR_WRITE_REV bits after INCR_READ and INCR_WRITE, shifting the rest
if chip.rp2350():
    SH_INC_WRITE, SH_RING, SH_RING_SEL, SH_CHAIN, SH_TREQ, SH_QUIET, SH_BUSY = \
        6, 8, 12, 13, 17, 23, 26
    _REV_FIELDS = (("inc_read_rev", 5, 1), ("inc_write_rev", 7, 1))
else:
    SH_INC_WRITE, SH_RING, SH_RING_SEL, SH_CHAIN, SH_TREQ, SH_QUIET, SH_BUSY = \
        5, 6, 10, 11, 15, 21, 24
    _REV_FIELDS = ()
CTRL_FIELDS = (("enable", 0, 1), ("high_pri", 1, 1), ("size", 2, 2), ("inc_read", 4, 1),
               ("inc_write", SH_INC_WRITE, 1), ("ring_size", SH_RING, 4),
               ("ring_sel", SH_RING_SEL, 1), ("chain_to", SH_CHAIN, 4),
               ("treq_sel", SH_TREQ, 6), ("irq_quiet", SH_QUIET, 1), ("bswap", SH_QUIET + 1, 1),
               ("sniff_en", SH_QUIET + 2, 1), ("write_err", 29, 1),
               ("read_err", 30, 1)) + _REV_FIELDS
MODE_NORMAL, MODE_TRIGGER_SELF, MODE_ENDLESS = 0, 1, 0xF


class PIO:
    IN_LOW = 0
    IN_HIGH = 1
    OUT_LOW = 2
    OUT_HIGH = 3
    SHIFT_LEFT = 0
    SHIFT_RIGHT = 1


PROGRAMS = {}   # program (the decorated function) → its asm_pio options


def asm_pio(**k):
    def deco(f):
        PROGRAMS[f] = k
        return f
    return deco


def _pin_count(init):
    if init is None:
        return 0
    return len(init) if isinstance(init, (list, tuple)) else 1


# pads a program reads above its in_base, besides in_base itself (rp2_pio.gate_window: GSTART)
READS_ABOVE_IN_BASE = {"gate_window": (17,)}


class StateMachine:
    all = {}

    def __init__(self, i, prog=None, **k):
        if not 0 <= i < 4 * PIOS:
            raise ValueError("invalid StateMachine id %d (%d PIO blocks)" % (i, PIOS))
        old = StateMachine.all.get(i)
        self.i = i
        self.prog = prog
        self.k = k
        self._ex = [None] * 256     # exec() may come from a hard IRQ: no list growth
        self._nex = 0
        self.puts = []
        self.on = False
        self.handler = None
        self.hard = False
        self.tx = []
        self.rx = []
        self.history = []   # "on"/"off" in order
        if old is not None:
            self.handler, self.hard = old.handler, old.hard
        StateMachine.all[i] = self

        self.set_pins = []
        opts = PROGRAMS.get(prog, {})
        for key, init in (("set_base", "set_init"), ("sideset_base", "sideset_init"),
                          ("out_base", "out_init")):
            base = k.get(key)
            if base is None:
                continue
            pins = [base.n + j for j in range(_pin_count(opts.get(init)))]
            if key == "set_base":
                self.set_pins = pins
            for pin in pins:   # the port's pio_gpio_init: PIO function, level low (OUT_LOW)
                machine.Pin.connect(pin, "pio")["pio"] = 0

    def put(self, v):
        self.puts.append(v)

    def exec(self, ins):
        self._ex[self._nex & 255] = ins
        self._nex += 1
        if isinstance(ins, int) and ins & 0xFFE0 == 0xE000:   # set(pins, v)
            pins = self.set_pins
            for j in range(len(pins)):
                machine.Pin.pads[pins[j]]["pio"] = ins >> j & 1

    def drive_set_pins(self, v):
        """The program's own set(pins, v) (a guard's trip)."""
        pins = self.set_pins
        for j in range(len(pins)):
            machine.Pin.pads[pins[j]]["pio"] = v >> j & 1

    @property
    def execs(self):
        """The instructions exec()uted, oldest first (the last 256)."""
        n = self._nex
        return [self._ex[i & 255] for i in range(max(0, n - 256), n)]

    def reads(self):
        """The GPIOs this state machine's program reads."""
        out = []
        pin = self.k.get("jmp_pin")
        if pin is not None:
            out.append(pin.n)
        base = self.k.get("in_base")
        if base is not None:
            out.append(base.n)
            name = getattr(self.prog, "__name__", "")
            for above in READS_ABOVE_IN_BASE.get(name, ()):
                out.append(base.n + above)
        return out

    def active(self, v=None):
        if v is not None:
            if v and not self.on:
                for n in self.reads():
                    if not machine.Pin.live(n):
                        raise AssertionError(
                            "SM%d starts reading GP%d, whose pad passes no level (input "
                            "disabled or isolated: an RP2350 pad the port never set up)"
                            % (self.i, n))
            self._set(bool(v))
        return self.on

    def _set(self, on):
        if on != self.on:
            self.history.append("on" if on else "off")
        self.on = on

    def restart(self):
        pass

    def irq(self, handler=None, hard=False):
        self.handler = handler
        self.hard = hard

    def rx_fifo(self):
        return len(self.rx)

    def tx_fifo(self):
        return len(self.tx)

    def get(self):
        return self.rx.pop(0)

    # what the PIO program does, for the tests
    def push_rx(self, word):
        """`push noblock`: a full RX FIFO loses the word."""
        if len(self.rx) < FIFO_DEPTH:
            self.rx.append(word & 0xFFFFFFFF)
        pump()

    def count_bin(self, photons):
        """photon_counter: pull the bin's running total, decrement it once per photon, push
        it back."""
        if not self.on:
            raise AssertionError("SM%d counts while stopped" % self.i)
        pump()
        if not self.tx:
            raise AssertionError("SM%d starved: its TX DMA fell behind" % self.i)
        w = self.tx.pop(0)
        if len(self.rx) >= FIFO_DEPTH:
            raise AssertionError("SM%d stalled: its RX DMA fell behind" % self.i)
        self.rx.append((w - photons) & 0xFFFFFFFF)
        pump()

    def raise_irq(self):
        if self.set_pins and self.i in (5, 7):
            self.drive_set_pins(0)        # a guard trips: pins low first, then the IRQ
        if self.handler is not None:
            if not self.hard:
                raise AssertionError("a soft PIO IRQ handler would run late")
            machine.call_irq(self.handler, self)


def _sm(i):
    return StateMachine.all.get(i)


def _pio_read(pio):
    def read(off):
        if 0x20 <= off < 0x30:
            sm = _sm(4 * pio + (off - 0x20) // 4)
            if sm is None or not sm.rx:
                return 0
            return sm.rx.pop(0)
        if off == 0x00:
            v = 0
            for j in range(4):
                sm = _sm(4 * pio + j)
                if sm is not None and sm.on:
                    v |= 1 << j
            return v
        raise AssertionError("PIO register %#x not modelled" % off)
    return read


def _pio_write(pio):
    def write(off, v):
        if 0x10 <= off < 0x20:
            sm = _sm(4 * pio + (off - 0x10) // 4)
            if sm is None or len(sm.tx) >= FIFO_DEPTH:
                raise AssertionError("PIO TX FIFO write with no room")
            sm.tx.append(v)
        elif off in (0x00, 0x2000, 0x3000):   # CTRL, its atomic set and clear aliases
            for j in range(4):
                sm = _sm(4 * pio + j)
                if sm is None:
                    continue
                bit = v >> j & 1
                if off == 0x00:
                    sm._set(bool(bit))
                elif off == 0x2000 and bit:
                    sm._set(True)
                elif off == 0x3000 and bit:
                    sm._set(False)
        else:
            raise AssertionError("PIO register %#x not writable in the model" % off)
    return write


for _p in range(PIOS):
    machine.BUS.add(PIO_BASE[_p], 0x4000, _pio_read(_p), _pio_write(_p))

# --- DMA ------------------------------------------------------------------------------------
_ALLOWED = []   # (start, end) of buffers DMA may touch


def allow(buf, *more):
    for b in (buf,) + more:
        a = uctypes.addressof(b)
        _ALLOWED.append((a, a + len(bytes(b))))


def forbid_all():
    _ALLOWED.clear()


def _check_mem(addr, size, what):
    for s, e in _ALLOWED:
        if s <= addr and addr + size <= e:
            return
    raise AssertionError("DMA %s at %#x outside every buffer the firmware owns" % (what, addr))


def _is_mem(addr):
    return 0x1000_0000 <= addr < 0x4000_0000 or addr >= 0x1_0000_0000  # SRAM, or unix heap


def _addr_reg(addr, what):
    """An address register read from an IRQ: memory addresses are SRAM on the chip
    (0x2000_0000…, small ints there); peripheral ones must pass the small-int rule."""
    return addr if _is_mem(addr) else machine.small(addr, what)


def _load(addr, size):
    if _is_mem(addr):
        _check_mem(addr, size, "read")
        b = uctypes.bytearray_at(addr, size)
        return int.from_bytes(b, "little")
    return machine.BUS.read(addr)


def _store(addr, size, v):
    if _is_mem(addr):
        _check_mem(addr, size, "write")
        b = uctypes.bytearray_at(addr, size)
        for i in range(size):
            b[i] = v >> (8 * i) & 0xFF
        return
    machine.BUS.write(addr, v & ((1 << (8 * size)) - 1))


class DMA:
    n = 0
    channels = []

    def __init__(self):
        free = [c.channel for c in DMA.channels if c.closed]
        if free:
            self.channel = free[0]
            DMA.channels[free[0]] = self
        elif len(DMA.channels) < DMA_CHANNELS:
            self.channel = len(DMA.channels)
            DMA.channels.append(self)
        else:
            raise OSError("no free DMA channel")
        self._read = self._write = self.live = self.reload = self._ctrl = 0  # registers at reset
        self.mode = MODE_NORMAL   # RP2350 TRANS_COUNT MODE of the last trigger
        self.busy = self.hard = self.closed = False
        self.handler = None
        self.writes_while_busy = []

    # registers
    def _addr(self, v):
        return v if isinstance(v, int) else uctypes.addressof(v)

    @property
    def read(self):
        return _addr_reg(self._read, "DMA READ_ADDR")

    @read.setter
    def read(self, v):
        if self.busy:
            self.writes_while_busy.append("read")
        self._read = self._addr(v)

    @property
    def write(self):
        return _addr_reg(self._write, "DMA WRITE_ADDR")

    @write.setter
    def write(self, v):
        if self.busy:
            self.writes_while_busy.append("write")
        self._write = self._addr(v)

    @property
    def count(self):
        return machine.small(self.live | self.mode << 28, "DMA TRANS_COUNT")

    @count.setter
    def count(self, v):
        self._set_count(v)

    def _set_count(self, v):
        if not 0 <= v < 1 << 32:
            raise AssertionError("TRANS_COUNT %#x is not a 32-bit value" % v)
        mode = v >> 28
        if mode and not chip.rp2350():
            raise AssertionError("TRANS_COUNT %#x sets bits 31:28 (an RP2350's MODE field: "
                                 "the board keeps counts below 2**28 on both chips)" % v)
        if mode not in (MODE_NORMAL, MODE_TRIGGER_SELF, MODE_ENDLESS):
            raise AssertionError("TRANS_COUNT MODE %#x is reserved on an RP2350" % mode)
        self.reload = v

    @property
    def ctrl(self):
        return self._ctrl | (1 << SH_BUSY if self.busy else 0)

    @ctrl.setter
    def ctrl(self, v):
        self._ctrl = v

    def pack_ctrl(self, **k):
        """As the port: the default (enabled, word-sized, both addresses incrementing,
        unpaced, quiet, chained to itself), then each field given; an unknown keyword is a
        TypeError, a value wider than its field a ValueError."""
        v = (1 | 2 << 2 | 1 << 4 | 1 << SH_INC_WRITE | DREQ_FORCE << SH_TREQ | 1 << SH_QUIET
             | (self.channel & 15) << SH_CHAIN)
        for key in k:
            for name, shift, bits in CTRL_FIELDS:
                if name == key:
                    break
            else:
                raise TypeError("unexpected keyword argument '%s'" % key)
            value = int(k[key])
            if value & ~((1 << bits) - 1):
                raise ValueError("bad field value")
            v = (v & ~(((1 << bits) - 1) << shift)) | value << shift
        chain = v >> SH_CHAIN & 15
        if chain >= DMA_CHANNELS:
            raise ValueError("chain_to")
        return v

    def unpack(self):
        c = self._ctrl
        return {"enable": c & 1, "size": 1 << (c >> 2 & 3), "inc_read": c >> 4 & 1,
                "inc_write": c >> SH_INC_WRITE & 1, "ring_size": c >> SH_RING & 15,
                "ring_sel": c >> SH_RING_SEL & 1, "chain_to": c >> SH_CHAIN & 15,
                "treq_sel": c >> SH_TREQ & 0x3F, "irq_quiet": c >> SH_QUIET & 1}

    def config(self, read=None, write=None, count=None, ctrl=None, trigger=False):
        if read is not None:
            self.read = read
        if write is not None:
            self.write = write
        if count is not None:
            self._set_count(count)
        if ctrl is not None:
            self._ctrl = ctrl
        if trigger:
            self.trigger()

    def irq(self, handler=None, hard=False):
        self.handler = handler
        self.hard = hard

    def active(self, v=None):
        if v is not None:
            if v:
                self.trigger()
            else:
                self.busy = False   # abort
        return self.busy

    def close(self):
        self.busy = False
        self.handler = None
        self.closed = True

    # behaviour
    def trigger(self):
        if self.closed:
            raise AssertionError("trigger of a closed channel")
        self.live = self.reload & 0x0FFF_FFFF if chip.rp2350() else self.reload
        self.mode = self.reload >> 28 if chip.rp2350() else MODE_NORMAL
        if self.mode and self._ctrl >> SH_TREQ & 0x3F == DREQ_FORCE:
            raise AssertionError("an unpaced channel in TRANS_COUNT MODE %d never stops"
                                 % self.mode)
        self.busy = bool(self._ctrl & 1) and self.live > 0
        pump()

    def dreq(self):
        t = self._ctrl >> SH_TREQ & 0x3F
        if t == DREQ_FORCE:
            return True
        if t == DREQ_ADC:
            return machine.ADC_MODEL.dreq()
        if t >= 8 * PIOS:
            raise AssertionError("DREQ %d is no PIO block's or the ADC's on this chip" % t)
        pio, kind, sm = t // 8, t % 8 // 4, t % 4
        s = _sm(4 * pio + sm)
        if s is None:
            return False
        return len(s.tx) < FIFO_DEPTH if kind == 0 else bool(s.rx)

    def _advance(self, addr, size, inc, ring_here):
        if not inc:
            return addr
        ring = self._ctrl >> SH_RING & 15
        if ring and ring_here:
            mask = (1 << ring) - 1
            return (addr & ~mask) | ((addr + size) & mask)
        return addr + size

    def step(self):
        """One transfer."""
        size = 1 << (self._ctrl >> 2 & 3)
        sel = self._ctrl >> SH_RING_SEL & 1
        v = _load(self._read, size)
        _store(self._write, size, v)
        self._read = self._advance(self._read, size, self._ctrl >> 4 & 1, sel == 0)
        self._write = self._advance(self._write, size, self._ctrl >> SH_INC_WRITE & 1,
                                    sel == 1)
        if self.mode == MODE_ENDLESS:
            return          # the count never runs down: no completion
        self.live -= 1
        if self.live == 0:
            self.busy = False
            if not self._ctrl >> SH_QUIET & 1 and self.handler is not None:
                if not self.hard:
                    raise AssertionError("a soft DMA IRQ handler would run late")
                machine.call_irq(self.handler, self)
            chain = self._ctrl >> SH_CHAIN & 15
            if chain != self.channel:
                DMA.channels[chain].trigger()
            if self.mode == MODE_TRIGGER_SELF:
                self.trigger()


DMA_BASE = 0x5000_0000


def _dma_read(off):
    ch = DMA.channels[off // 0x40]
    reg = off % 0x40
    if reg == 0x00:
        return ch._read
    if reg == 0x04:
        return ch._write
    if reg == 0x08:
        return ch.live | ch.mode << 28
    if reg == 0x0C:
        return ch.ctrl
    raise AssertionError("DMA register %#x not modelled" % off)


def _dma_write(off, v):
    raise AssertionError("DMA register writes go through rp2.DMA in the model")


machine.BUS.add(DMA_BASE, 0x40 * DMA_CHANNELS, _dma_read, _dma_write)


def load2(a1, a2, out):
    """Model of rp2_regs.load2 for DMA TRANS_COUNT registers (no allocation, as the viper
    original: the streaming path calls it with the heap locked)."""
    end = DMA_BASE + 0x40 * DMA_CHANNELS
    if not (DMA_BASE <= a1 < end and DMA_BASE <= a2 < end
            and a1 & 0x3F == 8 and a2 & 0x3F == 8):
        raise AssertionError("load2 of a register the model does not have")
    out[0] = DMA.channels[(a1 - DMA_BASE) >> 6].live
    out[1] = DMA.channels[(a2 - DMA_BASE) >> 6].live


def load1(addr):
    """Model of rp2_regs.load1: a register read whose address may be a long int (a viper
    argument), whose value must be a small int."""
    devs = machine.BUS.devices
    i = 0
    while i < len(devs):            # indexing, not a for loop: its iterator would allocate
        d = devs[i]
        if d[0] <= addr < d[0] + d[1]:
            return machine.small(d[2](addr - d[0]), "register value")
        i += 1
    raise AssertionError("no register at the address of load1")


def store_halves(addr, hi, lo):
    """Model of rp2_regs.store_halves, for a PWM slice's CC (no allocation, as the viper
    original: a hard IRQ calls it)."""
    off = addr - machine.PWM_BASE
    if not (0 <= off < 0x14 * machine.PWM_SLICES and off % 0x14 == 0x0C):
        raise AssertionError("store_halves of a register that is not a PWM slice's CC")
    if not (0 <= hi < 0x10000 and 0 <= lo < 0x10000):
        raise AssertionError("store_halves: a field beyond 16 bits")
    machine.pwm_cc_store(off // 0x14, (hi << 16) | lo)


def store2(a1, v1, a2, v2):
    """Model of rp2_regs.store2."""
    machine.BUS.write(a1, v1)
    machine.BUS.write(a2, v2)


_PUMPING = [False]


def pump():
    """Run every channel whose DREQ is up until none can move (the DMA is fast next to the
    devices)."""
    if _PUMPING[0]:
        return
    _PUMPING[0] = True
    try:
        moved = True
        while moved:
            moved = False
            for ch in DMA.channels:
                if ch.busy and ch._ctrl & 1 and ch.dreq():   # EN clear: the channel pauses
                    ch.step()
                    moved = True
    finally:
        _PUMPING[0] = False


machine.BUS.on_fifo = pump


def reset():
    """A fresh chip (between test cases in one process)."""
    DMA.channels.clear()
    StateMachine.all.clear()
    _ALLOWED.clear()
    machine.Pin.pads.clear()


def soft_reset(version):
    """What MicroPython `version`'s rp2 port does to the chip at a soft reset, after the
    program ended: rp2_dma_deinit, rp2_pio_deinit, then every DMA object's finaliser
    (close). Returns the hazards it leaves, as texts: a DMA channel still running once its
    buffers are freed (close() aborts only from v1.27), a channel whose completion IRQ is
    still enabled when the handler is removed (the IRQ is disabled first only from v1.28)."""
    hazards = []
    for ch in DMA.channels:
        if ch.closed:
            continue
        if version < (1, 28, 0) and ch.busy and ch._ctrl & 1 and not ch._ctrl >> SH_QUIET & 1:
            hazards.append("DMA %d completes with its IRQ enabled and no handler"
                           % ch.channel)
    for sm in StateMachine.all.values():
        sm._set(False)          # PIO state machines stop; their pins keep their level
    for ch in DMA.channels:
        if ch.closed:
            continue
        if version < (1, 27, 0):
            ch.handler = None
            ch.closed = True    # close() without abort: a busy channel runs on
            if ch.busy and ch._ctrl & 1:
                hazards.append("DMA %d still writes after its buffer was freed" % ch.channel)
        else:
            ch.close()
    return hazards
