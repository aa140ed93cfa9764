"""Startup code of a Bluesky queue server that shares one cplscope instrument
(docs/bluesky.md, "Where a lab outgrows one machine").

    start-re-manager --startup-script examples/queueserver/cplscope_startup.py \\
        --user-group-permissions examples/queueserver/user_group_permissions.yaml \\
        --existing-plans-devices ~/qs/existing.yaml \\
        --update-existing-plans-devices ENVIRONMENT_OPEN --redis-addr localhost:6379

Set in the server's environment:

- ``CPLSCOPE_ADDRESS``: ``usb`` (the default), ``usb://SERIAL``, or ``sim`` for the twin
  (then ``CPLSCOPE_SIM_SAMPLE`` and ``CPLSCOPE_SIM_SEED`` choose its sample and seed);
- ``CPLSCOPE_TILED``: the URI of the shared Tiled server (with its API key) that every run is
  written to; without it runs are not stored (give the plans ``output=`` and ``archive=``).
"""
import os

from bluesky import RunEngine
from bluesky.plans import count, list_scan, scan  # noqa: F401  (the queue's plans)
from ophyd_async.core import init_devices

from cplscope.bluesky import CplScope
from cplscope.bluesky.plans import cd_scan, cpl_scan  # noqa: F401  (the queue's plans)

RE = RunEngine()

_address = os.environ.get("CPLSCOPE_ADDRESS", "usb")
_options = {}
if _address == "sim":
    _options = {"sample": os.environ.get("CPLSCOPE_SIM_SAMPLE", "R-Cs4PbBr6"),
                "seed": int(os.environ.get("CPLSCOPE_SIM_SEED", "0"))}

with init_devices():
    cpl = CplScope(_address, **_options)

if os.environ.get("CPLSCOPE_TILED"):
    from bluesky_tiled_plugins import TiledWriter
    from tiled.client import from_uri

    RE.subscribe(TiledWriter(from_uri(os.environ["CPLSCOPE_TILED"]), batch_size=1))
