"""Gated counting on the rp2 board (firmware/board/rp2.py) in the MicroPython unix port
against the behavioural chip model, an RP2040 and an RP2350: the trigger's PWM slice
(period, trigger width, gate start), gate_window on PIO1 SM7, the photon counters on the
gated-photon pin, the trigger only with the shutter open and no trip, and what the board
refuses. On an RP2350 also an external laser's sync: sync_delay on PIO2 driving the gate
start, the sync edges counted by GP21's PWM slice into each frame's pulses (across the
16-bit counter's wrap; a frame whose count could have wrapped unseen is dropped as lost),
the trigger output off, the guard's interlocks; an RP2040 refuses it, saying why. The PIO
programs themselves run in pioemu (test_pio_gating.py)."""
from rp2run import run_mp

from test_rp2_board import SETUP

EXPECT_ERROR = r'''
def expect_error(fn, *a):
    """The ValueError's text of fn(*a), which must refuse."""
    try:
        fn(*a)
    except ValueError as e:
        return str(e)
    raise SystemExit("accepted: %r" % (a,))
'''

GATED = SETUP + EXPECT_ERROR + r'''
import chip
from board.gating import GateTiming, cycles_to_ns
from harness import Clock

regs = machine.PWM_REGS
Pin = machine.Pin
sl = machine.pwm_slice(R.PIN_TRIGGER)
assert R.PIN_TRIGGER % 2 == 0 and R.G.GSTART == R.PIN_TRIGGER + 1  # channels A and B
assert R._IS_RP2350 == chip.rp2350()

# --- what the rp2 board refuses, with the reason
if not chip.rp2350():
    assert b.trigger_sources == ("internal",)
    assert "RP2350" in expect_error(b.gate_configure, "external", 5_000_000, 0, 50_000,
                                    2_000_000, 1)
    assert "RP2350" in b.trigger_unsupported("external")
else:
    assert b.trigger_sources == ("internal", "external")
    assert b.trigger_unsupported("external") == ""
assert "trigger must be" in expect_error(b.gate_configure, "laser", 5_000_000, 0, 50_000,
                                         2_000_000, 1)
assert b.max_gates == 64                       # the protocol's GATES_MAX
assert "1 … 64" in expect_error(b.gate_configure, "internal", 5_000_000, 10_000, 50_000,
                                20_000, 65)
assert "next pulse" in expect_error(b.gate_configure, "internal", 5_000_000, 10_000,
                                    3_000_000, 2_500_000, 1)
assert "raise the pulse rate" in expect_error(b.gate_configure, "internal", 500_000_000,
                                              10_000, 50_000, 2_000_000, 1)
# at the protocol's shortest period (104 ns: 13 cycles at 125 MHz, 16 at 150): gates that
# end with the period (the shared check passes) but that gate_window cannot run, which
# needs w + max(delay + 1, 3) cycles (pioemu, test_pio_gate_rate.py): a 96-ns gate from 8 ns
# (it would miss every gate start), an 80-ns gate from 24 ns (its last cycle the next
# pulse's first); an 80-ns gate from 16 ns runs
from board.gating import cycles_to_ns
for delay_ns, width_ns in ((8, 96), (24, 80)):
    t = GateTiming(b.clock_hz, "internal", 104, 8, delay_ns, width_ns, 1)
    need = t.width + max(t.delay + 1, 3)
    assert t.period < need, (delay_ns, width_ns)
    assert "at least %d ns" % cycles_to_ns(need, b.clock_hz) in expect_error(
        b.gate_configure, "internal", 104, 8, delay_ns, width_ns, 1)
assert b.gate_configure("internal", 104, 8, 16, 80, 1) == GateTiming(
    b.clock_hz, "internal", 104, 8, 16, 80, 1).ns()

b.guard_arm(2e6, 4000)

# --- a gate of 2 ms from 50 µs after each pulse, 200 pulses/s, 10-µs trigger
b.counter_configure(8, 1000)
q = b.gate_configure("internal", 5_000_000, 10_000, 50_000, 2_000_000, 1)
t = GateTiming(b.clock_hz, "internal", 5_000_000, 10_000, 50_000, 2_000_000, 1)
assert q == t.ns() == (5_000_000, 10_000, 50_000, 2_000_000), q
b.counter_start()
assert regs[(sl, 0x04)] == t.div << 4 and regs[(sl, 0x10)] == t.top
assert (t.top + 1) * t.div == CLK // 200          # 5 ms of clock cycles
assert machine.pwm_cc(sl) == t.cc_b[0] << 16     # the gate start runs, the trigger does not
assert regs[(sl, 0x00)] == 1 | 8               # enabled, channel B inverted
gw = sms[7]
assert gw.on and gw.prog is P.gate_window and gw.puts == [P.window_word(t.width)]
assert gw.k["in_base"].n == R.PIN_PHOTON and gw.k["out_base"].n == R.PIN_GATED_PHOTON
for c in (1, 2):                               # the counters count the gated pin
    assert sms[c].k["jmp_pin"].n == R.PIN_GATED_PHOTON

# --- the trigger pulses only with the shutter open and no trip
b.trigger_enable(True)
assert not b.trigger_on() and machine.pwm_cc(sl) & 0xFFFF == 0   # shutter closed
b.shutter_set(True)
b.trigger_enable(True)
assert b.trigger_on() and machine.pwm_cc(sl) & 0xFFFF == t.cc_a == CLK // 100_000 // t.div
b.shutter_set(False)
assert not b.trigger_on() and machine.pwm_cc(sl) & 0xFFFF == 0
b.shutter_set(True)
b.trigger_enable(True)
sms[5].drive_set_pins(0)                       # the guard trips
b._guard_irq(sms[5])
assert not b.trigger_on()
b.trigger_enable(False)                        # what the core does on the fault
assert machine.pwm_cc(sl) & 0xFFFF == 0
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
if chip.rp2350():
    external()
else:
    try:                                       # the model has no third PIO block either
        rp2.StateMachine(8, P.sync_delay)
        raise SystemExit("an RP2040 model with a PIO2")
    except ValueError:
        pass
b.shutdown()
assert machine.Pin.level(R.PIN_TRIGGER) == 0
if chip.rp2350():                              # shut down while following the sync
    assert not sms[8].on and not b._sync_on
    assert regs[(machine.pwm_slice(R.PIN_SYNC_IN), 0x00)] == 2 << 4
assert machine.VIOLATIONS == [], machine.VIOLATIONS
print("OK")
'''


