"""The `on:` section of `.comet.yml` and the one decision it feeds: does this event start a run?

Semantics follow GitHub Actions where they overlap. With no `on:` at all, pushes to any branch and
manual runs start a pipeline; tags only run when `on.push.tags` lists them; a `push` filter that
lists only tags runs for no branch. `paths` filters apply to branch pushes and pull requests (not
to tags), and pass when the changed paths are unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.cron import ScheduleError, check_cron, check_timezone
from schemas.globs import check_glob, glob_match_any

PullRequestAction = Literal["opened", "synchronize", "reopened", "closed", "edited", "ready_for_review"]
EventKind = Literal["push", "tag", "pull_request", "schedule", "manual", "api"]


def one_or_many(value: object) -> object:
    """A single string where a list is expected is a one-item list."""
    return [value] if isinstance(value, str) else value


Globs = Annotated[
    list[Annotated[str, AfterValidator(check_glob)]],
    BeforeValidator(one_or_many, json_schema_input_type=str | list[str]),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PushFilter(_Model):
    branches: Globs | None = None
    branches_ignore: Globs | None = None
    tags: Globs | None = None
    paths: Globs | None = None
    paths_ignore: Globs | None = None


class PullRequestFilter(_Model):
    branches: Globs | None = Field(default=None, description="target branches")
    branches_ignore: Globs | None = None
    paths: Globs | None = None
    paths_ignore: Globs | None = None
    types: list[PullRequestAction] = ["opened", "synchronize", "reopened"]


def _check_cron(text: str) -> str:
    try:
        return check_cron(text)
    except ScheduleError as exc:
        raise ValueError(exc.message) from None


def _check_timezone(name: str) -> str:
    try:
        check_timezone(name)
    except ScheduleError as exc:
        raise ValueError(exc.message) from None
    return name


def _check_ref(ref: str) -> str:
    # Checked here so a bad ref fails the run with the line; the scheduler normalises it.
    from schemas.api.runs import normalise_ref

    normalise_ref(ref)
    return ref


class Schedule(_Model):
    """`on.schedule` entry: fires exactly once per tick of `cron` in `timezone` (default UTC), a run
    of `ref` (default: the project's default branch)."""

    cron: Annotated[str, AfterValidator(_check_cron)]
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    ref: Annotated[str, AfterValidator(_check_ref)] | None = Field(default=None, min_length=1, max_length=500)


class Triggers(_Model):
    push: PushFilter | None = None
    pull_request: PullRequestFilter | None = None
    schedule: list[Schedule] = []
    manual: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: object) -> object:
        # `on: push` and `on: [push, pull_request]` name events without filters, and a bare
        # `push:` (null) means "push, unfiltered", as in GitHub Actions.
        if isinstance(data, str):
            data = [data]
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = {item: (True if item == "manual" else None) for item in data}
        if isinstance(data, dict):
            return {
                key: ({} if value is None and key in ("push", "pull_request") else value)
                for key, value in data.items()
            }
        return data


def default_triggers() -> Triggers:
    """`on:` when the file leaves it out: pushes to any branch, and manual runs."""
    return Triggers(push=PushFilter(), manual=True)


@dataclass(frozen=True)
class TriggerEvent:
    """Something that may start a run. Branch and tag names are short (`main`, `v1.2`); a full
    `refs/heads/...` or `refs/tags/...` is shortened. `changed_paths=None` means unknown."""

    kind: EventKind
    branch: str | None = None
    tag: str | None = None
    base_branch: str | None = None
    action: str | None = None
    changed_paths: tuple[str, ...] | None = None


def matches(triggers: Triggers, event: TriggerEvent) -> tuple[bool, str]:
    """Whether `event` starts a run of a pipeline with these triggers, and why (for people)."""
    if event.kind == "push":
        return _push(triggers.push, _short(event.branch, "refs/heads/"), event.changed_paths)
    if event.kind == "tag":
        return _tag(triggers.push, _short(event.tag, "refs/tags/"))
    if event.kind == "pull_request":
        return _pull_request(triggers.pull_request, event)
    if event.kind == "schedule":
        if triggers.schedule:
            return True, "on.schedule is set"
        return False, "on.schedule is not set"
    if triggers.manual:
        return True, f"{event.kind} runs are allowed (on.manual)"
    return False, f"{event.kind} runs are off (on.manual: false)"


def _push(push: PushFilter | None, branch: str | None, paths: tuple[str, ...] | None) -> tuple[bool, str]:
    if push is None:
        return False, "on.push is not set"
    if branch is None:
        return False, "the push names no branch"
    if push.branches is None and push.branches_ignore is None and push.tags is not None:
        return False, "on.push lists only tags, so branch pushes do not run"
    refused = _branch_refused(branch, push.branches, push.branches_ignore, "on.push")
    if refused:
        return False, refused
    refused = _paths_refused(paths, push.paths, push.paths_ignore, "on.push")
    if refused:
        return False, refused
    return True, f"push to branch {branch!r} matches on.push"


def _tag(push: PushFilter | None, tag: str | None) -> tuple[bool, str]:
    if push is None:
        return False, "on.push is not set"
    if tag is None:
        return False, "the tag push names no tag"
    if push.tags is None:
        return False, "tags do not run unless on.push.tags lists them"
    pattern = glob_match_any(push.tags, tag)
    if pattern is None:
        return False, f"tag {tag!r} matches none of on.push.tags"
    return True, f"tag {tag!r} matches on.push.tags {pattern!r}"


def _pull_request(pr: PullRequestFilter | None, event: TriggerEvent) -> tuple[bool, str]:
    if pr is None:
        return False, "on.pull_request is not set"
    if event.action is not None and event.action not in pr.types:
        return False, f"pull request action {event.action!r} is not in on.pull_request.types"
    base = _short(event.base_branch, "refs/heads/")
    if base is None:
        if pr.branches is not None or pr.branches_ignore is not None:
            return False, "the pull request names no target branch to filter on"
    else:
        refused = _branch_refused(base, pr.branches, pr.branches_ignore, "on.pull_request")
        if refused:
            return False, refused
    refused = _paths_refused(event.changed_paths, pr.paths, pr.paths_ignore, "on.pull_request")
    if refused:
        return False, refused
    return True, f"pull request into {base!r} matches on.pull_request"


def _branch_refused(branch: str, allow: list[str] | None, ignore: list[str] | None, where: str) -> str:
    if allow is not None and glob_match_any(allow, branch) is None:
        return f"branch {branch!r} matches none of {where}.branches"
    pattern = glob_match_any(ignore or [], branch)
    if pattern is not None:
        return f"branch {branch!r} matches {where}.branches_ignore {pattern!r}"
    return ""


def _paths_refused(
    changed: tuple[str, ...] | None, allow: list[str] | None, ignore: list[str] | None, where: str
) -> str:
    if changed is None or (allow is None and ignore is None):
        return ""  # unknown changes, or no filter: the paths filter passes
    for path in changed:
        if (allow is None or glob_match_any(allow, path)) and not glob_match_any(ignore or [], path):
            return ""
    return f"no changed path passes {where}.paths / {where}.paths_ignore"


def _short(ref: str | None, prefix: str) -> str | None:
    return ref[len(prefix) :] if ref is not None and ref.startswith(prefix) else ref
