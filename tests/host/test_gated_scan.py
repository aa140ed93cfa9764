"""Time-gated CPL through the one scan engine and point pipeline: the CLI's --pulse-rate and
--gate, the same in the API, the gating in the CSV and the archive, reprocess giving back
the run's rows, and clear refusals of what cannot work."""
import math

import numpy as np
import pytest

import cplscope
from cplscope.cli.main import main
from cplscope.data.archive import Archive
from cplscope.data.spectrum import Spectrum
from cplscope.protocol.gating import Gating, parse_gate
from cplscope.sim.samples import EU_7F1_G

CLI = ["-q", "scan", "--sim", "--sample", "Eu-background", "--start", "589", "--stop", "591",
       "--step", "2", "--dwell", "4", "--dark-dwell", "4"]


def test_a_gated_scan_recovers_the_europium_band_that_continuous_excitation_dilutes(
        cli_home, tmp_path):
    gated, plain, h5 = tmp_path / "gated.csv", tmp_path / "plain.csv", tmp_path / "gated.h5"
    assert main(CLI + ["--seed", "5", "--pulse-rate", "200", "--gate", "50e-6:2e-3",
                       "--output", str(gated), "--archive", str(h5)]) == 0
    assert main(CLI + ["--seed", "6", "--output", str(plain)]) == 0
    g, c = Spectrum.read_csv(gated), Spectrum.read_csv(plain)
    assert np.all(np.abs(g.g_lum - EU_7F1_G) < 4 * g.sigma_g), (g.g_lum, g.sigma_g)
    assert np.all(c.g_lum < 0.1 * EU_7F1_G) and np.all(c.sigma_g < g.sigma_g)
    gating = g.metadata["settings"]["gating"]
    assert gating["pulse_rate_hz"] == pytest.approx(200.0)
    assert gating["delay_s"] == pytest.approx(50e-6) and gating["width_s"] == pytest.approx(2e-3)
    assert g.metadata["settings"]["mode"] == "gated"
    assert "gating" not in c.metadata["settings"]
    with Archive.open(h5) as arc:
        assert arc.metadata["settings"]["gating"]["trigger"] == "internal"
        share = [p.settings.live_fraction for p in arc]
    # each frame's gate was open 2 ms of every 5 ms
    assert share == pytest.approx([0.4, 0.4], rel=0.02)
    again = tmp_path / "again.csv"
    assert main(["reprocess", str(h5), "--output", str(again)]) == 0
    r = Spectrum.read_csv(again)
    np.testing.assert_allclose(r.g_lum, g.g_lum, rtol=1e-9)
    np.testing.assert_allclose(r.sigma_g, g.sigma_g, rtol=1e-9)
    np.testing.assert_allclose(r.intensity, g.intensity, rtol=1e-9)


@pytest.mark.parametrize("argv, words", [
    (["--pulse-rate", "1000", "--gate", "50e-6:2e-3"], ("after the next pulse", "487.8 Hz")),
    (["--gate", "50e-6:2e-3"], ("--pulse-rate",)),
    (["--pulse-rate", "200"], ("--gate",)),
    (["--pulse-rate", "200", "--gate", "2e-3"], ("DELAY:WIDTH",)),
    (["--pulse-rate", "200", "--gate", "50e-6:-1"], ("width",)),
    (["--pulse-rate", "200", "--gate", "50e-6:1e-3", "--mode", "analog"], ("analog",)),
    (["--trigger", "external"], ("--pulse-rate",)),
    (["--pulse-rate", "200", "--gate", "5e-5:1e-3", "--trigger", "external",
      "--trigger-width", "1e-6"], ("external trigger has no trigger width",)),
    (["--pulse-rate", "0.1", "--gate", "5e-5:1e-3"], ("1 Hz",)),
    (["--pulse-rate", "200", "--gate", "5e-5:2e-3", "--time-bins", "4", "--survey", "2"],
     ("--time-bins 4 with --survey", "fixed --dwell")),
    (["--pulse-rate", "200", "--gate", "5e-5:2e-3", "--time-bins", "40"], ("1 … 32",)),
    (["--time-bins", "4"], ("--pulse-rate",)),
])
def test_impossible_gating_is_refused_before_connecting(tmp_path, monkeypatch, capfd, argv,
                                                        words):
    monkeypatch.setenv("CPLSCOPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(CLI + ["--seed", "1", "--output", "x.csv"] + argv) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "home").exists()


def test_what_the_board_cannot_do_is_refused_with_its_reason(cli_home):
    with cplscope.connect("sim", sample="Eu-background", seed=2) as inst:
        with pytest.raises(ValueError, match="refused the gating.*gates"):
            inst.configure_gated(Gating(200.0, 50e-6, 100e-6, gates=40))
        # a period the trigger's PWM cannot count (134 ms at 125 MHz)
        with pytest.raises(ValueError, match="raise the pulse rate"):
            inst.configure_gated(Gating(2.0, 50e-6, 100e-6))
        with pytest.raises(ValueError, match="needs the gating"):
            inst.prepare(mode="gated")
        with pytest.raises(ValueError, match="applies to mode 'gated'"):
            inst.prepare(gating=Gating(200.0, 50e-6, 1e-3))
        # the board's values, quantised to its clock, are what the instrument reports
        reply = inst.configure_gated(Gating(300.0, 33.3e-6, 1.0001e-3), bins=8, periods=500)
        g = inst.gating
        assert g is not None and reply["gate_width_ns"] % 16 == 0
        assert g.width_s == pytest.approx(1.0001e-3, abs=16e-9)  # 2 cycles of 8 ns
        assert 1 / g.pulse_rate_hz == pytest.approx(1 / 300.0, abs=7 * 8e-9)  # PWM: div 7
        assert inst.mode == "gated" and inst.status()["trigger_on"] is False
        inst.configure_counting()
        assert inst.gating is None and inst.mode == "counting"


def test_gating_arithmetic():
    g = Gating(pulse_rate_hz=200.0, delay_s=50e-6, width_s=1e-3, gates=3)
    assert g.period_s == pytest.approx(5e-3) and g.live_fraction == pytest.approx(0.2)
    assert g.gate_delays_s() == pytest.approx([50e-6, 1.05e-3, 2.05e-3])
    a = g.configure_args()
    assert a == {"trigger": "internal", "pulse_period_ns": 5_000_000, "gate_delay_ns": 50_000,
                 "gate_width_ns": 1_000_000, "gates": 3, "trigger_width_ns": 10_000}
    assert Gating.from_config({**a, "mode": "gated"}) == Gating(200.0, 50e-6, 1e-3, 3,
                                                                 trigger_width_s=10e-6)
    assert Gating.from_config(g.as_dict()) == g
    assert parse_gate("50e-6:2e-3") == (50e-6, 2e-3)
    with pytest.raises(ValueError, match="time bins"):
        Gating(pulse_rate_hz=200.0, delay_s=0.0, width_s=2e-3, gates=3)
    for bad in (math.nan, math.inf, -1.0, 0.0):
        with pytest.raises(ValueError):
            Gating(pulse_rate_hz=bad, delay_s=0.0, width_s=1e-3)


def test_the_survey_and_the_time_budget_plan_gated_points(cli_home):
    """A gate throws photons away, so gated points need longer: the survey measures them
    gated, and the plan spends the budget where σ needs it."""
    with cplscope.connect("sim", sample="Eu-background", seed=8) as inst:
        inst.calibration = _twin_calibration(inst)
        inst.prepare(periods=10000, mode="gated", gating=Gating(200.0, 50e-6, 2e-3))
        spec = inst.scan(588, 598, 2, target_sigma=0.01, time_budget_s=40, max_dwell_s=30,
                         dark_dwell_s=4)
    assert spec.metadata["plan"]["budget_s"] == 40 and spec.metadata["survey"]
    assert float(spec.dwell_s.sum()) <= 40 + len(spec) * 0.2
    assert np.all(np.abs(spec.g_lum - EU_7F1_G) < 4 * spec.sigma_g)
    # the plan reached about the target where the budget allowed (within its own scatter)
    assert np.median(spec.sigma_g) < 0.013


def _twin_calibration(inst):
    from cplscope.settings.calibration import Calibration

    return Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.3, handedness=1,
                       dead_time_s=18e-9, serial=inst.info()["serial"],
                       date="2026-01-01T00:00:00+00:00", source="test",
                       a0_command_rad=math.pi / 2)


