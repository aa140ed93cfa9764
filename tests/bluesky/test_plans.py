"""cpl_scan and cd_scan: the scan engine as Bluesky plans, its documents mapped onto the event
model, and the project's sinks as RunEngine callbacks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lab_helpers import NEED_EXTRA, validate, written

pytest.importorskip("ophyd_async", reason=NEED_EXTRA)
pytest.importorskip("bluesky", reason=NEED_EXTRA)

from bluesky.utils import RunEngineInterrupted  # noqa: E402
from ophyd_async.core import init_devices  # noqa: E402

import cplscope  # noqa: E402
from cplscope.bluesky import CplScope  # noqa: E402
from cplscope.bluesky.documents import EventModelSink, ProjectCallback  # noqa: E402
from cplscope.bluesky.plans import cd_scan, cpl_scan  # noqa: E402
from cplscope.data.cd_spectrum import CDSpectrum  # noqa: E402
from cplscope.data.sinks import ArchiveSink, CsvSink, ProgressSink  # noqa: E402
from cplscope.data.spectrum import Spectrum  # noqa: E402
from cplscope.live import LiveRun  # noqa: E402
from cplscope.plot.sink import PlotSink  # noqa: E402


@pytest.fixture
def cpl(home, RE):
    with init_devices():
        cpl = CplScope("sim", sample="R-Cs4PbBr6", seed=11)
    yield cpl
    cpl.close()


def _streams(docs):
    names = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    out: dict[str, list] = {}
    for n, d in docs:
        if n == "event":
            out.setdefault(names[d["descriptor"]], []).append(d["data"])
    return out


def test_cpl_scan_emits_valid_documents_and_the_project_sinks_write_the_engines_csv(
        cpl, RE, tmp_path):
    docs: list = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE.subscribe(ProjectCallback(CsvSink(tmp_path / "from-re.csv"),
                                 PlotSink(tmp_path / "from-re.png"), ProgressSink()))
    spec = RE(cpl_scan(cpl, 430, 450, 4, target_sigma=1e-3, max_dwell_s=20,
                       dark_dwell_s=5, survey=True, output=tmp_path / "engine.csv")).plan_result
    validate(docs)
    assert [n for n, _ in docs][0] == "start" and docs[-1][0] == "stop"
    start, stop = docs[0][1], docs[-1][1]
    assert start["plan_name"] == "cpl_scan" and start["sample"] == "R-Cs4PbBr6"
    assert start["settings"]["target_sigma_g"] == 1e-3
    assert stop["exit_status"] == "success"
    assert stop["num_events"] == {"dark": 1, "survey": 6, "primary": 6, "spectrum": 6}
    streams = _streams(docs)
    assert [p["wavelength_nm"] for p in streams["primary"]] == list(spec.wavelength_nm)
    assert [p["g_lum"] for p in streams["spectrum"]] == written(spec, "g_lum")   # the CSV's
    assert len(streams["dark"][0]["rate_cps"]) == 16          # counts/s per phase bin
    dark = next(d for n, d in docs if n == "descriptor" and d["name"] == "dark")
    assert dark["data_keys"]["rate_cps"]["shape"] == [16]
    desc = next(d for n, d in docs if n == "descriptor" and d["name"] == "primary")
    assert desc["data_keys"]["wavelength_nm"]["units"] == "nm"
    assert desc["data_keys"]["dwell_s"]["units"] == "s"
    assert desc["data_keys"]["intensity"]["units"] == "counts/s"
    # the CSV a RunEngine callback writes is the engine's, byte for byte; the figure too
    assert (tmp_path / "from-re.csv").read_text() == (tmp_path / "engine.csv").read_text()
    assert (tmp_path / "from-re.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_time_budget_scan_plans_its_time_as_the_cli_does(cpl, RE):
    docs: list = []
    spec = RE(cpl_scan(cpl, 430, 446, 8, target_sigma=2e-4, time_budget_s=30, dark=False),
              lambda n, d: docs.append((n, d))).plan_result
    validate(docs)
    streams = _streams(docs)
    assert "dark" not in streams and len(streams["survey"]) == 3
    left = [p["budget_left_s"] for p in streams["primary"]]
    assert left == sorted(left, reverse=True) and left[-1] >= -1.0
    assert float(spec.dwell_s.sum()) <= 30 + 3 * 0.2
    assert spec.metadata["plan"]["budget_s"] == 30


def test_the_converter_without_a_runengine_gives_the_same_documents(cpl, RE, tmp_path):
    re_docs: list = []
    RE(cpl_scan(cpl, 436, 444, 4, dwell_s=2, dark_dwell_s=2),
       lambda n, d: re_docs.append((n, d)))
    conv: list = []
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=11) as inst:
        inst.prepare()
        inst.scan(436, 444, 4, dwell_s=2, dark_dwell_s=2, sample="R-Cs4PbBr6",
                  sinks=[EventModelSink(lambda n, d: conv.append((n, d)))])
    validate(conv)
    assert [n for n, _ in conv] == [n for n, _ in re_docs]

    def keys(docs):
        return {d["name"]: {k: {f: v[f] for f in ("dtype", "shape", "units", "precision")
                                if f in v} for k, v in d["data_keys"].items()}
                for n, d in docs if n == "descriptor"}
    assert keys(conv) == keys(re_docs)
    a, b = _streams(conv), _streams(re_docs)
    assert {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}
    assert {k: set(v[0]) for k, v in a.items()} == {k: set(v[0]) for k, v in b.items()}


def test_an_engine_failure_ends_the_run_failed_with_its_reason(cpl, RE):
    docs: list = []

    def breaks(name, doc):
        if name == "event" and doc.seq_num == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        RE(cpl_scan(cpl, 430, 450, 4, dwell_s=1, dark=False, sinks=[breaks]),
           lambda n, d: docs.append((n, d)))
    stop = docs[-1][1]
    assert docs[-1][0] == "stop" and stop["exit_status"] == "fail"
    assert "disk full" in stop["reason"]
    assert not cpl.instrument.status()["shutter_open"]          # left safe


def test_bad_options_are_refused_before_a_run_opens(cpl, RE):
    docs: list = []
    with pytest.raises(ValueError, match="give either dwell_s"):
        RE(cpl_scan(cpl, 430, 450, 4), lambda n, d: docs.append((n, d)))
    assert docs == []


def test_ctrl_c_aborts_the_run_stops_the_engine_and_keeps_the_partial_csv(cpl, RE, tmp_path):
    csv = tmp_path / "partial.csv"

    def ctrl_c_after_two(name, doc):        # as Ctrl-C does, from another thread
        if name == "event" and doc.seq_num == 2:
            RE.request_pause(defer=False)

    docs: list = []
    with pytest.raises(RunEngineInterrupted):
        RE(cpl_scan(cpl, 430, 470, 4, dwell_s=1, dark=False, output=csv,
                    sinks=[ctrl_c_after_two]), lambda n, d: docs.append((n, d)))
    # the engine cannot pause: the run has ended, aborted, not paused
    assert RE.state == "idle"
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "abort"
    spec = Spectrum.read_csv(csv)
    assert 2 <= len(spec) < 11                      # the points measured, not the plan's 11
    assert spec.metadata.get("interrupted") is True
    assert not cpl.instrument.status()["shutter_open"]


def test_a_sink_that_needs_frames_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(TypeError, match="archive=PATH"):
        ProjectCallback(ArchiveSink(tmp_path / "a.h5"))


def test_the_live_view_follows_a_plan_as_a_runengine_callback(cpl, RE):
    live = LiveRun()
    RE.subscribe(ProjectCallback(live))
    spec = RE(cpl_scan(cpl, 430, 438, 4, dwell_s=2, dark=False)).plan_result
    snap = live.snapshot()
    assert snap["status"] == "success"
    assert [p["g_lum"] for p in snap["points"]] == written(spec, "g_lum")


@pytest.fixture
def cd(home, RE):
    with init_devices():
        cd = CplScope("sim", sample="solvent", seed=3, bench_options={"geometry": "cd"})
    yield cd
    cd.close()


def test_cd_scan_runs_the_cd_mode_of_the_same_engine(cd, RE, tmp_path):
    docs: list = []
    RE.subscribe(ProjectCallback(CsvSink(tmp_path / "re.csv")))
    spec = RE(cd_scan(cd, 280, 296, 8, dwell_s=5, output=tmp_path / "base.csv"),
              lambda n, d: docs.append((n, d))).plan_result
    validate(docs)
    assert isinstance(spec, CDSpectrum) and docs[0][1]["mode"] == "cd"
    rows = _streams(docs)["spectrum"]
    assert [r["delta_a"] for r in rows] == written(spec, "delta_a")
    desc = next(d for n, d in docs if n == "descriptor" and d["name"] == "primary")
    assert desc["data_keys"]["ellipticity_mdeg"]["units"] == "mdeg"
    assert (tmp_path / "re.csv").read_text() == (tmp_path / "base.csv").read_text()
    assert all(math.isnan(a) for a in spec.column("absorbance"))   # no baseline: A unknown
    assert np.all(np.isfinite(spec.column("delta_a")))


def test_a_gated_cpl_scan_takes_the_gating_and_records_it(home, RE):
    from cplscope.protocol.gating import Gating

    with init_devices():
        eu = CplScope("sim", sample="Eu-background", seed=12)
    try:
        docs: list = []
        gating = Gating(pulse_rate_hz=200.0, delay_s=50e-6, width_s=2e-3)
        spec = RE(cpl_scan(eu, 589, 591, 2, dwell_s=4, dark_dwell_s=4, gating=gating),
                  lambda n, d: docs.append((n, d))).plan_result
    finally:
        eu.close()
    validate(docs)
    start = [d for n, d in docs if n == "start"][0]
    assert start["plan_args"]["gating"]["pulse_rate_hz"] == 200.0
    assert spec.metadata["settings"]["gating"]["width_s"] == pytest.approx(2e-3)
    assert np.all(np.abs(spec.g_lum - 0.2) < 4 * spec.sigma_g), (spec.g_lum, spec.sigma_g)
