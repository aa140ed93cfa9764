"""Sustained throughput of the simulated instrument end to end: bench → firmware (MicroPython
unix port) → virtual USB → host (pyusb bulk reads + StreamDecoder).

    PYTHONPATH=host python bench/bench_sim.py [--seconds 4]

For each case the host configures an acquisition, reads `--seconds` of instrument time with
16 KiB bulk reads, and prints:

- frames/s and bytes/s of instrument time (what the instrument delivers) and of wall time
  (what this machine sustains), and wall s per instrument s;
- lost frames (sequence gaps seen by the decoder) and frames flagged OVERRUN: the case only
  counts as sustained with both at 0;
- CPU share of the host process (`time.process_time()` / wall) and of the hub and firmware
  processes (/proc/PID/stat utime + stime over the same wall interval).

Cases: counting B = 16 at K = 100 and 50 (500 and 1000 frames/s, a real board's range), then
smaller K up to the rate where the USB full-speed budget (1 MB/s in instrument time) makes
the board drop frames; raw ADC at 200 and 250 kS/s with 1024-sample blocks.
"""
from __future__ import annotations

import argparse
import os
import time


from cplscope.protocol import AdcBlock, Counts, Flags, Opcode, Reply, StreamDecoder, \
    encode_command
from cplscope.sim.launcher import launch
from cplscope.board.transport import claim_vendor_interface

READ = 16384
PEM_HZ = 50_000.0


def cpu_s(pid: int) -> float:
    """utime + stime of a process, s (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Host:
    def __init__(self, sim) -> None:
        self.dev = sim.find_device()
        _, self.ep_out, self.ep_in = claim_vendor_interface(self.dev)
        self.rid = 0
        self.dec = StreamDecoder()

    def call(self, op: int, args: dict | None = None) -> dict:
        self.rid += 1
        self.ep_out.write(encode_command(self.rid, op, args, self.rid))
        while True:
            for m in self.dec.feed(self.ep_in.read(READ, 5000)):
                if isinstance(m, Reply) and m.request_id == self.rid:
                    return m.raise_for_status()


def run_case(sim, config: dict, seconds: float) -> dict:
    h = Host(sim)
    h.call(Opcode.SET_HV, {"volts": 800})
    h.call(Opcode.SHUTTER, {"open": True})
    h.call(Opcode.CONFIGURE, config)
    h.call(Opcode.START)
    dec = StreamDecoder()
    frames = nbytes = overrun = 0
    t_first = t_last = None
    warm = 20  # frames before the clock starts
    pids = (sim.hub_pid, sim.firmware_pid)
    while True:
        data = h.ep_in.read(READ, 5000)
        for m in dec.feed(data):
            if not isinstance(m, (Counts, AdcBlock)):
                continue
            if warm:
                warm -= 1
                if not warm:
                    w0, c0 = time.perf_counter(), time.process_time()
                    k0 = [cpu_s(p) for p in pids]
                    t_first, miss0 = m.timestamp_us, dec.stats.missing
                continue
            frames += 1
            nbytes += len(data)  # one frame per transfer (a short packet ends it)
            overrun += bool(m.flags & Flags.OVERRUN)
            t_last = m.timestamp_us
        if t_first is not None and t_last is not None and t_last - t_first >= seconds * 1e6:
            break
    wall = time.perf_counter() - w0
    host_cpu = time.process_time() - c0
    kids = [cpu_s(p) - k for p, k in zip(pids, k0)]
    h.call(Opcode.STOP)
    inst = (t_last - t_first) * 1e-6
    return {"frames": frames, "inst_s": inst, "wall_s": wall, "bytes": nbytes,
            "lost": dec.stats.missing - miss0, "overrun": overrun, "host_cpu": host_cpu / wall,
            "hub_cpu": kids[0] / wall, "fw_cpu": kids[1] / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="instrument s per case")
    args = ap.parse_args()
    cases = [(f"counting B=16 K={k}", {"mode": "counting", "bins": 16, "periods": k})
             for k in (100, 50, 20, 10, 5)]
    cases += [(f"ADC {rate / 1e3:.0f} kS/s, 1024/block",
               {"mode": "analog", "sample_rate_hz": rate, "block_samples": 1024})
              for rate in (200_000.0, 250_000.0)]
    print(f"{'case':<28} {'frames/s inst':>13} {'frames/s wall':>13} {'kB/s inst':>9} "
          f"{'kB/s wall':>9} {'wall/inst':>9} {'lost':>5} {'ovrun':>5} {'host':>5} "
          f"{'hub':>5} {'fw':>5}")
    with launch("R-Cs4PbBr6", seed=1, speed=50.0) as sim:
        for name, cfg in cases:
            r = run_case(sim, cfg, args.seconds)
            print(f"{name:<28} {r['frames'] / r['inst_s']:>13.0f} "
                  f"{r['frames'] / r['wall_s']:>13.0f} {r['bytes'] / r['inst_s'] / 1e3:>9.0f} "
                  f"{r['bytes'] / r['wall_s'] / 1e3:>9.0f} {r['wall_s'] / r['inst_s']:>9.2f} "
                  f"{r['lost']:>5} {r['overrun']:>5} {r['host_cpu']:>5.0%} "
                  f"{r['hub_cpu']:>5.0%} {r['fw_cpu']:>5.0%}", flush=True)
    print("sustained = lost 0 and OVERRUN 0; CPU shares are of one core, over the wall time")


if __name__ == "__main__":
    main()