def test_an_interrupted_gated_scan_resumes_gated(cli_home, tmp_path, capfd, ctrl_c_at_point):
    csv, h5 = tmp_path / "eu.csv", tmp_path / "eu.h5"
    argv = ["-q", "scan", "--sim", "--sample", "Eu-background", "--seed", "21", "--start",
            "588", "--stop", "596", "--step", "2", "--dwell", "3", "--dark-dwell", "3",
            "--pulse-rate", "200", "--gate", "50e-6:2e-3"]
    with ctrl_c_at_point(3):
        assert main(argv + ["--output", str(csv), "--archive", str(h5)]) == 130
    # the gating comes from the archive; giving it again is refused
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--gate", "50e-6:1e-3",
                 "--pulse-rate", "200"]) == 2
    assert "--resume takes it from the archive" in capfd.readouterr().err
    assert main(["-q", "scan", "--sim", "--resume", str(h5), "--output", str(csv)]) == 0
    spec = Spectrum.read_csv(csv)
    assert len(spec) == 5 and spec.metadata["settings"]["gating"]["width_s"] == 2e-3
    # every point, the resumed ones too, measured inside the gate
    assert np.all(np.abs(spec.g_lum - EU_7F1_G) < 4 * spec.sigma_g), spec.g_lum
    # the API refuses to go on under another gating, or none
    with cplscope.connect("sim", sample="Eu-background", seed=22) as inst:
        inst.calibration = _twin_calibration(inst)
        inst.prepare(periods=10000)
        with pytest.raises(ValueError, match="gated mode"):
            inst.resume(h5, output=tmp_path / "x.csv")
        inst.prepare(periods=10000, mode="gated", gating=Gating(200.0, 50e-6, 1e-3))
        with pytest.raises(ValueError, match="was gated as"):
            inst.resume(h5, output=tmp_path / "x.csv")


def test_the_guard_trips_in_gated_mode_and_the_trigger_stops():
    from cplscope.board.controller import OverloadError

    with cplscope.connect("sim", sample="Eu-background", seed=4) as inst:
        inst.configure_gated(Gating(200.0, 50e-6, 2e-3), bins=16, periods=500)
        inst.home()
        inst.move_to(590.0)
        inst.set_hv(800.0)
        inst.open_shutter()
        frames = inst.acquire(n_frames=4)          # below the limit: gated frames
        assert frames.n_frames == 4 and inst.status()["trigger_on"] is False  # bounded: ended
        inst.set_limits(max_count_rate_cps=1e4)
        with pytest.raises(OverloadError):
            inst.acquire(n_frames=200)
        st = inst.status()
        assert st["state"] == "fault" and st["overload"] and not st["shutter_open"]
        assert st["trigger_on"] is False
        inst.set_limits(max_count_rate_cps=2e6)
        assert inst.clear_fault()["state"] == "idle"
        assert inst.status()["trigger_on"] is False   # clearing does not start it again
