"""firmware/board/rp2.py run in the MicroPython unix port against stand-ins for `machine` and
`rp2` that record what the board asks of the hardware. The PIO programs themselves are tested
in the emulator (test_pio_*.py); this checks the Python glue around them: frame collection from
the DMA rings and re-arming, overrun detection, ADC blocks with t0 and reference edges, the
guard latch, and argument checking."""
import subprocess

from conftest import FIRMWARE

FAKES = r'''
import sys

class _Mem:
    def __init__(self): self.d = {}
    def __getitem__(self, a): return self.d.get(a, 0)
    def __setitem__(self, a, v): self.d[a] = v

class Pin:
    IN = 0; OUT = 1; PULL_UP = 1
    levels = {}
    def __init__(self, n, *a, **k): self.n = n
    def value(self, *v): return Pin.levels.get(self.n, 0)

class PWM:
    def __init__(self, pin): self.pin = pin; self.f = 0; self.d = 0
    def freq(self, f=None):
        if f is not None: self.f = f
        return self.f
    def duty_u16(self, d=None):
        if d is not None: self.d = d
        return self.d

class ADC:
    def __init__(self, ch): self.ch = ch
    def read_u16(self): return 0

class WDT:
    def __init__(self, timeout): self.timeout = timeout
    def feed(self): pass

class Timer:
    def __init__(self, i, freq=0, callback=None, hard=False): self.callback = callback
    def deinit(self): self.callback = None

mem32 = _Mem()
WDT_RESET = 3; PWRON_RESET = 1
def freq(): return 125000000
def unique_id(): return b"\xe6\x61\x41\x04\x03\x5a\x2b\x22"
def reset_cause(): return PWRON_RESET
def disable_irq(): return 0
def enable_irq(s): pass
def idle(): pass
'''

FAKE_RP2 = r'''
class PIO:
    IN_LOW = 0; IN_HIGH = 1; OUT_LOW = 2; OUT_HIGH = 3; SHIFT_LEFT = 0; SHIFT_RIGHT = 1

def asm_pio(**k):
    return lambda f: f

class StateMachine:
    all = {}
    def __init__(self, i, prog=None, **k):
        self.i = i; self.prog = prog; self.k = k; self.execs = []; self.puts = []
        self.on = False; self.handler = None; self.rx = []
        StateMachine.all[i] = self
    def put(self, v): self.puts.append(v)
    def exec(self, ins): self.execs.append(ins)
    def active(self, v=None):
        if v is not None: self.on = bool(v)
        return self.on
    def restart(self): pass
    def irq(self, handler=None, hard=False): self.handler = handler
    def rx_fifo(self): return len(self.rx)
    def get(self): return self.rx.pop(0)

class DMA:
    n = 0
    def __init__(self):
        self.channel = DMA.n; DMA.n += 1
        self.read = self.write = self.count = 0; self.ctrl = None; self.on = False
        self.handler = None
    def pack_ctrl(self, **k): return k
    def config(self, read=None, write=None, count=None, ctrl=None, trigger=False):
        self.read = read; self.write = write; self.count = count; self.ctrl = ctrl
        self.on = trigger
    def irq(self, handler=None, hard=False): self.handler = handler
    def active(self, v=None):
        if v is not None: self.on = bool(v)
        return self.on
    def close(self): pass
'''

