"""firmware/board/rp2.py run in the MicroPython unix port against the behavioural model of
the chip in rp2model/ (DMA with chain-to, rings, transfer-count reload and completion IRQs;
PIO FIFOs; the ADC's registers and FIFO; hard IRQs with the heap locked). The PIO programs
themselves are tested in the emulator (test_pio_*.py); this checks the Python glue around
them: counter frames from the DMA rings, late frames and blocks detected and dropped, ADC
blocks with t0 and reference edges, the start of a run, the guard latch, argument checks."""
from rp2run import run_mp

SETUP = r'''
import struct
import machine
import rp2
from board import rp2 as R
from board import rp2_pio as P

PAIRS = []

def store2(a1, v1, a2, v2):
    """The model of rp2_regs.store2: two stores in one native call."""
    PAIRS.append((machine.IRQ_ENABLED[0], rp2.StateMachine.all[4].on,
                  machine.ADC_MODEL.running()))
    machine.BUS.write(a1, v1)
    machine.BUS.write(a2, v2)

from harness import install
install(R, store2=store2, clock=False)
b = R.Rp2Board(usb=False)
assert b.boot_fault == "", b.boot_fault
sms = rp2.StateMachine.all
CLK = b.clock_hz                      # 125 MHz (RP2040) or 150 MHz (RP2350)
assert CLK == machine.freq() == (150_000_000 if "RP2350" in R.sys.implementation._machine
                                 else 125_000_000)
PER = CLK // 50000                    # the nominal 50 kHz PEM period in cycles

def allow_counter():
    pass

def run_periods(k, photons, pairs=None):
    """k PEM periods; photons(bin) per bin and period (SM1 even bins, SM2 odd ones)."""
    pairs = pairs or b._bins // 2
    for _ in range(k):
        for p in range(pairs):
            sms[1].count_bin(photons(2 * p))
            sms[2].count_bin(photons(2 * p + 1))

def counts(f):
    return list(struct.unpack("<%dI" % (len(f.counts) // 4), f.counts))
'''

