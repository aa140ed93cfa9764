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
import queue
import secrets
import threading
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
    from urllib.parse import urlsplit

    import httpx
    from tiled.client import from_uri

    parts = urlsplit(uri)
    try:        # one quick look first: the client itself retries for most of a minute
        httpx.get(f"{parts.scheme}://{parts.netloc}/healthz", timeout=5.0, trust_env=False)
        return from_uri(uri)
    except Exception as exc:  # httpx's and tiled's errors alike
        raise ConnectionError(f"no Tiled server answers at {uri} ({type(exc).__name__}: "
                              f"{exc}); start one with `cplscope serve` and give the URI it "
                              "prints") from None


class TiledSink:
    """An engine sink that writes the run to Tiled through Bluesky's Tiled writer
    (``bluesky_tiled_plugins.TiledWriter``), with the event-model documents of
    :class:`~cplscope.bluesky.documents.EventModelSink`.

    Tiled is a copy and the scan never waits for it: the documents go to Tiled from a thread
    of their own. When the server cannot take them (it went away), the writer keeps the
    whole run as JSON files in ``backup`` (default: ``tiled-backup`` beside the local
    catalog) and :meth:`close` says so; the CSV and the archive are complete either way.
    """

    def __init__(self, uri: str | Any, *, plan_name: str = "cplscope scan",
                 md: Mapping[str, Any] | None = None,
                 backup: str | os.PathLike[str] | None = None) -> None:
        from bluesky_tiled_plugins import TiledWriter

        client = open_client(uri) if isinstance(uri, str) else uri
        self.backup = Path(backup) if backup is not None else data_folder().parent / "tiled-backup"
        self.backup.mkdir(parents=True, exist_ok=True)
        self._before = set(self.backup.iterdir())
        self.writer = TiledWriter(client, batch_size=1, backup_directory=str(self.backup))
        self.failed: str | None = None
        self.run_uid: str | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="cplscope-tiled", daemon=True)
        self._thread.start()
        self._sink = EventModelSink(self._put, plan_name=plan_name, md=md)

    def _put(self, name: str, doc: dict) -> None:
        if name == "start":
            self.run_uid = doc["uid"]
        self._queue.put((name, doc))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.writer(*item)
            except Exception as exc:    # the writer routes failures to its backup itself
                self.failed = self.failed or f"{type(exc).__name__}: {exc}"
                log.error("writing the run to Tiled failed (%s)", self.failed)

    def __call__(self, name: str, doc: Any) -> None:
        self._sink(name, doc)

    def close(self, timeout: float | None = None) -> None:
        """Wait until every document is written (or backed up), at most ``timeout`` s."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.failed = self.failed or f"Tiled did not take the run within {timeout:g} s"
        backed_up = sorted(set(self.backup.iterdir()) - self._before)
        if backed_up and self.failed is None:
            self.failed = f"the server did not take the run; it is in {backed_up[0]}"
