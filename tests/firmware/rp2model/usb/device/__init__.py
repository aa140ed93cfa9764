"""micropython-lib `usb.device` for the unix-port tests of firmware/board/rp2_usb.py: a device
that records its descriptors, and a host side with full-speed bulk transfer semantics
(see core.py)."""
from usb.device import core


class _Desc:
    def __init__(self):
        self.interfaces = []
        self.endpoints = []

    def interface(self, num, n_eps, cls, subcls, proto, istr=0):
        self.interfaces.append((num, n_eps, cls, subcls, proto, istr))

    def endpoint(self, addr, kind, max_packet, interval=0):
        self.endpoints.append((addr, kind, max_packet, interval))


class _Device:
    def __init__(self):
        self.kw = {}
        self.itfs = []
        self.desc = None
        self.strs = []

    def init(self, *itfs, **kw):
        self.kw = kw
        self.itfs = list(itfs)
        self.desc = _Desc()
        self.strs = []
        ep = 2     # endpoint numbers after the built-in CDC ones
        itf_num = 2
        for itf in itfs:
            itf.desc_cfg(self.desc, itf_num, ep, self.strs)
            itf_num += 1
            ep += itf.num_eps()
        for itf in itfs:
            core.host_attach(itf, self.desc)


_DEV = _Device()


def get():
    return _DEV