SCRIPT = r'''
import sys
sys.path.insert(0, %(fakes)r)
sys.path.insert(0, %(fw)r)
import struct
from board import rp2 as R
from board import rp2_pio as P

b = R.Rp2Board(usb=False)
assert b.serial() == "e6614104035a2b22"

# --- native frame CRC: the CRC-32 check value, written little-endian after the data
assert b.native_crc32
buf = bytearray(b"123456789" + bytes(4))
b.crc32_into(buf, 9)
assert bytes(buf[9:]) == bytes((0x26, 0x39, 0xF4, 0xCB)), buf

# --- argument checks
for bad in ((12, 10), (128, 10), (8, 0)):
    try:
        b.counter_configure(*bad)
        raise SystemExit("counter_configure%%r accepted" %% (bad,))
    except ValueError:
        pass

# --- counting: B = 8, K = 10, external reference at the nominal 50 kHz
b.counter_configure(8, 10)
b.counter_start()
t_bin, budget, pairs = P.counter_timing(2500, 8, int(2500 * 0.005) + 2)
sms = R.rp2.StateMachine.all
assert sms[1].puts == [budget] and sms[2].puts == [budget]
assert sms[0].puts == [pairs - 1, P.gate_delay_word(t_bin)]
expected = [0] * 8
for c in (0, 1):
    ring = b._rings[c][0]
    for j in range(ring.words):
        n = 7 * j + c + 1
        ring.buf[ring.first + j] = 0xFFFFFFFF - n
        expected[2 * (j %% 4) + c] += n
assert b.counter_poll() is None          # no DMA completion yet
b._rx_irq_0(None)
assert b.counter_poll() is None          # one counter of two done
b._rx_irq_0(None)
f = b.counter_poll()
assert f is not None and f.periods == 10
counts = list(struct.unpack("<8I", f.counts))
assert counts == expected, (counts, expected)
assert not f.saturated and not f.overload
# PEM not locked (no period words yet): the span of the nominal 2500-cycle period
assert f.bin_span == P.bin_span(8 * t_bin, 2500) and 0 < f.bin_span < 65536, f.bin_span
ring = b._rings[0][0]
assert all(ring.buf[ring.first + j] == 0xFFFFFFFF for j in range(ring.words))
tx0, tx1, rx0, rx1 = b._counter_dma[0]
assert tx0.read == ring.addr and rx0.write == ring.addr and rx0.count == pairs * 10
assert rx0.ctrl["chain_to"] == rx1.channel and rx1.ctrl["chain_to"] == rx0.channel
assert rx0.ctrl["treq_sel"] == 4 + 1 and tx0.ctrl["treq_sel"] == 1
# next frame comes from buffer 1; a buffer completed twice before collection holds two frames
# merged: both are dropped, and the counter restarts from buffer 0 with clean rings
assert b.data_lost() == 0
for _ in range(4):
    b._rx_irq_1(None)
b._rx_irq_0(None)                        # and buffer 0 has started a third frame
old_gate = sms[0]
assert b.counter_poll() is None and b.frames_lost == 2
assert b.data_lost() == 2 and b.data_lost() == 0
assert sms[0] is not old_gate and sms[0].on and b._counting
assert b._frame_next == 0 and list(b._frame_done) == [0, 0]
for c in (0, 1):
    for ring in b._rings[c]:
        assert all(ring.buf[ring.first + j] == 0xFFFFFFFF for j in range(ring.words))
# a buffer completed an odd number of times (a pass still running) is dropped too
b._rx_irq_0(None); b._rx_irq_0(None); b._rx_irq_0(None)
b._rx_irq_1(None); b._rx_irq_1(None)
assert b.counter_poll() is None and b.data_lost() == 2 and b.frames_lost == 4
# a bin near the sampler's limit is flagged
for c in (0, 1):
    ring = b._rings[c][0]
    ring.buf[ring.first] = 0xFFFFFFFF - 10 * (t_bin // 6)
b._rx_irq_0(None); b._rx_irq_0(None)
# locked at a measured 2510.25-cycle period: the span follows the 16-period sum
b._period_ps = 20082000
b._period_stats[0] = 40164
f = b.counter_poll()
assert f.saturated
assert f.bin_span == P.bin_span(16 * 8 * t_bin, 40164) != P.bin_span(8 * t_bin, 2500)
assert f.bin_span == round(65536 * 8 * t_bin / 2510.25), f.bin_span
b.counter_stop()

# --- guard: trip latches, HV and shutter refuse until reset
b.guard_arm(2e6, 4000)
b.hv_set(800.0)
b.shutter_set(True)
assert sms[5].execs[-1] == 0xE003
b._guard_irq(None)
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

# --- ADC: 64-sample blocks at 100 kS/s, reference every 1000 ticks
def adc_block_done():
    """The DMA channel of the next block finishes it (its write address has run past the
    buffer) and interrupts: the board must point it back at its buffer."""
    k = b._adc_completed[0]
    ch = b._adc_dma[k & 1]
    ch.write = 0x20040000
    b._adc_irq(ch)
    assert ch.write is b._adc_raw[k & 1]

b.adc_configure(100000.0, 64)
b.adc_start()
raw = b._adc_raw[0]
for i in range(64):
    raw[i] = (i * 61) %% 4096
ring, first = b._edge_ring, b._edge_first
ring[first] = 12345                         # start-up word
ring[first + 1] = (300 - 4) // 2            # first edge: 300 + PERIOD_START_EDGE ticks
for j in range(2, 700):
    ring[first + j] = (1000 - 4) // 2
b._period_dma.count = b._period_count0 - 700
assert b.adc_poll() is None
adc_block_done()
blk = b.adc_poll()
assert blk.n_samples == 64 and struct.unpack("<Q", blk.t0)[0] == 0
s = bytes(blk.samples)
a0 = s[0] | (s[1] & 0x0F) << 8
b0 = s[1] >> 4 | s[2] << 4
assert (a0, b0) == (0, 61)
block_ticks = 64 * 125000000 // 100000
first_edge = struct.unpack("<I", blk.edges[:4])[0]
assert first_edge == 300 + P.PERIOD_START_EDGE, first_edge
assert blk.n_edges == (block_ticks - first_edge - 1) // 1000 + 1
assert all(d == 1000 for d in struct.unpack("<%%dH" %% (blk.n_edges - 1), blk.edges[4:]))
n1 = blk.n_edges
adc_block_done()
blk = b.adc_poll()
assert struct.unpack("<Q", blk.t0)[0] == block_ticks
e0 = struct.unpack("<I", blk.edges[:4])[0]
assert e0 == first_edge + 1000 * n1 - block_ticks     # the edges continue across blocks
assert b.data_lost() == 0

def first_edge_after(t0):
    return first_edge + 1000 * -(-(t0 - first_edge) // 1000) - t0

# collected too late: blocks 2, 3 and 4 complete before a poll, so the DMA is writing block
# 2's buffer again. All three are dropped; block 5 comes next, its t0 shows the gap and its
# edges start after it.
lost_before = b.frames_lost
for _ in range(3):
    adc_block_done()
assert b.adc_poll() is None and b.data_lost() == 3 and b.data_lost() == 0
assert b.adc_poll() is None                 # block 5 is still being written
adc_block_done()
blk = b.adc_poll()
assert struct.unpack("<Q", blk.t0)[0] == 5 * block_ticks
assert struct.unpack("<I", blk.edges[:4])[0] == first_edge_after(5 * block_ticks)
assert blk.n_edges == (block_ticks - first_edge_after(5 * block_ticks) - 1) // 1000 + 1
# the next block completes while this one is being packed: dropped as well
pack12 = R.K.pack12
def late_pack12(*a):
    adc_block_done()
    return pack12(*a)
R.K.pack12 = late_pack12
adc_block_done()
assert b.adc_poll() is None and b.data_lost() == 2 and b.frames_lost == lost_before + 5
R.K.pack12 = pack12
adc_block_done()
blk = b.adc_poll()
assert struct.unpack("<Q", blk.t0)[0] == 8 * block_ticks
assert struct.unpack("<I", blk.edges[:4])[0] == first_edge_after(8 * block_ticks)
# the CPU fell so far behind that the edge ring was overwritten: edge times are lost, so the
# board faults rather than send blocks with wrong phases
b._period_dma.count -= 2100
adc_block_done()
try:
    b.adc_poll()
    raise SystemExit("edge ring overrun not reported")
except RuntimeError as e:
    assert "START again" in str(e), e
b.adc_stop()

# --- ADC time base in small ints: block lengths with a fractional number of ticks add up
# exactly, and t0 is written as a u64 from 30-bit parts
b.adc_configure(33300.0, 64)
b.adc_start()
a = 64 * (256 + b._adc_div) * 125000000
total = 0
for k in range(1, 3001):
    total += b._next_block_ticks()
    assert total == k * a // (256 * 48000000), k
b.adc_stop()
buf = bytearray(8)
for hi, lo in ((0, 0), (0, (1 << 30) - 1), (1, 0), (12345, 678901), ((1 << 34) - 1, (1 << 30) - 1)):
    R._put_u64(memoryview(buf), hi, lo)
    assert struct.unpack("<Q", buf)[0] == hi * (1 << 30) + lo, (hi, lo)
print("OK")
'''


def test_rp2_board_glue_in_micropython(micropython, tmp_path):
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    (fakes / "machine.py").write_text(FAKES)
    (fakes / "rp2.py").write_text(FAKE_RP2)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT % {"fakes": str(fakes), "fw": str(FIRMWARE)})
    p = subprocess.run([micropython, str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip().endswith("OK"), p.stdout + p.stderr
