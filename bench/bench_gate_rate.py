"""The highest pulse rate of gated counting on the RP2040's PIO, measured cycle by cycle in the
pioemu emulator (tests/firmware/gate_rate.py): for each gate delay δ and width w, the
shortest pulse period at which the whole chain (GSTART from the trigger PWM, gate_window, the
phase-bin counters) runs clean, and every period up to it + 8 cycles does too, beside the
docs' earlier arithmetic bound δ + w + 4 and the law the measurement gives, w + max(δ + 1, 3).
Whole cycles; the rate at 125 MHz. Needs pioemu (``pip install '.[test]'``).

    python bench/bench_gate_rate.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "firmware"))

import gate_rate as R  # noqa: E402

CLOCK_HZ = 125e6
PROTOCOL_MIN_PERIOD_S = 100e-9


def main() -> None:
    print("delay  width | shortest clean period     | law w+max(d+1,3) | docs d+w+4")
    print("cycles cycles| cycles   ns    rate (MHz) |                  |")
    for delay in (1, 2, 3, 8):
        for width in (2, 4, 8, 16, 40):
            law = R.shortest_period(delay, width)
            found = R.shortest_clean_period(delay, width, longest=law + 8)
            if found is None:
                print(f"{delay:5d} {width:6d} | none up to {law + 8} cycles")
                continue
            ns = found / CLOCK_HZ * 1e9
            print(f"{delay:5d} {width:6d} | {found:6d} {ns:6.0f} {CLOCK_HZ / found / 1e6:9.2f}   |"
                  f" {law:16d} | {R.doc_bound(delay, width):10d}")
    print(f"\nthe protocol's shortest pulse period: {PROTOCOL_MIN_PERIOD_S * 1e9:.0f} ns "
          f"({PROTOCOL_MIN_PERIOD_S * CLOCK_HZ:.1f} cycles, "
          f"{1 / PROTOCOL_MIN_PERIOD_S / 1e6:.0f} MHz)")


if __name__ == "__main__":
    main()
