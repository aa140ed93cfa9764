"""Device basics: USB enumeration and descriptors as a host sees them through pyusb, and the
board's identity (IDENTIFY) agreeing with them."""
from __future__ import annotations

import usb.util

from cplscope.protocol import usb_ids

from cplscope.protocol import Opcode


def test_descriptors_and_vendor_interface(open_raw) -> None:
    link = open_raw()
    dev = link.device
    assert (dev.idVendor, dev.idProduct) == (usb_ids.VID, usb_ids.PID)
    assert dev.bcdUSB == 0x0200
    assert dev.manufacturer == usb_ids.MANUFACTURER
    assert dev.product == usb_ids.PRODUCT
    assert dev.serial_number and dev.serial_number.isprintable()
    cfg = dev.get_active_configuration()
    vendor = [i for i in cfg if i.bInterfaceClass == 0xFF]
    assert len(vendor) == 1, "exactly one vendor-specific (class 0xFF) interface"
    intf = vendor[0]
    assert (intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (0, 0)
    assert usb.util.get_string(dev, intf.iInterface) == usb_ids.VENDOR_INTERFACE_STRING
    eps = list(intf)
    assert len(eps) == 2
    kinds = {(usb.util.endpoint_direction(e.bEndpointAddress),
              usb.util.endpoint_type(e.bmAttributes)) for e in eps}
    assert kinds == {(usb.util.ENDPOINT_IN, usb.util.ENDPOINT_TYPE_BULK),
                     (usb.util.ENDPOINT_OUT, usb.util.ENDPOINT_TYPE_BULK)}
    assert all(e.wMaxPacketSize == usb_ids.MAX_PACKET for e in eps)
    # the CDC REPL sits next to it (MicroPython's built-in interface)
    assert any(i.bInterfaceClass == 0x02 for i in cfg)


def test_identify_matches_usb(open_raw) -> None:
    link = open_raw()
    info = link.identify()
    assert info["implementation"] == "micropython"
    assert info["protocol_version"] == 1
    version = info["firmware_version"]
    assert isinstance(version, str) and all(p.isdigit() for p in version.split(".")), version
    assert info["serial"] == link.device.serial_number
    assert isinstance(info["board"], str) and info["board"]
    # every frame the board sent so far is protocol version 1 and intact
    link.drain(max_s=0.3)
    assert link.decoder.stats.frames > 0
    assert link.decoder.stats.rejected == 0


def test_instrument_info_and_self_test(open_instrument) -> None:
    inst = open_instrument()
    info = inst.info()
    assert info["serial"] == inst.device.serial_number
    result = inst.self_test()
    assert set(result) == {"passed", "checks"}
    assert result["checks"] and all(isinstance(v, bool) for v in result["checks"].values())
    assert result["passed"] is all(result["checks"].values())
    assert result["passed"], f"self-test failed: {result['checks']}"
    assert inst.status()["state"] == "idle"
    assert inst.transport.command(Opcode.IDENTIFY)["serial"] == info["serial"]
