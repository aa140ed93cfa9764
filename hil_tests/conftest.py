"""Options, markers and fixtures of the acceptance suite (docs/hil-tests.md).

    pytest hil_tests                          # the simulated instrument (default)
    pytest hil_tests --board usb              # the first real board on the USB bus
    pytest hil_tests --board usb://SERIAL     # that board
    pytest hil_tests --board emulated         # MicroPython's rp2 port on an emulated RP2040
    pytest hil_tests --soak                   # long runs (60 min stream, 10 000-frame fuzz, …)

Every test gets its instrument from a fixture that always closes it; a simulated instrument
is a fresh pair of processes, seeded. ``CPLSCOPE_HOME`` points to a temporary folder for the
whole session, so no test reads or writes the user's calibration store.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SIM = "sim"
EMULATED = "emulated"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cplscope hil", "cplscope acceptance tests (hil_tests/)")
    group.addoption("--board", default=SIM, metavar="ADDRESS",
                    help="instrument under test: 'sim' (default, the simulated instrument), "
                         "'usb' (first board found), 'usb://SERIAL', or 'emulated' (the "
                         "firmware in MicroPython's rp2 port on an emulated RP2040)")
    group.addoption("--calibration-sample", default=None, metavar="NAME",
                    help="real board only: the known sample in the instrument (a built-in "
                         "name such as linear-polarizer-45, or a sample JSON file); tests "
                         "that need this sample's ground truth run against it")
    group.addoption("--calibration-file", default=None, metavar="PATH",
                    help="real board only: calibration JSON (A0, φ0, handedness, dead time) "
                         "used by the accuracy tests")
    group.addoption("--bandpass-nm", default=2.0, type=float, metavar="NM",
                    help="real board only: monochromator bandpass (FWHM, nm) used to compute "
                         "the declared sample's ground truth (default 2)")
    group.addoption("--pico-image", default=None, metavar="PATH",
                    help="--board emulated: MicroPython RPI_PICO image, .uf2 or .bin "
                         "(default $CPLSCOPE_MICROPYTHON_IMAGE)")
    group.addoption("--pico-bootrom", default=None, metavar="PATH",
                    help="--board emulated: the RP2040 bootrom, 16 KiB "
                         "(default $CPLSCOPE_RP2040_BOOTROM)")
    group.addoption("--usb-device-lib", default=None, metavar="PATH",
                    help="--board emulated: a micropython-lib checkout, for usb-device "
                         "(default $CPLSCOPE_USB_DEVICE_LIB)")
    group.addoption("--soak", action="store_true", default=False,
                    help="long runs: 60 min stream, 10 000-frame command fuzz, longer "
                         "accuracy statistics")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sim_only(reason): needs the simulator itself (fault injection, process "
        "control, bench parameters); skipped on a real board")
    config.addinivalue_line(
        "markers", "truth(*samples): needs the ground truth of these samples; on a real board "
        "it runs only when --calibration-sample declares that one sample")
    config.addinivalue_line(
        "markers", "calibrated: needs a calibration (A0, φ0, handedness, dead time); on a "
        "real board give --calibration-file")
    config.addinivalue_line(
        "markers", "emulated_only(reason): needs the emulated Pico's bench (its light, PEM "
        "and ADC input set by the test); runs only with --board emulated")
    config.addinivalue_line(
        "markers", "timing(reason): needs the board's real timing or speed; skipped on the "
        "emulated Pico, whose PIO and CPU are stepped, not timing-true")
    config.addinivalue_line(
        "markers", "long(seconds): runs for that many seconds of instrument time; skipped on "
        "the emulated Pico (about a tenth of real time) unless --soak")


#: wall-clock seconds per second of instrument time the slowest tier may need: the emulated
#: Pico runs at about a tenth of real time, 30 leaves room on a busy machine
EMULATOR_SLOWDOWN = 30.0


@dataclass(frozen=True)
class Hil:
    """The run's settings, from the command line."""

    address: str
    calibration_sample: str | None
    calibration_file: str | None
    bandpass_nm: float
    soak: bool

    pico_files: Any = None  # emulated: hil_tests.emulated.pico.PicoFiles, or why not (str)

    @property
    def is_sim(self) -> bool:
        return self.address == SIM

    @property
    def is_emulated(self) -> bool:
        return self.address == EMULATED


