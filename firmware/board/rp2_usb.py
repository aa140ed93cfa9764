"""Vendor-specific USB interface (class 0xFF, one bulk OUT and one bulk IN endpoint) next to
the built-in CDC REPL, through `machine.USBDevice` and micropython-lib's `usb-device`
package (`mip install usb-device`).

IN (device → host): two data buffers and one priority buffer. A data frame (COUNTS or
ADC_BLOCK) waits in a data buffer; any other frame (REPLY, EVENT, STATUS) in the priority
buffer, which is sent first as soon as the endpoint is free, so a backlog of data frames never
delays a reply. OUT (host → device): one transfer of one packet (64 bytes) is always
pending; what it brings goes into a ring the core drains with `read_into()`. One packet,
because TinyUSB completes an OUT transfer only on a short packet or a full buffer, and the
host sends no zero-length packet after a command whose length is a multiple of 64: a longer
transfer would hold such a command until the next one arrived.

Nothing here allocates per frame: the bound-method callbacks are made once, the views
handed to `submit_xfer` are cached per buffer and length, and the OUT ring is a bytearray
with two indices, one written by each side (micropython-lib's `Buffer` makes a memoryview
per read and per write).
"""
from micropython import const
import machine
import usb.device  # type: ignore[import-not-found]
from usb.device.core import Interface  # type: ignore[import-not-found]

from board import rp2_dma as K

# pid.codes test allocation (docs/hardware.md): for development and lab use, not for devices
# that are sold or distributed.
VID = const(0x1209)
PID = const(0x0001)
MANUFACTURER = "cplscope project"
PRODUCT = "cplscope CPL controller"

_EP_IN_FLAG = const(0x80)
_PACKET = const(64)  # full speed bulk max packet size
_OUT_BUF = const(64)  # one packet per OUT transfer (see above)
_RX_RING = const(4096)  # a power of two
_RX_MASK = const(_RX_RING - 1)
_IDX_MASK = const(0xFFFF)  # the ring's indices count bytes modulo 2**16
_MAX_FRAME = const(24 + 8192)
_TYPE_OFFSET = const(3)
_DATA_TYPES = (0x01, 0x02)  # COUNTS, ADC_BLOCK


