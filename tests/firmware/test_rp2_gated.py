"""Gated counting on the rp2 board (firmware/board/rp2.py) in the MicroPython unix port
against the behavioural chip model: the trigger's PWM slice (period, trigger width, gate
start), gate_window on PIO1 SM7, the photon counters on the gated-photon pin, the trigger
only with the shutter open and no trip, and what the board refuses. The PIO programs
themselves run in pioemu (test_pio_gating.py)."""
from rp2run import run_mp

from test_rp2_board import SETUP

GATED = SETUP + r'''
from board.gating import GateTiming

regs = machine.PWM_REGS
sl = (R.PIN_TRIGGER >> 1) % 8
assert R.PIN_TRIGGER % 2 == 0 and R.G.GSTART == R.PIN_TRIGGER + 1  # channels A and B

def expect_error(fn, *a):
    try:
        fn(*a)
    except ValueError as e:
        return str(e)
    raise SystemExit("accepted: %r" % (a,))

# --- what the rp2 board refuses, with the reason
assert "RP2350" in expect_error(b.gate_configure, "external", 5_000_000, 0, 50_000,
                                2_000_000, 1)
assert "one gate" in expect_error(b.gate_configure, "internal", 5_000_000, 10_000, 50_000,
                                  1_000_000, 2)
assert "next pulse" in expect_error(b.gate_configure, "internal", 5_000_000, 10_000,
                                    3_000_000, 2_500_000, 1)
assert "raise the pulse rate" in expect_error(b.gate_configure, "internal", 500_000_000,
                                              10_000, 50_000, 2_000_000, 1)

b.guard_arm(2e6, 4000)

# --- a gate of 2 ms from 50 µs after each pulse, 200 pulses/s, 10-µs trigger
b.counter_configure(8, 1000)
q = b.gate_configure("internal", 5_000_000, 10_000, 50_000, 2_000_000, 1)
t = GateTiming(b.clock_hz, "internal", 5_000_000, 10_000, 50_000, 2_000_000, 1)
assert q == t.ns() == (5_000_000, 10_000, 50_000, 2_000_000), q
b.counter_start()
assert regs[(sl, 0x04)] == t.div << 4 and regs[(sl, 0x10)] == t.top
assert (t.top + 1) * t.div == 625_000          # 5 ms of 8-ns cycles
assert regs[(sl, 0x0C)] == t.cc_b[0] << 16     # the gate start runs, the trigger does not
assert regs[(sl, 0x00)] == 1 | 8               # enabled, channel B inverted
gw = sms[7]
assert gw.on and gw.prog is P.gate_window and gw.puts == [P.window_word(t.width)]
assert gw.k["in_base"].n == R.PIN_PHOTON and gw.k["out_base"].n == R.PIN_GATED_PHOTON
for c in (1, 2):                               # the counters count the gated pin
    assert sms[c].k["jmp_pin"].n == R.PIN_GATED_PHOTON

# --- the trigger pulses only with the shutter open and no trip
b.trigger_enable(True)
assert not b.trigger_on() and regs[(sl, 0x0C)] & 0xFFFF == 0   # shutter closed
b.shutter_set(True)
b.trigger_enable(True)
assert b.trigger_on() and regs[(sl, 0x0C)] & 0xFFFF == t.cc_a == 1250 // t.div
b.shutter_set(False)
assert not b.trigger_on() and regs[(sl, 0x0C)] & 0xFFFF == 0
b.shutter_set(True)
b.trigger_enable(True)
sms[5].drive_set_pins(0)                       # the guard trips
b._guard_irq(sms[5])
assert not b.trigger_on()
b.trigger_enable(False)                        # what the core does on the fault
assert regs[(sl, 0x0C)] & 0xFFFF == 0
b.guard_reset()

# --- frames: one gate, the pulses of the frame's time, the gate's delay
run_periods(1000, lambda j: 2)
f = b.counter_poll()
assert f is not None and counts(f) == [2000] * 8
assert f.gate == 0 and f.gate_delay_ns == 50_000
assert f.pulses == 4, f.pulses                 # 1000 periods of 20 µs: 20 ms, 4 pulses

# --- STOP: the window and the slice stop, the trigger pin is a low output again
b.counter_stop()
assert not gw.on and regs[(sl, 0x00)] == 0 and machine.Pin.level(R.PIN_TRIGGER) == 0
assert not b.trigger_on()

# --- continuous counting again: the counters count the photon input
b.gate_disable()
b.counter_start()
assert sms[1].k["jmp_pin"].n == R.PIN_PHOTON and not sms[7].on
b.counter_stop()
b.shutdown()
assert machine.Pin.level(R.PIN_TRIGGER) == 0
print("OK")
'''


def test_rp2_gated_counting_in_micropython(micropython, tmp_path, chip):
    run_mp(micropython, GATED, tmp_path, chip=chip)
