"""Test suites and schedules through the API: create, read, list, change, delete (audited), the
schedule row kept in step with its suite, 422s naming the field, 409 for a taken name, 404 for
another project's suite, an idempotent suite run and `GET /projects/{id}/schedules`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditEntry, Run, Schedule
from schemas.cron import CronSchedule, next_fire
from tests.integration.api.conftest import Account, MakeAccount, MakeProject

pytestmark = pytest.mark.integration

NIGHTLY = {
    "name": "nightly e2e",
    "stages": ["e2e*", "unit[python=3.12]", "e2e*"],
    "ref": "release/1.x",
    "variables": {"SUITE": "nightly"},
    "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"},
}


def _suites(project: dict[str, Any]) -> str:
    return f"/api/v1/projects/{project['id']}/test-suites"


async def _create(
    client: httpx.AsyncClient, owner: Account, project: dict[str, Any], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(_suites(project), json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _schedule_rows(sessions: async_sessionmaker[AsyncSession], project_id: str) -> list[Schedule]:
    async with sessions() as session:
        rows = await session.scalars(select(Schedule).where(Schedule.project_id == uuid.UUID(project_id)))
        return list(rows)


async def test_a_suite_is_created_read_listed_and_its_schedule_kept_in_step(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    before = datetime.now(UTC)
    suite = await _create(client, owner, project, NIGHTLY)

    assert suite["name"] == "nightly e2e"
    assert suite["stages"] == ["e2e*", "unit[python=3.12]"]  # duplicates dropped, order kept
    assert suite["ref"] == "refs/heads/release/1.x"
    assert suite["variables"] == {"SUITE": "nightly"}
    assert suite["created_by"] == owner.id
    schedule = suite["schedule"]
    assert (schedule["cron"], schedule["timezone"]) == ("0 3 * * *", "Europe/Berlin")
    next_at = datetime.fromisoformat(schedule["next_fire_at"])
    assert before < next_at <= next_fire(CronSchedule("0 3 * * *", "Europe/Berlin"), after=datetime.now(UTC))
    assert (next_at.astimezone(ZoneInfo("Europe/Berlin")).hour, next_at.minute) == (3, 0)

    read = (await client.get(f"{_suites(project)}/{suite['id']}", headers=owner.headers)).json()
    assert read == suite
    listed = (await client.get(_suites(project), headers=owner.headers)).json()
    assert listed == {"data": [suite], "next_cursor": None}

    (row,) = await _schedule_rows(api_sessions, project["id"])
    assert (row.source, row.name, row.suite_id) == ("test_suite", "nightly e2e", uuid.UUID(suite["id"]))
    assert (row.ref, row.variables) == ("refs/heads/release/1.x", {"SUITE": "nightly"})

    shown = (await client.get(f"/api/v1/projects/{project['id']}/schedules", headers=owner.headers)).json()
    assert shown == {
        "data": [
            {
                "source": "test_suite",
                "name": "nightly e2e",
                "cron": "0 3 * * *",
                "timezone": "Europe/Berlin",
                "ref": "refs/heads/release/1.x",
                "next_fire_at": schedule["next_fire_at"],
                "last_tick_at": None,
                "suite_id": suite["id"],
            }
        ],
        "next_cursor": None,
    }


async def test_a_suite_without_a_ref_runs_the_default_branch_and_has_no_schedule(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    suite = await _create(client, owner, project, {"name": "fast", "stages": ["unit"]})
    assert suite["ref"] == f"refs/heads/{project['default_branch']}"
    assert suite["schedule"] is None
    assert suite["variables"] == {}
    assert await _schedule_rows(api_sessions, project["id"]) == []


async def test_changing_a_suite_moves_its_next_tick_only_when_cron_or_zone_change(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    suite = await _create(client, owner, project, NIGHTLY)
    url = f"{_suites(project)}/{suite['id']}"
    first = suite["schedule"]["next_fire_at"]

    renamed = await client.patch(url, json={"name": "e2e at night", "stages": ["e2e"]}, headers=owner.headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["schedule"]["next_fire_at"] == first
    (row,) = await _schedule_rows(api_sessions, project["id"])
    assert row.name == "e2e at night"

    retimed = await client.patch(
        url, json={"schedule": {"cron": "15 4 * * 1", "timezone": "Asia/Tokyo"}}, headers=owner.headers
    )
    assert retimed.status_code == 200, retimed.text
    moved = retimed.json()["schedule"]
    assert (moved["cron"], moved["timezone"]) == ("15 4 * * 1", "Asia/Tokyo")
    fires_at = datetime.fromisoformat(moved["next_fire_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (fires_at.weekday(), fires_at.hour, fires_at.minute) == (0, 4, 15)

    dropped = await client.patch(url, json={"schedule": None}, headers=owner.headers)
    assert dropped.status_code == 200, dropped.text
    assert dropped.json()["schedule"] is None
    assert dropped.json()["name"] == "e2e at night"
    assert await _schedule_rows(api_sessions, project["id"]) == []

    again = await client.patch(url, json={"schedule": {"cron": "@daily"}}, headers=owner.headers)
    assert again.json()["schedule"]["cron"] == "0 0 * * *"
    assert again.json()["schedule"]["timezone"] == "UTC"
    assert len(await _schedule_rows(api_sessions, project["id"])) == 1


async def test_deleting_a_suite_deletes_its_schedule_and_changes_are_audited(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    suite = await _create(client, owner, project, NIGHTLY)
    url = f"{_suites(project)}/{suite['id']}"
    await client.patch(url, json={"variables": {"TOKENISH": "secret-value"}}, headers=owner.headers)

    deleted = await client.delete(url, headers=owner.headers)
    assert deleted.status_code == 204
    assert (await client.get(url, headers=owner.headers)).status_code == 404
    assert await _schedule_rows(api_sessions, project["id"]) == []

    async with api_sessions() as session:
        entries = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.target_id == suite["id"]).order_by(AuditEntry.id)
            )
        )
    assert [e.action for e in entries] == ["test_suite.created", "test_suite.updated", "test_suite.deleted"]
    assert all(str(e.actor_id) == owner.id for e in entries)
    assert entries[1].details == {"variables": ["TOKENISH"]}
    assert "secret-value" not in str([e.details for e in entries])


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"schedule": {"cron": "0 25 * * *"}}, "body.schedule.cron", "is not a valid cron expression"),
        ({"schedule": {"cron": "0 3 * *"}}, "body.schedule.cron", "is not a 5-field cron expression"),
        ({"schedule": {"cron": "H 3 * * *"}}, "body.schedule.cron", "random (R) and hashed (H)"),
        ({"schedule": {"cron": "0 0 30 2 *"}}, "body.schedule.cron", "matches no date"),
        (
            {"schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berln"}},
            "body.schedule.timezone",
            "did you mean 'Europe/Berlin'?",
        ),
        ({"stages": []}, "body.stages", "name at least one stage"),
        ({"stages": ["[z-a]"]}, "body.stages", "is not a valid glob"),
        ({"name": ""}, "body.name", ""),
        ({"ref": "a..b"}, "body.ref", "must not contain '..'"),
        ({"variables": {"COMET_X": "1"}}, "body.variables", "reserved"),
        ({"colour": "red"}, "body.colour", ""),
    ],
    ids=[
        "bad-cron",
        "four-fields",
        "hashed",
        "never-fires",
        "bad-zone",
        "no-stages",
        "bad-glob",
        "empty-name",
        "bad-ref",
        "reserved-variable",
        "unknown-field",
    ],
)
async def test_an_invalid_suite_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.post(_suites(project), json={**NIGHTLY, **change}, headers=owner.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    assert message in errors[0]["message"]

    suite = await _create(client, owner, project, NIGHTLY)
    patched = await client.patch(f"{_suites(project)}/{suite['id']}", json=change, headers=owner.headers)
    assert patched.status_code == 422, patched.text
    assert [e["field"] for e in patched.json()["errors"]] == [field]


async def test_a_null_for_a_required_field_in_a_change_is_a_422(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    suite = await _create(client, owner, project, NIGHTLY)
    response = await client.patch(
        f"{_suites(project)}/{suite['id']}", json={"stages": None, "ref": None}, headers=owner.headers
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["body.stages", "body.ref"]


async def test_a_taken_name_is_a_409_on_create_and_on_rename_but_free_in_another_project(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project, other = await make_project(owner), await make_project(owner)
    await _create(client, owner, project, NIGHTLY)
    taken = await client.post(_suites(project), json=NIGHTLY, headers=owner.headers)
    assert taken.status_code == 409, taken.text
    assert "nightly e2e" in taken.json()["detail"]

    second = await _create(client, owner, project, {**NIGHTLY, "name": "second"})
    renamed = await client.patch(
        f"{_suites(project)}/{second['id']}", json={"name": "nightly e2e"}, headers=owner.headers
    )
    assert renamed.status_code == 409, renamed.text
    assert (await client.get(f"{_suites(project)}/{second['id']}", headers=owner.headers)).json()[
        "name"
    ] == "second"

    await _create(client, owner, other, NIGHTLY)


async def test_another_projects_suite_or_an_unknown_one_is_a_404(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner, stranger = await make_account(), await make_account()
    project, theirs = await make_project(owner), await make_project(stranger)
    suite = await _create(client, owner, project, NIGHTLY)
    for url in (f"{_suites(theirs)}/{suite['id']}", f"{_suites(project)}/{uuid.uuid4()}"):
        headers = stranger.headers if str(theirs["id"]) in url else owner.headers
        assert (await client.get(url, headers=headers)).status_code == 404
        assert (await client.patch(url, json={"stages": ["x"]}, headers=headers)).status_code == 404
        assert (await client.post(f"{url}/runs", headers=headers)).status_code == 404
        assert (await client.delete(url, headers=headers)).status_code == 404
    # A non-member cannot tell the project exists.
    assert (await client.get(_suites(project), headers=stranger.headers)).status_code == 404
    assert (
        await client.get(f"/api/v1/projects/{project['id']}/schedules", headers=stranger.headers)
    ).status_code == 404


async def test_a_viewer_reads_suites_a_developer_runs_them_and_only_a_maintainer_changes_them(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    suite = await _create(client, owner, project, NIGHTLY)
    url = f"{_suites(project)}/{suite['id']}"
    members = {}
    for role in ("viewer", "developer", "maintainer"):
        members[role] = await make_account()
        response = await client.put(
            f"/api/v1/projects/{project['id']}/members/{members[role].id}",
            json={"role": role},
            headers=owner.headers,
        )
        assert response.status_code == 200, response.text

    viewer, developer, maintainer = members["viewer"], members["developer"], members["maintainer"]
    assert (await client.get(url, headers=viewer.headers)).status_code == 200
    assert (await client.post(f"{url}/runs", headers=viewer.headers)).status_code == 403
    assert (await client.post(f"{url}/runs", headers=developer.headers)).status_code == 202
    refused = await client.patch(url, json={"stages": ["unit"]}, headers=developer.headers)
    assert refused.status_code == 403
    assert "the maintainer role" in refused.json()["detail"]
    assert (await client.patch(url, json={"stages": ["unit"]}, headers=maintainer.headers)).status_code == 200


async def test_running_a_suite_is_a_202_run_with_the_suites_selection_and_idempotent(
    client: httpx.AsyncClient,
    make_account: MakeAccount,
    make_project: MakeProject,
    api_sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    suite = await _create(client, owner, project, NIGHTLY)
    url = f"{_suites(project)}/{suite['id']}/runs"
    body = {"sha": "ABCDEF1", "variables": {"EXTRA": "1", "SUITE": "override"}}
    headers = {**owner.headers, "Idempotency-Key": f"suite-run-{uuid.uuid4()}"}

    first = await client.post(url, json=body, headers=headers)
    again = await client.post(url, json=body, headers=headers)
    other = await client.post(url, json={"sha": "abcdef2"}, headers=headers)

    assert first.status_code == 202, first.text
    accepted = first.json()
    assert accepted["status"] == "requested"
    assert accepted["ref"] == "refs/heads/release/1.x"
    assert accepted["sha"] == "abcdef1"
    assert first.headers["location"] == f"/api/v1/runs/{accepted['run_id']}"
    assert again.status_code == 202
    assert again.json() == accepted
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422

    async with api_sessions() as session:
        runs = list(await session.scalars(select(Run).where(Run.project_id == uuid.UUID(project["id"]))))
    assert len(runs) == 1
    run = runs[0]
    assert run.trigger == {
        "kind": "test_suite",
        "suite_id": suite["id"],
        "suite": "nightly e2e",
        "stages": ["e2e*", "unit[python=3.12]"],
        "actor": owner.id,
    }
    assert run.variables == {"SUITE": "override", "EXTRA": "1"}

    plain = await client.post(url, headers=owner.headers)  # no body: the suite's ref tip
    assert plain.status_code == 202, plain.text
    assert plain.json()["sha"] is None


async def test_schedules_of_a_project_without_any_is_an_empty_list(
    client: httpx.AsyncClient, make_account: MakeAccount, make_project: MakeProject
) -> None:
    owner = await make_account()
    project = await make_project(owner)
    response = await client.get(f"/api/v1/projects/{project['id']}/schedules", headers=owner.headers)
    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}
