"""Sharing the instrument through bluesky-queueserver: a queue server (with Debian's
redis-server) whose startup is examples/queueserver/cplscope_startup.py, the twin behind it,
runs cpl_scan from its queue and writes the run to a shared Tiled server, read back here."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lab_helpers import NEED_EXTRA

pytest.importorskip("bluesky_queueserver",
                    reason="the [queueserver] extra is not installed: pip install "
                           "'.[queueserver]'")
pytest.importorskip("bluesky_queueserver_api", reason="pip install '.[queueserver]'")
pytest.importorskip("tiled.server", reason=NEED_EXTRA)

REDIS = shutil.which("redis-server")
STARTUP = Path(__file__).resolve().parents[2] / "examples" / "queueserver" / "cplscope_startup.py"

pytestmark = [
    pytest.mark.skipif(REDIS is None, reason="no redis-server (Debian: apt-get install "
                                             "redis-server)"),
    pytest.mark.lab_services,
]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} ended with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on {port}")


@pytest.fixture
def services(home, tmp_path):
    from cplscope.bluesky.tiled import serve

    redis_port, control, info = _free_ports(3)
    procs: list[subprocess.Popen] = []
    tiled = serve(tmp_path / "catalog", port=0)
    try:
        redis = subprocess.Popen([REDIS, "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(redis)
        _wait_port(redis_port, redis, "redis-server")
        env = {**os.environ, "CPLSCOPE_ADDRESS": "sim", "CPLSCOPE_SIM_SAMPLE": "S-Cs4PbBr6",
               "CPLSCOPE_SIM_SEED": "9", "CPLSCOPE_TILED": tiled.uri}
        log = open(tmp_path / "manager.log", "w")
        manager = subprocess.Popen(
            [str(Path(sys.executable).parent / "start-re-manager"),
             "--startup-script", str(STARTUP), "--redis-addr", f"127.0.0.1:{redis_port}",
             "--zmq-control-addr", f"tcp://127.0.0.1:{control}",
             "--zmq-info-addr", f"tcp://127.0.0.1:{info}",
             "--existing-plans-devices", str(tmp_path / "existing.yaml"),
             "--user-group-permissions", str(STARTUP.parent / "user_group_permissions.yaml"),
             "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
             "--use-ipython-kernel", "OFF", "--zmq-publish-console", "OFF"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(manager)
        _wait_port(control, manager, "start-re-manager")
        yield tiled, f"tcp://127.0.0.1:{control}", f"tcp://127.0.0.1:{info}", tmp_path
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        tiled.close()


def test_a_queued_cpl_scan_runs_on_the_twin_and_lands_in_tiled(services):
    from bluesky_queueserver_api import BPlan
    from bluesky_queueserver_api.zmq import REManagerAPI
    from tiled.client import from_uri

    from cplscope.data.spectrum import Spectrum

    tiled, control, info, tmp = services
    csv = tmp / "queued.csv"
    RM = REManagerAPI(zmq_control_addr=control, zmq_info_addr=info)
    try:
        RM.environment_open()
        RM.wait_for_idle(timeout=300)
        assert RM.status()["worker_environment_exists"], (tmp / "manager.log").read_text()
        RM.item_add(BPlan("cpl_scan", "cpl", 432, 444, 6, dwell_s=3, output=str(csv)))
        RM.queue_start()
        RM.wait_for_idle(timeout=300)
        item = RM.history_get()["items"][-1]
        assert item["result"]["exit_status"] == "completed", item["result"]
        (uid,) = item["result"]["run_uids"]
        RM.environment_close()
        RM.wait_for_idle(timeout=120)
    finally:
        RM.close()
    run = from_uri(tiled.uri)[uid]
    assert run.metadata["start"]["plan_name"] == "cpl_scan"
    assert run.metadata["start"]["sample"] == "S-Cs4PbBr6"
    spec = Spectrum.read_csv(csv)
    got = np.asarray(run["spectrum"]["g_lum"].read(), float)
    assert np.array_equal(got, spec.g_lum, equal_nan=True)
    assert np.array_equal(np.asarray(run["spectrum"]["sigma_g"].read(), float), spec.sigma_g,
                          equal_nan=True)
