"""Run states reported back to the Git host as commit statuses, against a local HTTP server that
records the calls (the real hosts are out of reach here): delivered with the project's token,
retried with backoff after failures, never blocking the run."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.crypto import SecretBox
from db.models import CommitStatusReport, Project
from db.repositories import commit_statuses, integrations
from events.topics import Topics
from tests.integration.conftest import TEST_SECRET_KEY, Platform, make_repo
from tests.integration.helpers import add_project, start_run, wait_for_run

pytestmark = pytest.mark.integration


class Recorder:
    """An HTTP server on 127.0.0.1 that records every request and fails the first `failures`."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures = failures
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.calls.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(body) if body else None,
                    }
                )
                status = 500 if len(recorder.calls) <= recorder.failures else 201
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"message": "boom"}' if status == 500 else b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder(failures=2)
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


async def test_run_states_are_reported_to_github_with_retries_and_never_block_the_run(
    platform: Platform,
    sessions: async_sessionmaker[AsyncSession],
    namespace: str,
    tmp_path: Path,
    recorder: Recorder,
) -> None:
    repo, sha = make_repo(tmp_path / "repo", {".comet.yml": "name: ci\nstages:\n  build: {run: echo ok}\n"})
    project_id = await add_project(sessions, str(repo))
    box = SecretBox(TEST_SECRET_KEY)
    async with sessions.begin() as session:
        project = await session.get(Project, project_id)
        assert project is not None
        project.provider, project.provider_repo = "github", "octo/hello"
        await integrations.replace(
            session,
            project_id,
            "commit_status",
            {"api_url": recorder.url},
            commit_statuses.encrypt_token(box, project_id, "ghp_test_token"),
        )

    run_id = await start_run(sessions, Topics(namespace), project_id, sha=sha)
    run = await wait_for_run(sessions, run_id)
    assert run.status == "succeeded"

    async with asyncio.timeout(60):
        while not any(c["json"] and c["json"]["state"] == "success" for c in recorder.calls):
            await asyncio.sleep(0.1)
    success = next(c for c in recorder.calls if c["json"]["state"] == "success")
    assert success["path"] == f"/repos/octo/hello/statuses/{sha}"
    assert success["headers"]["Authorization"] == "Bearer ghp_test_token"
    assert success["json"]["context"] == "comet/ci"
    assert success["json"]["target_url"].endswith(f"/api/v1/runs/{run_id}")

    async def reports() -> Sequence[CommitStatusReport]:
        async with sessions() as session:
            return (
                await session.scalars(select(CommitStatusReport).where(CommitStatusReport.run_id == run_id))
            ).all()

    # The provider answered; the reporter records the delivery just after that.
    async with asyncio.timeout(10):
        while not any(r.state == "success" and r.status == "delivered" for r in await reports()):
            await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # an older state still queued would be sent by now
    rows = await reports()
    assert sum(r.attempts for r in rows) >= 3, "the two failures were not retried"
    assert recorder.calls[-1]["json"]["state"] == "success", "an older state was sent after success"
    assert all(r.status in ("delivered", "superseded") for r in rows), [(r.state, r.status) for r in rows]
