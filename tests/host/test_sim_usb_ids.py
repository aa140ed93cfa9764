"""cplscope.protocol.usb_ids agrees with the firmware's USB layer (firmware/board/rp2_usb.py, read with
ast, not imported: it needs machine/usb.device) and its descriptors parse as pyusb sees them."""
import ast
from pathlib import Path

import pytest

from cplscope.protocol import usb_ids
from cplscope.sim.vusb import parse_configuration

RP2_USB = Path(__file__).resolve().parents[2] / "firmware" / "board" / "rp2_usb.py"


def firmware_constants() -> dict:
    """Module-level NAME = literal or const(literal) assignments of rp2_usb.py."""
    out = {}
    for node in ast.parse(RP2_USB.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            v = node.value
            if isinstance(v, ast.Call) and getattr(v.func, "id", "") == "const":
                v = v.args[0]
            try:
                out[node.targets[0].id] = ast.literal_eval(v)
            except ValueError:
                pass
    return out


def vendor_interface_call() -> ast.Call:
    """The desc.interface(...) call in VendorInterface.desc_cfg."""
    tree = ast.parse(RP2_USB.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "interface":
            return node
    raise AssertionError("no desc.interface(...) call in rp2_usb.py")


@pytest.mark.skipif(not RP2_USB.exists(), reason="needs the source tree's firmware/")
def test_constants_match_the_firmware():
    fw = firmware_constants()
    assert (fw["VID"], fw["PID"]) == (usb_ids.VID, usb_ids.PID)
    assert fw["MANUFACTURER"] == usb_ids.MANUFACTURER
    assert fw["PRODUCT"] == usb_ids.PRODUCT
    assert fw["_PACKET"] == usb_ids.MAX_PACKET
    args = [ast.literal_eval(a) for a in vendor_interface_call().args[2:5]]
    assert args == [usb_ids.VENDOR_CLASS, usb_ids.VENDOR_SUBCLASS, usb_ids.VENDOR_PROTOCOL]
    assert 'PRODUCT + " data"' in RP2_USB.read_text()  # the interface string
    assert usb_ids.VENDOR_INTERFACE_STRING == usb_ids.PRODUCT + " data"


def test_descriptors_are_consistent():
    dev = usb_ids.device_descriptor()
    assert len(dev) == dev[0] == 18 and dev[1] == 1
    assert int.from_bytes(dev[8:10], "little") == usb_ids.VID
    assert int.from_bytes(dev[10:12], "little") == usb_ids.PID
    raw = usb_ids.configuration_descriptor()
    assert int.from_bytes(raw[2:4], "little") == len(raw) == 98  # 9 + 66 (CDC) + 23
    cfg = parse_configuration(raw)
    assert cfg.desc.bNumInterfaces == len(cfg.interfaces) == 3
    assert cfg.desc.extra_descriptors[:2] == [8, 0x0B]  # the IAD before interface 0
    (vendor, eps), = cfg.interfaces[2]
    assert (vendor.bInterfaceNumber, vendor.bInterfaceClass) == (usb_ids.VENDOR_INTERFACE, 0xFF)
    assert [(e.bEndpointAddress, e.bmAttributes, e.wMaxPacketSize) for e in eps] == \
        [(usb_ids.EP_OUT, 2, 64), (usb_ids.EP_IN, 2, 64)]
    comm, = cfg.interfaces[0]
    assert comm[0].bInterfaceClass == 2 and len(comm[0].extra_descriptors) == 19  # CDC funcs
    # endpoint addresses are unique across the configuration
    addrs = [e.bEndpointAddress for alts in cfg.interfaces for _, es in alts for e in es]
    assert len(addrs) == len(set(addrs)) == 5
    strings = usb_ids.string_table("abc")
    assert strings[usb_ids.STR_SERIAL] == "abc" and strings[vendor.iInterface] == \
        usb_ids.VENDOR_INTERFACE_STRING
