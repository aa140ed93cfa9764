"""The udev rules file: matches the board's USB IDs, grants access without world-write."""
import re

import pytest

from cplscope.board import udev
from cplscope.protocol.usb_ids import PID, VID


def _rules(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_rules_match_the_board_and_grant_uaccess_and_group():
    rules = _rules(udev.rules_text())
    assert rules
    usb = [r for r in rules if 'SUBSYSTEM=="usb"' in r]
    assert len(usb) == 1
    r = usb[0]
    assert f'ATTR{{idVendor}}=="{VID:04x}"' in r and f'ATTR{{idProduct}}=="{PID:04x}"' in r
    assert 'TAG+="uaccess"' in r and 'GROUP="plugdev"' in r


def test_no_rule_is_world_writable():
    for r in _rules(udev.rules_text()):
        modes = re.findall(r'MODE="(\d+)"', r)
        assert modes, r
        for m in modes:
            assert int(m, 8) & 0o006 == 0, r   # no access for "other"


def test_every_line_is_a_well_formed_rule():
    for r in _rules(udev.rules_text(0x1234, 0xABCD, "lab")):
        for part in r.split(", "):
            assert re.fullmatch(r'[A-Z]+(\{[A-Za-z]+\})?(==|\+=|=)"[^"]*"', part), part
        assert 'GROUP="lab"' in r and '"1234"' in r and '"abcd"' in r


@pytest.mark.parametrize("args", [(0x10000, 1), (1, -1)])
def test_bad_ids_are_refused(args):
    with pytest.raises(ValueError):
        udev.rules_text(*args)


def test_bad_group_is_refused():
    with pytest.raises(ValueError):
        udev.rules_text(group='x" MODE="0666')
