"""The live view's web server: a read-only page of the running scan and ``/run.json``.

Starlette serves three GET routes and nothing else (the page cannot control the
instrument): ``/`` the page, ``/run.json`` the run so far (:meth:`LiveRun.snapshot`), and
``/plotly.min.js``, the Plotly bundle that the ``plotly`` package ships (no CDN: it works
offline). Uvicorn runs it in a background thread. It binds to 127.0.0.1 unless the caller
passes ``public=True`` for another address.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .page import PAGE
from .state import LiveRun

__all__ = ["LiveServer", "parse_address"]

LOOPBACK = "127.0.0.1"


def parse_address(text: str) -> tuple[str, int]:
    """``"PORT"`` or ``"HOST:PORT"`` → (host, port); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = LOOPBACK, text
    host = host.strip("[]") or LOOPBACK
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: give PORT or HOST:PORT, e.g. 8765 or 127.0.0.1:8765") \
            from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r}: the port must be 0…65535 (0: any free port)")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plotly_js() -> Path:
    """The ``plotly.min.js`` that the plotly package ships."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly "
                                "(pip install 'cplscope[live]')")
    return path


class LiveServer:
    """Serve ``run`` (a :class:`LiveRun`) on ``host:port`` until :meth:`close`.

    Raises PermissionError for a host beyond the loopback without ``public=True``, and
    OSError when the address cannot be bound (in use)."""

    def __init__(self, run: LiveRun, host: str = LOOPBACK, port: int = 0, *,
                 public: bool = False) -> None:
        if not is_loopback(host) and not public:
            raise PermissionError(
                f"the live view binds to the loopback only (127.0.0.1); {host} would show the "
                "scan to other machines: pass the option that allows it (--live-public) if "
                "you mean it")
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import FileResponse, HTMLResponse, JSONResponse
        from starlette.routing import Route

        js = plotly_js()

        async def page(request: Any) -> HTMLResponse:
            return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

        async def run_json(request: Any) -> JSONResponse:
            return JSONResponse(run.snapshot(), headers={"Cache-Control": "no-store"})

        async def plotly(request: Any) -> FileResponse:
            return FileResponse(js, media_type="text/javascript")

        app = Starlette(routes=[Route("/", page), Route("/run.json", run_json),
                                Route("/plotly.min.js", plotly)])
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.host, self.port = host, sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                                     lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="cplscope-live", daemon=True)
        self._sock = sock
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the live view did not start on {host}:{port}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
