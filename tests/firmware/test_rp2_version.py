"""The MicroPython range the rp2 board declares (board/rp2_version.py): checked at boot, and
the board's use of `machine.Timer` matches the keywords of the declared minimum (the chip
model's Timer takes the keywords of the release it is told to model)."""
import importlib.util

from fwpaths import FIRMWARE
from rp2run import run_mp


def _version_module():
    spec = importlib.util.spec_from_file_location("rp2_version",
                                                  FIRMWARE / "board" / "rp2_version.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_declared_minimum_is_1_28():
    # v1.28.0: the first release whose soft reset stops DMA safely (rp2_version's docstring)
    v = _version_module()
    assert v.MIN_VERSION == (1, 28, 0)
    assert v.check((1, 28, 0, "")) == "" and v.check((1, 29, 0, "preview")) == ""
    assert v.check((2, 0, 0)) == ""
    for old in ((1, 27, 0, ""), (1, 26, 1, ""), (1, 25, 0, ""), (1, 9, 4)):
        text = v.check(old)
        assert "%d.%d.%d" % old[:3] in text and "v1.28.0" in text, text


SCRIPT = r'''
import sys
import machine
import rp2
from board import rp2 as R

from harness import install
install(R, clock=False)
adc = machine.ADC_MODEL

def nothing_started(b):
    assert not b._analog and not b._counting
    assert not adc.running(), "the ADC was left converting"
    busy = [ch.channel for ch in rp2.DMA.channels if ch.busy and ch is not b._period_dma]
    assert busy == [], "DMA channels %r left running" % busy

# --- the declared minimum's Timer takes every keyword the board uses (the guard's timer,
# made at boot)
machine.VERSION = (1, 26, 0)
b = R.Rp2Board(usb=False)
assert b._guard_timer is not None and b._guard_timer.hard
b.adc_configure(100000.0, 64)
b.adc_start()
assert b._analog and adc.running()
b.adc_stop()
nothing_started(b)

# --- on a port older than the declared minimum the board says so at boot (REPL and
# boot_fault, which the core puts in STATUS) and refuses to start anything
class Impl:
    version = (1, 25, 0, "")
    _machine = "Raspberry Pi Pico with RP2040"

class Sys:
    implementation = Impl
    platform = "rp2"

R.sys = Sys
rp2.reset()                    # a fresh chip for the second board
machine.VERSION = (1, 25, 0)   # whose Timer refuses hard=: the board still comes up to say so
b = R.Rp2Board(usb=False)
assert "1.25.0" in b.boot_fault and "v1.28.0" in b.boot_fault, b.boot_fault
assert b._guard_timer is None
for start in (b.counter_start, b.adc_start):
    try:
        start()
        raise SystemExit("started on an unsupported port")
    except RuntimeError as e:
        assert "v1.28.0" in str(e)
    nothing_started(b)
print("OK")
'''


def test_version_checked_at_boot_and_timer_keywords(micropython, tmp_path, chip):
    out = run_mp(micropython, SCRIPT, tmp_path, chip=chip)
    assert "cplscope: MicroPython 1.25.0 is too old" in out  # on the REPL

