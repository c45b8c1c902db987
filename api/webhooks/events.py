"""The one shape every provider's delivery is normalized into, and what it means for triggers.

A `WebhookEvent` is built by `api.webhooks.parsing` from a verified delivery. Its refs and shas
have been validated (`workers.git.validate_ref` / `validate_sha`); its `title` and `sender` have
not been and never can be: they are free text from whoever opened the pull request, fit for
display and for environment variables, never for a shell command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.triggers import PullRequestAction, TriggerEvent

Provider = Literal["github", "gitlab", "bitbucket"]
WebhookKind = Literal["push", "tag", "pull_request", "ping", "other"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "bitbucket")


@dataclass(frozen=True)
class WebhookEvent:
    """One thing that happened in a repository, whichever host reported it.

    - `event`: the provider's own event name (`push`, `Merge Request Hook`, `repo:push`).
    - `kind`: `push` (a branch moved), `tag`, `pull_request`, `ping`, or `other` for everything
      we record but never run (other events, pull-request actions outside `PullRequestAction`,
      pushes to refs that are neither branches nor tags).
    - `ref`: the full ref. For a pull request, the provider's pull-request ref in the base
      repository where there is one (GitHub `refs/pull/<n>/head`, GitLab
      `refs/merge-requests/<iid>/head`), else `refs/heads/<head branch>` (Bitbucket: that branch
      lives in the fork when `fork` is true).
    - `sha`: the commit to build (the pushed head, the pull request's head); None for a deletion.
      Bitbucket pull-request payloads carry 12-digit abbreviated shas.
    - `before`: the commit the ref pointed at before a push (None when the ref is new).
    - `changed_paths`: the files the pushed commits touched, or None when unknown (truncated
      commit lists, new or force-pushed branches, Bitbucket, pull requests).
    - `change_index`: Bitbucket reports several ref changes in one delivery; each becomes an
      event, numbered from 0. (`provider`, `delivery_id`, `change_index`) is unique.
    """

    provider: Provider
    delivery_id: str
    event: str
    kind: WebhookKind
    repo: str | None = None
    action: PullRequestAction | None = None
    ref: str | None = None
    sha: str | None = None
    before: str | None = None
    branch: str | None = None
    tag: str | None = None
    base_branch: str | None = None
    deleted: bool = False
    changed_paths: tuple[str, ...] | None = None
    fork: bool = False
    pr_number: int | None = None
    sender: str | None = None
    title: str | None = None
    change_index: int = 0

    @property
    def may_start_run(self) -> bool:
        """Whether the `on:` filters should even be asked: a push, tag or pull request with a
        commit to build. Pings, other events and deletions are recorded, never run."""
        return self.kind in ("push", "tag", "pull_request") and not self.deleted and self.sha is not None

    def trigger_event(self) -> TriggerEvent:
        """The event `schemas.triggers.matches` decides on. Only for events that `may_start_run`."""
        if not self.may_start_run:
            raise ValueError(f"a {self.kind} event{' (deletion)' if self.deleted else ''} starts no run")
        if self.kind == "tag":
            return TriggerEvent(kind="tag", tag=self.tag)
        if self.kind == "pull_request":
            return TriggerEvent(
                kind="pull_request",
                branch=self.branch,
                base_branch=self.base_branch,
                action=self.action,
                changed_paths=self.changed_paths,
            )
        return TriggerEvent(kind="push", branch=self.branch, changed_paths=self.changed_paths)
