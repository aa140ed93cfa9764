"""firmware/board/rp2_usb.py against a model of micropython-lib's usb.device with full-speed
bulk semantics (rp2model/usb/device/core.py): 64-byte packets, an OUT transfer that
completes only on a short packet or a full buffer, a host that sends no zero-length packet,
IN transfers that the host sees end only at a short packet."""
from rp2run import run_mp

SCRIPT = r'''
import micropython
from usb.device import core
from board import rp2_usb as U

itf = U.start("e6614104035a2b22")
H = core.HOST
assert H.itf is itf and itf.is_open()
from usb import device
kw = device.get().kw
# Windows: a composite device with an IAD (the CDC REPL) needs class 0xEF/02/01
assert (kw["device_class"], kw["device_subclass"], kw["device_protocol"]) == (0xEF, 2, 1), kw
assert (kw["id_vendor"], kw["id_product"]) == (0x1209, 0x0001) and kw["builtin_driver"]
# one vendor interface (class 0xFF) with one bulk OUT and one bulk IN endpoint of 64 bytes
d = device.get().desc
assert [i[2:5] for i in d.interfaces] == [(0xFF, 0, 0)], d.interfaces
assert sorted((e[0] & 0x80, e[1], e[2]) for e in d.endpoints) == [(0, "bulk", 64),
                                                                   (0x80, "bulk", 64)]

def frame(n, kind=0x03):
    """n bytes whose byte 3 is the frame type (COUNTS=1, ADC_BLOCK=2, else priority)."""
    b = bytearray((i * 7 + 1) & 0xFF for i in range(n))
    if n > 3:
        b[3] = kind
    return b

# --- OUT: a command of any length arrives whole, also one of whole packets with no ZLP
got = bytearray(8192)
for n in (1, 20, 63, 64, 65, 127, 128, 192, 300, 512, 1024):
    data = frame(n)
    core.host_write(data)
    k = itf.read_into(memoryview(got))
    core.host_poll()
    k += itf.read_into(memoryview(got)[k:])
    assert k == n and bytes(got[:n]) == bytes(data), (n, k)
# the OUT ring wraps (4 KB) and its 16-bit indices wrap: still byte exact
for i in range(700):
    data = frame(100 + i % 37)
    core.host_write(data)
    k = itf.read_into(memoryview(got)[:50])
    core.host_poll()
    while itf.readable():
        k += itf.read_into(memoryview(got)[k:])
        core.host_poll()
    assert k == len(data) and bytes(got[:k]) == bytes(data), (i, k)
print("out ok")

# --- IN: a frame of whole packets is ended by a zero-length packet, others are not
for n, kind in ((20, 3), (64, 3), (128, 1), (100, 2), (8216, 2), (64, 1)):
    data = frame(n, kind)
    del H.in_packets[:]
    assert itf.write(memoryview(data))
    core.host_poll()
    transfers, partial = core.host_read()
    assert transfers == [bytes(data)] and partial == b"", (n, transfers, partial)
    zlps = H.in_packets.count(0)
    assert zlps == (1 if n % 64 == 0 else 0), (n, H.in_packets)
    assert all(k <= 64 for k in H.in_packets)
print("in ok")

# --- a reply overtakes queued data frames (the host reads only at host_poll)
d1, d2, rep = frame(100, 1), frame(100, 1), frame(30, 3)
assert itf.write(memoryview(d1))                 # in flight
assert itf.write(memoryview(d2))                 # queued in the second data buffer
assert not itf.write(memoryview(frame(100, 1)))  # both data buffers busy: refused
assert itf.write(memoryview(rep))                # priority
core.host_poll()
transfers, _ = core.host_read()
assert transfers == [bytes(d1), bytes(rep), bytes(d2)], [len(t) for t in transfers]
print("prio ok")

# --- no allocation per frame once a frame length has been seen: write, IN completion,
# ZLP, OUT completion and read_into all run with the heap locked
data = frame(128, 1)
cmd = frame(64)
itf.write(memoryview(data)); core.host_poll(); core.host_read()
core.host_write(cmd); itf.read_into(memoryview(got)); core.host_poll()
itf.read_into(memoryview(got))
mv_data = memoryview(data)
mv_got = memoryview(got)
H.locked = True
for _ in range(20):
    micropython.heap_lock()
    try:
        ok = itf.write(mv_data)
    finally:
        micropython.heap_unlock()
    assert ok
    core.host_poll()           # completions under heap_lock
    core.host_read()
    H.out_packets.append(b"0123456789")
    core.host_poll()
    micropython.heap_lock()
    try:
        k = itf.read_into(mv_got)
    finally:
        micropython.heap_unlock()
    assert k == 10
H.locked = False
print("OK")
'''


def test_usb_vendor_interface_transfer_semantics(micropython, tmp_path):
    out = run_mp(micropython, SCRIPT, tmp_path)
    assert "out ok" in out and "in ok" in out and "prio ok" in out
