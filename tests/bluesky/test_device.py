"""The CplScope ophyd-async device: the standard plans with the twin behind it, and in
ophyd-async's mock mode without it."""
from __future__ import annotations

from statistics import NormalDist

import pytest

from lab_helpers import NEED_EXTRA, validate

pytest.importorskip("ophyd_async", reason=NEED_EXTRA)
pytest.importorskip("bluesky", reason=NEED_EXTRA)

import bluesky.plan_stubs as bps  # noqa: E402
import bluesky.plans as bp  # noqa: E402
from ophyd_async.core import get_mock_put, init_devices, set_mock_value  # noqa: E402

from cplscope.bluesky import CplScope  # noqa: E402

READ = ("g_lum", "sigma_g", "intensity", "delta_i", "u", "flags", "dwell_used", "wavelength")
CONFIG = ("dwell", "target_sigma", "max_dwell", "bins", "retardation", "hv", "mode")


@pytest.fixture
def twin(home, RE):
    with init_devices():
        cpl = CplScope("sim", sample="S-Cs4PbBr6", seed=7)   # named "cpl" by init_devices
    yield cpl
    cpl.close()


def _run(RE, plan):
    docs: list = []
    RE(plan, lambda name, doc: docs.append((name, doc)))
    validate(docs)
    return docs


def _events(docs, stream="primary"):
    uids = {d["uid"] for n, d in docs if n == "descriptor" and d["name"] == stream}
    return [d for n, d in docs if n == "event" and d["descriptor"] in uids]


def test_a_scan_of_the_twin_gives_valid_documents_with_units_and_g_within_sigma(twin, RE):
    RE(bps.mv(twin.dwell, 20.0))
    docs = _run(RE, bp.scan([twin], twin.wavelength, 430, 446, 5))
    desc = next(d for n, d in docs if n == "descriptor")
    keys = desc["data_keys"]
    for name in READ:
        assert f"cpl-{name}" in keys
    assert keys["cpl-wavelength"]["units"] == "nm"
    assert keys["cpl-intensity"]["units"] == "counts/s"
    assert keys["cpl-dwell_used"]["units"] == "s"
    assert all("precision" in keys[f"cpl-{n}"] for n in READ if n != "flags")
    config = desc["configuration"]["cpl"]["data_keys"]
    assert {f"cpl-{n}" for n in CONFIG} <= set(config)
    assert config["cpl-retardation"]["units"] == "rad" and config["cpl-hv"]["units"] == "V"
    events = _events(docs)
    assert [e["data"]["cpl-wavelength"] for e in events] == [430, 434, 438, 442, 446]
    truth = [twin.instrument.sim.truth(e["data"]["cpl-wavelength"])["g_lum"] for e in events]
    z = [(e["data"]["cpl-g_lum"] - t) / e["data"]["cpl-sigma_g"] for e, t in zip(events, truth)]
    bound = NormalDist().inv_cdf(1 - 1e-3 / (2 * len(z)))        # family-wise 1e-3
    assert all(abs(v) < bound for v in z), z
    assert all(e["data"]["cpl-dwell_used"] == pytest.approx(20.0, abs=0.2) for e in events)
    assert not twin.instrument.status()["shutter_open"]          # unstaged: left safe


def test_count_and_list_scan_work_and_the_adaptive_dwell_reaches_its_target(twin, RE):
    RE(bps.mv(twin.target_sigma, 1e-3, twin.max_dwell, 60.0))
    docs = _run(RE, bp.list_scan([twin], twin.wavelength, [438.0, 442.0]))
    for e in _events(docs):
        assert e["data"]["cpl-sigma_g"] <= 1e-3
        assert e["data"]["cpl-dwell_used"] < 60.0
    RE(bps.mv(twin.target_sigma, 0.0, twin.dwell, 2.0))
    docs = _run(RE, bp.count([twin], num=3))
    events = _events(docs)
    assert len(events) == 3
    assert {e["data"]["cpl-wavelength"] for e in events} == {442.0}
    assert all(e["data"]["cpl-dwell_used"] == pytest.approx(2.0, abs=0.2) for e in events)


def test_settings_reach_the_instrument_and_bad_ones_are_refused(twin, RE):
    RE(bps.mv(twin.hv, 700.0, twin.bins, 8))
    status = twin.instrument.status()
    assert status["hv_set_volts"] == 700.0 and status["bins"] == 8
    with pytest.raises(Exception, match="retardation must be in"):
        RE(bps.mv(twin.retardation, 4.0))
    with pytest.raises(Exception, match="counting"):
        RE(bps.mv(twin.mode, "analog"))


def test_a_trigger_without_staging_says_what_to_do(twin, RE):
    RE(bps.mv(twin.wavelength, 440.0))
    with pytest.raises(Exception, match="stage the device first"):
        RE(bps.trigger(twin, wait=True))


def test_mock_mode_runs_the_standard_plans_without_the_twin(RE):
    with init_devices(mock=True):
        cpl = CplScope("sim")
    assert cpl.instrument is None
    set_mock_value(cpl.g_lum, 1.5e-3)
    set_mock_value(cpl.sigma_g, 2e-4)
    set_mock_value(cpl.flags, "linear_pol")
    docs = _run(RE, bp.scan([cpl], cpl.wavelength, 430, 440, 3))
    events = _events(docs)
    assert [e["data"]["cpl-g_lum"] for e in events] == [1.5e-3] * 3
    assert events[0]["data"]["cpl-flags"] == "linear_pol"
    moves = [c.args[0] for c in get_mock_put(cpl.wavelength).call_args_list]
    assert moves == [430.0, 435.0, 440.0]
