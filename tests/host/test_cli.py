"""The `cplscope` command line, end to end on the simulated instrument."""
import json
import math

import numpy as np
import pytest

from cplscope.data.archive import Archive
from cplscope.cli.main import build_parser, main
from cplscope.cli.options import join_negative_values, run_checks
from cplscope.plans.scan import scan_wavelengths
from cplscope.data.spectrum import Spectrum


def test_calibrate_stores_a_calibration_close_to_the_simulated_pem(cli_home):
    (stored,) = cli_home.glob("calibration-*.json")
    cal = json.loads(stored.read_text())
    assert cal["source"] == "linear-polarizer+circular-polarizer"
    # the simulated PEM holds A0 = π/2 with φ0 = 0.3 rad (docs/simulator.md)
    assert abs(cal["a0_rad"] - math.pi / 2) < 5 * cal["sigma_a0_rad"]
    assert abs(cal["phase_offset_rad"] - 0.3) < 5 * cal["sigma_phase_offset_rad"]
    assert cal["handedness"] == 1


def test_scan_writes_csv_archive_and_figure(cli_home, tmp_path, capsys):
    csv, h5, png = tmp_path / "r.csv", tmp_path / "r.h5", tmp_path / "r.png"
    for old in (csv, h5, png):                 # results of an earlier run, replaced on request
        old.write_text("an older run")
    rc = main(["-q", "scan", "--sim", "--seed", "1", "--sample", "r-cs4pbbr6", "--start", "430", "--stop",
               "446", "--step", "8", "--dwell", "20", "--output", str(csv), "--archive",
               str(h5), "--plot", str(png), "--dark-dwell", "5", "--overwrite"])
    assert rc == 0
    spec = Spectrum.read_csv(csv)
    assert list(spec.wavelength_nm) == [430.0, 438.0, 446.0]
    assert spec.metadata["stream"]["rejected"] == 0 and spec.metadata["sample"] == "R-Cs4PbBr6"
    assert np.all(spec.sigma_g > 0) and np.all(np.abs(spec.g_lum - 6e-4) < 5 * spec.sigma_g)
    data = np.genfromtxt(csv, names=True, comments="#", delimiter=",", dtype=None,
                         encoding=None)
    assert data["wavelength_nm"].tolist() == [430.0, 438.0, 446.0]
    with Archive.open(h5) as arc:
        assert len(arc) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "3 points" in capsys.readouterr().out


def test_reprocess_reproduces_the_scan(cli_home, tmp_path):
    csv, h5 = tmp_path / "s.csv", tmp_path / "s.h5"
    assert main(["-q", "scan", "--sim", "--seed", "2", "--sample", "S-Cs4PbBr6", "--start",
                 "438", "--stop",
                 "440", "--step", "2", "--dwell", "10", "--output", str(csv), "--archive",
                 str(h5), "--no-dark"]) == 0
    out = tmp_path / "again.csv"
    out.write_text("an older result")
    assert main(["reprocess", str(h5), "--output", str(out)]) == 2   # exists: refused
    assert out.read_text() == "an older result"
    assert main(["reprocess", str(h5), "--output", str(out), "--overwrite"]) == 0
    a, b = Spectrum.read_csv(csv), Spectrum.read_csv(out)
    np.testing.assert_allclose(a.g_lum, b.g_lum, rtol=1e-9)
    np.testing.assert_allclose(a.sigma_g, b.sigma_g, rtol=1e-9)


