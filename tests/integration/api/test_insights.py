"""`GET /projects/{id}/insights` over facts written the way `comet analytics` writes them: the
contract's shape, the window, one environment's DORA figures, another project's facts never
counted, a bad window refused, and /metrics' insight gauges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories import insights
from tests.integration.api.conftest import MakeAccount, MakeProject

pytestmark = pytest.mark.integration


def fact(kind: str, project: str, minutes_ago: float, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "member_id": str(uuid.uuid4()),
        "project_id": project,
        "at": datetime.now(UTC) - timedelta(minutes=minutes_ago),
        "status": status,
        "environment": extra.get("environment"),
        "stage": extra.get("stage"),
        "value_s": extra.get("value_s"),
        "wait_s": extra.get("wait_s"),
        "tests_total": extra.get("tests_total", 0),
        "tests_flaky": extra.get("tests_flaky", 0),
    }


async def write(api_sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]) -> None:
    async with api_sessions.begin() as session:
        await insights.upsert(await session.connection(), rows)


async def test_insights_show_dora_and_pipeline_figures_of_the_window(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = (await make_project(owner))["id"]
    other = (await make_project(owner))["id"]
    day = 24 * 60
    await write(
        api_sessions,
        [
            fact("deployment", project, 100, "succeeded", environment="production", value_s=600.0),
            fact("deployment", project, 90, "failed", environment="production"),
            fact("deployment", project, 60, "succeeded", environment="production", value_s=1200.0),
            fact("deployment", project, 50, "succeeded", environment="staging", value_s=60.0),
            fact("deployment", project, 10 * day, "failed", environment="production"),  # outside 7d
            fact("run", project, 30, "succeeded"),
            fact("run", project, 20, "failed"),
            fact("run", project, 10, "cancelled"),
            fact("stage", project, 30, "succeeded", stage="unit", value_s=10.0, wait_s=1.0),
            fact("stage", project, 20, "failed", stage="unit", value_s=30.0, wait_s=3.0),
            fact("tests", project, 30, "succeeded", stage="unit", tests_total=40, tests_flaky=2),
            fact("run", other, 5, "succeeded"),
        ],
    )

    answer = await client.get(f"/api/v1/projects/{project}/insights", headers=owner.headers)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["window"] == "7d"
    dora = body["dora"]
    assert dora["deployments"] == 3
    assert dora["deployment_frequency_per_day"] == pytest.approx(3 / 7)
    assert dora["lead_time_p50_s"] == pytest.approx(600.0)
    assert dora["change_failure_rate"] == pytest.approx(0.25)
    assert dora["time_to_restore_p50_s"] == pytest.approx(30 * 60.0)
    pipeline = body["pipeline"]
    assert (pipeline["runs"], pipeline["success_rate"], pipeline["flaky_rate"]) == (3, 0.5, 0.05)
    assert pipeline["stages"] == [
        {
            "stage": "unit",
            "duration_p50_s": 20.0,
            "duration_p95_s": pytest.approx(29.0),
            "queue_wait_p50_s": 2.0,
            "queue_wait_p95_s": pytest.approx(2.9),
        }
    ]

    staging = await client.get(
        f"/api/v1/projects/{project}/insights",
        params={"window": "1h", "environment": "staging"},
        headers=owner.headers,
    )
    assert staging.status_code == 200
    assert staging.json()["dora"]["deployments"] == 1
    assert staging.json()["dora"]["change_failure_rate"] == 0.0
    assert staging.json()["pipeline"]["runs"] == 3  # the pipeline figures are the project's

    metrics = await client.get("/metrics")
    assert 'comet_insight_facts_24h{kind="deployment",status="succeeded"}' in metrics.text
    assert "comet_insights_last_write_age_seconds" in metrics.text


@pytest.mark.parametrize("window", ["soon", "0s", "30s", "400d", "-1d"])
async def test_a_window_that_is_not_a_duration_from_a_minute_to_a_year_is_a_422(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject, window: str
) -> None:
    owner = await make_account()
    project = (await make_project(owner))["id"]

    answer = await client.get(
        f"/api/v1/projects/{project}/insights", params={"window": window}, headers=owner.headers
    )

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "window" in answer.json()["detail"]


async def test_a_project_without_facts_has_zero_counts_and_null_figures(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = (await make_project(owner))["id"]

    body = (await client.get(f"/api/v1/projects/{project}/insights", headers=owner.headers)).json()

    assert body["dora"] == {
        "deployments": 0,
        "deployment_frequency_per_day": 0.0,
        "lead_time_p50_s": None,
        "change_failure_rate": None,
        "time_to_restore_p50_s": None,
    }
    assert body["pipeline"] == {"runs": 0, "success_rate": None, "stages": [], "flaky_rate": None}
