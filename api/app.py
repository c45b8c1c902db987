"""The FastAPI application: routers, error handlers, middleware, and a lifespan that connects to
Kafka in the background.

The API must take requests (and write runs to the outbox) while Kafka is down: start-up does not
wait for the broker. A background task keeps trying, then starts the producer and outbox relay;
whatever was written meanwhile is published once it connects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api import docs_pages, documented, errors, idempotency, metrics
from api.auth import passwords
from api.auth.throttle import LoginThrottle
from api.dashboard import mount_dashboard
from api.middleware import BodySizeLimit, ErrorGuard, RequestContext, SecurityHeaders, cors_options
from api.ratelimit import RateLimiter
from api.readiness import Readiness
from api.routes import (
    audit,
    auth,
    coverage,
    dead_letters,
    deployments,
    flaky_tests,
    fleet,
    health,
    insights,
    integrations,
    oauth,
    projects,
    runs,
    schedules,
    secrets,
    test_suites,
    tests,
    tokens,
    users,
    webhook_replay,
    webhooks,
)
from config.settings import ApiSettings
from events.backbone import Backbone
from events.probe import kafka_answers

log = structlog.get_logger(__name__)

_TAGS = [
    {"name": "auth", "description": "Log in, refresh and log out."},
    {"name": "users", "description": "Users."},
    {"name": "tokens", "description": "Personal API tokens for scripts."},
    {"name": "audit", "description": "The audit log of security-relevant actions (admins)."},
    {"name": "projects", "description": "Projects and their members."},
    {"name": "runs", "description": "Pipeline runs, their stages, logs and events."},
    {
        "name": "deployments",
        "description": "Environments with their protection rules, deployments, approvals and rollback.",
    },
    {"name": "tests", "description": "Test results, flaky tests, quarantine and coverage."},
    {"name": "insights", "description": "DORA and pipeline figures computed by `comet analytics`."},
    {"name": "test suites", "description": "Test suites, and every schedule with its next fire time."},
    {"name": "integrations", "description": "Provider settings such as commit-status reporting."},
    {"name": "webhooks", "description": "Deliveries from GitHub, GitLab and Bitbucket, as data."},
    {"name": "workers", "description": "The worker fleet and its queues."},
    {
        "name": "dead letters",
        "description": "Events consumers set aside: inspect, redrive, discard (admins).",
    },
    {"name": "health", "description": "Liveness, readiness and metrics (outside `/api/v1`)."},
]


class KafkaConnector:
    """Starts the backbone's Kafka side in the background, retrying with backoff until it works."""

    def __init__(self, backbone: Backbone, *, max_delay_s: float = 10.0) -> None:
        self.backbone = backbone
        self.max_delay_s = max_delay_s
        self.connected = asyncio.Event()
        self._starting = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kafka-connector")

    async def _run(self) -> None:
        servers = self.backbone.settings.kafka_bootstrap_servers
        delay = 0.5
        while not self._stopping.is_set():
            # Probe first: a cheap client that always closes, so failed attempts leave nothing open.
            if await kafka_answers(servers, timeout_s=3.0):
                self._starting = True
                try:
                    await self.backbone.start_kafka()
                except Exception as exc:
                    log.warning("kafka start failed; retrying", error=repr(exc), retry_in_s=delay)
                else:
                    log.info("kafka connected; outbox relay running", bootstrap_servers=servers)
                    self.connected.set()
                    return
                finally:
                    self._starting = False
            else:
                log.warning("kafka not reachable; runs are kept in the outbox", retry_in_s=delay)
            # Not a bare sleep: a cancel that an awaited client swallowed (3.11's wait_for can) must
            # still end the loop, so stop() also sets the event this waits on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            delay = min(delay * 2, self.max_delay_s)

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping.set()
        if task is None:
            return
        if self._starting:
            # Cancelling aiokafka mid-start can leave clients open: let the start finish first.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 20)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _problems_only_as_problem_json(app: FastAPI) -> None:
    """FastAPI documents a response `model` in the route's media type too (JSON, text); errors are
    only ever sent as application/problem+json, so the schema says just that."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if str(status).startswith(("4", "5")) and content and errors.PROBLEM_JSON not in content:
                        # FastAPI's own 422 (HTTPValidationError): what is sent is a problem document.
                        content.clear()
                        content[errors.PROBLEM_JSON] = {"schema": {"$ref": "#/components/schemas/Problem"}}
                    if errors.PROBLEM_JSON in content:
                        for media_type in [m for m in content if m != errors.PROBLEM_JSON]:
                            del content[media_type]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: ApiSettings, backbone: Backbone | None = None) -> FastAPI:
    """The API for `settings`. A `backbone` passed in is handed over: the app's lifespan starts its
    Kafka side and stops it at shutdown, just like one the app builds itself."""
    backbone = backbone or Backbone(settings, "api", relay_enabled=settings.relay)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = KafkaConnector(backbone)
        app.state.kafka = connector
        connector.start()
        await asyncio.to_thread(passwords.warm_up)
        try:
            yield
        finally:
            await connector.stop()
            await backbone.stop()
            await app.state.rate_limiter.aclose()

    app = FastAPI(
        title="Comet",
        version="1",
        summary="Event-driven CI/CD orchestrator.",
        description="Errors are `application/problem+json` (RFC 9457). Authenticate with "
        "`POST /api/v1/auth/login` and send `Authorization: Bearer <access_token>`.",
        openapi_url="/openapi.json",
        # FastAPI's own docs pages load their assets from a CDN; docs_pages serves them itself.
        docs_url=None,
        redoc_url=None,
        openapi_tags=_TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backbone = backbone
    app.state.readiness = Readiness(backbone.engine, settings.kafka_bootstrap_servers)
    app.state.rate_limiter = RateLimiter(settings)
    app.state.login_throttle = LoginThrottle(settings, app.state.rate_limiter.storage)

    errors.install(app)
    idempotency.install(app)
    documented.install(app)
    docs_pages.install(app)
    _problems_only_as_problem_json(app)
    routers = (
        auth,
        oauth,
        users,
        tokens,
        audit,
        projects,
        secrets,
        integrations,
        runs,
        deployments,
        test_suites,
        schedules,
        tests,
        flaky_tests,
        coverage,
        insights,
        webhooks,
        webhook_replay,
        fleet,
        dead_letters,
        health,
    )
    for module in routers:
        app.include_router(module.router)
    mount_dashboard(app)

    # Added innermost first: the last one added wraps all the others.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ErrorGuard)
    app.add_middleware(SecurityHeaders, hsts_max_age_s=settings.hsts_max_age_s if settings.tls else None)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
    app.add_middleware(RequestContext, observe=metrics.observe)
    return app