def test_point_and_dark(cli_home, capsys):
    assert main(["-q", "point", "--sim", "--seed", "3", "--wavelength", "438", "--dwell", "10", "--json",
                 "--dark-dwell", "5"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["wavelength_nm"] == 438.0 and result["dwell_s"] == pytest.approx(10, rel=0.05)
    assert main(["-q", "dark", "--sim", "--seed", "4", "--dwell", "20"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    rate = float(line.split()[1])
    # the bench's PMT dark rate is 20 cps (docs/simulator.md); Poisson sd over 20 s ≈ 1 cps
    assert rate == pytest.approx(20.0, abs=5.0)


def test_no_emission_sample_gives_empty_g(cli_home, tmp_path):
    csv = tmp_path / "n.csv"
    assert main(["-q", "scan", "--sim", "--seed", "5", "--sample", "N-Cs4PbBr6", "--start", "430", "--stop",
                 "440", "--step", "10", "--target-sigma", "2e-4", "--max-dwell", "60",
                 "--output", str(csv), "--dark-dwell", "20"]) == 0
    spec = Spectrum.read_csv(csv)
    assert all("no_emission" in f for f in spec.flags)
    assert np.all(np.isnan(spec.g_lum)) and np.all(np.isnan(spec.sigma_g))


def test_plot_with_mirror_report(cli_home, tmp_path, capsys):
    paths = []
    for seed, sample in ((6, "R-Cs4PbBr6"), (7, "S-Cs4PbBr6")):
        p = tmp_path / f"{sample}.csv"
        assert main(["-q", "scan", "--sim", "--seed", str(seed), "--sample", sample, "--start", "434", "--stop",
                     "442", "--step", "4", "--dwell", "30", "--output", str(p),
                     "--no-dark"]) == 0
        paths.append(str(p))
    svg = tmp_path / "pair.svg"
    assert main(["plot", *paths, "--mirror", "--output", str(svg)]) == 0
    assert "consistent with a mirror pair" in capsys.readouterr().out
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))


@pytest.fixture
def no_instrument(monkeypatch, tmp_path):
    """Any attempt to connect fails the test: the mistake must be caught before; the
    working folder is an empty temporary one."""
    import cplscope

    def refuse(*args, **kwargs):
        raise AssertionError("the command connected to an instrument before refusing")

    monkeypatch.setattr(cplscope, "connect", refuse)
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


SCAN = ["scan", "--sim", "--start", "400", "--stop", "410", "--step", "5"]


def refused(argv, capfd, *expected):
    """Run ``cplscope argv``: exit status 2, no traceback, every ``expected`` text in the
    message; returns the message."""
    rc = main(argv)
    err = capfd.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


# --- the mistakes of issue 12's table, each caught before any measurement ------------------

def test_unknown_sample_names_the_option_and_the_nearest_sample(no_instrument, capfd):
    err = refused(SCAN + ["--sample", "R-CsPbBr6", "--dwell", "1"], capfd, "--sample",
                  "'R-CsPbBr6'", "R-Cs4PbBr6", "cplscope samples")
    assert "no reply" not in err


def test_missing_sample_file(no_instrument, capfd):
    refused(SCAN + ["--sample-file", "nothere.json", "--dwell", "1"], capfd,
            "--sample-file", "nothere.json", "no such file")


@pytest.mark.parametrize("text,reason", [("{", "not valid JSON"),
                                         ('{"name": "x"}', "sample file")])
def test_malformed_sample_file(no_instrument, capfd, text, reason):
    bad = no_instrument / "bad.json"
    bad.write_text(text)
    refused(SCAN + ["--sample-file", str(bad), "--dwell", "1"], capfd, "--sample-file",
            "bad.json", reason)


@pytest.mark.parametrize("option,value", [
    ("--target-sigma", "-1e-4"), ("--target-sigma", "-2E-4"), ("--dwell", "-1"),
    ("--dwell", "0"), ("--max-dwell", "-300"), ("--dark-dwell", "-1.5"), ("--step", "-2"),
    ("--hv", "-800"), ("--accumulations", "0"), ("--bins", "12"), ("--seed", "-1"),
    ("--target-sigma", "nan"), ("--dwell", "ten"),
])
def test_bad_numbers_are_refused_with_the_option_name(no_instrument, capfd, option, value):
    argv = SCAN + [option, value]
    if option not in ("--target-sigma", "--dwell"):
        argv += ["--dwell", "1"]
    err = refused(argv, capfd, option)
    assert "expected one argument" not in err and "duration_s" not in err


def test_target_sigma_above_the_range_of_g(no_instrument, capfd):
    refused(SCAN + ["--target-sigma", "5"], capfd, "--target-sigma", "below 2")


def test_negative_numbers_parse_where_they_are_valid():
    parser = build_parser()
    args = parser.parse_args(join_negative_values(["demo", "--g", "-6e-4"], parser))
    assert args.g == -6e-4
    # a negative number is joined only to an option that takes a value
    assert join_negative_values(["scan", "--no-dark", "-1"], parser) == \
        ["scan", "--no-dark", "-1"]
    assert join_negative_values(["scan", "--dwell", "-1e-3", "--", "--dwell", "-1"],
                                 parser) == ["scan", "--dwell=-1e-3", "--", "--dwell", "-1"]


@pytest.mark.parametrize("option,name", [("--output", "x.csv"), ("--archive", "x.h5"),
                                         ("--plot", "x.png"), ("--jasco", "x.txt")])
def test_outputs_in_a_missing_folder_are_refused_before_the_scan(no_instrument, capfd,
                                                                 option, name):
    refused(SCAN + ["--dwell", "1", option, f"nodir/{name}"], capfd, option, "nodir",
            "does not exist")


def test_figure_suffix_is_checked_before_the_scan(no_instrument, capfd):
    refused(SCAN + ["--dwell", "1", "--plot", "r.jpeg"], capfd, "--plot", ".png")


@pytest.mark.parametrize("option,name", [("--output", "r.csv"), ("--archive", "r.h5"),
                                         ("--plot", "r.png"), ("--jasco", "r.txt")])
def test_existing_outputs_are_refused_without_overwrite(no_instrument, capfd, option, name):
    (no_instrument / name).write_text("kept")
    refused(SCAN + ["--dwell", "1", option, name], capfd, option, name, "--overwrite")
    assert (no_instrument / name).read_text() == "kept"


def test_default_output_follows_the_same_policy(no_instrument, capfd):
    (no_instrument / "spectrum.csv").write_text("kept")
    refused(SCAN + ["--dwell", "1"], capfd, "--output", "spectrum.csv", "--overwrite")


def test_two_outputs_may_not_be_one_file(no_instrument, capfd):
    refused(SCAN + ["--dwell", "1", "--output", "r.csv", "--jasco", "r.csv"], capfd,
            "--output", "--jasco", "same file")


def test_plot_of_an_archive_names_the_file_and_what_was_expected(no_instrument, capfd):
    h5 = no_instrument / "run.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    refused(["plot", str(h5), "--output", "fig.png"], capfd, "run.h5", "HDF5",
            "spectrum CSV", "cplscope reprocess")
    junk = no_instrument / "junk.csv"
    junk.write_bytes(b"\xff\xfe\x00binary")
    refused(["plot", str(junk), "--output", "fig.png"], capfd, "junk.csv", "spectrum CSV")
    refused(["plot", "absent.csv", "--output", "fig.png"], capfd, "absent.csv",
            "no such file")
    assert not (no_instrument / "fig.png").exists()


def test_reprocess_of_a_csv_says_it_needs_an_archive(no_instrument, capfd):
    csv = no_instrument / "r.csv"
    csv.write_text("wavelength_nm\n")
    refused(["reprocess", str(csv)], capfd, "r.csv", "HDF5 raw archive")


def test_global_options_are_accepted_after_the_subcommand(no_instrument, capfd):
    args = build_parser().parse_args(["scan", "--start", "1", "--stop", "2", "--step", "1",
                                      "-q", "-v"])
    assert args.quiet is True and args.verbose is True
    args = build_parser().parse_args(["-q", "scan"])
    assert args.quiet is True and args.verbose is False
    assert main(["samples", "-q"]) == 0
    assert "R-Cs4PbBr6" in capfd.readouterr().out


def test_max_dwell_default_is_the_same_in_scan_and_point():
    from cplscope.plans.point import DEFAULT_MAX_DWELL_S

    parser = build_parser()
    scan_args = parser.parse_args(["scan"])
    point_args = parser.parse_args(["point", "--wavelength", "438"])
    assert scan_args.max_dwell == point_args.max_dwell == DEFAULT_MAX_DWELL_S


def test_sample_names_are_stored_in_the_library_spelling(no_instrument):
    args = build_parser().parse_args(SCAN + ["--sample", "r-cs4pbbr6", "--dwell", "1"])
    run_checks(args)
    assert args.sample == args.sample_name == "R-Cs4PbBr6"


def test_scan_range_outside_the_monochromator_ends_before_measuring(tmp_path, monkeypatch,
                                                                    capfd):
    """The one check that needs the instrument: made right after connecting, before the
    first-run calibration of the simulated instrument or any point."""
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / "home"))
    out = tmp_path / "far.csv"
    refused(["-q", "scan", "--sim", "--start", "880", "--stop", "920", "--step", "10",
             "--dwell", "1", "--output", str(out)], capfd, "--start/--stop", "880–920 nm",
            "200–900 nm")
    assert not out.exists() and not list((tmp_path / "home").glob("calibration-*"))


