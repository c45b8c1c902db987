"""`comet api`: serve the API with uvicorn (uvloop, httptools), in one process or, with
`COMET_API_WORKERS=N`, in N processes sharing the port (each builds its app from the environment)."""

from __future__ import annotations

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
    if settings.api_workers > 1:
        uvicorn.run("api.main:build_app", factory=True, workers=settings.api_workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
