"""`comet api`: serve the API with uvicorn (uvloop, httptools), in one process or, with
`COMET_API_WORKERS=N`, in N processes sharing the port (each builds its app from the environment)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from config.logging import configure
from config.settings import ApiSettings, load


def build_app() -> FastAPI:
    """The app factory each uvicorn worker process calls (settings from `COMET_*`)."""
    settings = load(ApiSettings)
    configure("api", level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)


def serve(settings: ApiSettings) -> None:
    """Run the API until SIGINT/SIGTERM. Logging is already configured by the caller (structlog);
    uvicorn's own access log is off because `RequestContext` writes one line per request."""
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,
        "log_config": None,
        "proxy_headers": False,
        "server_header": False,
        # Followed logs stream until their stage ends; do not let them hold a shutdown forever.
        "timeout_graceful_shutdown": 10,
    }
    # uvicorn drains on SIGTERM/SIGINT, then restores the handlers it found and raises the signal
    # again "for the expected behaviour": with the default handlers the process would die of it
    # (exit -15, a KeyboardInterrupt traceback) after a clean drain. The handlers it finds are
    # these: the stop it already carried out ends the process with 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _drained)
    if settings.api_workers > 1:
        uvicorn.run("api.main:build_app", factory=True, workers=settings.api_workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)


def _drained(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
