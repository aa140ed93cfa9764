"""Maintenance mode of the rp2 board: decided by main.py at power-up, before the firmware, its
watchdog and its vendor USB interface start, so that the REPL on the USB serial port stays
free for mpremote (`cplscope flash`).

Two ways in, neither needs a debugger: the MAINTENANCE command (the firmware writes FLAG and
resets the chip; the flag is removed as it is seen, so the next reset starts the firmware),
and the strap GP22 to GND at power-up (for a board whose firmware does not answer)."""
import os
import time

import machine

from board import rp2_pins as G

FLAG = "/maintenance"


def maintenance_reason() -> str:
    """Why the firmware must not start this time, or ""."""
    try:
        os.stat(FLAG)
    except OSError:
        pass
    else:
        os.remove(FLAG)
        return "requested by the MAINTENANCE command"
    strap = machine.Pin(G.MAINTENANCE, machine.Pin.IN, machine.Pin.PULL_UP)
    time.sleep_us(100)  # the pull-up charges the pin's capacitance
    if strap.value() == 0:
        return "GP%d is strapped to GND" % G.MAINTENANCE
    return ""


def safe_outputs() -> None:
    """HV enable and shutter driven low (the build guide's pull-downs hold them too)."""
    for pin in (G.HV_EN, G.SHUTTER, G.HV_KEEPALIVE):
        machine.Pin(pin, machine.Pin.OUT, value=0)


def write_flag() -> None:
    """The next start is in maintenance mode."""
    with open(FLAG, "w") as f:
        f.write("cplscope maintenance\n")


def request_maintenance() -> None:
    """Reset the chip into maintenance mode (does not return)."""
    write_flag()
    machine.reset()
