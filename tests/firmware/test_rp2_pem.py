"""The rp2 board's internal PEM drive in the chip model: the drive PWM reaches frequencies
finer than a PEM's resonance (machine.PWM.freq keeps an integer divider: 20 Hz steps at
50 kHz), tracking moves it every step, and in analog mode tracking does not read the pickup
(ADC.read_u16 would switch the streaming ADC's input for good). In internal mode the
reference is the drive itself, so the lock also needs the resonance search to have found the
PEM's resonance: driven off it, the PEM does not move."""
from rp2run import run_mp


PEM_SCRIPT = r'''
import machine
import rp2
from board import rp2 as R


from harness import Clock, install
install(R)
b = R.Rp2Board(usb=False)
adc = machine.ADC_MODEL
drive_slice = R.PIN_PEM_DRIVE >> 1

# --- internal PEM drive: the PWM reaches frequencies finer than the PEM's linewidth
b.pem_configure("internal", 50000.0)
for want in (50000.0, 50003.3, 50007.0, 49991.2, 42012.5, 20000.7):
    got = b._pem_drive_freq(want)
    assert abs(machine.pwm_freq(drive_slice) - got) < 1e-6 * got
    assert abs(got - want) <= 2 * want * want / (16 * machine.freq()), (want, got)  # old: 20 Hz
# tracking steps move the drive frequency every time, by about the resolution
r = b._resonance
r._set(50000.0)
r._mode, r._last, r._dir = 2, -1, 1.0
seen = [machine.pwm_freq(drive_slice)]
adc.source[2] = lambda i: 1000      # a flat pickup: tracking keeps its direction
for _ in range(8):
    Clock.us += 100_000
    b._service()
    seen.append(machine.pwm_freq(drive_slice))
assert all(bb > aa for aa, bb in zip(seen, seen[1:])), seen
steps = [bb - aa for aa, bb in zip(seen, seen[1:])]
# one step of the PWM's grid each: mostly f²/(16·f_clk) = 1.25 Hz, never the 20 Hz of an
# integer divider; a PEM's resonance is ~5 Hz wide
assert max(steps) < 5.2 and sum(steps) / len(steps) < 2.6, steps

# --- analog mode with the internal PEM: tracking must not switch the ADC's input
b.adc_configure(100000.0, 64)
b.adc_start()
f_run = machine.pwm_freq(drive_slice)
for _ in range(3):
    Clock.us += 100_000
    b._service()
assert adc.ainsel == 0, "the resonance tracking switched the streaming ADC to ADC%d" % adc.ainsel
assert machine.pwm_freq(drive_slice) == f_run
b.adc_stop()
Clock.us += 100_000
b._service()                        # tracking goes on after the run
assert machine.pwm_freq(drive_slice) != f_run
print("OK")
'''


def test_internal_pem_drive_resolution_and_analog_input(micropython, tmp_path, chip):
    run_mp(micropython, PEM_SCRIPT, tmp_path, chip=chip)


LOCK_SCRIPT = r'''
import machine
import rp2
from board import rp2 as R
from harness import Clock, install
install(R)
b = R.Rp2Board(usb=False)
adc = machine.ADC_MODEL
drive_slice = R.PIN_PEM_DRIVE >> 1
Q = 1.0e4


def pem_head(f0):
    """ADC2: the rectified pickup of a PEM of quality factor Q resonating at f0 (Hz)."""
    def pickup(i):
        x = 2 * Q * (machine.pwm_freq(drive_slice) - f0) / f0
        return int(3000 / (1 + x * x) ** 0.5)
    return pickup


def run_search():
    """The whole sweep, with the drive pin as the reference (its periods in the timer)."""
    for _ in range(R._Resonance.STEPS + 2):
        Clock.us += 100_000
        for _ in range(20):       # the period timer (state machine 4, made anew at a restart)
            rp2.StateMachine.all[4].push_rx((round(machine.freq() / machine.pwm_freq(drive_slice)) - 4) // 2)
        b._service()


for f0, found in ((50000.0, True), (50300.0, True), (55000.0, False), (None, False)):
    adc.source[2] = pem_head(f0) if f0 else (lambda i: 20)  # None: no PEM on the drive
    b.pem_set_drive(0.5)
    b.pem_configure("external", 50000.0)
    b.pem_configure("internal", 50000.0)
    run_search()
    r = b._resonance
    assert b.pem_locked() is found, (f0, b.pem_locked())
    assert r.found is found, (f0, r.found, r._best, r._worst, r._best_i)
    if found:
        assert abs(r.freq - f0) < 5.0, (f0, r.freq)   # within the 5 Hz linewidth

# a tracking step rewrites the divider mid-period: one period a few % off keeps the internal
# drive locked (its reference is the board's own PWM), while from an external reference
# the same jump is an unstable reference
def one_odd_period():
    p = round(machine.freq() / machine.pwm_freq(drive_slice))
    for k in range(20):
        rp2.StateMachine.all[4].push_rx(((p * 106 // 100 if k == 10 else p) - 4) // 2)
        Clock.us += 20
        b._service()
        assert b.pem_locked(), (b._pem_source, k)

adc.source[2] = pem_head(50000.0)
b.pem_configure("internal", 50000.0)
run_search()
one_odd_period()
b.pem_configure("external", 50000.0)
for _ in range(20):
    rp2.StateMachine.all[4].push_rx((machine.freq() // 50000 - 4) // 2)
Clock.us += 400
b._service()
assert b.pem_locked()
try:
    one_odd_period()
    raise SystemExit("an external reference jumping by 6 % stayed locked")
except AssertionError as e:
    assert "external" in str(e), e

# a search that ran undriven (drive 0: no pickup) runs again when the drive comes on
adc.source[2] = pem_head(50000.0)
b.pem_configure("external", 50000.0)
b.pem_set_drive(0.0)
b.pem_configure("internal", 50000.0)
adc.source[2] = lambda i: 20
run_search()
assert not b._resonance.found and not b.pem_locked()
adc.source[2] = pem_head(50000.0)
b.pem_set_drive(0.5)
run_search()
assert b._resonance.found and b.pem_locked()
print("OK")
'''


def test_internal_pem_locks_only_on_a_found_resonance(micropython, tmp_path, chip):
    run_mp(micropython, LOCK_SCRIPT, tmp_path, chip=chip)