class VendorInterface(Interface):
    """The cplscope bulk interface. `write()` and `read_into()` never block."""

    def __init__(self) -> None:
        super().__init__()
        self.ep_out = 0
        self.ep_in = 0
        self._rx = bytearray(_RX_RING)
        self._rx_w = 0  # bytes written, mod 2**16 (only the OUT callback writes it)
        self._rx_r = 0  # bytes read, mod 2**16 (only read_into writes it)
        self._out_buf = bytearray(_OUT_BUF)
        self._out_cb = self._out_done
        self._in_cb = self._in_done
        self._data = [bytearray(_MAX_FRAME), bytearray(_MAX_FRAME)]
        self._data_len = [0, 0]  # 0 = free
        self._data_seq = [0, 0]  # queue order
        self._seq = 0
        self._prio = bytearray(_MAX_FRAME)
        self._prio_len = 0
        self._sending = -2  # -2 idle, -1 priority buffer, 0/1 data buffer, -3 zero-length
        self._zlp = b""
        self._views: list = [{}, {}, {}]  # data buffer 0, 1, priority buffer: length → view
        self.dropped_out = 0

    # descriptors ---------------------------------------------------------------------------
    def desc_cfg(self, desc, itf_num, ep_num, strs):  # type: ignore[no-untyped-def]
        strs.append(PRODUCT + " data")
        desc.interface(itf_num, 2, 0xFF, 0x00, 0x00, len(strs) - 1)
        self.ep_out = ep_num
        self.ep_in = ep_num | _EP_IN_FLAG
        desc.endpoint(self.ep_out, "bulk", _PACKET, 0)
        desc.endpoint(self.ep_in, "bulk", _PACKET, 0)

    def num_eps(self) -> int:
        return 1

    # connection ----------------------------------------------------------------------------
    def on_open(self) -> None:
        super().on_open()
        self._sending = -2
        self._submit_out()
        self._kick()

    def on_reset(self) -> None:
        super().on_reset()
        self._sending = -2
        self._data_len[0] = self._data_len[1] = 0
        self._prio_len = 0

    # OUT -----------------------------------------------------------------------------------
    def _submit_out(self) -> None:
        if self.is_open() and not self.xfer_pending(self.ep_out):
            self.submit_xfer(self.ep_out, self._out_buf, self._out_cb)

    def _out_done(self, ep: int, result: int, n: int) -> None:
        if result == 0 and n:
            w = self._rx_w
            if _RX_RING - ((w - self._rx_r) & _IDX_MASK) >= n:
                K.ring_in(self._rx, _RX_MASK, w & _RX_MASK, self._out_buf, n)
                self._rx_w = (w + n) & _IDX_MASK
            else:
                self.dropped_out += n
        self._submit_out()

    def readable(self) -> int:
        """Bytes of OUT data waiting."""
        return (self._rx_w - self._rx_r) & _IDX_MASK

    def read_into(self, buf: memoryview) -> int:
        r = self._rx_r
        n = (self._rx_w - r) & _IDX_MASK
        if n > len(buf):
            n = len(buf)
        if n:
            K.ring_out(self._rx, _RX_MASK, r & _RX_MASK, buf, n)
            self._rx_r = (r + n) & _IDX_MASK
        self._submit_out()
        return n

    # IN ------------------------------------------------------------------------------------
    def write(self, frame: memoryview) -> bool:
        """Queue a copy of one frame. False if its queue is full (nothing queued)."""
        n = len(frame)
        if n > _MAX_FRAME:
            raise ValueError("frame of %d bytes exceeds the protocol maximum %d"
                             % (n, _MAX_FRAME))
        is_data = n > _TYPE_OFFSET and frame[_TYPE_OFFSET] in _DATA_TYPES
        state = machine.disable_irq()
        try:
            if is_data:
                slot = -1
                for i in (0, 1):
                    if self._data_len[i] == 0:
                        slot = i
                        break
                if slot < 0:
                    return False
                self._data[slot][:n] = frame
                self._data_len[slot] = n
                self._seq += 1
                self._data_seq[slot] = self._seq
            else:
                if self._prio_len:
                    return False
                self._prio[:n] = frame
                self._prio_len = n
        finally:
            machine.enable_irq(state)
        self._kick()
        return True

    def _kick(self) -> None:
        if not self.is_open() or self._sending != -2 or self.xfer_pending(self.ep_in):
            return
        if self._prio_len:
            self._sending = -1
            self.submit_xfer(self.ep_in, self._view(2, self._prio, self._prio_len), self._in_cb)
            return
        slot = -1
        for i in (0, 1):
            if self._data_len[i] and (slot < 0 or self._data_seq[i] < self._data_seq[slot]):
                slot = i
        if slot >= 0:
            self._sending = slot
            self.submit_xfer(self.ep_in, self._view(slot, self._data[slot],
                                                    self._data_len[slot]), self._in_cb)

    def _in_done(self, ep: int, result: int, n: int) -> None:
        if self._sending == -1:
            self._prio_len = 0
        elif self._sending >= 0:
            self._data_len[self._sending] = 0
        if self._sending != -3 and n and n % _PACKET == 0 and self.is_open():
            # a transfer of whole packets ends on the host only with a zero-length packet
            self._sending = -3
            self.submit_xfer(self.ep_in, self._zlp, self._in_cb)
            return
        self._sending = -2
        self._kick()

    def _view(self, which: int, buf: bytearray, n: int) -> memoryview:
        """buf[:n] as a view, made once per length (a few lengths recur: data frames have
        one per configuration); the cache is bounded."""
        views = self._views[which]
        v = views.get(n)
        if v is None:
            if len(views) >= 16:
                views.clear()
            v = views[n] = memoryview(buf)[:n]
        return v

    def busy(self) -> bool:
        return self._data_len[0] != 0 and self._data_len[1] != 0


def start(serial: str) -> VendorInterface:
    """Enumerate as cplscope (vendor interface) + the built-in CDC REPL. Re-enumerates.

    The device class is 0xEF/0x02/0x01 (miscellaneous, interface association): the CDC
    REPL is a function of two interfaces under an IAD, and Windows binds its composite
    driver to such a device only with this class (micropython-lib's default is 0). The
    vendor interface then needs WinUSB bound by hand once (Zadig, docs/build.md):
    `machine.USBDevice` serves no BOS descriptor, so Microsoft OS 2.0 descriptors cannot
    be offered."""
    itf = VendorInterface()
    usb.device.get().init(itf, builtin_driver=True, manufacturer_str=MANUFACTURER,
                          product_str=PRODUCT, serial_str=serial, id_vendor=VID,
                          id_product=PID, device_class=0xEF, device_subclass=0x02,
                          device_protocol=0x01)
    return itf
