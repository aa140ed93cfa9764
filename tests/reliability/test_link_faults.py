"""A flaky link, with the faults active during commands as well as during data.

The simulated cable drops and corrupts frames in both directions (commands on the way to the
board, replies, events and data on the way back). A command whose reply was lost is sent again
and the board answers the retry from its reply cache, so no command runs twice; data frames
lost are counted in the stream health and never used.

- The faults the README advertises complete a full `cplscope scan --sim` with every point.
- At the highest rate an instrument session accepts (0.05 each way), hundreds of commands of
  every kind succeed, none runs twice (START: consecutive acquisition ids; MOVE: never refused
  as busy), and the hub confirms that commands and replies were hit.
- Rates no real link reaches, and nonsense, are refused before anything starts.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import cplscope
from cplscope.cli.main import main
from cplscope.data.archive import Archive
from cplscope.data.spectrum import Spectrum
from cplscope.instrument import Instrument
from cplscope.plans.scan import scan_wavelengths
from cplscope.protocol import Opcode

START, STOP, STEP = 430.0, 450.0, 2.0
DWELL_S = 1.0
FRAME_S = 0.01  # --periods 500 at 50 kHz


@pytest.fixture(scope="module")
def calibrated_home(tmp_path_factory):
    """A calibration store with the simulated instrument calibrated once (`cplscope calibrate
    --sim`), shared by the scans of this module."""
    path = tmp_path_factory.mktemp("cplscope-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("CPLSCOPE_HOME", str(path))
    assert main(["-q", "calibrate", "--sim", "--dwell", "5"]) == 0
    yield path
    mp.undo()


@pytest.fixture
def hub_at_close(monkeypatch):
    """What the simulated instrument's hub saw, taken as the CLI closes the instrument: its
    statistics, the fault log, and the host's stream health after one more STATUS (whose
    reply closes any gap a lost last frame left open)."""
    seen: dict = {}
    close = Instrument.close

    def spy(self) -> None:
        if self.sim is not None and not self.sim.closed and self.transport.connected:
            seen["status"] = self.status()
            seen["health"] = self.health()
            seen["stats"] = self.sim.stats()
            seen["log"] = self.sim.fault_log()
        close(self)

    monkeypatch.setattr(Instrument, "close", spy)
    return seen


@pytest.mark.parametrize("fault", ["drop=1e-3", "drop=1e-2", "corrupt=1e-2"])
def test_advertised_faults_complete_a_cli_scan(fault, tmp_path, calibrated_home,
                                               hub_at_close):
    csv, h5 = tmp_path / "f.csv", tmp_path / "f.h5"
    rc = main(["-q", "scan", "--sim", "--seed", "3", "--fault", fault, "--start", str(START),
               "--stop", str(STOP), "--step", str(STEP), "--dwell", str(DWELL_S),
               "--dark-dwell", "1", "--periods", "500", "--output", str(csv),
               "--archive", str(h5)])
    assert rc == 0
    # every point, each with its full dwell of usable frames
    spec = Spectrum.read_csv(csv)
    assert np.array_equal(spec.wavelength_nm, scan_wavelengths(START, STOP, STEP))
    assert np.all(spec.column("dwell_s") >= DWELL_S * (1 - 1e-9))
    assert np.all(spec.column("n_frames") >= round(DWELL_S / FRAME_S))
    assert np.all(np.isfinite(spec.column("g_lum")))
    # every frame the cable lost or damaged on the way to the host is counted ...
    stats, log, health = hub_at_close["stats"], hub_at_close["log"], hub_at_close["health"]
    hit = stats["dropped"] + stats["corrupted"]
    assert hit > 0, "the faults hit nothing: the test tests nothing"
    assert health.missing == hit  # each is one missing sequence number
    # a corrupted frame is also a rejection (more than one only when a stray C5 5C follows
    # its sync: ~1e-3 per frame, so at most 3 in this run but for a 1e-8 chance)
    assert stats["corrupted"] <= health.rejected <= stats["corrupted"] + 3
    stream = spec.metadata["stream"]
    assert stream["missing"] + stream["rejected"] > 0
    # ... and never used: no faulted frame in the archive, and within one acquisition the
    # only gaps in a point's frames are frames the cable lost
    faulted = set(log["dropped_seqs"]) | set(log["corrupted_seqs"])
    with Archive.open(h5) as arc:
        points = list(arc)
        assert len(points) == len(spec)
        for point in points:
            seq = point.frames.seq
            assert not set(seq.tolist()) & faulted
            for acq in np.unique(point.frames.acq_id):
                seqs = set(seq[point.frames.acq_id == acq].tolist())
                gaps = set(range(min(seqs), max(seqs) + 1)) - seqs
                assert gaps <= faulted, (point.index, sorted(gaps - faulted))


class CommandLog:
    """Records every command the instrument's transport completed, with its result."""

    def __init__(self, transport) -> None:
        self.done: list[tuple[Opcode, dict]] = []
        self._command = transport.command
        transport.command = self

    def __call__(self, opcode, args=None, **kw):
        result = self._command(opcode, args, **kw)
        self.done.append((Opcode(opcode), result))
        return result

    def results(self, opcode: Opcode) -> list[dict]:
        return [r for op, r in self.done if op == opcode]


