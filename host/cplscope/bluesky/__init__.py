"""cplscope in Bluesky (``pip install 'cplscope[bluesky]'``): the :class:`CplScope`
ophyd-async device, the plans :func:`~cplscope.bluesky.plans.cpl_scan` and
:func:`~cplscope.bluesky.plans.cd_scan` (the scan engine as a Bluesky plan), the mapping of
the engine's documents onto the event model (:mod:`cplscope.bluesky.documents`), and runs in
Tiled (:mod:`cplscope.bluesky.tiled`). docs/bluesky.md is the guide."""
from __future__ import annotations

try:
    import bluesky as _bluesky  # noqa: F401
    import event_model as _event_model  # noqa: F401
    import ophyd_async as _ophyd_async  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"cplscope.bluesky needs the [bluesky] extra ({exc.name} is missing): "
                      "pip install 'cplscope[bluesky]'") from exc

from .device import CplScope

__all__ = ["CplScope"]