@pytest.mark.parametrize("argv,message", [
    (["scan", "--sim", "--start", "400", "--stop", "410", "--step", "5"], "--target-sigma"),
    (["scan", "--sim", "--start", "400", "--stop", "410", "--step", "5", "--dwell", "1",
      "--target-sigma", "1e-4"], "one of them"),
    (["scan", "--sim", "--dwell", "1"], "--start, --stop, --step"),
    (["scan", "--sim", "--sample", "x", "--sample-file", "y.json", "--start", "400", "--stop",
      "410", "--step", "5", "--dwell", "1"], "not both"),
    (["scan", "--fault", "corrupt=0.1", "--start", "400", "--stop", "410", "--step", "5",
      "--dwell", "1"], "need --sim"),
    (["scan", "--sim", "--fault", "dorp=0.1", "--start", "400", "--stop", "410", "--step",
      "5", "--dwell", "1"], "--fault"),
    (["scan", "--device", "serial7", "--start", "400", "--stop", "410", "--step", "5",
      "--dwell", "1"], "--device"),
    (["scan", "--seed", "3", "--start", "400", "--stop", "410", "--step", "5", "--dwell",
      "1"], "--seed need --sim"),
    (["scan", "--sim", "--calibration", "nocal.json", "--start", "400", "--stop", "410",
      "--step", "5", "--dwell", "1"], "--calibration"),
    (["point", "--sim", "--wavelength", "-438", "--dwell", "1"], "--wavelength"),
    (["calibrate", "--blank", "noblank.csv"], "--blank"),
    (["reprocess", "run.h5", "--calibration", "nocal.json"], "run.h5"),
    (["plot", "a.csv", "--output", "fig.jpg"], "a.csv: no such file"),   # the file first
])
def test_usage_errors_say_what_to_do(no_instrument, argv, message, capfd):
    refused(argv, capfd, message)


