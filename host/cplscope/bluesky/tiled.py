"""Runs in Tiled: a local Tiled server over a catalog in the user's data folder
(:func:`serve`, ``cplscope serve``), and the sink that writes an engine run there through
Bluesky's Tiled writer (:class:`TiledSink`, ``cplscope scan --tiled URI``).

The catalog is Tiled's own: an SQLite database of the runs' metadata (``catalog.db``), their
tables in DuckDB (``storage.duckdb``) and files under ``data/``, in
``$CPLSCOPE_HOME/tiled`` or else ``$XDG_DATA_HOME/cplscope/tiled``
(``~/.local/share/cplscope/tiled``). The server listens on 127.0.0.1 only; writing needs
its API key, kept beside the catalog (``api_key``, readable by the user alone).
"""
from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .documents import EventModelSink

__all__ = ["TiledSink", "data_folder", "open_client", "serve"]

log = logging.getLogger(__name__)


def data_folder() -> Path:
    """The folder of the local Tiled catalog."""
    home = os.environ.get("CPLSCOPE_HOME")
    if home:
        return Path(home) / "tiled"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cplscope" / "tiled"


def api_key(folder: Path) -> str:
    """The catalog's API key (made on first use, kept in ``folder/api_key``, mode 600)."""
    path = folder / "api_key"
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def serve(folder: str | os.PathLike[str] | None = None, *, port: int = 0) -> Any:
    """Start a Tiled server on 127.0.0.1:``port`` (0: any free port) in a background thread,
    over the catalog in ``folder`` (default :func:`data_folder`). Returns the
    ``tiled.server.SimpleTiledServer``: ``.uri`` (with the API key) for clients and
    ``--tiled``, ``.close()`` to stop it."""
    from tiled.server import SimpleTiledServer

    where = Path(folder) if folder is not None else data_folder()
    where.mkdir(parents=True, exist_ok=True)
    return SimpleTiledServer(where, api_key=api_key(where), port=port)


def open_client(uri: str) -> Any:
    """The Tiled client of ``uri`` (``http://127.0.0.1:8000/api/v1?api_key=…``; the key may
    also come from ``TILED_API_KEY``). Raises ConnectionError saying what to do when no
    server answers."""
    from tiled.client import from_uri

    try:
        return from_uri(uri)
    except Exception as exc:  # httpx's and tiled's errors alike
        raise ConnectionError(f"no Tiled server answers at {uri} ({type(exc).__name__}: "
                              f"{exc}); start one with `cplscope serve` and give the URI it "
                              "prints") from None


class TiledSink:
    """An engine sink that writes the run to Tiled through Bluesky's Tiled writer
    (``bluesky_tiled_plugins.TiledWriter``), with the event-model documents of
    :class:`~cplscope.bluesky.documents.EventModelSink`.

    Tiled is a copy: when writing fails (the server went away), the sink says so once and
    stops writing, and the scan goes on (the CSV and the archive are the record); the
    writer keeps what it could not send as JSON lines in ``backup`` (default: the folder
    ``tiled-backup`` beside the local catalog)."""

    def __init__(self, uri: str | Any, *, plan_name: str = "cplscope scan",
                 md: Mapping[str, Any] | None = None,
                 backup: str | os.PathLike[str] | None = None) -> None:
        from bluesky_tiled_plugins import TiledWriter

        client = open_client(uri) if isinstance(uri, str) else uri
        folder = Path(backup) if backup is not None else data_folder().parent / "tiled-backup"
        folder.mkdir(parents=True, exist_ok=True)
        self.writer = TiledWriter(client, batch_size=1, backup_directory=str(folder))
        self.failed: str | None = None
        self.run_uid: str | None = None
        self._sink = EventModelSink(self._write, plan_name=plan_name, md=md)

    def _write(self, name: str, doc: dict) -> None:
        if name == "start":
            self.run_uid = doc["uid"]
        if self.failed is not None:
            return
        try:
            self.writer(name, doc)
        except Exception as exc:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("writing the run to Tiled failed (%s); the scan goes on, its CSV and "
                      "archive are complete", self.failed)

    def __call__(self, name: str, doc: Any) -> None:
        self._sink(name, doc)

