"""Options, markers and fixtures of the acceptance suite (docs/hil-tests.md).

    pytest hil_tests                          # the simulated instrument (default)
    pytest hil_tests --board usb              # the first real board on the USB bus
    pytest hil_tests --board usb://SERIAL     # that board
    pytest hil_tests --soak                   # long runs (60 min stream, 10 000-frame fuzz, …)

Every test gets its instrument from a fixture that always closes it; a simulated instrument
is a fresh pair of processes, seeded. ``CPLSCOPE_HOME`` points to a temporary folder for the
whole session, so no test reads or writes the user's calibration store.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SIM = "sim"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cplscope hil", "cplscope acceptance tests (hil_tests/)")
    group.addoption("--board", default=SIM, metavar="ADDRESS",
                    help="instrument under test: 'sim' (default, the simulated instrument), "
                         "'usb' (first board found) or 'usb://SERIAL'")
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


@dataclass(frozen=True)
class Hil:
    """The run's settings, from the command line."""

    address: str
    calibration_sample: str | None
    calibration_file: str | None
    bandpass_nm: float
    soak: bool

    @property
    def is_sim(self) -> bool:
        return self.address == SIM


def _hil(config: pytest.Config) -> Hil:
    address = config.getoption("--board")
    if address != SIM and address != "usb" and not (
            address.startswith("usb://") and len(address) > 6):
        raise pytest.UsageError(f"--board {address!r}: use 'sim', 'usb' or 'usb://SERIAL'")
    return Hil(address, config.getoption("--calibration-sample"),
               config.getoption("--calibration-file"), config.getoption("--bandpass-nm"),
               config.getoption("--soak"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    hil_dir = Path(__file__).parent
    hil = _hil(config) if any(hil_dir in Path(str(i.path)).parents for i in items) else None
    if hil is None or hil.is_sim:
        return
    for item in items:
        if hil_dir not in Path(str(item.path)).parents:
            continue
        mark = item.get_closest_marker("sim_only")
        if mark is not None:
            why = mark.args[0] if mark.args else "needs the simulator"
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


@pytest.fixture(scope="session")
def hil(pytestconfig: pytest.Config) -> Hil:
    return _hil(pytestconfig)


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


OpenInstrument = Callable[..., Any]


@pytest.fixture
def open_instrument(hil: Hil) -> Iterator[OpenInstrument]:
    """``open_instrument(sample=..., seed=..., faults=..., bench_options=..., speed=...)``
    returns a connected :class:`cplscope.Instrument`; all are made safe and closed after the
    test. On a real board ``sample`` is whatever is in the instrument; simulator-only
    arguments there are an error in the test (mark it ``sim_only``)."""
    import cplscope

    opened: list[Any] = []

    def open_(sample: str = "R-Cs4PbBr6", *, seed: int = 1,
              faults: dict[str, Any] | None = None,
              bench_options: dict[str, Any] | None = None, speed: float = 200.0,
              reconnect_timeout: float = 30.0) -> Any:
        if hil.is_sim:
            inst = cplscope.connect(SIM, sample=sample, seed=seed, faults=faults,
                                    bench_options=bench_options, speed=speed,
                                    reconnect_timeout=reconnect_timeout)
        else:
            if faults or bench_options:
                pytest.fail("faults and bench options exist only in the simulator: mark the "
                            "test sim_only")
            inst = cplscope.connect(hil.address, reconnect_timeout=reconnect_timeout)
        opened.append(inst)
        return inst

    yield open_
    for inst in reversed(opened):
        make_safe(inst)
        inst.close()


@pytest.fixture
def open_raw(hil: Hil) -> Iterator[Callable[..., Any]]:
    """``open_raw(sample=..., seed=..., record=False)`` returns a
    :class:`hil_tests.rawlink.RawLink` on a fresh simulated instrument or on the real board
    (``.sim`` is the SimSession or None). Closed after the test."""
    from cplscope.sim.launcher import launch

    from .rawlink import RawLink

    opened: list[tuple[Any, Any]] = []

    def open_(sample: str = "R-Cs4PbBr6", *, seed: int = 1, record: bool = False,
              speed: float = 200.0) -> RawLink:
        session = None
        if hil.is_sim:
            session = launch(sample, seed=seed, speed=speed)
            device = session.find_device()
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
    from cplscope.connection import find_boards

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


def copy_calibration_file(hil: Hil, home: Path, serial: str) -> None:
    """Install --calibration-file as the board's stored calibration in the private store."""
    from cplscope.calibration import Calibration, default_path

    assert hil.calibration_file is not None
    cal = Calibration.load(hil.calibration_file, expected_serial=serial)
    target = default_path(serial)
    assert Path(target).parent == home or str(home) in str(target)
    shutil.copyfile(hil.calibration_file, target)
    del cal


__all__ = ["Hil", "make_safe", "truth_of", "find_real_board", "copy_calibration_file"]
