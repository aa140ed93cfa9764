"""The rp2 board's per-block viper kernels, timed on the emulated Pico (RP2040 at 125 MHz).

Boots the emulated Pico (hil_tests/emulated/, the same files as ``pytest hil_tests
--board=emulated``), stops the firmware at its REPL and times, in instrument time
(``time.ticks_us`` on the emulated chip, deterministic), the work one analog block of 2048
samples costs: packing, the frame CRC and the guard's level check. Each is timed next to a
plain viper loop over the same data (one sample or byte per iteration, what the kernels were
before), in the same run, and the ratio printed. The emulator counts Cortex-M0+ cycles per
instruction; it is not silicon, so read the ratios, not the µs, as the finding.

    CPLSCOPE_MICROPYTHON_IMAGE=… CPLSCOPE_RP2040_BOOTROM=… CPLSCOPE_USB_DEVICE_LIB=… \\
        python bench/bench_rp2_kernels.py
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hil_tests.emulated.pico import EmulatedPico, find_pico_files  # noqa: E402

BOARD_CODE = r'''
import time, array, micropython
from board import rp2_dma as K

@micropython.viper
def plain_pack(src, start: int, n: int, ring_len: int, dst) -> int:
    s = ptr16(src)
    d = ptr8(dst)
    mask = ring_len - 1
    clipped = 0
    i = 0
    o = 0
    j = start
    while i < n:
        a = s[j] & 0xFFF
        b = s[j + 1] & 0xFFF
        d[o] = a & 0xFF
        d[o + 1] = (a >> 8) | ((b & 0x0F) << 4)
        d[o + 2] = b >> 4
        if a == 0 or a == 0xFFF:
            clipped += 1
        if b == 0 or b == 0xFFF:
            clipped += 1
        i += 2
        o += 3
        j = (j + 2) & mask
    return clipped

@micropython.viper
def plain_crc(table, buf, n: int):
    t = ptr32(table)
    p = ptr8(buf)
    c = uint(0xFFFFFFFF)
    i = 0
    while i < n:
        c = uint(t[(c ^ uint(p[i])) & 0xFF]) ^ (c >> 8)
        i += 1
    c = c ^ uint(0xFFFFFFFF)
    p[n] = c & 0xFF
    p[n + 1] = (c >> 8) & 0xFF
    p[n + 2] = (c >> 16) & 0xFF
    p[n + 3] = (c >> 24) & 0xFF

def us(f, *a):
    t = time.ticks_us()
    f(*a)
    return time.ticks_diff(time.ticks_us(), t)

N = 2048
ring = array.array('H', (i * 37 % 4000 + 1 for i in range(8192)))
dst = bytearray(3 * N // 2)
table = array.array('I', bytes(1024))
K.crc32_table(table)
frame = bytearray(3 * N // 2 + 32 + 344 + 4)
n_crc = len(frame) - 4
rows = (
    ('pack 2048 samples', us(plain_pack, ring, 6144, N, 8192, dst),
     us(K.pack12_ring, ring, 6144, N, 8192, dst)),
    ('CRC-32 of %d bytes' % n_crc, us(plain_crc, table, frame, n_crc),
     us(K.crc32_seal, table, frame, n_crc)),
    ('guard check of 2048 samples', us(K.max_u16, ring, 6144, 6144 + N - 8192, 8192),
     us(K.above_u16, ring, 6144, 6144 + N - 8192, 8192, 4094)),
)
for name, old, new in rows:
    print('BENCH|%s|%d|%d' % (name, old, new))
print('BENCH|end')
'''


def main() -> int:
    files = find_pico_files(None, None, None)
    if isinstance(files, str):
        print(files, file=sys.stderr)
        return 2
    with EmulatedPico(files, seed=1) as pico:
        time.sleep(1.0)
        pico.interrupt()
        before = len(pico.console())
        pico.control(op="repl", text="\x05" + BOARD_CODE.replace("\n", "\r") + "\x04")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "\nBENCH|end" not in pico.console()[before:]:
            time.sleep(0.5)
        text = pico.console()[before:]
    rows = re.findall(r"^BENCH\|([^|\n]+)\|(\d+)\|(\d+)", text, re.M)
    if not rows:
        print("no result from the board:\n" + text[-3000:], file=sys.stderr)
        return 1
    print("rp2 kernels on the emulated RP2040 (125 MHz), µs of instrument time per call")
    print(f"{'work per 2048-sample block':32s} {'plain viper':>12s} {'kernel':>8s} {'ratio':>6s}")
    total_old = total_new = 0
    for name, old, new in rows:
        total_old += int(old)
        total_new += int(new)
        print(f"{name:32s} {int(old):12d} {int(new):8d} {int(old) / int(new):6.2f}")
    print(f"{'sum (one block at 249.675 kS/s lasts 8203 µs)':32s} {total_old:12d} "
          f"{total_new:8d} {total_old / total_new:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
