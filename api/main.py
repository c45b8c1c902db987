"""`comet api`: serve the API with uvicorn (uvloop, httptools)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from config.settings import ApiSettings


def serve(settings: ApiSettings) -> None:
    """Run the API until SIGINT/SIGTERM. Logging is already configured by the caller (structlog);
    uvicorn's own access log is off because `RequestContext` writes one line per request."""
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        # Followed logs stream until their stage ends; do not let them hold a shutdown forever.
        timeout_graceful_shutdown=10,
    )
