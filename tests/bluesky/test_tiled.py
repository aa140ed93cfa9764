"""Runs in Tiled: a local Tiled server on 127.0.0.1 (``cplscope serve``'s), a twin scan
written there by the command line (``--tiled``) and by a Bluesky plan, read back through the
Tiled client."""
from __future__ import annotations

import numpy as np
import pytest

from lab_helpers import NEED_EXTRA

pytest.importorskip("tiled.server", reason=NEED_EXTRA)
pytest.importorskip("bluesky_tiled_plugins", reason=NEED_EXTRA)

from cplscope.bluesky.tiled import api_key, serve  # noqa: E402

#: a Tiled server takes 10–20 s to start: these run with --lab-services
lab = pytest.mark.lab_services
from cplscope.cli.main import main  # noqa: E402
from cplscope.data.spectrum import Spectrum  # noqa: E402


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    server = serve(tmp_path_factory.mktemp("catalog"), port=0)
    yield server
    server.close()


def _read_back(uri: str, uid: str) -> tuple[dict, dict]:
    from tiled.client import from_uri

    run = from_uri(uri)[uid]
    return dict(run.metadata["start"]), {
        stream: {k: np.asarray(run[stream][k].read()) for k in
                 ("wavelength_nm", "g_lum", "sigma_g", "flags")} for stream in
        ("primary", "spectrum")}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True)


@lab
def test_a_cli_scan_with_tiled_reads_back_equal_to_its_csv(home, tiled, tmp_path, capsys):
    csv = tmp_path / "r.csv"
    # 500–540 nm runs off the emission band: flagged points with NaN g go through too
    assert main(["-q", "scan", "--sim", "--sample", "S-Cs4PbBr6", "--start", "430", "--stop",
                 "540", "--step", "22", "--target-sigma", "1e-3", "--max-dwell", "20",
                 "--output", str(csv), "--tiled", tiled.uri]) == 0
    out = capsys.readouterr().out
    uid = out.split("# run in Tiled: ")[1].split()[0]
    start, streams = _read_back(tiled.uri, uid)
    spec = Spectrum.read_csv(csv)
    assert start["sample"] == "S-Cs4PbBr6" and start["plan_name"] == "cplscope scan"
    assert start["settings"]["target_sigma_g"] == 1e-3
    for stream in ("primary", "spectrum"):
        got = streams[stream]
        assert _same(got["wavelength_nm"], spec.wavelength_nm)
        assert _same(got["g_lum"], spec.g_lum), (got["g_lum"], spec.g_lum)
        assert _same(got["sigma_g"], spec.sigma_g)
        assert [str(f) for f in got["flags"]] == [";".join(f) for f in spec.flags]
    assert np.isnan(spec.g_lum).any()         # the no-emission points came through as NaN


@lab
def test_a_bluesky_plan_writes_to_tiled_through_the_tiled_writer(home, tiled, tmp_path):
    from bluesky import RunEngine
    from bluesky_tiled_plugins import TiledWriter
    from ophyd_async.core import init_devices
    from tiled.client import from_uri

    from cplscope.bluesky import CplScope
    from cplscope.bluesky.plans import cpl_scan

    RE = RunEngine()
    RE.subscribe(TiledWriter(from_uri(tiled.uri), batch_size=1))
    with init_devices():
        cpl = CplScope("sim", sample="R-Cs4PbBr6", seed=5)
    try:
        (uid,) = RE(cpl_scan(cpl, 432, 444, 6, dwell_s=3, output=tmp_path / "p.csv"))
    finally:
        cpl.close()
    _, streams = _read_back(tiled.uri, uid)
    spec = Spectrum.read_csv(tmp_path / "p.csv")
    assert _same(streams["spectrum"]["g_lum"], spec.g_lum)
    assert _same(streams["spectrum"]["sigma_g"], spec.sigma_g)


@lab
def test_writing_needs_the_catalogs_key_kept_private(tiled):
    path = tiled.directory / "api_key"
    assert path.stat().st_mode & 0o077 == 0
    assert api_key(tiled.directory) == tiled.api_key
    assert tiled.uri.startswith("http://127.0.0.1:")


def test_a_tiled_server_that_does_not_answer_is_refused_before_measuring(home, capsys):
    assert main(["-q", "scan", "--sim", "--start", "430", "--stop", "440", "--step", "5",
                 "--dwell", "1", "--tiled", "http://127.0.0.1:9/api/v1"]) == 2
    assert "cplscope serve" in capsys.readouterr().err


@lab
def test_tiled_going_away_mid_scan_does_not_lose_the_scan(home, tmp_path, monkeypatch):
    """The run in Tiled is a copy: when the server dies, the CSV is still complete and the
    run is kept in the backup folder."""
    import tiled.client.utils

    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_TIMEOUT", 1.0)  # give up soon
    server = serve(tmp_path / "catalog", port=0)

    class Dies:
        def __init__(self):
            self.n = 0

        def __call__(self, name, doc):
            if name == "event":
                self.n += 1
                if self.n == 2:
                    server.close()

    import cplscope
    from cplscope.bluesky.tiled import TiledSink

    sink = TiledSink(server.uri, backup=tmp_path / "backup")
    with cplscope.connect("sim", sample="R-Cs4PbBr6", seed=3) as inst:
        inst.prepare()
        spec = inst.scan(430, 450, 5, dwell_s=1, output=tmp_path / "r.csv",
                         sinks=[Dies(), sink])
    assert len(Spectrum.read_csv(tmp_path / "r.csv")) == len(spec) == 5
    sink.close(timeout=60)
    assert sink.failed is not None and "backup" in sink.failed
    backup = list((tmp_path / "backup").iterdir())
    assert backup and sink.run_uid in backup[0].read_text()
