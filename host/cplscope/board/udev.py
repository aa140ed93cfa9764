"""udev rules that let a logged-in user (and members of `plugdev`) open the cplscope board
without making the device world-writable.

`rules_text()` returns the rules file; install it as `/etc/udev/rules.d/70-cplscope.rules`,
then `sudo udevadm control --reload && sudo udevadm trigger` (or re-plug the board).
"""
from __future__ import annotations

from ..protocol.usb_ids import PID, VID

FILENAME = "70-cplscope.rules"

__all__ = ["FILENAME", "rules_text"]


def rules_text(vid: int = VID, pid: int = PID, group: str = "plugdev") -> str:
    """The udev rules for the board with USB IDs vid:pid.

    `TAG+="uaccess"` gives the user at the seat access through systemd-logind (the file's
    number sorts it before 73-seat-late.rules, which applies the tag); `GROUP`/`MODE="0660"`
    also lets members of `group` in, e.g. over ssh. Nothing is world-writable.
    """
    if not (0 <= vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
        raise ValueError(f"USB IDs are 16-bit, got {vid:#x}:{pid:#x}")
    if not group or any(c in group for c in '"\n\\ '):
        raise ValueError(f"not a usable group name: {group!r}")
    match = f'ATTR{{idVendor}}=="{vid:04x}", ATTR{{idProduct}}=="{pid:04x}"'
    return (
        f"# cplscope CPL controller (USB {vid:04x}:{pid:04x}): access for the logged-in user\n"
        f"# and the {group} group, not for everyone. Install as /etc/udev/rules.d/{FILENAME},\n"
        "# then: sudo udevadm control --reload && sudo udevadm trigger\n"
        f'SUBSYSTEM=="usb", ENV{{DEVTYPE}}=="usb_device", {match}, '
        f'TAG+="uaccess", GROUP="{group}", MODE="0660"\n'
        f'SUBSYSTEM=="tty", ATTRS{{idVendor}}=="{vid:04x}", ATTRS{{idProduct}}=="{pid:04x}", '
        f'TAG+="uaccess", GROUP="{group}", MODE="0660"\n'
    )
