"""Test results and coverage as a worker would store them, written straight into the tables the
API reads: stages with attempts (their `test_summary` and `report_errors`), test cases and
coverage reports. Runs themselves are triggered through the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import CoverageReport, Stage, StageAttempt, TestCase
from tests.integration.api.conftest import Account
from workers.reports.keys import case_key


@dataclass(frozen=True)
class Case:
    name: str
    status: str = "passed"
    classname: str = "tests.test_app"
    flaky: bool = False
    quarantined: bool = False
    message: str | None = None
    duration_s: float = 0.5

    @property
    def key(self) -> str:
        return case_key(self.classname, self.name)


def summary_of(cases: Sequence[Case]) -> dict[str, Any]:
    """The `test_summary` a worker stores for these cases (`db/repositories/test_results.py`)."""
    counts = {s: sum(1 for c in cases if c.status == s) for s in ("passed", "failed", "errored", "skipped")}
    return {
        "total": len(cases),
        **counts,
        "flaky": sum(1 for c in cases if c.flaky),
        "quarantined": sum(1 for c in cases if c.quarantined and c.status in ("failed", "errored")),
        "duration_s": round(sum(c.duration_s for c in cases), 3),
    }


@dataclass
class SeededRun:
    id: str
    project_id: str
    ref: str
    sha: str | None
    attempts: dict[tuple[str, int], uuid.UUID] = field(default_factory=dict)


class Seeder:
    """Builds runs with results for one project."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession],
        owner: Account,
        project_id: str,
    ) -> None:
        self.client = client
        self.sessions = sessions
        self.owner = owner
        self.project_id = project_id
        self._position = 0

    async def run(
        self, ref: str = "main", sha: str | None = None, *, trigger: dict[str, Any] | None = None
    ) -> SeededRun:
        body: dict[str, Any] = {"ref": ref}
        if sha is not None:
            body["sha"] = sha
        response = await self.client.post(
            f"/api/v1/projects/{self.project_id}/runs", json=body, headers=self.owner.headers
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        if trigger is not None:
            async with self.sessions.begin() as session:
                await session.execute(
                    text("UPDATE runs SET trigger = CAST(:t AS jsonb) WHERE id = :id"),
                    {"t": json.dumps(trigger), "id": accepted["run_id"]},
                )
        return SeededRun(accepted["run_id"], self.project_id, accepted["ref"], accepted["sha"])

    async def stage(
        self,
        run: SeededRun,
        name: str,
        attempts: Sequence[Sequence[Case] | None],
        *,
        report_errors: list[dict[str, str]] | None = None,
        at: datetime | None = None,
    ) -> Stage:
        """A stage with one attempt per entry (cases, or None: no test report); the last is current.
        `report_errors` go on the current attempt; `at` backdates the cases."""
        self._position += 1
        async with self.sessions.begin() as session:
            stage = Stage(
                run_id=uuid.UUID(run.id),
                name=name,
                base_name=name.split("[", maxsplit=1)[0],
                position=self._position,
                matrix={},
                status="succeeded",
                needs=[],
                pool="default",
                spec={},
                attempt=len(attempts),
            )
            session.add(stage)
            await session.flush()
            for number, cases in enumerate(attempts, start=1):
                current = number == len(attempts)
                attempt = StageAttempt(
                    run_id=stage.run_id,
                    stage_id=stage.id,
                    number=number,
                    status="succeeded" if current else "failed",
                    pool="default",
                    test_summary=None if cases is None else summary_of(cases),
                    report_errors=(report_errors or []) if current else [],
                )
                session.add(attempt)
                await session.flush()
                run.attempts[(name, number)] = attempt.id
                for case in cases or []:
                    row = TestCase(
                        attempt_id=attempt.id,
                        project_id=uuid.UUID(run.project_id),
                        run_id=stage.run_id,
                        stage_id=stage.id,
                        stage=name,
                        attempt=number,
                        ref=run.ref,
                        sha=run.sha,
                        key=case.key,
                        name=case.name,
                        classname=case.classname,
                        file="tests/test_app.py",
                        status=case.status,
                        duration_s=case.duration_s,
                        message=case.message,
                        output="captured output",
                        flaky=case.flaky,
                        quarantined=case.quarantined,
                    )
                    if at is not None:
                        row.created_at = at
                    session.add(row)
        return stage

    async def coverage(
        self,
        run: SeededRun,
        stage: str,
        attempt: int,
        *,
        lines: tuple[int, int],
        branches: tuple[int, int] = (0, 0),
        files: list[dict[str, Any]] | None = None,
    ) -> None:
        """Coverage of attempt `attempt` of `stage`: (covered, valid) lines and branches."""
        async with self.sessions.begin() as session:
            attempt_id = run.attempts[(stage, attempt)]
            found = await session.get(StageAttempt, attempt_id)
            assert found is not None
            session.add(
                CoverageReport(
                    attempt_id=attempt_id,
                    project_id=uuid.UUID(run.project_id),
                    run_id=uuid.UUID(run.id),
                    stage_id=found.stage_id,
                    stage=stage,
                    ref=run.ref,
                    sha=run.sha,
                    line_rate=lines[0] / lines[1] if lines[1] else None,
                    branch_rate=branches[0] / branches[1] if branches[1] else None,
                    lines_covered=lines[0],
                    lines_valid=lines[1],
                    branches_covered=branches[0],
                    branches_valid=branches[1],
                    files=files or [],
                )
            )
