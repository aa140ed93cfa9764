"""The live view of a running scan in the browser (``cplscope scan ... --live PORT``): a
sink that keeps the run's state (:class:`~cplscope.live.state.LiveRun`) and a read-only web
server (:class:`~cplscope.live.server.LiveServer`, ``pip install 'cplscope[live]'``)."""
from .state import LiveRun

__all__ = ["LiveRun"]
