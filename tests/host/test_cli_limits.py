"""Every mistake caught before measuring (issue 25): the options a board limits are checked
against what the board reports when the CLI connects (HV ceiling, monochromator range, the
PEM's drive and frame time, the guard's count rate) before anything is set, calibrated or
measured, and end with exit status 2 and a message naming the option."""
import argparse

import pytest

from cplscope.board.controller import Controller
from cplscope.cli.main import main
from cplscope.cli.options import CliError
from cplscope.cli.session import BoardLimits, check_board_limits

# what changes the instrument or measures: none of it may run before a refusal
TOUCH = ("configure_counting", "configure_analog", "set_hv", "set_retardation",
         "open_shutter", "acquire", "acquire_analog", "move_to", "home", "set_limits")


@pytest.fixture
def untouched(monkeypatch, tmp_path):
    """The simulated instrument may be connected to and asked, never set up or measured;
    the calibration store and the working folder are empty temporary ones."""
    for name in TOUCH:
        def refuse(self, *a, _name=name, **kw):
            raise AssertionError(f"{_name} ran before the mistake was refused")
        monkeypatch.setattr(Controller, name, refuse)
    home = tmp_path / "home"
    monkeypatch.setenv("CPLSCOPE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def nothing_written(folder):
    home = folder / "home"
    assert not home.exists() or not list(home.glob("calibration-*")), "calibrated first"
    assert not list(folder.glob("*.csv")) and not list(folder.glob("*.png"))


def refused(argv, capfd, *expected):
    """``cplscope argv`` ends with exit status 2, no traceback, a message holding every
    ``expected`` text, and nothing calibrated or written (the working folder is the cwd)."""
    from pathlib import Path

    rc, err = main(argv), capfd.readouterr().err
    assert (rc, "Traceback" in err) == (2, False), err
    assert [t for t in expected if t not in err] == [], err
    nothing_written(Path.cwd())


def set_option(argv, option, value):
    """``argv`` with ``option``'s value replaced."""
    i = argv.index(option)
    return argv[:i + 1] + [value] + argv[i + 2:]


SCAN = ["-q", "scan", "--sim", "--seed", "1", "--start", "400", "--stop", "560", "--step",
        "2", "--target-sigma", "2e-4", "--output", "r.csv", "--plot", "r.png"]


def test_hv_above_the_instruments_limit(untouched, capfd):
    refused(SCAN + ["--hv", "5000"], capfd, "--hv 5000: this instrument allows 0–1250 V")
    nothing_written(untouched)


def test_wavelengths_outside_the_monochromator(untouched, capfd):
    refused(set_option(SCAN, "--stop", "950"), capfd, "--start/--stop", "400–950 nm",
            "200–900 nm")
    refused(["point", "--sim", "--seed", "1", "--wavelength", "150", "--dwell", "1"], capfd,
            "--wavelength", "150 nm", "200–900 nm")
    nothing_written(untouched)


def test_a_retardation_the_pem_cannot_reach_at_the_longest_wavelength(untouched, capfd):
    # A0 = drive/(λ·0.0006366) with drive ≤ 1: 2.244 rad at most at 700 nm
    refused(set_option(SCAN, "--stop", "700") + ["--retardation", "3"], capfd,
            "--retardation 3", "2.244 rad at 700 nm", "--start/--stop ≤ 523 nm")
    # the default A0 for 16 bins (1.907 rad) ends at 823 nm
    refused(set_option(SCAN, "--stop", "880"), capfd, "default A0 1.907 rad", "--bins 16",
            "--retardation ≤", "≤ 823 nm")
    nothing_written(untouched)


def test_count_rate_limit_outside_the_guards_range(untouched, capfd):
    refused(SCAN + ["--max-rate", "2e9"], capfd, "--max-rate", "1–1e+09 counts/s")
    nothing_written(untouched)


@pytest.mark.parametrize("extra,words", [
    (["--dwell", "0.01"], ["--dwell 0.01 s is shorter than one frame", "0.2 s",
                           "--periods 10000", "50 kHz"]),
    (["--dwell", "1", "--dark-dwell", "0.05"], ["--dark-dwell 0.05"]),
    (["--target-sigma", "1e-3", "--max-dwell", "1e11"], ["--max-dwell 1e+11",
                                                         "at most 2e+08 s"]),
    (["--dwell", "1", "--survey", "0.1"], ["--survey 0.1"]),
])
def test_dwell_times_in_frames_of_this_instrument(untouched, capfd, extra, words):
    argv = [a for a in SCAN if a not in ("--target-sigma", "2e-4")] + extra
    refused(argv, capfd, *words)
    nothing_written(untouched)


def test_periods_outside_the_protocols_range(untouched, capfd):
    refused(SCAN + ["--periods", "200000"], capfd, "--periods", "1–100000")


def test_bins_the_rp2_board_cannot_count_at_its_pem():
    """A bin must last 21 cycles of the rp2's 125 MHz clock: at 100 kHz that is 32 bins."""
    rp2 = BoardLimits("rp2", 1250.0, 200.0, 900.0, 100e3, 0.0006366)
    args = argparse.Namespace(bins=64, hv=800.0, periods=10000)
    with pytest.raises(CliError, match=r"--bins 64: .*100 kHz PEM.* at most 32 bins"):
        check_board_limits(None, args, rp2)
    args.bins = 32
    assert check_board_limits(None, args, rp2) is rp2
    sim = BoardLimits("sim", 1250.0, 200.0, 900.0, 100e3, 0.0006366)
    args.bins = 64                                    # the simulated board has no such limit
    assert check_board_limits(None, args, sim) is sim


def test_calibration_is_checked_with_its_own_a0():
    """`calibrate` holds A0 = π/2 (not the default 1.907 rad): at 850 nm the PEM reaches
    π/2 but not 1.907 rad, so calibrate --wavelength 850 is fine and a scan to 850 is not."""
    from types import SimpleNamespace

    from cplscope.settings.calibration import default_calibration

    board = SimpleNamespace(calibration=default_calibration("X"))
    lim = BoardLimits("rp2", 1250.0, 200.0, 900.0, 50e3, 0.0006366)
    common = dict(wavelengths_nm=[850.0], bins=16, hv=800.0, periods=10000,
                  retardation=None, calibration=None)
    ok = argparse.Namespace(command="calibrate", wavelength_options="--wavelength", **common)
    assert check_board_limits(board, ok, lim) is lim
    scan = argparse.Namespace(command="scan", wavelength_options="--start/--stop", **common)
    with pytest.raises(CliError, match="default A0 1.907"):
        check_board_limits(board, scan, lim)


def test_a_calibration_of_another_instrument(untouched, capfd):
    import json

    from cplscope.settings.calibration import default_calibration

    cal = default_calibration("OTHER-SERIAL").to_dict()
    (untouched / "other.json").write_text(json.dumps(cal))
    refused(SCAN + ["--calibration", "other.json"], capfd, "--calibration other.json",
            "OTHER-SERIAL")
    nothing_written(untouched)


def test_cd_checks_the_same_limits(untouched, capfd):
    cd = ["-q", "cd", "--sim", "--seed", "1", "--sample", "solvent", "--start", "400",
          "--stop", "410", "--step", "5", "--dwell", "1", "--output", "c.csv"]
    refused(cd + ["--hv", "2000"], capfd, "--hv 2000")
    refused(set_option(cd, "--stop", "905"), capfd, "--start/--stop",
            "200–900 nm")
    nothing_written(untouched)


# --- a held-out-style set of other mistakes: each ends before measuring with exit 2 and a
# message that names the option or the file ----------------------------------------------

BASE = ["scan", "--sim", "--seed", "1", "--start", "430", "--stop", "440", "--step", "5"]


def scan(*extra):
    """The short scan with a 1-s dwell and ``extra`` options."""
    return [*BASE, "--dwell", "1", *extra]


MISTAKES = [
    (scan("--hv", "1250.5"), "--hv"),
    (scan("--hv", "-1"), "--hv"),
    (scan("--bins", "128"), "--bins"),
    (scan("--bins", "3"), "--bins"),
    (scan("--periods", "0"), "--periods"),
    (scan("--periods", "1e4"), "--periods"),
    (scan("--retardation", "3.5"), "--retardation"),
    (scan("--max-rate", "1e10"), "--max-rate"),
    (scan("--linear-rate", "5e8"), "--linear-rate"),
    (scan("--linear-rate", "2e6", "--max-rate", "1e6"), "--max-rate"),
    (BASE + ["--dwell", "0.05"], "--dwell"),
    (scan("--dark-dwell", "0.1"), "--dark-dwell"),
    (BASE + ["--target-sigma", "2e-4", "--max-dwell", "0.1"], "--max-dwell"),
    (BASE + ["--time-budget", "1h", "--accumulations", "2"], "--accumulations"),
    (set_option(scan(), "--stop", "1000"), "--start/--stop"),
    (set_option(scan(), "--start", "100"), "--start/--stop"),
    (scan("--sample", "Cs4PbBr6"), "--sample"),
    (scan("--fault", "corrupt=2"), "--fault"),
    (scan("--calibration", "missing.json"), "missing.json"),
    (scan("--output", "nodir/r.csv"), "--output"),
    (scan("--plot", "r.gif"), "--plot"),
    (scan("--resume", "r.h5"), "--resume"),
    (["point", "--sim", "--seed", "1", "--wavelength", "905", "--dwell", "1"], "--wavelength"),
    (["point", "--sim", "--seed", "1", "--wavelength", "438", "--dwell", "0.001"], "--dwell"),
    (["dark", "--sim", "--seed", "1", "--dwell", "0.01"], "--dwell"),
    (["dark", "--sim", "--seed", "1", "--hv", "9999"], "--hv"),
    (["plot", "nothere.csv"], "nothere.csv"),
    (["reprocess", "nothere.h5"], "nothere.h5"),
]


@pytest.mark.parametrize("argv,names", MISTAKES, ids=[" ".join(m[0][-4:]) for m in MISTAKES])
def test_held_out_style_mistakes_end_before_measuring(untouched, capfd, argv, names):
    refused(argv, capfd, names)
