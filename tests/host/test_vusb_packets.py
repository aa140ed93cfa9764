"""USB semantics of the virtual cable through the real pyusb stack, against a scripted board
(the hub's UsbPort and CableServer in this process, a fake SimHub feeding chosen IN buffers):
short packets, zero-length packets, overflow, timeouts, halts, unplug/replug, strings."""
import errno
import queue
import tempfile
import time
from pathlib import Path

import pytest
import usb.core
import usb.util

from cplscope.protocol import usb_ids
from cplscope.sim.faults import Faults, FaultInjector
from cplscope.sim.hub import CableServer, UsbPort
from cplscope.sim.vusb import VirtualUSBBackend
from cplscope.board.transport import claim_vendor_interface


class ScriptedHub:
    """What UsbPort needs from SimHub: IN buffers from a queue, OUT data recorded."""

    def __init__(self) -> None:
        self.serial = "5c71b7ed0001"
        self.connections = 1
        self.now_us = 0
        self.usb_connected = True
        self.inq: queue.Queue[bytes] = queue.Queue()
        self.out: list[bytes] = []
        self.taken = 0

    def host_read(self, timeout: float):
        try:
            data = self.inq.get(timeout=timeout)
        except queue.Empty:
            return None
        self.taken += 1
        return data

    def host_write(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def set_usb_connected(self, connected: bool) -> None:
        self.usb_connected = connected


def make(zlp=True, faults=None):
    hub = ScriptedHub()
    port = UsbPort(hub, FaultInjector(0, faults or Faults()), zlp=zlp)
    port.on_link(True)
    folder = tempfile.mkdtemp(prefix="vusbtest-")
    server = CableServer(port, "unix:" + str(Path(folder) / "cable.sock"),
                         lambda req: {"echo": req}).start()
    backend = VirtualUSBBackend(server.address)
    return hub, port, server, backend


@pytest.fixture
def rig():
    hub, port, server, backend = make()
    yield hub, port, backend
    backend.close()
    server.close()


def endpoints(dev):
    _, ep_out, ep_in = claim_vendor_interface(dev)
    return ep_in, ep_out


def test_enumeration_strings_and_control(rig):
    hub, port, backend = rig
    dev = usb.core.find(idVendor=usb_ids.VID, idProduct=usb_ids.PID, backend=backend)
    assert dev is not None and dev.bus == 1 and dev.speed == usb.util.SPEED_FULL
    assert dev.serial_number == hub.serial
    assert usb.util.get_string(dev, dev.iSerialNumber) == hub.serial
    assert (dev.manufacturer, dev.product) == (usb_ids.MANUFACTURER, usb_ids.PRODUCT)
    assert dev.langids == (0x0409,)
    ep_in, ep_out = endpoints(dev)
    assert (ep_in.bEndpointAddress, ep_out.bEndpointAddress) == (0x83, 0x03)
    assert ep_in.wMaxPacketSize == 64
    intf = usb.util.find_descriptor(dev.get_active_configuration(), bInterfaceClass=0xFF)
    assert usb.util.get_string(dev, intf.iInterface) == usb_ids.VENDOR_INTERFACE_STRING
    dev.set_configuration()
    assert dev.get_active_configuration().bConfigurationValue == 1
    with pytest.raises(usb.core.USBError) as e:  # an unknown string index stalls
        usb.util.get_string(dev, 9)
    assert e.value.errno == errno.EPIPE
    assert ep_out.write(b"hello") == 5 and hub.out == [b"hello"]
    assert backend.control({"op": "x"}) == {"echo": {"op": "x"}}


def test_short_packets_end_transfers(rig):
    hub, _port, backend = rig
    ep_in, _ = endpoints(usb.core.find(idVendor=usb_ids.VID, backend=backend))
    hub.inq.put(bytes(range(150)))  # 64 + 64 + 22: one transfer
    hub.inq.put(b"next")
    assert bytes(ep_in.read(4096, 1000)) == bytes(range(150))
    assert bytes(ep_in.read(4096, 1000)) == b"next"
    # a buffer smaller than the transfer takes whole packets; the rest comes next
    hub.inq.put(bytes(range(150)))
    assert bytes(ep_in.read(128, 1000)) == bytes(range(128))
    assert bytes(ep_in.read(128, 1000)) == bytes(range(128, 150))


def test_zero_length_packet_after_whole_packets(rig):
    hub, _port, backend = rig
    ep_in, _ = endpoints(usb.core.find(idVendor=usb_ids.VID, backend=backend))
    hub.inq.put(b"a" * 128)
    hub.inq.put(b"b" * 10)
    assert bytes(ep_in.read(4096, 1000)) == b"a" * 128  # the ZLP ended it
    assert bytes(ep_in.read(4096, 1000)) == b"b" * 10
    hub.inq.put(b"c" * 64)
    assert bytes(ep_in.read(64, 1000)) == b"c" * 64  # buffer full before the ZLP …
    assert len(ep_in.read(64, 1000)) == 0  # … which then arrives as an empty transfer


def test_without_zlp_whole_packet_buffers_run_on():
    hub, _port, server, backend = make(zlp=False)
    try:
        ep_in, _ = endpoints(usb.core.find(idVendor=usb_ids.VID, backend=backend))
        for c in b"xyz":
            hub.inq.put(bytes([c]) * 64)
        hub.inq.put(b"end")
        assert bytes(ep_in.read(4096, 1000)) == b"x" * 64 + b"y" * 64 + b"z" * 64 + b"end"
        hub.inq.put(b"q" * 64)  # nothing follows: the timeout returns what came
        t = time.monotonic()
        assert bytes(ep_in.read(4096, 200)) == b"q" * 64
        assert time.monotonic() - t >= 0.19
    finally:
        backend.close()
        server.close()


def test_timeout_and_overflow(rig):
    hub, _port, backend = rig
    ep_in, _ = endpoints(usb.core.find(idVendor=usb_ids.VID, backend=backend))
    t = time.monotonic()
    with pytest.raises(usb.core.USBTimeoutError) as e:
        ep_in.read(4096, 150)
    assert e.value.errno == errno.ETIMEDOUT and time.monotonic() - t >= 0.14
    hub.inq.put(bytes(120))  # 64 + 56: the second packet does not fit in 100 − 64 bytes
    with pytest.raises(usb.core.USBError) as e:
        ep_in.read(100, 1000)
    assert e.value.errno == errno.EOVERFLOW
    hub.inq.put(b"fits")
    assert bytes(ep_in.read(100, 1000)) == b"fits"


def test_stall_until_clear_halt_loses_nothing():
    hub, port, server, backend = make(faults=Faults(stall=1.0))
    try:
        dev = usb.core.find(idVendor=usb_ids.VID, backend=backend)
        ep_in, _ = endpoints(dev)
        hub.inq.put(b"payload")
        for _ in range(2):  # halted until cleared
            with pytest.raises(usb.core.USBError) as e:
                ep_in.read(4096, 1000)
            assert e.value.errno == errno.EPIPE
        st = dev.ctrl_transfer(0x82, 0, 0, ep_in.bEndpointAddress, 2)  # GET_STATUS
        assert st[0] == 1
        port.set_faults({"stall": 0.0})
        dev.clear_halt(ep_in)
        assert bytes(ep_in.read(4096, 1000)) == b"payload"
        assert port.faults.stalled == 1
    finally:
        backend.close()
        server.close()


def test_unplug_gives_enodev_and_replug_a_new_device(rig):
    hub, port, backend = rig
    dev = usb.core.find(idVendor=usb_ids.VID, backend=backend)
    ep_in, ep_out = endpoints(dev)
    address = dev.address
    port.set_plugged(False)
    assert hub.usb_connected is False
    for op in (lambda: ep_in.read(64, 100), lambda: ep_out.write(b"x"),
               lambda: dev.ctrl_transfer(0x80, 8, 0, 0, 1)):
        with pytest.raises(usb.core.USBError) as e:
            op()
        assert e.value.errno == errno.ENODEV
    assert usb.core.find(idVendor=usb_ids.VID, backend=backend) is None
    port.set_plugged(True)
    new = usb.core.find(idVendor=usb_ids.VID, backend=backend)
    assert new is not None and new.address != address and hub.usb_connected
    with pytest.raises(usb.core.USBError) as e:  # the old handle stays dead
        ep_in.read(64, 100)
    assert e.value.errno == errno.ENODEV
    hub.inq.put(b"again")
    assert bytes(endpoints(new)[0].read(64, 1000)) == b"again"


def test_a_read_waiting_in_the_hub_sees_the_unplug(rig):
    _hub, port, backend = rig
    ep_in, _ = endpoints(usb.core.find(idVendor=usb_ids.VID, backend=backend))
    timer = __import__("threading").Timer(0.1, port.set_plugged, (False,))
    timer.start()
    t = time.monotonic()
    with pytest.raises(usb.core.USBError) as e:
        ep_in.read(64, 5000)
    assert e.value.errno == errno.ENODEV and time.monotonic() - t < 1.0


def test_a_request_interrupted_before_its_answer_does_not_desync_the_cable(rig, monkeypatch):
    # Ctrl-C between a request and its answer: the answer must not be read as the answer to
    # the next request on this thread's connection
    hub, port, backend = rig
    assert backend.control({"n": 1}) == {"echo": {"n": 1}}
    real = VirtualUSBBackend._recv_exact
    calls = {"n": 0}

    def interrupted(self, s, n):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(self, s, n)

    monkeypatch.setattr(VirtualUSBBackend, "_recv_exact", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.control({"n": 2})
    monkeypatch.setattr(VirtualUSBBackend, "_recv_exact", real)
    for k in range(3, 6):
        assert backend.control({"n": k}) == {"echo": {"n": k}}
