"""The whole firmware (cpl.instrument on the rp2 board) in the MicroPython unix port, on the
chip model (rp2model/): commands and replies over the modelled USB vendor interface,
counting frames from the modelled PIO/DMA path, a guard trip reaching the host, the analog
block path with its time stamps, time bins (gated, several gates) bounded by START frames=N. Every interrupt handler runs with the heap locked."""
from fwpaths import MP_TESTS
from rp2run import run_mp

SCRIPT = r'''
import sys
sys.path.insert(0, %(mp)r)
import json
import struct
import machine
import rp2
from usb.device import core
from board import rp2 as R
from helpers import command_frame, decode


from harness import Clock, install
Clock.step = 100
install(R)
from cpl.instrument import Instrument
from cpl import protocol as P

b = R.Rp2Board()           # with USB: the model's usb.device
inst = Instrument(b)
inst.boot()
sms = rp2.StateMachine.all
from chiphost import command, got, ok, pump

pump(inst)
boot = [f for f in got if f[0] == P.EVENT]
assert boot and struct.unpack_from("<H", boot[0][3], 0)[0] == P.EV_BOOT
r = ok(inst, 1)                                         # IDENTIFY
assert r["board"] == "rp2" and r["serial"] == "e6614104035a2b22", r
st = ok(inst, 10)                                       # STATUS
assert st["state"] == "idle" and st["fault"] is None, st

# --- counting: frames over USB, exact
assert ok(inst, 2, {"mode": "counting", "bins": 8, "periods": 10})["bins"] == 8
ok(inst, 3)                                             # START
del got[:]
for frame in range(3):
    for _ in range(10):
        for p in range(4):
            sms[1].count_bin(2 * p + 1)
            sms[2].count_bin(2 * p + 2)
    pump(inst, 2)
counts = []
for ftype, seq, ts, p in got:
    if ftype == P.COUNTS:
        nb = struct.unpack_from("<H", p, 0)[0]
        counts.append(struct.unpack_from("<%%dI" %% nb, p, 20))
assert counts == [tuple(10 * (j + 1) for j in range(8))] * 3, counts
ok(inst, 4)                                             # STOP

# --- a guard trip (the PIO's IRQ) reaches the host: EVENT OVERLOAD, fault, HV refused
ok(inst, 8, {"volts": 500})                             # SET_HV
del got[:]
sms[5].raise_irq()
pump(inst)
evs = [struct.unpack_from("<H", f[3], 0)[0] for f in got if f[0] == P.EVENT]
assert P.EV_OVERLOAD in evs, evs
st = ok(inst, 10)
assert st["state"] == "fault" and st["overload"] and "overload" in st["fault"], st
assert command(inst, 8, {"volts": 500})[0] == P.ST_BAD_STATE
ok(inst, 13)                                            # CLEAR_FAULT
assert ok(inst, 10)["state"] == "idle"

# --- analog: blocks with t0 and edges over USB
adc = machine.ADC_MODEL
adc.source[0] = lambda i: 1000 + i %% 64
ok(inst, 2, {"mode": "analog", "sample_rate_hz": 100000, "block_samples": 64})
ok(inst, 3)
adc.n = 0
sms[4].push_rx(0)
sms[4].push_rx((300 - 4) // 2)
for _ in range(200):
    sms[4].push_rx((machine.freq() // 50000 - 4) // 2)
del got[:]
for k in range(4):
    adc.convert(64)
    machine.Timer.fire_all()
    pump(inst, 2)
blocks = [f for f in got if f[0] == P.ADC_BLOCK]
assert len(blocks) == 4, [f[0] for f in got]
ok(inst, 4)

def one_frame():
    """A frame of 10 PEM periods, 8 bins, a photon in each bin of each period."""
    for _ in range(10):
        for p in range(4):
            sms[1].count_bin(1)
            sms[2].count_bin(1)
    pump(inst, 2)

# --- gated counting after an external laser's sync: an RP2350 takes it (GATED_COUNTS whose
# pulses are the sync edges of each frame, the trigger off), an RP2040 refuses it, saying why
ext = {"mode": "gated", "bins": 8, "periods": 10, "trigger": "external",
       "pulse_period_ns": 10_000, "gate_delay_ns": 1_000, "gate_width_ns": 5_000, "gates": 1}
st, r = command(inst, 2, ext)
if "RP2350" not in sys.implementation._machine:
    assert st == P.ST_OUT_OF_RANGE and "RP2350" in r, (st, r)
else:
    assert st == 0 and r["trigger"] == "external" and "trigger_width_ns" not in r, r
    ok(inst, 9, {"open": True})                         # SHUTTER
    ok(inst, 3)
    del got[:]
    for frame in range(3):
        machine.pwm_b_edges(R.PIN_SYNC_IN, 7 + 5 * frame)  # the frame's laser pulses
        one_frame()
    gated = [f[3] for f in got if f[0] == P.GATED_COUNTS]
    assert [struct.unpack_from("<I", p, 24)[0] for p in gated] == [7, 12, 17], gated
    st = ok(inst, 10)
    assert st["trigger_on"] is False and machine.Pin.level(R.PIN_TRIGGER) == 0, st
    ok(inst, 4)
    ok(inst, 9, {"open": False})

# --- time bins with the board's own trigger: START frames=4 counts the data frames sent,
# never the transition frames between two gates, which are not sent
tb = {"mode": "gated", "bins": 8, "periods": 10, "trigger": "internal",
      "pulse_period_ns": 7_000, "trigger_width_ns": 100, "gate_delay_ns": 400,
      "gate_width_ns": 1_600, "gates": 3}
assert ok(inst, 2, tb)["gates"] == 3
assert ok(inst, 3, {"frames": 4})["frames"] == 4
del got[:]
for frame in range(7):                                  # data, transition, data, … data
    assert sms[1].on, frame
    one_frame()
gated = [f[3] for f in got if f[0] == P.GATED_COUNTS]
assert [struct.unpack_from("<HH", p, 20) for p in gated] == [(0, 3), (1, 3), (2, 3), (0, 3)]
assert [struct.unpack_from("<I", p, 32)[0] for p in gated] == [400, 2000, 3600, 400]
evs = [struct.unpack_from("<H", f[3], 0)[0] for f in got if f[0] == P.EVENT]
assert P.EV_ACQ_DONE in evs and not sms[1].on, evs
st = ok(inst, 10)
assert st["state"] == "idle" and st["frames_late"] == 0 and st["frames_dropped"] == 0, st
assert b.frames_transition == 3 and b.frames_lost == 0
assert machine.Pin.level(R.PIN_TRIGGER) == 0
assert machine.VIOLATIONS == [], machine.VIOLATIONS
print("blocks", len(blocks))
print("OK")
'''


def test_firmware_on_the_chip_model(micropython, tmp_path, chip):
    out = run_mp(micropython, SCRIPT % {"mp": str(MP_TESTS)}, tmp_path, chip=chip)
    assert "blocks 4" in out
