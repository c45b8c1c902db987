"""Commit statuses as each Git host takes them (pure): the HTTP request that reports a run's
state on its commit — GitHub statuses, GitLab commit status, Bitbucket build status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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
    description = description[:140]
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
