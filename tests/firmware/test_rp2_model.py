"""The chip model itself (rp2model/), as an RP2040 and as an RP2350: the facts of each chip
that board/rp2.py depends on, so that a test passing on the model says something about the
chip. Register bases and DREQ numbers as the chips' datasheets (and the pico-sdk's
hardware_regs headers) give them; DMA CTRL fields where each chip has them; TRANS_COUNT's
MODE field on an RP2350 only; the state machines, DMA channels and PWM slices each chip
has; the clock and the name the rp2 port reports; the PWM's double-buffered CC and TOP."""
from rp2run import run_mp

SCRIPT = r'''
import sys
import machine
import rp2
import chip

C = chip.rp2350()
assert ("RP2350" in sys.implementation._machine) == C, sys.implementation._machine
assert machine.freq() == (150_000_000 if C else 125_000_000)
facts = {"adc": machine.ADC_BASE, "pwm": machine.PWM_BASE, "wd": machine.WATCHDOG_BASE,
         "dreq_adc": rp2.DREQ_ADC, "slices": machine.PWM_SLICES, "pio": rp2.PIO_BASE}
if C:
    assert facts == {"adc": 0x400A_0000, "pwm": 0x400A_8000, "wd": 0x400D_8000,
                     "dreq_adc": 48, "slices": 12,
                     "pio": (0x5020_0000, 0x5030_0000, 0x5040_0000)}, facts
else:
    assert facts == {"adc": 0x4004_C000, "pwm": 0x4005_0000, "wd": 0x4005_8000,
                     "dreq_adc": 36, "slices": 8, "pio": (0x5020_0000, 0x5030_0000)}, facts
# GPIO n < 32: slice (n >> 1) & 7 on both; an RP2350's GPIO 32 … 47 on slices 8 … 11
assert [machine.pwm_slice(n) for n in (0, 17, 21, 31)] == [0, 0, 2, 7]
if C:
    assert [machine.pwm_slice(n) for n in (32, 40, 47)] == [8, 8, 11]
# pads: an RP2350's come up isolated, input off, until the port sets them up
assert machine.Pin.live(9) == (not C)
machine.Pin(9, machine.Pin.IN)
assert machine.Pin.live(9)

# state machines: 4 per PIO block
rp2.StateMachine(4 * len(rp2.PIO_BASE) - 1)
try:
    rp2.StateMachine(4 * len(rp2.PIO_BASE))
    raise SystemExit("a state machine beyond the last block")
except ValueError:
    pass

# DMA: 12 or 16 channels; CTRL fields where the chip has them (datasheet CH0_CTRL_TRIG)
chans = [rp2.DMA() for _ in range(16 if C else 12)]
try:
    rp2.DMA()
    raise SystemExit("a DMA channel too many")
except OSError:
    pass
d = chans[3]
shifts = ({"ring_size": 8, "ring_sel": 12, "chain_to": 13, "treq_sel": 17, "irq_quiet": 23,
           "inc_write": 6} if C else
          {"ring_size": 6, "ring_sel": 10, "chain_to": 11, "treq_sel": 15, "irq_quiet": 21,
           "inc_write": 5})
for name, shift in shifts.items():
    on = d.pack_ctrl(**{name: 1})
    off = d.pack_ctrl(**{name: 0})
    assert on & ~off == 1 << shift, (name, hex(on), hex(off))
assert d.pack_ctrl() == (1 | 2 << 2 | 1 << 4 | 1 << shifts["inc_write"]
                         | 0x3F << shifts["treq_sel"] | 1 << shifts["irq_quiet"]
                         | 3 << shifts["chain_to"])
try:
    d.pack_ctrl(inc_read_rev=1)
    assert C, "an RP2040 has no INCR_READ_REV"
except TypeError:
    assert not C
d.ctrl = d.pack_ctrl(enable=0)
assert d.ctrl >> (26 if C else 24) & 1 == 0     # BUSY

# TRANS_COUNT: bits 31:28 are an RP2350's MODE (0 normal, 1 trigger-self, 15 endless),
# which an RP2040 board never writes; paced by PIO0 SM0's RX FIFO (DREQ 4 on both chips)
dst = bytearray(64)
rp2.allow(dst)
sm0 = rp2.StateMachine(0)
e = chans[4]
from array import array
done = array("i", [0])

def completed(ch):               # a hard IRQ: the heap is locked
    done[0] += 1

e.irq(completed, hard=True)
ctrl = e.pack_ctrl(inc_read=False, treq_sel=4, irq_quiet=False)
for mode in (1, 15, 2):
    try:
        e.config(read=rp2.PIO_BASE[0] + 0x20, write=dst, count=mode << 28 | 2, ctrl=ctrl)
    except AssertionError as err:
        assert not C or mode == 2, (mode, err)   # 2 is reserved
        continue
    assert C and mode != 2
    done[0] = 0
    sm0.rx[:] = [5, 6, 7, 8]
    e.trigger()                                  # four words move, then the FIFO is empty
    assert not sm0.rx
    if mode == 15:                               # endless: the count never runs down
        assert e.busy and e.count == 15 << 28 | 2 and done[0] == 0
    else:                                        # two, re-triggered, two more
        assert e.busy and e.count == 1 << 28 | 2 and done[0] == 2, (e.count, done[0])
    e.active(0)

# PWM: CC and TOP are double-buffered (RP2040 datasheet 4.6.2.3; the RP2350's PWM is the
# same): a stopped slice takes a write at once, a running one at its counter's next wrap
B = machine.PWM_BASE + 0x14 * 3
mem = machine.mem32
mem[B + 0x04] = 2 << 4                           # divider 2
mem[B + 0x10] = 99                               # 100 counts: 200 cycles a period
mem[B + 0x0C] = 7 << 16 | 3
assert machine.pwm_cc_live(3) == 7 << 16 | 3     # stopped: at once
mem[B + 0x00] = 1
assert machine.pwm_run(3, 150) == []             # 75 counts in
mem[B + 0x0C] = 9 << 16
mem[B + 0x10] = 49
assert mem[B + 0x0C] == 9 << 16 and machine.pwm_cc_live(3) == 7 << 16 | 3
assert machine.pwm_run(3, 49) == [] and machine.pwm_cc_live(3) == 7 << 16 | 3
assert machine.pwm_run(3, 1 + 100 + 30) == [(1, 9 << 16), (101, 9 << 16)]  # then TOP 49
assert mem[B + 0x08] == 15                       # 30 cycles into the period: 15 counts
mem[B + 0x00] = 0
print("OK")
'''


def test_chip_model_facts(micropython, tmp_path, chip):
    run_mp(micropython, SCRIPT, tmp_path, chip=chip)