EXTERNAL = r'''
def external():
    """An external laser's sync on an RP2350."""
    R.time = Clock                  # board time from here on moves only with the test
    b._set_high_limit(b._high_fraction)
    SYNC, GSTART, TRIG = R.PIN_SYNC_IN, R.PIN_GSTART, R.PIN_TRIGGER
    ss = machine.pwm_slice(SYNC)
    assert SYNC == 21 and ss == 2 and ss not in [machine.pwm_slice(n) for n in
        (R.PIN_PHOTON_LEVEL, R.PIN_TRIGGER, R.PIN_PEM_DRIVE, R.PIN_PEM_CTRL, R.PIN_HV_CTRL)]
    # the model's own check: a state machine may not start reading a pad nobody set up
    # (an RP2350's pads come up isolated)
    probe = rp2.StateMachine(11, P.sync_delay, in_base=Pin(9), set_base=Pin(24))
    try:
        probe.active(1)
        raise SystemExit("the model let a PIO read an isolated pad")
    except AssertionError as e:
        assert "GP9" in str(e)
    # --- CONFIGURE: no trigger width; the gate opens no sooner than the program can (7 cycles)
    q = b.gate_configure("external", 1_000, 0, 0, 500, 1)
    assert q[1] == 0 and q[2] == cycles_to_ns(P.SYNC_FIXED_CYCLES + 1, CLK), q
    assert "next pulse" in expect_error(b.gate_configure, "external", 1_000, 0, 600, 500, 1)
    assert "own trigger" in expect_error(b.gate_configure, "external", 1_000, 0, 100, 200, 2)
    # a 5 MHz laser, the gate 60 ns … 160 ns after each sync edge
    b.counter_configure(8, 200)
    q = b.gate_configure("external", 200, 0, 60, 100, 1)
    t = GateTiming(CLK, "external", 200, 0, 60, 100, 1)
    assert q == t.ns(), q
    b.guard_reset()
    b.guard_arm(2e6, 4000)
    b.counter_start()
    # PIO2 SM8 drives GSTART from the sync input; the trigger's slice and pin stay off
    sy = sms[8]
    assert sy.on and sy.prog is P.sync_delay and sy.puts == [P.sync_delay_word(t.delay)]
    assert sy.k["in_base"].n == SYNC and sy.k["set_base"].n == GSTART
    assert Pin.pads[GSTART]["func"] == "pio" and sy.set_pins == [GSTART]
    assert Pin.pads[SYNC]["pull"] == "down" and Pin.live(SYNC)
    assert regs[(sl, 0x00)] == 0 and Pin.pads[TRIG]["func"] == "sio_out"
    assert Pin.level(TRIG) == 0
    gw = sms[7]
    assert gw.on and gw.puts == [P.window_word(t.width)]
    for c in (1, 2):
        assert sms[c].k["jmp_pin"].n == R.PIN_GATED_PHOTON
    # GP21's slice counts the sync's rising edges, 1:1, and never drives the line
    assert regs[(ss, 0x00)] == (2 << 4) | 1 and regs[(ss, 0x04)] == 16
    assert regs[(ss, 0x10)] == 0xFFFF and Pin.pads[SYNC]["func"] == "pwm"
    assert SYNC not in machine.PWM_B_OUTPUTS
    # --- no trigger in external mode, shutter open or not
    b.shutter_set(True)
    b.trigger_enable(True)
    assert not b.trigger_on() and Pin.level(TRIG) == 0 and regs[(sl, 0x00)] == 0

    def frame(edges, after=0):
        """One frame of 200 PEM periods (4 ms) in 8 steps of 0.5 ms, the guard's timer
        firing after each; `edges(k)` sync edges in step k; then `after` more edges (and
        a timer tick) once the frame has completed, before it is collected."""
        del machine.BUS.stores[:]
        fed = 0
        for k in range(8):
            n = edges(k)
            machine.pwm_b_edges(SYNC, n)
            fed += n
            Clock.us += 500
            machine.Timer.fire_all()
            run_periods(25, lambda j: 1)
        if after:
            machine.pwm_b_edges(SYNC, after)
            Clock.us += 500
            machine.Timer.fire_all()
        return fed

    # the pulses of each frame are the sync edges up to its end, across the 16-bit
    # counter's wraps (20000 edges a frame); edges after a frame's end go to the next
    import random
    random.seed(5)
    after = 0
    total = 0
    for i in range(6):
        fed = frame(lambda k: 2480 + random.randrange(41), after=77 * (i % 2))
        f = b.counter_poll()
        assert f is not None and counts(f) == [200] * 8, i
        assert f.pulses == fed + after, (i, f.pulses, fed, after)
        assert f.gate == 0 and f.gate_delay_ns == q[2]
        after = 77 * (i % 2)
        total += fed + after
    assert total > 0x10000 and b.data_lost() == 0
    # the guard's timer held off for 10 ms (beyond half the counter's wrap at the declared
    # 5 MHz, 6.5 ms): that frame's pulses are not known, so it is dropped as lost
    assert b._sync_max_us == 0x10000 * 200 // 2000, b._sync_max_us
    for k in range(8):
        machine.pwm_b_edges(SYNC, 2500)
        if k == 4:
            Clock.us += 10_000
        else:
            Clock.us += 500
        machine.Timer.fire_all()
        run_periods(25, lambda j: 1)
    assert b.counter_poll() is None and b.data_lost() == 1
    frame(lambda k: 2500)                      # the next frame is whole again
    f = b.counter_poll()
    assert f is not None and f.pulses == 20000, f.pulses
    # --- the guard trips: HV and shutter off at once, the trigger stays off, and the
    # sync edges are still counted (the frame carries the overload)
    b.hv_set(500.0)
    sms[5].raise_irq()
    assert b.guard_tripped() and Pin.level(R.PIN_SHUTTER) == 0 and Pin.level(R.PIN_HV_EN) == 0
    b.trigger_enable(True)
    assert not b.trigger_on() and Pin.level(TRIG) == 0
    frame(lambda k: 10)
    f = b.counter_poll()
    assert f is not None and f.overload and f.pulses == 80, (f.overload, f.pulses)
    b.guard_reset()
    # --- STOP: sync_delay stopped, the slice stopped with B still an input, nothing read
    b.counter_stop()
    assert not sy.on and not gw.on and regs[(ss, 0x00)] == 2 << 4
    assert not b._sync_on and Pin.level(TRIG) == 0
    # --- the internal trigger again: GSTART back to the trigger's slice, PIO2 idle
    b.gate_configure("internal", 5_000_000, 10_000, 50_000, 2_000_000, 1)
    b.counter_start()
    assert Pin.pads[GSTART]["func"] == "pwm" and not sms[8].on and regs[(sl, 0x00)] == 9
    b.counter_stop()
    b.gate_configure("external", 200, 0, 60, 100, 1)
    b.counter_start()
    assert sms[8].on
'''


def test_rp2_gated_counting_in_micropython(micropython, tmp_path, chip):
    run_mp(micropython, EXTERNAL + GATED, tmp_path, chip=chip)
