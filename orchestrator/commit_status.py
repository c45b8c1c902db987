"""Commit statuses as each Git host takes them (pure): the HTTP request that reports a run's
state on its commit — GitHub statuses, GitLab commit status, Bitbucket build status — and the
description it carries ("Failed: … — 3 failed, 1 flaky, 2 quarantined of 1,204 tests")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from schemas.api.tests import ResultSummary
from schemas.states import RunStatus

DEFAULT_API = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "bitbucket": "https://api.bitbucket.org/2.0",
}

_STATES: dict[str, dict[RunStatus, str]] = {
    "github": {
        RunStatus.REQUESTED: "pending",
        RunStatus.QUEUED: "pending",
        RunStatus.RUNNING: "pending",
        RunStatus.SUCCEEDED: "success",
        RunStatus.FAILED: "failure",
        RunStatus.CANCELLED: "error",
    },
    "gitlab": {
        RunStatus.REQUESTED: "pending",
        RunStatus.QUEUED: "pending",
        RunStatus.RUNNING: "running",
        RunStatus.SUCCEEDED: "success",
        RunStatus.FAILED: "failed",
        RunStatus.CANCELLED: "canceled",
    },
    "bitbucket": {
        RunStatus.REQUESTED: "INPROGRESS",
        RunStatus.QUEUED: "INPROGRESS",
        RunStatus.RUNNING: "INPROGRESS",
        RunStatus.SUCCEEDED: "SUCCESSFUL",
        RunStatus.FAILED: "FAILED",
        RunStatus.CANCELLED: "STOPPED",
    },
}


MAX_DESCRIPTION = 140
"""GitHub refuses longer descriptions; the other hosts get the same text."""

_WORDS = {
    RunStatus.REQUESTED: "Requested",
    RunStatus.QUEUED: "Queued",
    RunStatus.RUNNING: "Running",
    RunStatus.SUCCEEDED: "Succeeded",
    RunStatus.FAILED: "Failed",
    RunStatus.CANCELLED: "Cancelled",
}


def _tests(n: int) -> str:
    return f"{n:,} test" if n == 1 else f"{n:,} tests"


def describe_tests(summary: ResultSummary | None) -> str | None:
    """The test summary in a few words: "3 failed, 1 flaky, 2 quarantined of 1,204 tests", or
    "all 1,204 tests passed" / "1,200 passed, 4 skipped of 1,204 tests" when nothing went wrong;
    None without a summary or tests."""
    if summary is None or summary.total <= 0:
        return None
    problems = [
        f"{n:,} {word}"
        for n, word in (
            (summary.failed, "failed"),
            (summary.errored, "errored"),
            (summary.flaky, "flaky"),
            (summary.quarantined, "quarantined"),
        )
        if n > 0
    ]
    if problems:
        return f"{', '.join(problems)} of {_tests(summary.total)}"
    if summary.skipped > 0:
        return f"{summary.passed:,} passed, {summary.skipped:,} skipped of {_tests(summary.total)}"
    if summary.total == 1:
        return "1 test passed"
    return f"all {_tests(summary.total)} passed"


def describe(status: RunStatus, failure_reason: str | None = None, tests: ResultSummary | None = None) -> str:
    """A commit status description of at most `MAX_DESCRIPTION` characters: the run's state, why it
    failed, and its test summary. The reason is shortened first, so the test summary survives."""
    head = _WORDS[status]
    counts = describe_tests(tests)
    tail = f" — {counts}" if counts else ""
    if failure_reason:
        reason = " ".join(failure_reason.split())
        room = MAX_DESCRIPTION - len(head) - len(": ") - len(tail)
        if len(reason) > room:
            reason = reason[: max(room - 1, 0)].rstrip() + "…" if room > 1 else ""
        if reason:
            head = f"{head}: {reason}"
    return (head + tail)[:MAX_DESCRIPTION]


@dataclass(frozen=True, slots=True)
class StatusRequest:
    method: str
    url: str
    json: dict[str, Any] | None
    params: dict[str, str]
    state: str

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "json": self.json, "params": self.params}


def auth_headers(provider: str, token: str) -> dict[str, str]:
    if provider == "gitlab":
        return {"PRIVATE-TOKEN": token}
    return {"Authorization": f"Bearer {token}"}


def status_request(
    provider: str,
    *,
    api_url: str | None,
    repo: str,
    sha: str,
    status: RunStatus,
    context: str,
    target_url: str,
    description: str,
) -> StatusRequest:
    """The request that sets `context` on commit `sha` of `repo` to the host's word for `status`."""
    base = (api_url or DEFAULT_API[provider]).rstrip("/")
    state = _STATES[provider][status]
    description = description[:MAX_DESCRIPTION]
    if provider == "github":
        return StatusRequest(
            "POST",
            f"{base}/repos/{quote(repo, safe='/')}/statuses/{sha}",
            {"state": state, "target_url": target_url, "description": description, "context": context},
            {},
            state,
        )
    if provider == "gitlab":
        return StatusRequest(
            "POST",
            f"{base}/projects/{quote(repo, safe='')}/statuses/{sha}",
            None,
            {"state": state, "name": context, "target_url": target_url, "description": description},
            state,
        )
    if provider == "bitbucket":
        return StatusRequest(
            "POST",
            f"{base}/repositories/{quote(repo, safe='/')}/commit/{sha}/statuses/build",
            {"key": context, "state": state, "url": target_url, "name": context, "description": description},
            {},
            state,
        )
    raise ValueError(f"no commit statuses for provider {provider!r}")


def backoff_s(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4, ... capped at 5 minutes."""
    return float(min(2 ** max(attempts - 1, 0), 300))


MAX_ATTEMPTS = 8