def _hil(config: pytest.Config) -> Hil:
    address = config.getoption("--board")
    if address not in (SIM, EMULATED, "usb") and not (
            address.startswith("usb://") and len(address) > 6):
        raise pytest.UsageError(
            f"--board {address!r}: use 'sim', 'emulated', 'usb' or 'usb://SERIAL'")
    files = None
    if address == EMULATED:
        from .emulated.pico import find_pico_files

        files = find_pico_files(config.getoption("--pico-image"),
                                config.getoption("--pico-bootrom"),
                                config.getoption("--usb-device-lib"))
    return Hil(address, config.getoption("--calibration-sample"),
               config.getoption("--calibration-file"), config.getoption("--bandpass-nm"),
               config.getoption("--soak"), files)


def _mark_reason(item: pytest.Item, name: str, default: str) -> str | None:
    """The reason given to marker `name` on `item` (`default` if it gives none), or None
    without the marker."""
    mark = item.get_closest_marker(name)
    if mark is None:
        return None
    return mark.args[0] if mark.args else default


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    hil_dir = Path(__file__).parent
    hil = _hil(config) if any(hil_dir in Path(str(i.path)).parents for i in items) else None
    if hil is None:
        return
    for item in items:
        if hil_dir not in Path(str(item.path)).parents:
            continue
        why = _mark_reason(item, "emulated_only", "needs the emulated Pico's bench")
        if why is not None and not hil.is_emulated:
            item.add_marker(pytest.mark.skip(
                reason=f"emulated Pico only (--board emulated): {why}"))
            continue
        if hil.is_sim:
            continue
        if hil.is_emulated and isinstance(hil.pico_files, str):
            item.add_marker(pytest.mark.skip(reason=hil.pico_files))
            continue
        why = _mark_reason(item, "timing", "needs real timing")
        if why is not None and hil.is_emulated:
            item.add_marker(pytest.mark.skip(reason=f"not on the emulated Pico: {why}"))
            continue
        mark = item.get_closest_marker("long")
        if mark is not None and hil.is_emulated and not hil.soak:
            minutes = mark.args[0] * EMULATOR_SLOWDOWN / 60
            item.add_marker(pytest.mark.skip(
                reason=f"{mark.args[0]:g} s of instrument time, about {minutes:.0f} min on the "
                "emulated Pico: run with --soak"))
            continue
        why = _mark_reason(item, "sim_only", "needs the simulator")
        if why is not None:
            item.add_marker(pytest.mark.skip(reason=f"simulator only: {why}"))
            continue
        mark = item.get_closest_marker("truth")
        if mark is not None:
            needed = set(mark.args)
            if hil.calibration_sample is None:
                item.add_marker(pytest.mark.skip(reason=(
                    f"needs the ground truth of {', '.join(sorted(needed))}: declare the "
                    "known sample in the instrument with --calibration-sample NAME")))
            elif needed != {hil.calibration_sample}:
                item.add_marker(pytest.mark.skip(reason=(
                    f"needs {', '.join(sorted(needed))}; the instrument holds "
                    f"{hil.calibration_sample} (--calibration-sample)")))
                continue
        if item.get_closest_marker("calibrated") is not None and hil.calibration_file is None:
            item.add_marker(pytest.mark.skip(reason=(
                "needs the instrument's calibration: give --calibration-file PATH")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test on the emulated Pico gets where the firmware was (its traceback at a
    Ctrl-C), the emulator's log, and a restarted firmware, so the next test starts clean."""
    outcome = yield
    report = outcome.get_result()
    board = getattr(item, "funcargs", {}).get("pico")
    if report.failed and board is not None and call.when == "call":
        try:
            report.sections.append(("emulated Pico: the firmware at Ctrl-C",
                                    board.interrupt()[-4000:]))
            board.restart_firmware()
        except Exception as e:  # the emulator itself may be what failed
            report.sections.append(("emulated Pico restart", f"failed: {e}"))
        report.sections.append(("emulated Pico log", board.log()[-4000:]))


@pytest.fixture(scope="session")
def hil(pytestconfig: pytest.Config) -> Hil:
    return _hil(pytestconfig)


@pytest.fixture(scope="session", autouse=True)
def timeouts_in_instrument_time(hil: Hil) -> None:
    """The helpers' timeouts (wait_event, wait_locked) are seconds of instrument time: on
    the emulated Pico they wait EMULATOR_SLOWDOWN times longer in wall time."""
    from . import helpers

    helpers.WALL_PER_INSTRUMENT_S = EMULATOR_SLOWDOWN if hil.is_emulated else 1.0


@pytest.fixture(scope="session", autouse=True)
def cplscope_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private calibration store for the whole run (never the user's)."""
    home = tmp_path_factory.mktemp("cplscope-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CPLSCOPE_HOME", str(home))
        yield home


def make_safe(inst: Any) -> None:
    """HV off and shutter closed: how every test leaves a real instrument."""
    from cplscope.protocol import Opcode

    for op, args in ((Opcode.STOP, None), (Opcode.SET_HV, {"volts": 0.0}),
                     (Opcode.SHUTTER, {"open": False})):
        try:
            inst.transport.command(op, args, timeout=2.0)
        except Exception:
            pass


@pytest.fixture(scope="session")
def pico(hil: Hil) -> Iterator[Any]:
    """The emulated Pico (hil_tests.emulated.pico.EmulatedPico), booted once per run and
    shared like a real board; None on the other boards."""
    if not hil.is_emulated:
        yield None
        return
    if isinstance(hil.pico_files, str):
        pytest.skip(hil.pico_files)
    from .emulated.pico import EmulatedPico

    board = EmulatedPico(hil.pico_files, seed=1)
    try:
        yield board
    finally:
        board.close()


OpenInstrument = Callable[..., Any]


@pytest.fixture
def open_instrument(hil: Hil, pico: Any) -> Iterator[OpenInstrument]:
    """``open_instrument(sample=..., seed=..., faults=..., bench_options=..., speed=...)``
    returns a connected :class:`cplscope.Instrument`; all are made safe and closed after the
    test. ``speed`` None (default): the reproducible simulator; a number paces moves in wall
    time (docs/sim-link.md). On a real board ``sample`` is whatever is in the instrument; simulator-only
    arguments there are an error in the test (mark it ``sim_only``)."""
    import cplscope

    opened: list[Any] = []

    def open_(sample: str = "R-Cs4PbBr6", *, seed: int = 1,
              faults: dict[str, Any] | None = None,
              bench_options: dict[str, Any] | None = None, speed: float | None = None,
              reconnect_timeout: float = 30.0) -> Any:
        if hil.is_sim:
            inst = cplscope.connect(SIM, sample=sample, seed=seed, faults=faults,
                                    bench_options=bench_options, speed=speed,
                                    reconnect_timeout=reconnect_timeout)
        else:
            if faults or bench_options:
                pytest.fail("faults and bench options exist only in the simulator: mark the "
                            "test sim_only")
            if pico is not None:
                from cplscope.board.transport import Transport

                # its replies take EMULATOR_SLOWDOWN times longer in wall time
                inst = cplscope.Instrument(
                    Transport(pico.find_device, reconnect_timeout=reconnect_timeout,
                              reply_timeout=5.0 * EMULATOR_SLOWDOWN), address=EMULATED)
            else:
                inst = cplscope.connect(hil.address, reconnect_timeout=reconnect_timeout)
        opened.append(inst)
        return inst

    yield open_
    for inst in reversed(opened):
        make_safe(inst)
        inst.close()


@pytest.fixture
def open_raw(hil: Hil, pico: Any) -> Iterator[Callable[..., Any]]:
    """``open_raw(sample=..., seed=..., record=False)`` returns a
    :class:`hil_tests.rawlink.RawLink` on a fresh simulated instrument or on the real board
    (``.sim`` is the SimSession or None). Closed after the test."""
    from cplscope.sim.launcher import launch

    from .rawlink import RawLink

    opened: list[tuple[Any, Any]] = []

    def open_(sample: str = "R-Cs4PbBr6", *, seed: int = 1, record: bool = False,
              speed: float | None = None) -> RawLink:
        session = None
        if hil.is_sim:
            session = launch(sample, seed=seed, speed=speed)
            device = session.find_device()
        elif pico is not None:
            device = pico.find_device()
            if device is None:
                pytest.fail("the emulated Pico is off its bus:\n" + pico.log())
        else:
            device = find_real_board(hil.address)
        try:
            link = RawLink(device, record=record)
        except BaseException:
            if session is not None:
                session.close()
            raise
        link.sim = session  # type: ignore[attr-defined]
        opened.append((link, session))
        return link

    yield open_
    from cplscope.protocol import Opcode

    for link, session in reversed(opened):
        for op, args in ((Opcode.STOP, None), (Opcode.SET_HV, {"volts": 0.0}),
                         (Opcode.SHUTTER, {"open": False})):
            try:
                link.command(op, args, timeout_s=2.0)
            except Exception:
                pass
        link.close()
        if session is not None:
            session.close()


def find_real_board(address: str) -> Any:
    from cplscope.board.connection import find_boards

    serial = address[len("usb://"):] if address.startswith("usb://") else None
    for dev in find_boards():
        if serial is None or dev.serial_number == serial:
            return dev
    pytest.fail(f"no cplscope board for --board {address} on the USB bus")


def truth_of(hil: Hil, inst: Any, wavelength_nm: float) -> dict[str, float]:
    """Ground truth at ``wavelength_nm`` (nm): the simulator's bench, or on a real board the
    declared ``--calibration-sample`` through a ``--bandpass-nm`` triangular slit."""
    if inst.sim is not None:
        return inst.sim.truth(wavelength_nm)
    from cplscope.sim.samples import load_sample

    if hil.calibration_sample is None:
        pytest.skip("no --calibration-sample: no ground truth on a real board")
    t = load_sample(hil.calibration_sample).truth(wavelength_nm, hil.bandpass_nm)
    return {"g_lum": float(t.g_lum), "linear": float(t.linear),
            "emission": float(t.emission), "bandpass_nm": hil.bandpass_nm}


__all__ = ["Hil", "make_safe", "truth_of", "find_real_board"]


# --- calibration ------------------------------------------------------------------------------
#: The simulated counting head's dead time (docs/simulator.md, bench default 18 ns). The
#: calibration routines do not measure dead time; a user takes it from the detector's data.
SIM_DEAD_TIME_S = 18e-9
CAL_WAVELENGTH_NM = 438.0


@dataclass(frozen=True)
class CalibratedSetup:
    """A calibration and the SET_RETARDATION value that produces its A0.

    ``calibration.a0_rad`` is the A0 (rad) the instrument actually produced when told to hold
    ``a0_command_rad`` during the calibration; measurements tell it the same again."""

    calibration: Any
    a0_command_rad: float
    retardation_fit: Any = None
    handedness_fit: Any = None


def _calibrate_in_sim(seed: int) -> CalibratedSetup:
    """What a user does: a linear polarizer at 45° for A0 and φ0, then a left circular
    polarizer for the handedness, each in its own (simulated) instrument."""
    import math
    from datetime import datetime, timezone

    import cplscope
    from cplscope.settings.calibration import Calibration
    from cplscope.plans.point import calibrate_handedness, calibrate_retardation

    from .helpers import A0_RAD, tune

    with cplscope.connect(SIM, sample="linear-polarizer-45", seed=seed) as inst:
        tune(inst, CAL_WAVELENGTH_NM, a0_rad=A0_RAD)
        dark = inst.measure_dark(dwell_s=20.0)
        a0, phi0, fit_ = calibrate_retardation(inst, dwell_s=20.0, dark=dark,
                                               dead_time_s=SIM_DEAD_TIME_S)
        fit: Any = fit_
        serial = inst.info()["serial"]
        make_safe(inst)
    with cplscope.connect(SIM, sample="circular-polarizer-L", seed=seed + 1) as inst:
        tune(inst, CAL_WAVELENGTH_NM, a0_rad=A0_RAD)
        dark = inst.measure_dark(dwell_s=20.0)
        hand = calibrate_handedness(inst, expected_sign=+1, a0_rad=a0, phase_offset_rad=phi0,
                                    dwell_s=5.0, dark=dark, dead_time_s=SIM_DEAD_TIME_S)
        make_safe(inst)
    assert math.isfinite(a0) and math.isfinite(phi0)
    cal = Calibration(a0_rad=a0, phase_offset_rad=phi0, handedness=hand.handedness,
                      dead_time_s=SIM_DEAD_TIME_S, serial=serial,
                      date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      source="linear-polarizer-45+circular-polarizer-L",
                      reference_wavelength_nm=CAL_WAVELENGTH_NM, sigma_a0_rad=fit.sigma_a0,
                      sigma_phase_offset_rad=fit.sigma_phase,
                      note=f"hil_tests; A0 commanded {A0_RAD:.6f} rad; dead time stated")
    return CalibratedSetup(cal, A0_RAD, fit, hand)


@pytest.fixture(scope="session")
def calibrated_setup(hil: Hil, cplscope_home: Path) -> CalibratedSetup:
    """The instrument's calibration, saved in the private store so every instrument opened
    afterwards loads it (``inst.calibration``). Simulator: measured with the calibration
    routines, once per run. Real board: ``--calibration-file``."""
    if hil.is_sim:
        setup = _calibrate_in_sim(seed=11)
        setup.calibration.save()
        return setup
    if hil.calibration_file is None:
        pytest.skip("needs the instrument's calibration: give --calibration-file PATH")
    import cplscope
    from cplscope.settings.calibration import Calibration

    with cplscope.connect(hil.address) as inst:
        serial = str(inst.info()["serial"])
    cal = Calibration.load(hil.calibration_file, expected_serial=serial)
    cal.save()
    return CalibratedSetup(cal, cal.a0_rad)
