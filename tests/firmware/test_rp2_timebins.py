"""Time bins (several gates) on the rp2 board, in the MicroPython unix port against the chip
model, an RP2040 and an RP2350 (docs/hardware.md, "Several gates (time bins)").

The pulse train is the trigger's PWM slice running in the model (`machine.pwm_run`), whose
compare registers are double-buffered as on the chips: a write lands at the counter's next
wrap. Photons come at chosen offsets after each pulse, a different weight in each gate's
window (1, 100, 10⁴ per photon, two photons a pulse, at the window's ends) and 10⁶ outside every gate, so a frame's count tells which
windows it counted. A photon passes iff its offset is in [GSTART + 1, GSTART + 1 + w) of the
compare the slice ran on at that pulse (gate_window's law, tests/firmware/test_pio_gating.py)
and is counted in the PEM period in which it arrives. Checked: frames come in gate order,
transition frames are not sent (nor counted lost), a frame of gate j holds gate j's photons
only, about `pulses` of them, the compare writes land at wraps, STOP mid-cycle, and what the
board refuses."""
from rp2run import run_mp

from test_rp2_board import SETUP
from test_rp2_gated import EXPECT_ERROR

TIMEBINS = SETUP + EXPECT_ERROR + r'''
from board.gating import GateTiming, pulses_in_frame, shortest_period

sl = machine.pwm_slice(R.PIN_TRIGGER)

# --- refusals: each gate must satisfy gate_window's shortest-period law, the last one too
found = None
for delay_ns in range(0, 64, 4):
    for width_ns in range(8, 120, 4):
        try:
            t = GateTiming(CLK, "internal", 104, 8, delay_ns, width_ns, 2)
        except ValueError:
            continue
        if (found is None and shortest_period(t.row_delay(0), t.width) <= t.period
                < shortest_period(t.row_delay(1), t.width)):
            found = (delay_ns, width_ns)
assert found is not None
assert "at least" in expect_error(b.gate_configure, "internal", 104, 8, found[0], found[1], 2)
b.gate_configure("internal", 104, 8, found[0], found[1], 1)     # its first gate alone runs
assert "next pulse" in expect_error(b.gate_configure, "internal", 7_000, 100, 400, 1_600, 5)

# --- three gates of 1.6 µs from 400 ns, a pulse every 7 µs (not a divisor of the frame:
# frame boundaries fall anywhere in a pulse period), frames of K PEM periods
K = 10                                          # 28 or 29 pulses a frame
N = 3
b.counter_configure(2, K)
q = b.gate_configure("internal", 7_000, 100, 400, 1_600, N)
t = GateTiming(CLK, "internal", 7_000, 100, 400, 1_600, N)
assert q == t.ns() and t.div == 1
T, W, DIV = t.period, t.width, t.div
WEIGHT = (1, 100, 10_000)
OUTSIDE = 1_000_000
# offsets (cycles after the pulse) inside each gate's window, at both ends, and outside
offsets = []
for j in range(N):
    open_at = t.cc_b[j] * DIV + 1
    offsets.append((open_at, WEIGHT[j]))
    offsets.append((open_at + W - 1, WEIGHT[j]))
    assert open_at + W - 1 < T
offsets.append((t.cc_b[N - 1] * DIV + 1 + W, OUTSIDE))          # just after the last gate
offsets.append((t.cc_b[0] * DIV, OUTSIDE))                      # just before the first

def passes(cc, o):
    return cc != 0 and cc * DIV + 1 <= o < cc * DIV + 1 + W

state = {"now": 0, "pending": [], "cc": 0}

def start():
    b.counter_start()
    state["now"] = 0
    state["pending"] = []
    # the slice started with its counter at 0: a pulse now, on the compare written first
    state["cc"] = machine.pwm_cc_live(sl) >> 16
    pulse(0, state["cc"])

def pulse(at, cc):
    for o, wgt in offsets:
        if passes(cc, o):
            state["pending"].append((at + o, wgt))

def pem_periods(k):
    """k PEM periods of PER cycles: the slice runs, its pulses' photons arrive."""
    for _ in range(k):
        now = state["now"]
        for off, cc in machine.pwm_run(sl, PER):
            state["cc"] = cc >> 16
            pulse(now + off, state["cc"])
        end = now + PER
        here = sum(w for at, w in state["pending"] if at < end)
        state["pending"] = [(at, w) for at, w in state["pending"] if at >= end]
        state["now"] = end
        sms[1].count_bin(here)           # everything in bin 0 (the gating is what matters)
        sms[2].count_bin(0)

def digits(c):
    return [c // 10 ** (2 * d) % 100 for d in range(3)] + [c // OUTSIDE]

def data_gates(frames):
    """The gates of the data frames sent in `frames` frames' time, each checked to hold
    photons of its own gate's window only."""
    out = []
    for _ in range(frames):
        pem_periods(K)
        f = b.counter_poll()
        if f is not None:
            d = digits(counts(f)[0])
            assert [d[g] for g in range(N) if g != f.gate] == [0, 0] and d[3] == 0, d
            out.append(f.gate)
    return out

start()
assert machine.pwm_cc_live(sl) >> 16 == t.cc_b[0]
seen = []
nones = 0
pulses_expected = pulses_in_frame(K * PER - T // 2, T)
for frame_no in range(2 * 3 * N):
    pem_periods(K)
    if frame_no % 2 == 0:
        # a data frame just ended: the IRQ parked the gate (software's copy), the slice
        # still runs on the gate until its next wrap
        assert machine.pwm_cc(sl) >> 16 == 0, frame_no
        assert state["cc"] == t.cc_b[frame_no // 2 % N]
    else:
        # a transition frame ended: the next gate is written, the slice is still parked
        assert machine.pwm_cc(sl) >> 16 == t.cc_b[(frame_no // 2 + 1) % N], frame_no
        assert state["cc"] == 0, frame_no
    f = b.counter_poll()
    if f is None:
        nones += 1
        assert frame_no % 2 == 1, frame_no     # every other frame: the transitions
        continue
    assert frame_no % 2 == 0, frame_no
    j = f.gate
    c = counts(f)
    assert c[1] == 0
    d = digits(c[0])
    assert d[3] == 0, (frame_no, d)            # nothing from outside the gates
    for g in range(N):
        if g != j:
            assert d[g] == 0, ("gate %d's photons in a frame of gate %d" % (g, j), d)
    assert abs(d[j] - 2 * f.pulses) <= 2, (frame_no, d, f.pulses)   # 2 offsets a window
    assert f.pulses == pulses_expected, (f.pulses, pulses_expected)
    assert f.gate_delay_ns == t.row_delay_ns(j) == q[2] + j * q[3] or j == 0
    seen.append(j)
assert seen == [0, 1, 2] * 3, seen
assert nones == b.frames_transition == 9       # half the frames: a 50 % duty
assert b.frames_lost == 0 and b.data_lost() == 0
# the board's pulses: the frame's time less half a period (the parked first partial period
# averages half a period) over the period, rounded: the frame's whole periods, each frame's
# count within ±1 of it (above)
assert pulses_expected == K * PER // T, (pulses_expected, K * PER, T)

# --- STOP mid-cycle (in a transition frame, half way): the slice, the window and the gate
# sequence stop; the next START counts gate 0 first, on a clean compare
pem_periods(K)                                  # a data frame of gate 0
assert b.counter_poll().gate == 0
pem_periods(K // 2)
b.counter_stop()
assert machine.PWM_REGS[(sl, 0x00)] == 0 and not sms[7].on and b._tb_n == 0
assert machine.Pin.level(R.PIN_TRIGGER) == 0
b.counter_start()
assert machine.pwm_cc_live(sl) >> 16 == t.cc_b[0]   # the slice was stopped: at once
b.counter_stop()
start()
assert data_gates(4) == [0, 1]

# --- a frame collected late: dropped and counted lost, the gates go on in order from the
# next data frame the host has not had
lost0 = b.frames_lost
pem_periods(3 * K)                              # data (gate 2), transition, data (gate 0)
pem_periods(1)
assert b.counter_poll() is None and b.frames_lost > lost0
assert data_gates(4) == [2, 0]
b.counter_stop()

# --- one gate: no transitions, every frame sent (the full duty)
b.gate_configure("internal", 7_000, 100, 400, 1_600, 1)
tr = b.frames_transition
start()
for _ in range(3):
    pem_periods(K)
    f = b.counter_poll()
    assert f is not None and f.gate == 0
assert b.frames_transition == tr and machine.pwm_cc(sl) >> 16 == t.cc_b[0]
b.counter_stop()
b.shutdown()
assert machine.VIOLATIONS == [], machine.VIOLATIONS
print("OK")
'''


def test_rp2_time_bins_in_micropython(micropython, tmp_path, chip):
    run_mp(micropython, TIMEBINS, tmp_path, chip=chip)
