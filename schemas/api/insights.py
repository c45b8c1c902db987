"""`GET /projects/{id}/insights` (CONTRACT §4): DORA and pipeline figures over a window, as `comet
analytics` wrote them (docs/decisions/0025). Rates are fractions (0..1); durations in seconds;
a figure with nothing to compute it from is null."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Dora(_Out):
    deployments: int = Field(description="successful deployments in the window")
    deployment_frequency_per_day: float
    lead_time_p50_s: float | None = Field(description="run created → successful deployment, median")
    change_failure_rate: float | None = Field(description="failed / (successful + failed) deployments")
    time_to_restore_p50_s: float | None = Field(
        description="first failed deployment of an environment → its next successful one, median"
    )


class StageInsight(_Out):
    stage: str
    duration_p50_s: float | None
    duration_p95_s: float | None
    queue_wait_p50_s: float | None
    queue_wait_p95_s: float | None


class Pipeline(_Out):
    runs: int = Field(description="runs that finished in the window")
    success_rate: float | None = Field(description="succeeded / (succeeded + failed) runs")
    stages: list[StageInsight]
    flaky_rate: float | None = Field(description="flaky test results / test results")


class ProjectInsights(_Out):
    window: str
    environment: str | None = None
    dora: Dora
    pipeline: Pipeline
