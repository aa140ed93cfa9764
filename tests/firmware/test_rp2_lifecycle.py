"""The rp2 board's life cycle on the chip model (rp2model/): the pads it sets up, how it
stops (main.py's `finally` → Rp2Board.shutdown) during counting and analog runs and what the
port's soft reset then finds, the maintenance mode and its MAINTENANCE command, the HV
models, the guard's heartbeat, the reset cause, and the smaller items of issue 20. The
emulated tier (hil_tests, `soft_reset`, `flash`) runs the same on the real port."""
from fwpaths import MP_TESTS
from rp2run import run_mp

SETUP = r'''
import sys
sys.path.insert(0, %(mp)r)
import json
import struct
import machine
import rp2
from usb.device import core
from board import rp2 as R
from board import rp2_boot
from board import rp2_pins as G
from helpers import command_frame, decode
from harness import Clock, install
Clock.step = 100
install(R)
import main as M
from cpl.instrument import Instrument
from cpl import protocol as P

Pin = machine.Pin
sms = rp2.StateMachine.all
from chiphost import command, got, ok, pump

def new_board(**kw):
    rp2.reset()
    machine.ADC_MODEL.__init__()
    del machine.Timer.all[:]
    return R.Rp2Board(**kw)


def events():
    return [(struct.unpack_from("<H", f[3], 0)[0], str(f[3][4:], "utf-8"))
            for f in got if f[0] == P.EVENT]

def busy_channels():
    return [ch.channel for ch in rp2.DMA.channels if ch.busy and not ch.closed]

def outputs_off():
    for n in (G.HV_EN, G.SHUTTER, G.HV_KEEPALIVE):
        assert Pin.level(n) == 0, (n, Pin.pads[n])
'''

PADS = SETUP + r'''
b = new_board(usb=False)
# ADC inputs analog (digital input and pull-down off: they loaded the dividers), inputs with
# pulls, HV enable and shutter driven low by the guard state machine
for n in (G.ADC0, G.ADC1, G.ADC2):
    assert Pin.pads[n]["func"] == "analog" and not Pin.pads[n]["ie"], (n, Pin.pads[n])
    assert Pin.pads[n]["pull"] is None, (n, Pin.pads[n])
for n in (G.PHOTON, G.PEM_REF):
    assert Pin.pads[n]["func"] == "sio_in" and Pin.pads[n]["pull"] == "down", Pin.pads[n]
assert Pin.pads[G.HOME]["pull"] == "up"
assert Pin.pads[G.HV_EN]["func"] == "pio" and Pin.level(G.HV_EN) == 0
# the ADC0 pad stays analog through an analog run
b.adc_configure(100000.0, 64)
b.adc_start()
assert Pin.pads[G.ADC0]["func"] == "analog"
b.adc_stop()
# the keep-alive toggles with every watchdog feed (every pass of the main loop)
b.watchdog_start(5000)
levels = []
for _ in range(4):
    b.watchdog_feed()
    levels.append(Pin.level(G.HV_KEEPALIVE))
assert levels == [1, 0, 1, 0], levels
# reset cause: a machine.reset() also reads WDT_RESET on the port; only the SDK's
# watchdog-enable magic in scratch 4 makes it a watchdog timeout
machine.CAUSE[0] = machine.WDT_RESET
machine.WATCHDOG[0x1C] = 0
assert R.Rp2Board._read_reset_cause() == R.base.RESET_OTHER
machine.WATCHDOG[0x1C] = 0x6AB73121
assert R.Rp2Board._read_reset_cause() == R.base.RESET_WATCHDOG
machine.CAUSE[0] = machine.PWRON_RESET
assert R.Rp2Board._read_reset_cause() == R.base.RESET_POWER_ON
# internal-PEM tracking: a step of the drive frequency searches the PWM grid in integers
# (in floats it made about 10 kB of heap objects per step, every 80 ms during runs)
import gc
b._pem_drive.freq(50000)
b._pem_drive_on = True
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
for k in range(10):
    b._pem_drive_freq(50000.0 + k, 1)
used = gc.mem_alloc() - a0
gc.enable()
assert used < 10 * 1000, used      # about 400 B per step here, most of it the model's register log
print("OK")
'''

