"""The firmware's life cycle on the emulated Pico (MicroPython's real rp2 port): what happens
to the HV enable, the shutter and the keep-alive when the firmware is stopped (a Ctrl-C on
the REPL, a soft reset) during a counting and during an analog run; the pads the board set
up; the analog guard's heartbeat; and `cplscope flash` onto a board that runs the firmware,
twice in a row (through a pty that relays the board's CDC REPL to mpremote).

Times are instrument time (the bridge stamps every level change of the outputs): the limits
are the ones docs/firmware.md states for a board.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from cplscope.protocol import Opcode

pytestmark = pytest.mark.emulated_only("stops the firmware on the emulated board's REPL")

#: The HV enable and the shutter must be low this soon after the Ctrl-C reaches the
#: board (docs/firmware.md): the KeyboardInterrupt is raised at the next bytecode branch,
#: the `finally` runs board.shutdown() first.
HV_OFF_WITHIN_S = 0.1


def _pin_events(pico: Any) -> dict[str, Any]:
    return pico.control(op="pin_events")


def _wait_console(pico: Any, text: str, since: int, timeout_s: float = 120.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = pico.console()[since:]
        if text in out:
            return out
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not on the console; it says:\n{pico.console()[since:][-3000:]}")


def _running(open_raw: Any, mode: str) -> Any:
    link = open_raw()
    link.call(Opcode.SET_HV, {"volts": 500.0})
    link.call(Opcode.SHUTTER, {"open": True})
    if mode == "counting":
        link.call(Opcode.CONFIGURE, {"mode": "counting", "bins": 8, "periods": 500})
    else:
        link.call(Opcode.CONFIGURE, {"mode": "analog", "sample_rate_hz": 100000.0,
                                     "block_samples": 1024})
    link.call(Opcode.START)
    assert link.call(Opcode.STATUS)["state"] == "running"
    return link


@pytest.mark.parametrize("how", ["ctrl_c", "soft_reset"])
@pytest.mark.parametrize("mode", ["counting", "analog"])
def test_soft_reset_and_ctrl_c_stop_hv(open_raw, pico, mode: str, how: str) -> None:
    """Ctrl-C (or Ctrl-C and Ctrl-D, mpremote's soft reset) during a run: HV enable and
    shutter low within HV_OFF_WITHIN_S, the keep-alive stops toggling, the firmware says it
    stopped; after the soft reset it starts again with HV off."""
    link = _running(open_raw, mode)
    ev = _pin_events(pico)
    assert ev["now"]["hvEn"] == 1 and ev["now"]["shutter"] == 1, ev["now"]
    assert any(e["pin"] == "keepalive" for e in ev["events"]), "no keep-alive toggles"
    since = len(pico.console())
    n_enum = pico.stats()["enumerations"]
    t_cmd = pico.instrument_time_s()
    pico.control(op="repl", text="\x03" if how == "ctrl_c" else "\x03\x04")
    try:
        _wait_console(pico, "cplscope: firmware stopped", since)
        ev = _pin_events(pico)
        offs = {}
        for e in ev["events"]:
            if e["pin"] in ("hvEn", "shutter") and e["level"] != 1 and e["pin"] not in offs:
                offs[e["pin"]] = e["t_us"] * 1e-6 - t_cmd
        assert set(offs) == {"hvEn", "shutter"}, ev
        latency = max(offs.values())
        print(f"{mode} {how}: HV enable off {offs['hvEn'] * 1e3:.1f} ms, shutter "
              f"{offs['shutter'] * 1e3:.1f} ms after the {how} was sent")
        assert latency <= HV_OFF_WITHIN_S, offs
        if how == "ctrl_c":
            # the keep-alive is still: no toggle for 0.3 s of instrument time
            _wait_console(pico, ">>> ", since)
            pico.control(op="pin_events")
            t0 = pico.instrument_time_s()
            while pico.instrument_time_s() < t0 + 0.3:
                time.sleep(0.2)
            ev = _pin_events(pico)
            assert not [e for e in ev["events"] if e["pin"] == "keepalive"], ev["events"][:5]
            assert ev["now"] == {"keepalive": 0, "hvEn": 0, "shutter": 0}, ev["now"]
        else:
            pico.wait_enumerated(300.0, after=n_enum)
            fresh = open_raw()
            st = fresh.call(Opcode.STATUS)
            assert st["state"] == "idle" and st["hv_set_volts"] == 0.0, st
            assert _pin_events(pico)["now"]["hvEn"] == 0
        # the traceback is the KeyboardInterrupt's, and the shutdown raised nothing
        out = pico.console()[since:]
        assert "KeyboardInterrupt" in out and out.count("Traceback") <= 1, out[-2000:]
    finally:
        link.sim = None
        if how == "ctrl_c":
            pico.restart_firmware()


def test_the_board_sets_up_its_pads(open_raw, pico) -> None:
    """The ADC inputs are analog (digital input off, no pulls), the photon and reference
    inputs have their pull-downs, the home switch and the maintenance strap pull-ups."""
    open_raw().identify()
    pads = {int(k): v for k, v in pico.control(op="pads")["pads"].items()}
    for n in (26, 27, 28):
        assert not pads[n]["ie"] and not pads[n]["pu"] and not pads[n]["pd"], (n, pads[n])
    for n in (2, 3):
        assert pads[n]["pd"] and not pads[n]["pu"], (n, pads[n])
    assert pads[16]["pu"], pads[16]


def test_analog_guard_heartbeat(open_raw, pico) -> None:
    """In analog mode the ADC level guard's timer interrupt runs (its heartbeat advances) and
    the firmware would notice it stopping: STATUS shows no fault after a second of blocks."""
    link = _running(open_raw, "analog")
    t0 = pico.instrument_time_s()
    while pico.instrument_time_s() < t0 + 1.0:
        time.sleep(0.5)
    st = link.call(Opcode.STATUS)
    assert st["state"] == "running" and st["fault"] is None, st
    link.call(Opcode.STOP)


def test_flash_twice_onto_a_running_board(pico, hil) -> None:
    """`cplscope flash` (cplscope.board.flash.flash, what the command runs) onto the board while
    it runs the firmware, twice in a row: each time MAINTENANCE over the vendor interface,
    a restart into maintenance mode (watchdog reset), every file copied by mpremote through
    the board's CDC REPL and its SHA-256 read back, a restart, and the firmware answering
    IDENTIFY with the version copied. Afterwards the board runs normally."""
    import cplscope
    from cplscope.board.flash import flash
    from cplscope.board.transport import DeviceNotFound, Transport

    from .conftest import EMULATOR_SLOWDOWN

    def open_instrument():
        if pico.find_device() is None:
            raise DeviceNotFound("the emulated board is not on its bus")
        return cplscope.Instrument(Transport(pico.find_device, reconnect_timeout=1.0,
                                             reply_timeout=5.0 * EMULATOR_SLOWDOWN),
                                   address="emulated")

    port = pico.repl_pty().path
    reboots = pico.stats()["reboots"]
    lines: list[str] = []
    for _ in range(2):
        t0 = time.monotonic()
        info = flash(open_instrument=open_instrument, port=port,
                     usb_device_lib=hil.pico_files.usb_device_lib, wait_s=900.0,
                     log=lines.append)
        print(f"flash: {time.monotonic() - t0:.0f} s wall; " + " | ".join(lines[-4:]))
        assert info["board"] == "rp2" and info["firmware_version"] == cplscope_version()
    # two restarts per update: into maintenance mode, and back into the firmware
    assert pico.stats()["reboots"] - reboots == 4, pico.stats()["reboots"]
    console = pico.console()
    assert console.count("cplscope: maintenance mode (requested by the MAINTENANCE") >= 2
    with open_instrument() as inst:
        st = inst.status()
    assert st["state"] == "idle" and st["fault"] is None, st


def cplscope_version() -> str:
    from .emulated.pico import FIRMWARE

    for line in (FIRMWARE / "cpl" / "__init__.py").read_text().splitlines():
        if line.startswith("FIRMWARE_VERSION"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise AssertionError("no FIRMWARE_VERSION")


@pytest.mark.parametrize("stretcher", ["non_retriggerable", "retriggerable"])
def test_gross_overload_trips_the_guard(open_raw, pico, stretcher: str) -> None:
    """3·10⁸ photons/s (150× the default limit) through the stretcher: a non-retriggerable
    one pulses at its maximum rate (one pulse per 48 ns, ≈ 20 Mcps) and the count-rate guard
    trips within a few windows; a retriggerable one stays high (observed rate ≈ 6·10⁵/s, the
    count guard blind) and the high-time trip (GP17's level-gated PWM counter, jumpered from
    GP2) catches it within 1 ms."""
    before = pico.bench()
    link = open_raw()
    try:
        pico.bench(light_cps=3.0e8, g=0.0, retrigger=stretcher == "retriggerable")
        link.call(Opcode.SET_HV, {"volts": 500.0})
        link.call(Opcode.SHUTTER, {"open": True})
        t0 = pico.instrument_time_s()
        while pico.instrument_time_s() < t0 + 0.01:
            time.sleep(0.2)
        now = _pin_events(pico)["now"]
        st = link.call(Opcode.STATUS)
        assert st["overload"] and now["hvEn"] == 0 and now["shutter"] == 0, (st, now)
        if stretcher == "retriggerable":
            assert "stuck or paralyzed" in (st["fault"] or ""), st
    finally:
        pico.bench(**before)
        link.call(Opcode.SET_HV, {"volts": 0.0})
        link.call(Opcode.SHUTTER, {"open": False})
        link.call(Opcode.CLEAR_FAULT)
