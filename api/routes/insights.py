"""Insights (DORA and pipeline figures) of a project over a window: read-only, from what `comet
analytics` wrote (docs/decisions/0025). Reads need viewer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.access import ProjectAccessDep
from api.deps import JsonBody, SessionDep
from api.errors import ValidationFailed, problem_responses
from api.routes import API_PREFIX
from db.repositories import insights
from schemas.api.insights import Dora, Pipeline, ProjectInsights, StageInsight
from schemas.durations import parse_duration

router = APIRouter(prefix=API_PREFIX, tags=["insights"], dependencies=[JsonBody])

MAX_WINDOW_S = 366 * 86400.0


def _window_s(window: str) -> float:
    try:
        seconds = parse_duration(window)
    except (ValueError, OverflowError):
        seconds = float("nan")
    if not 60 <= seconds <= MAX_WINDOW_S:  # also false for nan
        raise ValidationFailed(
            "window must be a duration from 1m to 366d (e.g. 7d, 24h, 90m)",
            errors=[("query.window", "a duration from 1m to 366d")],
        )
    return seconds


@router.get(
    "/projects/{project_id}/insights",
    summary="DORA and pipeline insights over a window",
    description="Deployment frequency, lead time (run created → successful deployment), change "
    "failure rate and time to restore (per environment with `environment`), and the pipeline's "
    "runs, success rate, per-stage duration and queue-wait percentiles and flaky rate, over the "
    "last `window`. Computed by `comet analytics` off the critical path: figures lag the live "
    "system by its flush interval, more while it is stopped.",
    response_model=ProjectInsights,
    responses=problem_responses(401, 404, 422),
)
async def project_insights(
    access: ProjectAccessDep,
    session: SessionDep,
    window: Annotated[str, Query(max_length=20, description="e.g. 7d, 24h, 90m")] = "7d",
    environment: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> ProjectInsights:
    found = await insights.window(session, access.project.id, _window_s(window), environment)
    return ProjectInsights(
        window=window,
        environment=environment,
        dora=Dora(
            deployments=found.deployments,
            deployment_frequency_per_day=found.deployment_frequency_per_day,
            lead_time_p50_s=found.lead_time_p50_s,
            change_failure_rate=found.change_failure_rate,
            time_to_restore_p50_s=found.time_to_restore_p50_s,
        ),
        pipeline=Pipeline(
            runs=found.runs,
            success_rate=found.success_rate,
            stages=[
                StageInsight(
                    stage=s.stage,
                    duration_p50_s=s.duration_p50_s,
                    duration_p95_s=s.duration_p95_s,
                    queue_wait_p50_s=s.queue_wait_p50_s,
                    queue_wait_p95_s=s.queue_wait_p95_s,
                )
                for s in found.stages
            ],
            flaky_rate=found.flaky_rate,
        ),
    )
