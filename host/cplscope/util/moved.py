"""The module paths of cplscope 0.1 that moved into subpackages keep working for one release.

``import cplscope.scan`` gives the module now at :mod:`cplscope.plans.scan` (the same module
object, so monkeypatching and ``isinstance`` behave) and warns with a
:class:`DeprecationWarning` that names the new path.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

#: old module name under ``cplscope`` → its new path under ``cplscope``.
MOVED = {
    "_clock": "util.clock", "_files": "util.files", "analog": "science.analog",
    "archive": "data.archive", "calibrate_run": "plans.calibrate",
    "calibration": "settings.calibration", "cd": "science.cd", "cd_scan": "plans.cd_scan",
    "cd_spectrum": "data.cd_spectrum", "cli_cd": "cli.cd", "documents": "data.documents",
    "export": "data.export", "frames": "science.frames", "limits": "settings.rate_limits",
    "measure": "plans.point", "mono_config": "settings.monochromator", "mpy": "board.mpy",
    "pipeline": "science.pipeline", "planning": "plans.planning", "plot_cd": "plot.cd",
    "results": "science.results", "resume": "plans.resume", "scan": "plans.scan",
    "spectrum": "data.spectrum", "survey": "plans.survey", "transport": "board.transport",
    "udev": "board.udev", "usb_ids": "protocol.usb_ids",
}

_PACKAGE = __name__.split(".")[0]


def _caller_level() -> int:
    """The ``stacklevel`` that points a warning at the ``import`` statement."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    return level


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: object, target: object = None):
        parent, _, name = fullname.rpartition(".")
        if parent != _PACKAGE or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new = f"{_PACKAGE}.{MOVED[spec.name.rpartition('.')[2]]}"
        warnings.warn(f"{spec.name} has moved to {new}: import it from there (the old path "
                      "goes away in the next release)", DeprecationWarning,
                      stacklevel=_caller_level())
        module = importlib.import_module(new)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the import system has just stamped the old name's spec on the real module
        module.__spec__ = self._spec


def install_aliases() -> None:
    """Put the finder of moved modules on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