COUNTING = SETUP + r'''
# --- argument checks
for bad in ((12, 10), (128, 10), (8, 0)):
    try:
        b.counter_configure(*bad)
        raise SystemExit("counter_configure%r accepted" % (bad,))
    except ValueError:
        pass

# --- native frame CRC: the CRC-32 check value, written little-endian after the data
assert b.native_crc32
buf = bytearray(b"123456789" + bytes(4))
b.crc32_into(buf, 9)
assert bytes(buf[9:]) == bytes((0x26, 0x39, 0xF4, 0xCB)), buf

# --- counting: frames collected on time are exact, for every B, also when a frame is not
# a whole number of ring turns (B < 16: the ring is 8 words, a frame K·B/2 transfers)
for bins, k in ((2, 9), (4, 5), (8, 3), (16, 1), (64, 2), (8, 10)):
    b.counter_configure(bins, k)
    b.counter_start()
    allow_counter()
    t_bin, budget, pairs = P.counter_timing(PER, bins, int(PER * 0.005) + 2)
    assert sms[1].puts == [budget] and sms[2].puts == [budget]
    assert sms[0].puts == [pairs - 1, P.gate_delay_word(t_bin)]
    for frame_no in range(7):
        pattern = lambda j: (j + frame_no) % 3 + 1
        run_periods(k, pattern)
        f = b.counter_poll()
        assert f is not None, (bins, k, frame_no)
        assert counts(f) == [k * pattern(j) for j in range(bins)], (bins, k, frame_no, counts(f))
        assert f.periods == k and not f.saturated and not f.overload
        assert b.counter_poll() is None
    assert b.data_lost() == 0 and b.frames_lost == 0
    # nothing was re-armed: no address of a running channel was ever written
    for chans in b._counter_dma:
        for ch in chans:
            assert ch.writes_while_busy == [], ch.writes_while_busy
    b.counter_stop()
print("on time ok")

# --- collected one frame late: buffer 0 completes, then buffer 1 and its TX chain has
# restarted buffer 0's channels. That frame is dropped, never sent, and every frame sent
# afterwards is exact.
def exact(f, k, bins, per):
    return counts(f) == [k * per(j) for j in range(bins)]

one = lambda j: j + 1
for bins, k in ((8, 10), (4, 5), (32, 3)):
    b.counter_configure(bins, k)
    b.counter_start()
    allow_counter()
    lost0 = b.frames_lost
    run_periods(k, one)           # frame in buffer 0
    run_periods(k, one)           # frame in buffer 1: its end chains into buffer 0
    run_periods(1, one)           # ... which is counting again
    assert b.counter_poll() is None, "a frame collected after the DMA came round was sent"
    assert b.frames_lost - lost0 == 2 and b.data_lost() == 2
    allow_counter()
    for _ in range(4):
        run_periods(k, one)
        f = b.counter_poll()
        assert f is not None and exact(f, k, bins, one), (bins, counts(f) if f else None)
    # late by less than a frame: the TX chain into buffer 0 started a few bins before the
    # end of frame 1 (TX runs ahead of the counters by their FIFO), RX not finished
    run_periods(k, one)
    run_periods(k - 1, one)
    for p in range(bins // 2 - 1):
        sms[1].count_bin(1)
        sms[2].count_bin(1)
    assert b._frame_done[1] < 2
    f = b.counter_poll()
    assert f is None, "a buffer whose channels run again was collected"
    assert b.data_lost() >= 1
    allow_counter()
    for _ in range(3):
        run_periods(k, one)
        f = b.counter_poll()
        assert f is not None and exact(f, k, bins, one), (bins, counts(f) if f else None)
    b.counter_stop()
print("late ok")

# --- a completion interrupt lost (interrupts off for a whole frame): the board does not wait
# for it for ever, it drops what it cannot account for and restarts
b.counter_configure(8, 10)
b.counter_start()
run_periods(10, one)
b._frame_done[0] -= 1             # buffer 0's second RX completion never counted
run_periods(10, one)
assert b.counter_poll() is None and b.data_lost() >= 1
run_periods(10, one)
f = b.counter_poll()
assert f is not None and exact(f, 10, 8, one)
b.counter_stop()

# --- the frame is read while the DMA comes round (a slow CPU): dropped too
b.counter_configure(8, 10)
b.counter_start()
allow_counter()
collect = R.K.ring_collect
def slow_collect(*a):
    r = collect(*a)
    if a[3] == 1:          # the second counter's ring: meanwhile frame 1 ends
        run_periods(10, one)
    return r
run_periods(10, one)
R.K.ring_collect = slow_collect
assert b.counter_poll() is None and b.data_lost() == 2
R.K.ring_collect = collect
allow_counter()
run_periods(10, one)
f = b.counter_poll()
assert f is not None and exact(f, 10, 8, one)

# --- integrity of the bin-to-ring mapping: polls at every phase of the running frame see
# the counters in step; a counter that misses one gate edge is caught and the counter
# restarted, and the frames after that are exact again
pos = [0]

def run_bins(n, photons, skip=-1):
    """n bins in order (even bins SM1, odd bins SM2); the bin numbered `skip` (counted from
    the start of this counter run) is missed by its counter."""
    for _ in range(n):
        j = pos[0] % 8
        if pos[0] != skip:
            sms[1 + j % 2].count_bin(photons(j))
        pos[0] += 1

R.K.ring_collect = collect
b.counter_stop()
b.counter_configure(8, 4)
b.counter_start()
pos[0] = 0
for j in range(8):                 # the rest of a frame, then j bins into the next one
    run_bins(32 - pos[0] % 32 + j, one)
    f = b.counter_poll()
    assert f is not None and exact(f, 4, 8, one), (j, counts(f) if f else None)
assert b.frames_misaligned == 0
b.counter_stop()
b.counter_configure(8, 4)
b.counter_start()
pos[0] = 0
lost0 = b.frames_lost
run_bins(32, one)
assert exact(b.counter_poll(), 4, 8, one)
run_bins(35, one, skip=33)         # SM2 misses bin 1 of frame 2, then 3 bins of frame 3
caught = False
for _ in range(6):
    f = b.counter_poll()           # polled 3 bins (odd) into a frame: the slip shows
    if f is None and b.frames_misaligned:
        caught = True
        break
    run_bins(32, one)
assert caught, "a counter out of step was not detected"
assert b.data_lost() >= 1 and b.frames_lost > lost0
pos[0] = 0                         # the counter restarted from clean rings
run_bins(32, one)
f = b.counter_poll()
assert f is not None and exact(f, 4, 8, one), counts(f) if f else None
b.counter_stop()
b.counter_configure(8, 10)
b.counter_start()

# --- saturation flag and bin_span
t_bin, budget, pairs = P.counter_timing(PER, 8, int(PER * 0.005) + 2)
run_periods(10, lambda j: t_bin // 6 if j == 0 else 0)
f = b.counter_poll()
assert f.saturated
assert f.bin_span == P.bin_span(8 * t_bin, PER) and 0 < f.bin_span < 65536, f.bin_span
# locked at a measured period 10.25 cycles longer: the span follows the 16-period sum
run_periods(10, one)
P16 = 16 * PER + 164
b._period_ps = round(P16 / 16 / CLK * 1e12)
b._period_stats[0] = P16
f = b.counter_poll()
assert f.bin_span == P.bin_span(16 * 8 * t_bin, P16) != P.bin_span(8 * t_bin, PER)
assert f.bin_span == round(65536 * 8 * t_bin / (P16 / 16)), f.bin_span
b.counter_stop()
assert not any(ch.busy for ch in rp2.DMA.channels[1:]), "counter DMA left running"

# --- guard: the PIO's IRQ (a hard IRQ, heap locked) latches the trip
b.guard_arm(2e6, 4000)
b.hv_set(800.0)
b.shutter_set(True)
assert sms[5].execs[-1] == 0xE003
sms[5].raise_irq()
assert b.guard_tripped() and b._hv.d == 0 and sms[5].execs[-1] == 0xE000
assert "2e+06" in b.guard_reason()
for call in (lambda: b.hv_set(100.0), lambda: b.shutter_set(True)):
    try:
        call()
        raise SystemExit("accepted while tripped")
    except ValueError:
        pass
b.guard_reset()
assert not b.guard_tripped()
b.hv_set(100.0)

# --- stepper
b.step(5); b.step(-2)
assert b.position() == 3 and b.moving()
assert sms[6].puts == [0x80000004, 1]
sms[6].rx = [0, 0]
assert not b.moving()
print("OK")
'''


