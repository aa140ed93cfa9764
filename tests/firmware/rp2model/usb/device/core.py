"""`usb.device.core` for the unix-port tests: `Interface` with the behaviour rp2_usb.py
relies on, and a host that moves full-speed bulk packets. (No `Buffer`: micropython-lib's
allocates a memoryview per read and write, so the board does not use it.)

The rules modelled are TinyUSB's: an OUT transfer completes when a short packet (< max
packet size) arrives or its buffer is full; the host sends a zero-length packet only if
told to (pyusb's write does not). An IN transfer of n bytes goes out as ⌈n/64⌉ packets and
no zero-length packet of its own; the host's read ends at a short (or zero-length) packet.
Endpoint max packet sizes other than 64 fail the test. Nothing here allocates after
`host_attach`, so the firmware's callbacks can run with the heap locked.
"""
import micropython

PACKET = 64


class Interface:
    def __init__(self):
        self._open = False
        self._xbuf = {}
        self._xcb = {}
        self._xdone = {}

    def is_open(self):
        return self._open

    def on_open(self):
        pass

    def on_reset(self):
        pass

    def xfer_pending(self, ep):
        return self._xbuf.get(ep) is not None

    def submit_xfer(self, ep, data, done_cb):
        if ep not in self._xbuf:
            raise AssertionError("transfer on endpoint %#x the descriptors do not have" % ep)
        if self._xbuf[ep] is not None:
            raise AssertionError("a second transfer on endpoint %#x" % ep)
        self._xbuf[ep] = data
        self._xcb[ep] = done_cb
        self._xdone[ep] = 0
        return True

    def _complete(self, ep, n):
        cb = self._xcb[ep]
        self._xbuf[ep] = None
        self._xcb[ep] = None
        cb(ep, 0, n)


class _Host:
    def __init__(self):
        self.itf = None
        self.ep_out = 0
        self.ep_in = 0
        self.out_queue = bytearray()   # packets not yet accepted (NAKed)
        self.out_packets = []
        self.partial = bytearray()
        self.transfers = []
        self.in_packets = []           # sizes of the IN packets seen
        self.locked = False


HOST = _Host()


def host_attach(itf, desc):
    for addr, kind, mps, _ in desc.endpoints:
        if kind == "bulk" and mps != PACKET:
            raise AssertionError("bulk endpoint %#x with max packet %d (full speed: 64)"
                                 % (addr, mps))
        if addr & 0x80:
            HOST.ep_in = addr
        else:
            HOST.ep_out = addr
        itf._xbuf[addr] = None
        itf._xcb[addr] = None
        itf._xdone[addr] = 0
    HOST.itf = itf
    itf._open = True
    itf.on_open()


def _call(fn, ep, n):
    if HOST.locked:
        micropython.heap_lock()
        try:
            return fn(ep, n)
        finally:
            micropython.heap_unlock()
    return fn(ep, n)


def host_write(data, zlp=False):
    """The host writes `data` to the OUT endpoint as packets (and a zero-length packet if
    `zlp` and the length is a multiple of 64); packets wait (NAK) while no transfer is
    pending."""
    i = 0
    while i < len(data):
        HOST.out_packets.append(bytes(data[i:i + PACKET]))
        i += PACKET
    if zlp and len(data) % PACKET == 0:
        HOST.out_packets.append(b"")
    host_poll()


def host_poll():
    """Move every packet the device can take now, both ways."""
    itf = HOST.itf
    moved = True
    while moved:
        moved = False
        ep = HOST.ep_out
        buf = itf._xbuf.get(ep)
        if buf is not None and HOST.out_packets:
            pkt = HOST.out_packets.pop(0)
            off = itf._xdone[ep]
            if off + len(pkt) > len(buf):
                raise AssertionError("OUT packet overruns the transfer buffer")
            buf[off:off + len(pkt)] = pkt
            off += len(pkt)
            itf._xdone[ep] = off
            if len(pkt) < PACKET or off == len(buf):
                _call(itf._complete, ep, off)
            moved = True
        ep = HOST.ep_in
        buf = itf._xbuf.get(ep)
        if buf is not None:
            n = len(buf)
            i = 0
            while True:
                k = min(PACKET, n - i)
                HOST.in_packets.append(k)
                HOST.partial.extend(bytes(buf[i:i + k]))
                if k < PACKET:
                    HOST.transfers.append(bytes(HOST.partial))
                    HOST.partial = bytearray()
                i += k
                if i >= n:
                    break
            _call(itf._complete, ep, n)
            moved = True


def host_read():
    """(the IN transfers the host has completed, each ended by a short packet; the bytes
    of one still waiting for its short packet)."""
    out = HOST.transfers[:]
    del HOST.transfers[:]
    return out, bytes(HOST.partial)
