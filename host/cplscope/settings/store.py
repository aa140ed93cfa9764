"""The per-instrument settings files under the config folder (``<kind>-<serial>.json``): one
JSON object each, read and written the same way for every kind."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..util.files import write_text_atomic
from .calibration import CalibrationError, default_path

__all__ = ["SettingsFile", "read_record", "read_settings", "settings_path", "write_settings"]

T = TypeVar("T")


def settings_path(kind: str, serial: str) -> Path:
    """``config_dir()/<kind>-<serial>.json``."""
    return default_path(serial).with_name(f"{kind}-{serial}.json")


def read_settings(path: Path, what: str) -> dict[str, Any] | None:
    """The stored object at ``path`` without its ``serial`` (None when there is no file).

    Raises:
        CalibrationError: naming the file, when it is not a JSON object (``what`` says what
            it should hold).
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON ({exc}); fix or delete the file") \
            from None
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a JSON object of {what}")
    data.pop("serial", None)
    return data


def read_record(path: Path, cls: type[T]) -> T:
    """The settings dataclass ``cls`` stored at ``path``: ``cls()`` (its defaults) when there
    is no file; a key ``cls`` does not have, or a value it refuses, is a CalibrationError that
    names the file."""
    known = sorted(f.name for f in fields(cls))  # type: ignore[arg-type]
    data = read_settings(path, f"the keys {', '.join(known)}")
    if data is None:
        return cls()
    if set(data) - set(known):
        raise CalibrationError(f"{path}: expected an object with the keys {', '.join(known)}; "
                               f"got {', '.join(sorted(data))}")
    try:
        return cls(**data)
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}") from None


def write_settings(path: str | os.PathLike[str], serial: str, data: dict[str, Any]) -> Path:
    """Store ``data`` for instrument ``serial`` at ``path`` (atomically); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(p, json.dumps({"serial": serial, **data}, indent=2) + "\n")
    return p


class SettingsFile(Generic[T]):
    """The ``<kind>-<serial>.json`` files of one settings dataclass ``cls`` (a frozen
    dataclass whose constructor checks its values); a field that is None is not written."""

    def __init__(self, kind: str, cls: type[T]) -> None:
        self.kind, self.cls = kind, cls

    def path(self, serial: str) -> Path:
        """``config_dir()/<kind>-<serial>.json``."""
        return settings_path(self.kind, serial)

    def load(self, serial: str, path: str | os.PathLike[str] | None = None) -> T:
        """The stored settings of instrument ``serial`` (from ``path`` if given), or the
        dataclass's defaults when none are stored."""
        return read_record(Path(path) if path is not None else self.path(serial), self.cls)

    def save(self, serial: str, value: T, path: str | os.PathLike[str] | None = None) -> Path:
        """Store ``value`` for instrument ``serial`` (atomically); returns the path."""
        data = {k: v for k, v in asdict(value).items() if v is not None}  # type: ignore[call-overload]
        return write_settings(path if path is not None else self.path(serial), serial, data)
