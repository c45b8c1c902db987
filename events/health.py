"""The HTTP face of a process that serves no API (`comet orchestrator`, `comet worker`): `/healthz`
(the process answers), `/readyz` (its services answered and it is consuming; 503 with what it
waits for otherwise) and `/metrics` (this process's Prometheus registry), for supervisors and
Kubernetes probes. On when `COMET_HEALTH_PORT` is set.

A few lines of HTTP/1.1 on asyncio rather than a second web framework in the process: three
GETs, `Connection: close`, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = structlog.get_logger(__name__)

# Returns (ready, why): why is shown by /readyz either way.
Readiness = Callable[[], tuple[bool, str]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def respond(method: str, path: str, readiness: Readiness) -> tuple[int, str, bytes]:
    """(status, content type, body) for one request; pure, so it is tested without a socket."""
    if method not in ("GET", "HEAD"):
        return 405, "application/json", b'{"detail":"only GET"}'
    path = path.split("?", 1)[0]
    if path == "/healthz":
        return 200, "application/json", b'{"status":"ok"}'
    if path == "/readyz":
        ready, why = readiness()
        body = orjson.dumps({"status": "ready" if ready else "not ready", "detail": why})
        return (200 if ready else 503), "application/json", body
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
    return 404, "application/json", b'{"detail":"not found"}'


class HealthServer:
    def __init__(self, host: str, port: int, readiness: Readiness) -> None:
        self._host = host
        self._port = port
        self._readiness = readiness
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("health endpoint listening", url=f"http://{self._host}:{self._port}/readyz")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # headers are not needed
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("GET", "/")
            status, content_type, body = respond(method, path, self._readiness)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, OSError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
