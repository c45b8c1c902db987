"""Liveness, readiness and Prometheus metrics, outside `/api/v1` where orchestration tools look."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api import metrics, queue_signals
from api.deps import BackboneDep
from api.errors import ServiceUnavailable, problem_responses
from api.readiness import OK, Readiness

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, str]


@router.get("/healthz", summary="Liveness: the process answers", response_model=Health)
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    summary="Readiness: the database and Kafka answer",
    response_model=Ready,
    responses=problem_responses(503),
)
async def readyz(request: Request) -> Ready:
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.check()
    failed = sorted(name for name, state in checks.items() if state != OK)
    if failed:
        raise ServiceUnavailable(
            f"Not ready: {', '.join(failed)} unavailable.",
            extra={"checks": checks},
            headers={"Retry-After": "1"},
        )
    return Ready(checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format."}},
)
async def prometheus_metrics(backbone: BackboneDep) -> Response:
    await metrics.refresh_from_database(backbone.sessions)
    await queue_signals.GAUGES.refresh(
        backbone.sessions, backbone.settings.kafka_bootstrap_servers, backbone.topics
    )
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