def test_every_command_survives_faults_on_commands_and_replies():
    rate = 0.05  # the most an instrument session accepts, in both directions
    with cplscope.connect("sim", seed=11, faults={"drop": rate, "corrupt": rate}) as inst:
        log = CommandLog(inst.transport)
        inst.prepare(bins=8, periods=100, hv_volts=700)
        for k in range(20):
            # up and down (a downward move overshoots and comes back: a re-executed MOVE
            # would be refused while the first one moves)
            inst.move_to(440.0 + (k % 5) * 7.3 - (k % 2) * 20.0)
            inst.set_hv(700.0 + k)
            inst.close_shutter() if k % 3 == 0 else inst.open_shutter()
            # bounded STARTs, one more per shortfall; when both the last frame and the
            # ACQ_DONE are dropped nothing tells the host, which asks after `timeout` s
            frames = inst.acquire(n_frames=3, timeout=10.0)
            assert frames.n_frames == 3
            inst.status()
        health = inst.health()
        status = inst.status()
        stats = inst.sim.stats()
    # every START ran exactly once: the acquisition ids its replies carry are consecutive
    ids = [int(r["acq_id"]) for r in log.results(Opcode.START)]
    assert len(ids) >= 20 and ids == list(range(ids[0], ids[0] + len(ids))), ids
    # every SET_HV reply is the one to its own command
    assert [r["hv_set_volts"] for r in log.results(Opcode.SET_HV)][-20:] == \
        [700.0 + k for k in range(20)]
    # the faults did hit commands and replies: about 150 commands, so ~15 replies and ~15
    # commands hit are expected (Poisson: none of either has a chance of 3e-7, fewer than
    # 10 in all 1e-5); the host sent each command hit again, and the board answered the
    # retries of commands it had executed (their replies lost) from its cache
    replies_hit = stats["hit_types"].get("REPLY", 0)
    commands_hit = stats["out_dropped"] + stats["out_corrupted"]
    assert replies_hit >= 1 and commands_hit >= 1, stats
    assert replies_hit + commands_hit >= 10, stats
    assert health.retries >= commands_hit
    assert status["replayed"] >= 1


@pytest.mark.parametrize("fault,words", [
    ("drop=0.06", ["'drop'", "0.06", "0.05"]),
    ("corrupt=0.5", ["'corrupt'", "0.05"]),
    ("stall=1", ["'stall'", "0.05"]),
    ("drop=-0.01", ["'drop'", "0 to 1"]),
    ("corrupt=nan", ["'corrupt'"]),
    ("jitter=0.1", ["unknown fault key", "'jitter'", "corrupt, drop, stall"]),
    ("reconnect_after=1", ["'reconnect_after' needs 'disconnect_at'"]),
    ("disconnect_at=inf", ["'disconnect_at'"]),
])
def test_fault_rates_no_link_reaches_are_refused(fault, words, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(cplscope, "connect", _no_connect)
    monkeypatch.chdir(tmp_path)
    rc = main(["scan", "--sim", "--fault", fault, "--start", "430", "--stop", "440",
               "--step", "2", "--dwell", "1"])
    err = capfd.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "--fault" in err
    for w in words:
        assert w in err, err
    assert not list(tmp_path.iterdir())  # nothing created


def test_a_fault_given_twice_is_refused(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(cplscope, "connect", _no_connect)
    monkeypatch.chdir(tmp_path)
    rc = main(["scan", "--sim", "--fault", "drop=1e-3", "--fault", "drop=1e-2", "--start",
               "430", "--stop", "440", "--step", "2", "--dwell", "1"])
    err = capfd.readouterr().err
    assert rc == 2 and "--fault drop given more than once" in err, err


@pytest.mark.parametrize("faults,words", [
    ({"drop": 0.2}, ["'drop'", "0.05"]),
    ({"corrupt": 0.051}, ["'corrupt'", "0.05"]),
    ({"stall": math.inf}, ["'stall'"]),
    ({"drops": 0.01}, ["unknown fault key"]),
    ({"reconnect_after": 2.0}, ["disconnect_at"]),
])
def test_the_api_refuses_them_with_a_value_error(faults, words, monkeypatch):
    from cplscope.sim import launcher

    def no_launch(*a, **kw):
        raise AssertionError("the simulator was started before the faults were checked")

    monkeypatch.setattr(launcher, "launch", no_launch)
    with pytest.raises(ValueError) as err:
        cplscope.connect("sim", faults=faults)
    for w in words:
        assert w in str(err.value), err.value


def test_rates_up_to_the_limit_are_accepted():
    from cplscope.sim.faults import MAX_LINK_RATE, check_link_faults

    f = check_link_faults({"drop": MAX_LINK_RATE, "corrupt": 1e-3, "stall": 0.0,
                           "disconnect_at": 2.0, "reconnect_after": 1.0})
    assert (f.drop, f.corrupt, f.disconnect_at) == (0.05, 1e-3, 2.0)
    assert check_link_faults(None) == check_link_faults({})


def _no_connect(*args, **kwargs):
    raise AssertionError("the command connected to an instrument before refusing")