STOP = SETUP + r'''
def running_board(mode):
    b = new_board(usb=False)
    b.watchdog_start(5000)
    b.hv_set(800.0)
    b.shutter_set(True)
    b.watchdog_feed()
    assert Pin.level(G.HV_EN) == 1 and Pin.level(G.SHUTTER) == 1
    if mode == "counting":
        b.counter_configure(8, 10)
        b.counter_start()
    else:
        b.adc_configure(100000.0, 64)
        b.adc_start()
        assert machine.ADC_MODEL.running()
    assert busy_channels()
    return b

for mode in ("counting", "analog"):
    # without a shutdown (the firmware before this issue): HV and shutter stay high, and
    # the soft reset of v1.26 leaves DMA running into freed memory (and for the analog
    # ring, a completion IRQ with no handler); v1.28's does not
    b = running_board(mode)
    hazards = rp2.soft_reset((1, 26, 1))
    assert Pin.level(G.HV_EN) == 1, "the model lost the pin level"
    assert any("freed" in h for h in hazards), hazards
    b = running_board(mode)
    assert rp2.soft_reset((1, 28, 0)) == []

    # main.py's finally: everything off, every channel stopped before the soft reset, which
    # then finds nothing running even on v1.26
    b = running_board(mode)
    M.stop_safely(b)
    outputs_off()
    assert Pin.pads[G.HV_EN]["func"] == "sio_out"
    assert busy_channels() == [], busy_channels()
    for ch in rp2.DMA.channels:
        assert ch.closed and not ch._ctrl & 1, (ch.channel, ch._ctrl)
    assert not machine.ADC_MODEL.running() and machine.Timer.all == []
    assert not any(sm.on for sm in sms.values())
    assert b._hv.d == 0
    assert rp2.soft_reset((1, 26, 1)) == []
    M.stop_safely(b)                 # twice: harmless

# a Ctrl-C inside the shutdown: it is run again, Ctrl-C is ignored meanwhile
b = running_board("analog")
calls = []
inner = b.shutdown
def flaky():
    calls.append(1)
    if len(calls) == 1:
        raise KeyboardInterrupt
    inner()
b.shutdown = flaky
M.stop_safely(b)
assert len(calls) == 2
outputs_off()
assert busy_channels() == []

# a Ctrl-C while the board is being set up: what was started is stopped
rp2.reset()
real_init = rp2.StateMachine.__init__
def interrupted(self, i, *a, **k):
    if i == 6:
        raise KeyboardInterrupt
    real_init(self, i, *a, **k)
rp2.StateMachine.__init__ = interrupted
try:
    R.Rp2Board(usb=False)
    raise SystemExit("no KeyboardInterrupt")
except KeyboardInterrupt:
    pass
rp2.StateMachine.__init__ = real_init
outputs_off()
assert busy_channels() == []

# a Ctrl-C that lands in the ADC guard's hard IRQ (MicroPython raises it at the next branch of
# whatever bytecode runs) is handed on to the main program, and the guard keeps running
b = running_board("analog")
real_above = R.K.above_u16
KBD = KeyboardInterrupt()       # the port's is preallocated too: the heap is locked here
def interrupted(src, start, stop, ring_len, level):
    R.K.above_u16 = real_above
    raise KBD
R.K.above_u16 = interrupted
machine.Timer.fire_all()       # caught in the handler ...
try:
    b.watchdog_feed()           # ... and raised in the main loop's next pass
    raise SystemExit("the KeyboardInterrupt was swallowed by the IRQ handler")
except KeyboardInterrupt:
    pass
b.watchdog_feed()               # once
beat = b._guard_beat[0]
machine.Timer.fire_all()
assert b._guard_beat[0] == beat + 1 and machine.Timer.all, "the guard stopped"
M.stop_safely(b)

# the EN bit: a channel whose EN is cleared makes no further transfer (the model's DMA)
b = running_board("analog")
chs = b._adc_dma
n0 = machine.ADC_MODEL.n
for ch in chs:
    ch.ctrl = ch.ctrl & ~1
machine.ADC_MODEL.convert(4)
assert len(machine.ADC_MODEL.fifo) == 4, "a paused channel went on reading the FIFO"
M.stop_safely(b)
print("OK")
'''

