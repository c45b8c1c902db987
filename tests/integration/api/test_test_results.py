"""Test results through the API, over rows stored as a worker stores them: a run's summary (and the
run view's), its cases with filters and cursors, one test's history, flaky tests, quarantine."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry
from db.repositories.tests import history_statement
from tests.integration.api.conftest import Account, MakeAccount, MakeProject
from tests.integration.api.results_data import Case, Seeder

pytestmark = pytest.mark.integration

SHA = "a" * 40


@dataclass
class World:
    client: httpx.AsyncClient
    owner: Account
    project: dict[str, Any]
    seed: Seeder

    @property
    def p(self) -> str:
        return f"/api/v1/projects/{self.project['id']}"

    async def get(self, url: str, **params: Any) -> httpx.Response:
        return await self.client.get(url, params=params, headers=self.owner.headers)


@pytest.fixture
async def world(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> World:
    owner = await make_account()
    project = await make_project(owner)
    return World(client, owner, project, Seeder(client, api_sessions, owner, project["id"]))


def _problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field], body
    return body


# -- the run's summary ----------------------------------------------------------------------------
async def test_the_summary_sums_current_attempts_and_counts_a_retry_pass_as_flaky(world: World) -> None:
    run = await world.seed.run(sha=SHA)
    await world.seed.stage(run, "lint", [None])
    # Attempt 1: two failures; attempt 2: `a` passes (not flagged by the worker), `b` still fails.
    await world.seed.stage(
        run,
        "unit[python=3.11]",
        [
            [Case("test_a", "failed"), Case("test_b", "failed"), Case("test_c")],
            [Case("test_a"), Case("test_b", "failed"), Case("test_c", duration_s=1.25)],
        ],
    )
    await world.seed.stage(
        run,
        "e2e[1/4]",
        [[Case("test_d", "skipped"), Case("test_e", "errored", quarantined=True, flaky=True)]],
        report_errors=[{"file": "reports/broken.xml", "reason": "not well-formed (line 1)"}],
    )

    response = await world.get(f"/api/v1/runs/{run.id}/tests")
    assert response.status_code == 200, response.text
    body = response.json()
    unit: dict[str, float] = {"total": 3, "passed": 2, "failed": 1, "errored": 0, "skipped": 0, "flaky": 1}
    unit |= {"quarantined": 0, "duration_s": 2.25}
    e2e: dict[str, float] = {"total": 2, "passed": 0, "failed": 0, "errored": 1, "skipped": 1, "flaky": 1}
    e2e |= {"quarantined": 1, "duration_s": 1.0}
    assert body["stages"] == [
        {"stage": "unit[python=3.11]", "attempt": 2, "summary": unit, "report_errors": []},
        {
            "stage": "e2e[1/4]",
            "attempt": 1,
            "summary": e2e,
            "report_errors": [{"file": "reports/broken.xml", "reason": "not well-formed (line 1)"}],
        },
    ]
    assert body["summary"] == {
        "total": 5,
        "passed": 2,
        "failed": 1,
        "errored": 1,
        "skipped": 1,
        "flaky": 2,
        "quarantined": 1,
        "duration_s": 3.25,
    }

    view = (await world.get(f"/api/v1/runs/{run.id}")).json()
    assert view["tests"] == body["summary"]
    assert {s["name"]: s["tests"] for s in view["stages"]} == {
        "lint": None,
        "unit[python=3.11]": unit,
        "e2e[1/4]": e2e,
    }


async def test_a_run_without_reports_has_zero_counts_and_no_tests_in_its_view(world: World) -> None:
    run = await world.seed.run()
    await world.seed.stage(run, "build", [None])
    body = (await world.get(f"/api/v1/runs/{run.id}/tests")).json()
    assert body == {
        "summary": dict.fromkeys(
            ("total", "passed", "failed", "errored", "skipped", "flaky", "quarantined"), 0
        )
        | {"duration_s": 0.0},
        "stages": [],
    }
    view = (await world.get(f"/api/v1/runs/{run.id}")).json()
    assert view["tests"] is None
    assert view["stages"][0]["tests"] is None


async def test_a_stage_with_only_report_errors_is_listed_without_a_summary(world: World) -> None:
    run = await world.seed.run()
    await world.seed.stage(run, "unit", [None], report_errors=[{"file": "r.xml", "reason": "too big"}])
    body = (await world.get(f"/api/v1/runs/{run.id}/tests")).json()
    assert body["stages"] == [
        {
            "stage": "unit",
            "attempt": 1,
            "summary": None,
            "report_errors": [{"file": "r.xml", "reason": "too big"}],
        }
    ]
    assert body["summary"]["total"] == 0
    assert (await world.get(f"/api/v1/runs/{run.id}")).json()["tests"] is None


async def test_unknown_runs_are_404(world: World) -> None:
    for path in ("tests", "tests/cases", "coverage"):
        _problem(await world.get(f"/api/v1/runs/{uuid.uuid4()}/{path}"), 404)


# -- a run's cases -----------------------------------------------------------------------------------
async def _cases_run(world: World) -> str:
    run = await world.seed.run()
    await world.seed.stage(
        run,
        "unit[python=3.11]",
        [
            [Case("test_a", "failed", message="assert 1 == 2")],
            [Case("test_a", flaky=True), Case("test_b", "failed"), Case("test_c", "skipped")],
        ],
    )
    await world.seed.stage(run, "e2e[1/4]", [[Case("test_d", "errored"), Case("test_e")]])
    return run.id


async def _all_pages(world: World, url: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = await world.get(url, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return found


async def test_cases_are_the_current_attempts_by_id_with_filters(world: World) -> None:
    run_id = await _cases_run(world)
    url = f"/api/v1/runs/{run_id}/tests/cases"

    def names(cases: list[dict[str, Any]]) -> list[str]:
        return [c["name"] for c in cases]

    every = (await world.get(url)).json()
    assert names(every["data"]) == ["test_a", "test_b", "test_c", "test_d", "test_e"]
    assert every["next_cursor"] is None
    first = every["data"][0]
    assert set(first) == {
        "id",
        "key",
        "name",
        "classname",
        "file",
        "line",
        "status",
        "duration_s",
        "message",
        "stage",
        "attempt",
        "flaky",
        "quarantined",
    }
    assert (first["key"], first["stage"], first["attempt"], first["flaky"]) == (
        Case("test_a").key,
        "unit[python=3.11]",
        2,
        True,
    )

    assert names((await world.get(url, status="failed")).json()["data"]) == ["test_b"]
    repeated = await world.client.get(
        url, params=[("status", "failed"), ("status", "errored")], headers=world.owner.headers
    )
    assert names(repeated.json()["data"]) == ["test_b", "test_d"]
    assert names((await world.get(url, status="failed,errored")).json()["data"]) == ["test_b", "test_d"]
    assert names((await world.get(url, stage="e2e[1/4]")).json()["data"]) == ["test_d", "test_e"]
    assert names((await world.get(url, stage="unit[python=3.11]", status="skipped")).json()["data"]) == [
        "test_c"
    ]
    assert names((await world.get(url, stage="e2e")).json()["data"]) == []
    assert names((await world.get(url, flaky="true")).json()["data"]) == ["test_a"]

    with_retries = (await world.get(url, all_attempts="true")).json()["data"]
    assert [(c["name"], c["attempt"], c["status"]) for c in with_retries][:2] == [
        ("test_a", 1, "failed"),
        ("test_a", 2, "passed"),
    ]
    assert with_retries[0]["message"] == "assert 1 == 2"

    paged = await _all_pages(world, url, limit=2)
    assert names(paged) == names(every["data"])
    assert [c["id"] for c in paged] == sorted(c["id"] for c in paged)


async def test_bad_case_filters_and_cursors_are_422(world: World) -> None:
    run_id = await _cases_run(world)
    url = f"/api/v1/runs/{run_id}/tests/cases"
    bad = _problem(await world.get(url, status="failed,broken"), 422, "query.status")
    assert "'broken' is not a status" in bad["errors"][0]["message"]
    _problem(await world.get(url, status="FAILED"), 422, "query.status")
    for cursor in ("not a cursor!", "bm90LWEtbnVtYmVy", "x" * 300):
        _problem(await world.get(url, cursor=cursor), 422, "query.cursor")
    _problem(await world.get(url, limit=0), 422, "query.limit")
    _problem(await world.get(url, limit=501), 422, "query.limit")
    _problem(await world.get(url, stage="s" * 301), 422, "query.stage")
    # Text PostgreSQL cannot hold (NUL) matches nothing rather than failing.
    nul = await world.get(url, stage="unit\x00")
    assert nul.status_code == 200, nul.text
    assert nul.json()["data"] == []


# -- one test's history ----------------------------------------------------------------------------
async def test_history_is_newest_first_across_runs_and_paginates(world: World) -> None:
    statuses = ["passed", "failed", "passed", "passed"]
    runs = []
    for status in statuses:
        run = await world.seed.run(sha=secrets.token_hex(20))
        await world.seed.stage(run, "unit", [[Case("test_x", status), Case("test_other")]])
        runs.append(run)
    key = Case("test_x").key
    url = f"{world.p}/tests/cases/{key}/history"

    body = (await world.get(url)).json()
    assert [e["run_id"] for e in body["data"]] == [r.id for r in reversed(runs)]
    assert [e["status"] for e in body["data"]] == list(reversed(statuses))
    entry = body["data"][0]
    assert entry["run_number"] == 4
    assert entry["ref"] == "refs/heads/main"
    assert entry["sha"] == runs[-1].sha
    assert (entry["stage"], entry["attempt"], entry["flaky"], entry["quarantined"]) == (
        "unit",
        1,
        False,
        False,
    )
    assert entry["created_at"].endswith(("Z", "+00:00"))

    paged = await _all_pages(world, url, limit=3)
    assert [e["case_id"] for e in paged] == [e["case_id"] for e in body["data"]]
    last = (await world.get(url, limit=4)).json()
    assert last["next_cursor"] is None


async def test_history_of_an_unknown_key_is_404_even_when_another_project_has_it(
    world: World, make_project: MakeProject
) -> None:
    run = await world.seed.run()
    await world.seed.stage(run, "unit", [[Case("test_x")]])
    key = Case("test_x").key
    other = await make_project(world.owner)
    _problem(await world.get(f"/api/v1/projects/{other['id']}/tests/cases/{key}/history"), 404)
    _problem(await world.get(f"{world.p}/tests/cases/{'0' * 20}/history"), 404)
    _problem(await world.get(f"{world.p}/tests/cases/{key}/history", cursor="@@"), 422, "query.cursor")
    _problem(await world.get(f"{world.p}/tests/cases/{'f' * 101}/history"), 422, "path.key")
    _problem(await world.get(f"{world.p}/tests/cases/a%00b/history"), 404)
    # A cursor past the end of a known test's history is an empty page, not a 404.
    past = await world.get(f"{world.p}/tests/cases/{key}/history", cursor="MQ")
    assert past.status_code == 200
    assert past.json() == {"data": [], "next_cursor": None}


async def test_the_history_query_reads_the_history_index_backwards_and_stops_at_the_page(
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    statement = history_statement(uuid.uuid4(), "0123456789abcdef0123", limit=51, before_id=1000)
    compiled = statement.compile(compile_kwargs={"literal_binds": True})
    async with api_sessions() as session:
        # The test database is tiny, where a sequential scan wins; forbid it to see the index plan
        # (with 1,000,000 cases the planner picks this plan by itself: see the route's commit).
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = [row[0] for row in await session.execute(text(f"EXPLAIN {compiled}"))]
    scan = next(i for i, line in enumerate(plan) if "Scan Backward using ix_test_cases_history" in line)
    assert "Limit" in plan[scan - 1], plan  # the index read stops after one page
    assert "Index Cond: ((project_id = " in plan[scan + 1], plan
    assert not any("Sort" in line for line in plan), plan


# -- flaky tests -----------------------------------------------------------------------------------
async def test_a_test_that_passed_on_a_retry_of_the_same_sha_is_flaky(world: World) -> None:
    first = await world.seed.run(sha=SHA)
    await world.seed.stage(first, "unit", [[Case("test_f", "failed", flaky=True), Case("test_ok")]])
    second = await world.seed.run(sha=SHA)
    await world.seed.stage(second, "unit", [[Case("test_f", flaky=True), Case("test_ok")]])

    body = (await world.get(f"{world.p}/tests/flaky")).json()
    assert body["window"] == "30d"
    assert body["ref"] == "refs/heads/main"
    assert body["next_cursor"] is None
    [flaky] = body["data"]
    assert flaky["key"] == Case("test_f").key
    assert (flaky["name"], flaky["classname"], flaky["file"]) == (
        "test_f",
        "tests.test_app",
        "tests/test_app.py",
    )
    assert flaky["flaky_count"] == 2  # both runs had a flaky case of it
    assert flaky["flip_rate"] == 1.0  # failed, then passed: one change over two runs of main
    assert (flaky["flips"], flaky["runs_considered"], flaky["quarantined"]) == (1, 2, False)
    assert flaky["last_flake_at"] is not None


async def test_flips_on_the_default_branch_make_a_test_flaky_and_other_branches_do_not(world: World) -> None:
    flipping = ["passed", "failed", "passed", "passed", "failed"]
    for status in flipping:
        run = await world.seed.run(sha=secrets.token_hex(20))
        await world.seed.stage(
            run, "unit", [[Case("test_flip", status), Case("test_steady"), Case("test_skip", "skipped")]]
        )
    for status in ("passed", "failed", "passed"):
        run = await world.seed.run("feature", sha=secrets.token_hex(20))
        await world.seed.stage(run, "unit", [[Case("test_branch_only", status)]])

    body = (await world.get(f"{world.p}/tests/flaky")).json()
    assert [f["name"] for f in body["data"]] == ["test_flip"]
    [flip] = body["data"]
    assert flip["flaky_count"] == 0
    assert (flip["flips"], flip["runs_considered"]) == (3, 5)
    assert flip["flip_rate"] == 0.75


async def test_a_retried_stage_counts_its_current_attempt_as_the_runs_result(world: World) -> None:
    for attempts in ([[Case("test_r")]], [[Case("test_r", "failed")], [Case("test_r")]], [[Case("test_r")]]):
        run = await world.seed.run(sha=secrets.token_hex(20))
        await world.seed.stage(run, "unit", attempts)
    # Pass, pass (after a retry), pass: no flip; and nothing flagged the retry.
    assert (await world.get(f"{world.p}/tests/flaky")).json()["data"] == []


async def test_the_window_bounds_what_is_considered(world: World) -> None:
    run = await world.seed.run(sha=SHA)
    old = datetime.now(UTC) - timedelta(days=40)
    await world.seed.stage(run, "unit", [[Case("test_old", flaky=True)]], at=old)
    assert (await world.get(f"{world.p}/tests/flaky")).json()["data"] == []
    wide = (await world.get(f"{world.p}/tests/flaky", window="60d")).json()
    assert [f["name"] for f in wide["data"]] == ["test_old"]
    assert wide["window"] == "60d"
    assert datetime.fromisoformat(wide["data"][0]["last_flake_at"]) == old


@pytest.mark.parametrize("window", ["abc", "0s", "30m", "400d", "nan", "-5d", "1e9"])
async def test_a_bad_window_is_422(world: World, window: str) -> None:
    _problem(await world.get(f"{world.p}/tests/flaky", window=window), 422, "query.window")


async def test_flaky_tests_paginate_and_show_their_quarantine(world: World) -> None:
    for i in range(3):
        run = await world.seed.run(sha=secrets.token_hex(20))
        await world.seed.stage(run, "unit", [[Case(f"test_{i}", flaky=True)]])
    key = Case("test_1").key
    assert (
        await world.client.put(f"{world.p}/tests/quarantine/{key}", headers=world.owner.headers)
    ).status_code == 201
    paged = await _all_pages(world, f"{world.p}/tests/flaky", limit=2)
    assert sorted(f["name"] for f in paged) == ["test_0", "test_1", "test_2"]
    assert {f["name"]: f["quarantined"] for f in paged} == {"test_0": False, "test_1": True, "test_2": False}
    _problem(await world.get(f"{world.p}/tests/flaky", cursor="%%%"), 422, "query.cursor")


# -- quarantine ------------------------------------------------------------------------------------
async def _audit(sessions: async_sessionmaker[AsyncSession], project_id: str) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.project_id == uuid.UUID(project_id), AuditEntry.action.like("test.%"))
            .order_by(AuditEntry.id)
        )
        return list(rows.all())


async def test_quarantine_and_release_are_audited_and_listed(
    world: World, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    run = await world.seed.run()
    await world.seed.stage(run, "unit", [[Case("test_q", "failed")]])
    key = Case("test_q").key
    url = f"{world.p}/tests/quarantine/{key}"

    created = await world.client.put(url, json={"reason": "flaky on CI"}, headers=world.owner.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"] == key
    assert (body["name"], body["classname"], body["file"]) == (
        "test_q",
        "tests.test_app",
        "tests/test_app.py",
    )
    assert (body["reason"], body["quarantined_by"]) == ("flaky on CI", world.owner.id)

    again = await world.client.put(url, json={"reason": "still flaky"}, headers=world.owner.headers)
    assert again.status_code == 200
    assert again.json()["reason"] == "still flaky"
    assert again.json()["created_at"] == body["created_at"]

    listed = (await world.get(f"{world.p}/tests/quarantine")).json()
    assert [q["key"] for q in listed["data"]] == [key]

    released = await world.client.delete(url, headers=world.owner.headers)
    assert released.status_code == 204
    _problem(await world.client.delete(url, headers=world.owner.headers), 404)
    assert (await world.get(f"{world.p}/tests/quarantine")).json()["data"] == []

    entries = await _audit(api_sessions, world.project["id"])
    assert [(e.action, e.target_type, e.target_id) for e in entries] == [
        ("test.quarantined", "test", key),
        ("test.quarantined", "test", key),
        ("test.released", "test", key),
    ]
    assert entries[0].actor_id == uuid.UUID(world.owner.id)
    assert entries[0].details["reason"] == "flaky on CI"


async def test_quarantine_without_a_body_and_the_list_paginates(world: World) -> None:
    run = await world.seed.run()
    await world.seed.stage(run, "unit", [[Case(f"test_{i}") for i in range(3)]])
    for i in range(3):
        response = await world.client.put(
            f"{world.p}/tests/quarantine/{Case(f'test_{i}').key}", headers=world.owner.headers
        )
        assert response.status_code == 201, response.text
        assert response.json()["reason"] is None
    paged = await _all_pages(world, f"{world.p}/tests/quarantine", limit=2)
    assert [q["key"] for q in paged] == sorted(Case(f"test_{i}").key for i in range(3))


async def test_quarantine_of_an_unknown_key_is_404_and_bad_bodies_are_422(
    world: World, make_project: MakeProject, api_sessions: async_sessionmaker[AsyncSession]
) -> None:
    run = await world.seed.run()
    await world.seed.stage(run, "unit", [[Case("test_q")]])
    key = Case("test_q").key
    other = await make_project(world.owner)
    headers = world.owner.headers
    _problem(await world.client.put(f"{world.p}/tests/quarantine/{'0' * 20}", headers=headers), 404)
    _problem(
        await world.client.put(f"/api/v1/projects/{other['id']}/tests/quarantine/{key}", headers=headers), 404
    )
    _problem(await world.client.delete(f"{world.p}/tests/quarantine/{key}", headers=headers), 404)
    for method in ("PUT", "DELETE"):
        _problem(
            await world.client.request(method, f"{world.p}/tests/quarantine/a%00b", headers=headers), 404
        )
    _problem(await world.get(f"{world.p}/tests/quarantine", cursor="AA"), 422, "query.cursor")  # NUL
    url = f"{world.p}/tests/quarantine/{key}"
    _problem(await world.client.put(url, json={"reason": "x" * 1001}, headers=headers), 422, "body.reason")
    _problem(await world.client.put(url, json={"why": "x"}, headers=headers), 422, "body.why")
    assert await _audit(api_sessions, world.project["id"]) == []


# -- the auto-quarantine threshold -------------------------------------------------------------------
async def test_the_auto_quarantine_flip_rate_is_a_fraction_or_null(world: World) -> None:
    headers = world.owner.headers
    assert (await world.get(world.p)).json()["auto_quarantine_flip_rate"] is None
    changed = await world.client.patch(world.p, json={"auto_quarantine_flip_rate": 0.3}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["auto_quarantine_flip_rate"] == 0.3
    assert (await world.get(world.p)).json()["auto_quarantine_flip_rate"] == 0.3
    assert (await world.client.patch(world.p, json={"auto_quarantine_flip_rate": 1}, headers=headers)).json()[
        "auto_quarantine_flip_rate"
    ] == 1.0
    for bad in (0, -0.1, 1.01, True, "0.5"):
        response = await world.client.patch(world.p, json={"auto_quarantine_flip_rate": bad}, headers=headers)
        _problem(response, 422, "body.auto_quarantine_flip_rate")
    cleared = await world.client.patch(world.p, json={"auto_quarantine_flip_rate": None}, headers=headers)
    assert cleared.json()["auto_quarantine_flip_rate"] is None
