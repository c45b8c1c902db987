"""Coverage through the API, over rows stored as a worker stores them: a run's coverage per stage
and overall (percent), a pull request's delta against its target branch, a branch's trend."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.api.conftest import Account, MakeAccount, MakeProject
from tests.integration.api.results_data import Case, Seeder

pytestmark = pytest.mark.integration

PR_TRIGGER = {"kind": "webhook", "event": "pull_request", "provider": "github", "base_branch": "main"}


@pytest.fixture
async def seed(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> Seeder:
    owner = await make_account()
    project = await make_project(owner)
    return Seeder(client, api_sessions, owner, project["id"])


async def _get(seed: Seeder, url: str, **params: Any) -> httpx.Response:
    return await seed.client.get(url, params=params, headers=seed.owner.headers)


async def _run_with_coverage(
    seed: Seeder, lines: tuple[int, int], ref: str = "main", trigger: dict[str, Any] | None = None
) -> str:
    run = await seed.run(ref, trigger=trigger)
    await seed.stage(run, "unit", [[Case("test_a")]])
    await seed.coverage(run, "unit", 1, lines=lines)
    return run.id


async def test_a_runs_coverage_per_stage_and_overall_in_percent(seed: Seeder) -> None:
    run = await seed.run()
    await seed.stage(run, "lint", [None])
    await seed.stage(run, "unit[python=3.11]", [[Case("test_a", "failed")], [Case("test_a")]])
    await seed.stage(run, "e2e[1/4]", [[Case("test_b")]])
    # The first attempt's coverage is not the stage's any more.
    await seed.coverage(run, "unit[python=3.11]", 1, lines=(1, 100))
    files = [
        {
            "path": "app/core.py",
            "line_rate": 0.8,
            "branch_rate": None,
            "lines_covered": 40,
            "lines_valid": 50,
            "branches_covered": 0,
            "branches_valid": 0,
        },
        {"path": "app/util.py", "line_rate": 2 / 3, "lines_covered": 20, "lines_valid": 30},
    ]
    await seed.coverage(run, "unit[python=3.11]", 2, lines=(60, 80), branches=(3, 4), files=files)
    await seed.coverage(run, "e2e[1/4]", 1, lines=(10, 40), branches=(0, 0))

    response = await _get(seed, f"/api/v1/runs/{run.id}/coverage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["overall"] == {
        "line_rate": 58.33,
        "branch_rate": 75.0,
        "lines_covered": 70,
        "lines_valid": 120,
        "branches_covered": 3,
        "branches_valid": 4,
    }
    unit, e2e = body["stages"]
    assert (unit["stage"], unit["attempt"], unit["line_rate"], unit["branch_rate"]) == (
        "unit[python=3.11]",
        2,
        75.0,
        75.0,
    )
    assert unit["files"] == [
        {
            "path": "app/core.py",
            "line_rate": 80.0,
            "branch_rate": None,
            "lines_covered": 40,
            "lines_valid": 50,
            "branches_covered": 0,
            "branches_valid": 0,
        },
        {
            "path": "app/util.py",
            "line_rate": 66.67,
            "branch_rate": None,
            "lines_covered": 20,
            "lines_valid": 30,
            "branches_covered": 0,
            "branches_valid": 0,
        },
    ]
    assert (e2e["stage"], e2e["line_rate"], e2e["branch_rate"], e2e["files"]) == ("e2e[1/4]", 25.0, None, [])
    assert (body["base"], body["delta"]) == (None, None)  # not a pull request


async def test_a_run_without_coverage_has_none(seed: Seeder) -> None:
    run = await seed.run()
    await seed.stage(run, "unit", [[Case("test_a")]])
    body = (await _get(seed, f"/api/v1/runs/{run.id}/coverage")).json()
    assert body == {"overall": None, "stages": [], "base": None, "delta": None}


async def test_a_pull_request_gets_the_delta_against_its_target_branchs_latest_coverage(seed: Seeder) -> None:
    alone = await _run_with_coverage(seed, (50, 100), ref="feature", trigger=PR_TRIGGER)
    body = (await _get(seed, f"/api/v1/runs/{alone}/coverage")).json()
    assert (body["base"], body["delta"]) == (None, None)  # the target branch has no coverage yet

    await _run_with_coverage(seed, (70, 100))
    latest_main = await _run_with_coverage(seed, (80, 100))
    await _run_with_coverage(seed, (10, 100), ref="other")
    pr = await _run_with_coverage(seed, (7, 10), ref="feature", trigger=PR_TRIGGER)
    body = (await _get(seed, f"/api/v1/runs/{pr}/coverage")).json()
    assert body["overall"]["line_rate"] == 70.0
    assert body["base"] == {
        "ref": "refs/heads/main",
        "run_id": latest_main,
        "run_number": 3,
        "line_rate": 80.0,
    }
    assert body["delta"] == -10.0

    gitlab = await _run_with_coverage(
        seed, (925, 1000), ref="mr-7", trigger=PR_TRIGGER | {"provider": "gitlab"}
    )
    assert (await _get(seed, f"/api/v1/runs/{gitlab}/coverage")).json()["delta"] == 12.5


async def test_the_trend_of_a_branch_is_newest_first_and_paginates(seed: Seeder) -> None:
    main_runs = [await _run_with_coverage(seed, (n, 100)) for n in (50, 60, 70)]
    await _run_with_coverage(seed, (5, 100), ref="feature")
    no_coverage = await seed.run()
    await seed.stage(no_coverage, "unit", [[Case("test_a")]])
    url = f"/api/v1/projects/{seed.project_id}/coverage"

    body = (await _get(seed, url)).json()
    assert [p["run_id"] for p in body["data"]] == list(reversed(main_runs))
    assert [p["line_rate"] for p in body["data"]] == [70.0, 60.0, 50.0]
    assert body["data"][0]["run_number"] == 3
    assert body["data"][0]["ref"] == "refs/heads/main"
    assert body["data"][0]["branch_rate"] is None
    assert body["next_cursor"] is None

    first = (await _get(seed, url, ref="refs/heads/main", limit=2)).json()
    rest = (await _get(seed, url, limit=2, cursor=first["next_cursor"])).json()
    assert [p["run_id"] for p in first["data"] + rest["data"]] == list(reversed(main_runs))
    assert rest["next_cursor"] is None

    feature = (await _get(seed, url, ref="feature")).json()
    assert [p["line_rate"] for p in feature["data"]] == [5.0]


async def test_bad_trend_parameters_are_422(seed: Seeder) -> None:
    url = f"/api/v1/projects/{seed.project_id}/coverage"
    for params, field in (
        ({"ref": "bad..ref"}, "query.ref"),
        ({"ref": "-x"}, "query.ref"),
        ({"cursor": "bm90LWEtdXVpZA"}, "query.cursor"),
        ({"limit": "0"}, "query.limit"),
    ):
        response = await _get(seed, url, **params)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_a_stranger_cannot_see_a_projects_coverage(seed: Seeder, make_account: MakeAccount) -> None:
    run = await _run_with_coverage(seed, (1, 2))
    stranger: Account = await make_account()
    for url in (f"/api/v1/runs/{run}/coverage", f"/api/v1/projects/{seed.project_id}/coverage"):
        response = await seed.client.get(url, headers=stranger.headers)
        assert response.status_code == 404