CORE = SETUP + r'''
import os
rp2_boot.FLAG = %(flag)r
b = new_board()
inst = Instrument(b)
inst.boot()
pump(inst)

# --- maintenance mode: the strap and the flag file (removed when seen)
assert rp2_boot.maintenance_reason() == ""
Pin.levels[G.MAINTENANCE] = 0
assert "GP22" in rp2_boot.maintenance_reason()
Pin.levels[G.MAINTENANCE] = 1
# MAINTENANCE while running is refused; idle it replies, then shuts down and resets
ok(inst, 2, {"mode": "counting", "bins": 8, "periods": 10})
ok(inst, 3)
assert command(inst, 16)[0] == P.ST_BAD_STATE
ok(inst, 4)
ok(inst, 8, {"volts": 600})
assert ok(inst, 16) == {"rebooting": "maintenance"}
try:
    for _ in range(20000):
        inst.step()
    raise SystemExit("no reset after MAINTENANCE")
except SystemExit as e:
    assert "machine.reset" in str(e.args[0]), e
outputs_off()
assert busy_channels() == []
assert "MAINTENANCE" in rp2_boot.maintenance_reason()
assert rp2_boot.maintenance_reason() == "", "the flag must be used once"

# --- HV models
b = new_board()
inst = Instrument(b)
inst.boot()
pump(inst)
# a counting head: powered by HV_CONFIG alone, SET_HV > 0 refused, no monitor to fail
r = ok(inst, 17, {"kind": "counting_head"})
assert r["kind"] == "counting_head" and r["power"], r
assert Pin.level(G.HV_EN) == 1
st, text = command(inst, 8, {"volts": 500})
assert st == P.ST_BAD_ARGS and "counting head" in text, (st, text)
assert Pin.level(G.HV_EN) == 1
machine.ADC_MODEL.source[1] = lambda i: 0        # no monitor: ADC1 reads 0
t = ok(inst, 11)
assert t["checks"]["hv_readback"], t
# an overload cuts it; CLEAR_FAULT powers it again
sms[5].raise_irq()
pump(inst)
assert Pin.level(G.HV_EN) == 0 and ok(inst, 10)["state"] == "fault"
assert command(inst, 17, {"kind": "counting_head"})[0] == P.ST_BAD_STATE
ok(inst, 13)
assert Pin.level(G.HV_EN) == 1
# bad arguments change nothing
for bad in ({"kind": "laser"}, {"kind": "counting_head", "max_volts": 100},
            {"kind": "module", "power": True}, {"kind": "module", "max_volts": 5000},
            {"kind": "supply", "settle_ms": -1}):
    assert command(inst, 17, bad)[0] in (P.ST_BAD_ARGS, P.ST_OUT_OF_RANGE), bad
assert Pin.level(G.HV_EN) == 1
# an analog module: 0.5 … 1.1 V control (1000 V per V), settles before frames say HV_ON
ok(inst, 17, {"kind": "module"})
assert Pin.level(G.HV_EN) == 0
assert command(inst, 8, {"volts": 300})[0] == P.ST_OUT_OF_RANGE
assert command(inst, 8, {"volts": 1200})[0] == P.ST_OUT_OF_RANGE
ok(inst, 8, {"volts": 800})
assert Pin.level(G.HV_EN) == 1 and b._hv.d == int(800 / 1000 / 3.3 * 65535), b._hv.d
assert not b.hv_settled()
Clock.elapse(300_000)
assert b.hv_settled()
assert command(inst, 17, {"kind": "supply"})[0] == P.ST_BAD_STATE   # HV on: SET_HV 0 first
ok(inst, 8, {"volts": 0})
ok(inst, 17, {"kind": "supply"})

# --- max_adc_level: 4095 could never trip (sample > 4095), refused now
assert command(inst, 12, {"max_adc_level": 4095})[0] == P.ST_OUT_OF_RANGE
ok(inst, 12, {"max_adc_level": 4094})

# --- counting START without a PEM reference: a warning at once, not silence
ok(inst, 2, {"mode": "counting", "bins": 8, "periods": 10})
del got[:]
core.host_write(command_frame(9, 3, None))
pump(inst)
assert any(code == P.EV_PEM_UNLOCK and "START" in text for code, text in events()), events()
ok(inst, 4)

# --- the analog level guard's heartbeat: a hard timer IRQ that an exception would stop
ok(inst, 2, {"mode": "analog", "sample_rate_hz": 100000, "block_samples": 64})
ok(inst, 3)
machine.Timer.fire_all()
pump(inst)
assert ok(inst, 10)["state"] == "running"
timer = machine.Timer.all[0]
timer.callback = None            # the guard died (as after an exception in its IRQ)
Clock.us += 50_000
del got[:]
pump(inst)
evs = events()
assert any(code == P.EV_FAULT and "level guard" in text for code, text in evs), evs
assert ok(inst, 10)["state"] == "fault"
outputs_off()
ok(inst, 13)

# --- no STATUS piles up while the host is away (USB closed)
core.HOST.itf._open = False
before = inst.tx.queued()
for _ in range(30):
    Clock.elapse(1_000_000)
    inst.step()
assert inst.tx.queued() <= before + 1, (before, inst.tx.queued())
core.HOST.itf._open = True
assert machine.VIOLATIONS == [], machine.VIOLATIONS
print("OK")
'''


def test_rp2_pads_keepalive_and_reset_cause(micropython, tmp_path, chip):
    run_mp(micropython, PADS % {"mp": str(MP_TESTS)}, tmp_path, chip=chip)


def test_rp2_soft_reset_and_ctrl_c_leave_hv_off_and_dma_stopped(micropython, tmp_path, chip):
    run_mp(micropython, STOP % {"mp": str(MP_TESTS)}, tmp_path, chip=chip)


def test_rp2_maintenance_hv_models_heartbeat_and_small_items(micropython, tmp_path, chip):
    run_mp(micropython, CORE % {"mp": str(MP_TESTS), "flag": str(tmp_path / "maint")},
           tmp_path, chip=chip)