def test_bad_fault_value_is_rejected_by_the_parser(no_instrument, capfd):
    refused(["scan", "--sim", "--fault", "corrupt", "--start", "1", "--stop", "2",
             "--step", "1", "--dwell", "1"], capfd, "KEY=VALUE")


def test_udev_rule_prints_the_rule_for_the_board(capfd):
    from cplscope.board.udev import rules_text

    assert main(["udev-rule"]) == 0
    out = capfd.readouterr().out
    assert out == rules_text() and "1209" in out


def test_flash_with_no_board_says_what_to_do(capsys, monkeypatch):
    import cplscope
    import cplscope.board.flash as F
    from cplscope.board.transport import DeviceNotFound

    def nothing(*a, **k):
        raise DeviceNotFound("no board")

    monkeypatch.setattr(cplscope, "connect", nothing)
    monkeypatch.setattr(F, "find_serial_port", lambda serial=None: None)
    monkeypatch.setattr(F, "_run", lambda cmd: pytest.fail("mpremote run without a board"))
    assert main(["flash", "--wait", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "no board found" in err and "GP22" in err and "BOOTSEL" in err


def test_scan_wavelengths_include_both_ends():
    assert scan_wavelengths(400, 560, 2)[[0, -1]].tolist() == [400.0, 560.0]
    assert len(scan_wavelengths(400, 560, 2)) == 81
    assert scan_wavelengths(450, 440, 5).tolist() == [450.0, 445.0, 440.0]
    with pytest.raises(ValueError, match="step"):
        scan_wavelengths(400, 410, 0)


def test_blank_is_stored_and_subtracted(cli_home, tmp_path):
    ref = tmp_path / "achiral.csv"
    assert main(["-q", "scan", "--sim", "--seed", "8", "--sample", "CsPbBr3", "--start",
                 "500", "--stop",
                 "520", "--step", "10", "--dwell", "20", "--output", str(ref),
                 "--no-dark"]) == 0
    assert main(["calibrate", "--blank", str(ref)]) == 0
    (stored,) = cli_home.glob("calibration-*.json")
    blank = json.loads(stored.read_text())["blank"]
    assert blank["wavelength_nm"] == [500.0, 510.0, 520.0]
    out = tmp_path / "with-blank.csv"
    assert main(["-q", "scan", "--sim", "--seed", "9", "--sample", "CsPbBr3", "--start",
                 "505", "--stop",
                 "515", "--step", "5", "--dwell", "20", "--output", str(out),
                 "--no-dark"]) == 0
    spec = Spectrum.read_csv(out)
    assert spec.metadata["calibration"]["blank_applied"] is True
    # g − g_blank of two independent measurements of an achiral sample: σ grows by ~√2
    ratio = spec.sigma_g / np.interp(spec.wavelength_nm, blank["wavelength_nm"],
                                     blank["sigma_g"])
    assert np.all(ratio > 1.2)
    assert np.all(np.abs(spec.g_lum) < 5 * spec.sigma_g)
    # remove the blank again for the other tests of this module
    cal = json.loads(stored.read_text())
    cal["blank"] = None
    stored.write_text(json.dumps(cal))


def test_ctrl_c_leaves_a_valid_partial_result(cli_home, tmp_path):
    import cplscope
    from cplscope.plans.calibrate import prepare
    from cplscope.plans.scan import ScanInterrupted

    csv, h5 = tmp_path / "partial.csv", tmp_path / "partial.h5"

    def interrupt_after_two(point, index, accumulation):
        if index == 1:
            raise KeyboardInterrupt

    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=10) as inst:
        prepare(inst)
        with pytest.raises(ScanInterrupted) as info:
            inst.scan(430, 450, 5, dwell_s=5, dark=False, output=csv, archive=h5,
                      callback=interrupt_after_two)
    assert [p.wavelength_nm for p in info.value.spectrum] == [430.0, 435.0]
    spec = Spectrum.read_csv(csv)
    assert len(spec) == 2 and spec.metadata["interrupted"] is True
    with Archive.open(h5) as arc:
        assert len(arc) == 2


def test_info_leaves_the_instrument_as_it_is(cli_home, capsys):
    assert main(["info", "--sim"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["instrument"]["implementation"] == "micropython"
    assert out["status"]["hv_set_volts"] == 0 and out["status"]["shutter_open"] is False
    assert out["usb"]["idVendor"] == "1209" and out["stream"]["rejected"] == 0


def test_malformed_calibration_file_is_refused_up_front(no_instrument, capfd):
    h5 = no_instrument / "run.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    cal = no_instrument / "cal.json"
    cal.write_text("{not json")
    refused(["reprocess", str(h5), "--calibration", str(cal)], capfd, "--calibration",
            "cal.json", "JSON")
    refused(SCAN + ["--dwell", "1", "--calibration", str(cal)], capfd, "--calibration",
            "cal.json")


@pytest.mark.parametrize("option", ["--dwell", "--step", "--max-dwell", "--dark-dwell"])
def test_cd_subcommand_refuses_negative_numbers_before_connecting(no_instrument, capfd,
                                                                   option):
    pytest.importorskip("cplscope.cli.cd")
    values = {"--start": "284", "--stop": "296", "--step": "4", "--dwell": "20"}
    values[option] = "-3"
    argv = ["cd", "--sim", "--sample", "solvent"]
    for key, value in values.items():
        argv += [key, value]
    refused(argv, capfd, option, "≥ 0" if option == "--dark-dwell" else "> 0")