def test_rp2_counting_in_micropython(micropython, tmp_path, chip):
    out = run_mp(micropython, COUNTING, tmp_path, chip=chip)
    assert "on time ok" in out and "late ok" in out


ANALOG = SETUP + r'''
adc = machine.ADC_MODEL
adc.source[0] = lambda i: (i * 61) % 4096
adc.source[1] = lambda i: 1234
block_ticks = 64 * CLK // 100000

TICKS_PER_SAMPLE = CLK // 100000
next_edge = [0]  # ticks after t0 of the next reference edge not yet pushed


def edges(n0=700):
    """Reference edges every 1000 ticks from the period timer's start (fixed offset)."""
    sm = sms[4]
    sm.push_rx(12345)                        # start-up word
    sm.push_rx((300 - 4) // 2)               # first edge: 300 + PERIOD_START_EDGE ticks
    for _ in range(n0):
        sm.push_rx((1000 - 4) // 2)
    next_edge[0] = 300 + P.PERIOD_START_EDGE + 1000 * (n0 + 1)


def convert(n):
    """n more ADC samples, and the reference edges that came while they were taken."""
    adc.convert(n)
    while next_edge[0] < adc.n * TICKS_PER_SAMPLE:
        sms[4].push_rx((1000 - 4) // 2)
        next_edge[0] += 1000

def t0(blk):
    return struct.unpack("<Q", blk.t0)[0]

def first_edge(blk):
    return struct.unpack("<I", blk.edges[:4])[0]

def samples(blk):
    s = bytes(blk.samples)
    out = []
    for i in range(0, len(s), 3):
        out.append(s[i] | (s[i + 1] & 0x0F) << 8)
        out.append(s[i + 1] >> 4 | s[i + 2] << 4)
    return out

# leftovers of an earlier run in the ADC FIFO (with OVER set) must not become sample 0
adc.fcs = 1 | (1 << 3)
adc.fifo = [4000, 4001, 4002]
adc.over = True
# a block must carry its reference edges (1024 at most): 2048 samples at 100 kS/s span
# 1024 periods of a 50 kHz PEM, so CONFIGURE refuses it (they went out with no edges)
try:
    b.adc_configure(100000.0, 2048)
    raise SystemExit("a block of more edges than it carries was accepted")
except ValueError as e:
    assert "at most 1946 samples" in str(e), str(e)
b.adc_configure(100000.0, 1946)
# the ADC ring: the block being read, the next one and a 256-sample margin at least; then
# the largest that spans no more edges (of a PEM 5 % fast) than the edge ring holds, less
# 128: a late CPU gets the most time, and loses whole blocks rather than edge times
assert R._adc_ring_len(64) == 512 and R._adc_ring_len(4096) == 8192
assert R._adc_ring_len(2048, 249675.0, 50000.0, 8192) == 8192   # the default rate
assert R._adc_ring_len(2048, 48e6 / 366.75, 50000.0, 8192) == 4096
assert R._adc_ring_len(64, 100000.0, 125000.0, 8192) == 1024
assert R._adc_ring_len(64, 1000.0, 50000.0, 8192) == 512        # as small as it can be
# the reference of this test: an edge every 1000 ticks (125 kHz on an RP2040, 150 on an RP2350)
b.pem_configure("external", CLK / 1000)
b.adc_configure(100000.0, 64)
# START allocates no ring: on an RP2040 the 48 KB of aligned rings failed with MemoryError
# once the heap was fragmented, so they are made at boot (a few small objects remain)
import gc
gc.collect()
before = gc.mem_alloc()
b.adc_start()
assert gc.mem_alloc() - before < 8192, gc.mem_alloc() - before  # 62 KB before
ring = b._adc_ring_len
assert ring == 1024, ring
assert adc.fifo == [] and not adc.over, (adc.fifo, adc.over)
# the period timer and the ADC start in one store pair with interrupts off, both stopped
# before it
assert PAIRS == [(False, False, False)], PAIRS
assert sms[4].on and adc.running() and sms[4].history[-1:] == ["on"]
assert adc.div == b._adc_div and adc.ainsel == 0
adc.n = 0                                  # the stream's samples count from here
edges(0)
first = 300 + P.PERIOD_START_EDGE
assert b.adc_poll() is None
convert(64)
blk = b.adc_poll()
assert blk.n_samples == 64 and t0(blk) == 0
assert samples(blk) == [(i * 61) % 4096 for i in range(64)], samples(blk)[:8]
assert first_edge(blk) == first
assert blk.n_edges == (block_ticks - first - 1) // 1000 + 1
assert all(d == 1000 for d in struct.unpack("<%dH" % (blk.n_edges - 1), blk.edges[4:]))
n1 = blk.n_edges
convert(64)
blk = b.adc_poll()
assert t0(blk) == block_ticks and samples(blk) == [(i * 61) % 4096 for i in range(64, 128)]
assert first_edge(blk) == first + 1000 * n1 - block_ticks   # the edges continue
assert b.data_lost() == 0

def first_edge_after(t):
    return first + 1000 * -(-(t - first) // 1000) - t

# blocks collected late but within the ring (all but its 256-sample margin): all arrive, in
# order, exact
on_time = (ring - 256) // 64
convert(on_time * 64)
for k in range(2, 2 + on_time):
    blk = b.adc_poll()
    assert blk is not None and t0(blk) == k * block_ticks
    assert samples(blk) == [(i * 61) % 4096 for i in range(64 * k, 64 * k + 64)]
assert b.adc_poll() is None and b.data_lost() == 0
k = 2 + on_time
# one block later, and the DMA came round: every complete block is dropped, the next one
# shows the gap in t0 and its edges start after it
late = on_time + 1
convert(late * 64)
assert b.adc_poll() is None and b.data_lost() == late
k += late
convert(64)
blk = b.adc_poll()
assert t0(blk) == k * block_ticks, (t0(blk), k)
assert samples(blk) == [(i * 61) % 4096 for i in range(64 * k, 64 * k + 64)]
assert first_edge(blk) == first_edge_after(k * block_ticks)
k += 1
# the DMA comes round while the block is being packed: dropped as well
pack = R.K.pack12_ring
def late_pack(*a):
    r = pack(*a)
    convert(on_time * 64)
    return r
convert(64)
R.K.pack12_ring = late_pack
assert b.adc_poll() is None and b.data_lost() == late
R.K.pack12_ring = pack
k += late
convert(64)
blk = b.adc_poll()
assert t0(blk) == k * block_ticks
assert samples(blk) == [(i * 61) % 4096 for i in range(64 * k, 64 * k + 64)]
k += 1

# --- the level guard (2 kHz hard timer, heap locked) sees every sample, also the last
# ones of a block, wherever the DMA is in its ring
# at its loosest level (4094) full scale still trips: the ramp above reached 4095 (at 4095
# the check `sample > level` could never trip, and SET_LIMITS accepted it)
try:
    b.guard_arm(2e6, 4095)
    raise SystemExit("max_adc_level 4095 accepted")
except ValueError:
    pass
b.guard_arm(2e6, 4094)
machine.Timer.fire_all()        # the guard has seen everything so far
assert b.guard_tripped() and "4095" in b.guard_reason(), b.guard_reason()
b.guard_reset()
machine.Timer.fire_all()
assert not b.guard_tripped()
b.guard_arm(2e6, 3000)
adc.source[0] = lambda i: 4000 if i == k * 64 + 63 else 100
convert(40)
machine.Timer.fire_all()
assert not b.guard_tripped()
convert(24)                     # up to the block's last sample (4000)
convert(1)                      # and one of the next block
machine.Timer.fire_all()
assert b.guard_tripped() and "4000" in b.guard_reason(), b.guard_reason()
assert b._hv.d == 0

# the edge ring overwritten (the CPU fell over 2048 edges behind): the board faults rather
# than send blocks with wrong phases
b.guard_reset()
adc.source[0] = lambda i: 100
blk = b.adc_poll()
for _ in range(2100):
    sms[4].push_rx(498)
adc.convert(64)
try:
    b.adc_poll()
    raise SystemExit("edge ring overrun not reported")
except RuntimeError as e:
    assert "START again" in str(e), e
b.adc_stop()
assert not adc.running() and not any(ch.busy for ch in b._adc_dma)
assert machine.Timer.all == [b._guard_timer], "the guard timer runs in every mode"

# --- HV read-back comes from ADC1 outside analog mode
b.hv_read()

# --- ADC time base in small ints: block lengths with a fractional number of ticks add up
# exactly, and t0 is written as a u64 from 30-bit parts
b.adc_configure(33300.0, 64)
b.adc_start()
a = 64 * (256 + b._adc_div) * CLK
total = 0
for k in range(1, 3001):
    total += b._next_block_ticks()
    assert total == k * a // (256 * 48000000), k
b.adc_stop()
# t0 carries into its high part at 2**30 (compared before adding: no long int)
b._t0_hi, b._t0_lo = 5, (1 << 30) - 100
b._advance_t0(250)
assert (b._t0_hi, b._t0_lo) == (6, 150), (b._t0_hi, b._t0_lo)
b._advance_t0(100)
assert (b._t0_hi, b._t0_lo) == (6, 250)
b._t0_lo = (1 << 30) - 100
b._advance_t0(100)
assert (b._t0_hi, b._t0_lo) == (7, 0)
buf = bytearray(8)
for hi, lo in ((0, 0), (0, (1 << 30) - 1), (1, 0), (12345, 678901), ((1 << 34) - 1, (1 << 30) - 1)):
    R._put_u64(memoryview(buf), hi, lo)
    assert struct.unpack("<Q", buf)[0] == hi * (1 << 30) + lo, (hi, lo)
# the one buffer of both analog rings: each aligned to its size, apart, inside the buffer
import uctypes
pad = []
for k in range(24):
    pad.append(bytearray(16 * (k % 5 + 1)))   # move the heap's next free address about
    buf, first, efirst = R._two_rings(8192, 2048)
    base = uctypes.addressof(buf)
    a, e = base + 2 * first, base + 4 * efirst
    assert a % 16384 == 0 and e % 8192 == 0, (a, e)
    assert base <= a and a + 16384 <= base + 32768 and base <= e and e + 8192 <= base + 32768
    assert e + 8192 <= a or a + 16384 <= e
print("OK")
'''


def test_rp2_analog_in_micropython(micropython, tmp_path, chip):
    run_mp(micropython, ANALOG, tmp_path, chip=chip)
