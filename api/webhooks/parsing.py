"""Provider deliveries (headers + raw JSON body) into normalized `WebhookEvent`s.

`parse` reads GitHub, GitLab and Bitbucket Cloud deliveries. Push, tag and pull-request events
are read strictly: a missing field, a value of the wrong type, a ref or sha that `workers.git`
would refuse (a ref starting with `-`, for one) is a `WebhookPayloadError` naming the field. Every
other event is recorded as kind `other`, with whatever repository and sender it names.

`peek_repository` is for the one thing the API must read before the signature is checked: which
project (and so which secret) the delivery claims to be for. It trusts nothing else in the body,
and `parse` must only ever be called on a verified body.

Changed paths (for `paths:` filters) are given only when the payload lists every pushed commit's
files: never for new, deleted or force-pushed branches, tags, pull requests or Bitbucket, nor when
the list may be truncated (GitHub and GitLab list at most 20 commits; GitHub's payload carries no
total, so a list of 20 or more counts as truncated). None means unknown, and filters then pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import NoReturn

from api.webhooks.events import PROVIDERS, Provider, WebhookEvent
from api.webhooks.signatures import header_values
from schemas.triggers import PullRequestAction
from workers.git import GitError, validate_ref, validate_sha


class WebhookPayloadError(ValueError):
    """A delivery we cannot make sense of. Not retriable: the same bytes fail the same way."""

    retriable = False


# GitHub and GitLab list at most this many commits in a push payload.
COMMIT_LIST_LIMIT = 20
# Limits that fit the webhook_deliveries and projects columns.
_DELIVERY_ID = re.compile(r"[A-Za-z0-9{][A-Za-z0-9{}._:-]{0,199}")
_EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:-]{0,99}")
_REPO_NAME = re.compile(r"[^\s/\x00-\x1f\x7f][^\x00-\x1f\x7f]{0,398}[^\s/\x00-\x1f\x7f]")
_ZERO_SHA = re.compile(r"0{40}|0{64}")
_HEADS, _TAGS = "refs/heads/", "refs/tags/"

_GITHUB_PR_ACTIONS: dict[str, PullRequestAction] = {
    action: action for action in ("opened", "synchronize", "reopened", "closed", "edited", "ready_for_review")
}
_GITLAB_MR_ACTIONS: dict[str, PullRequestAction] = {
    "open": "opened",
    "reopen": "reopened",
    "close": "closed",
    "merge": "closed",
}
# GitLab's `update` is an edit only when one of these changed (not labels, assignees, ...).
_GITLAB_EDIT_FIELDS = ("title", "description", "target_branch")
_BITBUCKET_PR_ACTIONS: dict[str, PullRequestAction] = {
    "pullrequest:created": "opened",
    "pullrequest:updated": "synchronize",  # also sent for title edits; Bitbucket does not say which
    "pullrequest:fulfilled": "closed",
    "pullrequest:rejected": "closed",
}


def parse(provider: str, headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
    """The events in a verified delivery: one, except for Bitbucket pushes (one per ref changed)."""
    known = _check_provider(provider)
    if known == "github":
        return [_github(headers, body)]
    if known == "gitlab":
        return [_gitlab(headers, body)]
    return _bitbucket(headers, body)


def peek_repository(provider: str, body: bytes) -> str | None:
    """The repository full name an unverified body claims, to find the project and its secret.

    Never raises for a bad body (None instead); nothing else of the body is to be trusted, or even
    read, before the signature has been checked with the secret this name leads to.
    """
    _check_provider(provider)
    try:
        payload = _load(body)
    except WebhookPayloadError:
        return None
    return repo_name(provider, payload)


def repo_name(provider: str, payload: Mapping[str, object]) -> str | None:
    """`repository.full_name` (GitHub, Bitbucket) or `project.path_with_namespace` (GitLab), if valid."""
    _check_provider(provider)
    outer, inner = ("project", "path_with_namespace") if provider == "gitlab" else ("repository", "full_name")
    holder = payload.get(outer)
    name = holder.get(inner) if isinstance(holder, dict) else None
    return name if isinstance(name, str) and _REPO_NAME.fullmatch(name) else None


# --- GitHub -------------------------------------------------------------------------------------


def _github(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    name = _header(headers, "X-GitHub-Event", _EVENT_NAME)
    delivery = _header(headers, "X-GitHub-Delivery", _DELIVERY_ID)
    payload = _load(body)
    repo, sender = repo_name("github", payload), _sender(payload, ("sender", "login"))
    base = WebhookEvent("github", delivery, name, "other", repo=repo, sender=sender)
    if name == "ping":
        return replace(base, kind="ping")
    if name == "push":
        return _github_push(base, _Obj(payload, "push payload"))
    if name == "pull_request":
        return _github_pull_request(base, _Obj(payload, "pull_request payload"))
    return base


def _github_push(base: WebhookEvent, p: _Obj) -> WebhookEvent:
    repo = p.child("repository").repo("full_name")
    before, after = p.sha_or_none("before"), p.sha_or_none("after")
    deleted = p.flag("deleted") or after is None
    head = p.opt_child("head_commit")
    # An annotated tag's `after` is the tag object; head_commit is the commit it points at.
    sha = None if deleted else (head.sha("id") if head else after)
    event = _ref_event(replace(base, repo=repo, before=before, sha=sha, deleted=deleted), p.ref("ref"))
    if event.kind != "push" or deleted or before is None or p.flag("created") or p.flag("forced"):
        return event
    commits = list(p.objects("commits"))
    size = p.opt_number("size")  # only in payloads that say how many commits were pushed
    complete = len(commits) == size if size is not None else len(commits) < COMMIT_LIST_LIMIT
    return replace(event, changed_paths=_changed_paths(commits) if commits and complete else None)


def _github_pull_request(base: WebhookEvent, p: _Obj) -> WebhookEvent:
    pr = p.child("pull_request")
    head, target = pr.child("head"), pr.child("base")
    number = p.number("number")
    head_repo = head.opt_child("repo")  # null when the fork has been deleted
    base_repo = target.child("repo").text("full_name")
    action = _GITHUB_PR_ACTIONS.get(p.text("action"))
    return replace(
        base,
        kind="pull_request" if action else "other",
        action=action,
        repo=p.child("repository").repo("full_name"),
        ref=f"refs/pull/{number}/head",
        sha=head.sha("sha"),
        before=p.sha_or_none("before") if p.raw("before") is not None else None,  # on synchronize
        branch=head.branch("ref"),
        base_branch=target.branch("ref"),
        fork=head_repo is None or head_repo.text("full_name") != base_repo,
        pr_number=number,
        title=pr.opt_text("title"),
    )


# --- GitLab -------------------------------------------------------------------------------------


def _gitlab(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    name = _header(headers, "X-Gitlab-Event", _EVENT_NAME)
    # X-Gitlab-Event-UUID names the event; Idempotency-Key stays the same across retries of one
    # delivery; X-Gitlab-Webhook-UUID is new on every attempt, so it is only the last resort.
    delivery = _header(
        headers, "X-Gitlab-Event-UUID", _DELIVERY_ID, "Idempotency-Key", "X-Gitlab-Webhook-UUID"
    )
    payload = _load(body)
    base = WebhookEvent("gitlab", delivery, name, "other", repo=repo_name("gitlab", payload))
    if name in ("Push Hook", "Tag Push Hook"):  # test deliveries from the settings page look the same
        base = replace(base, sender=_sender(payload, ("user_username",)))
        return _gitlab_push(base, _Obj(payload, "push payload"))
    base = replace(base, sender=_sender(payload, ("user", "username")))
    if name == "Merge Request Hook":
        return _gitlab_merge_request(base, _Obj(payload, "merge request payload"))
    return base  # System Hook and every other event: recorded, never run


def _gitlab_push(base: WebhookEvent, p: _Obj) -> WebhookEvent:
    repo = p.child("project").repo("path_with_namespace")
    before, after = p.sha_or_none("before"), p.sha_or_none("after")
    # checkout_sha: the commit an annotated tag points at (`after` is the tag object); null on deletion
    sha = None if after is None else (p.sha("checkout_sha") if p.raw("checkout_sha") else after)
    event = _ref_event(replace(base, repo=repo, before=before, sha=sha, deleted=after is None), p.ref("ref"))
    if event.kind != "push" or event.deleted or before is None:
        return event
    commits = list(p.objects("commits"))
    total = p.opt_number("total_commits_count")
    complete = len(commits) == total if total is not None else len(commits) < COMMIT_LIST_LIMIT
    return replace(event, changed_paths=_changed_paths(commits) if commits and complete else None)


def _gitlab_merge_request(base: WebhookEvent, p: _Obj) -> WebhookEvent:
    attrs = p.child("object_attributes")
    iid = attrs.number("iid")
    oldrev = attrs.sha_or_none("oldrev") if attrs.raw("oldrev") else None  # only when commits were pushed
    action = _gitlab_action(attrs.opt_text("action"), oldrev, p.opt_child("changes"))
    return replace(
        base,
        kind="pull_request" if action else "other",
        action=action,
        repo=p.child("project").repo("path_with_namespace"),
        ref=f"refs/merge-requests/{iid}/head",
        sha=attrs.child("last_commit").sha("id"),
        before=oldrev,
        branch=attrs.branch("source_branch"),
        base_branch=attrs.branch("target_branch"),
        fork=attrs.number("source_project_id") != attrs.number("target_project_id"),
        pr_number=iid,
        title=attrs.opt_text("title"),
    )


def _gitlab_action(action: str | None, oldrev: str | None, changes: _Obj | None) -> PullRequestAction | None:
    if action != "update":
        return _GITLAB_MR_ACTIONS.get(action or "")
    if oldrev:
        return "synchronize"
    draft = changes.opt_child("draft") if changes else None
    if draft and draft.raw("previous") is True and draft.raw("current") is False:
        return "ready_for_review"
    if changes and any(changes.raw(field) is not None for field in _GITLAB_EDIT_FIELDS):
        return "edited"
    return None  # labels, assignees, approvals...: not an action pipelines filter on


# --- Bitbucket Cloud ----------------------------------------------------------------------------


def _bitbucket(headers: Mapping[str, str], body: bytes) -> list[WebhookEvent]:
    name = _header(headers, "X-Event-Key", _EVENT_NAME)
    delivery = _header(headers, "X-Request-UUID", _DELIVERY_ID)
    payload = _load(body)
    sender = _sender(payload, ("actor", "nickname")) or _sender(payload, ("actor", "display_name"))
    base = WebhookEvent(
        "bitbucket", delivery, name, "other", repo=repo_name("bitbucket", payload), sender=sender
    )
    if name == "repo:push":
        p = _Obj(payload, "push payload")
        base = replace(base, repo=p.child("repository").repo("full_name"))
        changes = list(p.child("push").objects("changes"))
        if not changes:
            raise WebhookPayloadError("push payload has no 'push.changes'")
        return [_bitbucket_change(replace(base, change_index=i), change) for i, change in enumerate(changes)]
    if name in _BITBUCKET_PR_ACTIONS:
        return [
            _bitbucket_pull_request(base, _Obj(payload, "pull request payload"), _BITBUCKET_PR_ACTIONS[name])
        ]
    return [base]


def _bitbucket_change(base: WebhookEvent, change: _Obj) -> WebhookEvent:
    new, old = change.opt_child("new"), change.opt_child("old")  # new is null for a deletion
    state = new or old
    if state is None:
        raise WebhookPayloadError(f"push payload: '{change.path}new' and '{change.path}old' are both null")
    ref_type = state.text("type")
    prefix = {"branch": _HEADS, "tag": _TAGS}.get(ref_type)
    if prefix is None:
        raise WebhookPayloadError(f"push payload: '{state.path}type' is {ref_type!r}, not 'branch' or 'tag'")
    ref = prefix + (state.branch("name") if ref_type == "branch" else state.tag("name"))
    sha = new.child("target").sha("hash") if new else None
    before = old.child("target").sha("hash") if old else None
    return _ref_event(replace(base, sha=sha, before=before, deleted=new is None), ref)


def _bitbucket_pull_request(base: WebhookEvent, p: _Obj, action: PullRequestAction) -> WebhookEvent:
    pr = p.child("pullrequest")
    source, destination = pr.child("source"), pr.child("destination")
    source_repo, destination_repo = source.opt_child("repository"), destination.opt_child("repository")
    head_branch = source.child("branch").branch("name")
    return replace(
        base,
        kind="pull_request",
        action=action,
        repo=p.child("repository").repo("full_name"),
        ref=_HEADS + head_branch,
        sha=source.child("commit").sha("hash"),
        branch=head_branch,
        base_branch=destination.child("branch").branch("name"),
        fork=source_repo is None
        or destination_repo is None
        or source_repo.text("full_name") != destination_repo.text("full_name"),
        pr_number=pr.number("id"),
        title=pr.opt_text("title"),
    )


# --- shared -------------------------------------------------------------------------------------


class _Obj:
    """A JSON object and where it sits in the payload, so that every error names the field."""

    def __init__(self, data: Mapping[str, object], what: str, path: str = "") -> None:
        self.data, self.what, self.path = data, what, path

    def raw(self, key: str) -> object:
        return self.data.get(key)

    def text(self, key: str) -> str:
        value = self.opt_text(key)
        if not value:
            raise self._missing(key, "has no" if value is None else "has an empty")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._wrong(key, "a string")

    def number(self, key: str) -> int:
        value = self.opt_number(key)
        if value is None:
            raise self._missing(key, "has no")
        return value

    def opt_number(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise self._wrong(key, "a whole number >= 0")

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if isinstance(value, bool):
            return value
        raise self._wrong(key, "true or false")

    def child(self, key: str) -> _Obj:
        value = self.opt_child(key)
        if value is None:
            raise self._missing(key, "has no")
        return value

    def opt_child(self, key: str) -> _Obj | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, dict):
            return _Obj(value, self.what, f"{self.path}{key}.")
        raise self._wrong(key, "an object")

    def objects(self, key: str) -> Iterator[_Obj]:
        """The items of a list of objects; a missing or null list is empty."""
        items = self.data.get(key)
        if items is None:
            return
        if not isinstance(items, list):
            raise self._wrong(key, "a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self._wrong(f"{key}[{i}]", "an object")
            yield _Obj(item, self.what, f"{self.path}{key}[{i}].")

    def strings(self, key: str) -> list[str] | None:
        items = self.data.get(key)
        if items is None or (isinstance(items, list) and all(isinstance(item, str) for item in items)):
            return items
        raise self._wrong(key, "a list of strings")

    def ref(self, key: str) -> str:
        """A full ref such as `refs/heads/main`, as `workers.git.validate_ref` allows."""
        return self._valid(key, validate_ref)

    def branch(self, key: str) -> str:
        """A short branch name, valid alone (no leading `-`) and as `refs/heads/<name>`."""
        return self._short_name(key, _HEADS)

    def tag(self, key: str) -> str:
        return self._short_name(key, _TAGS)

    def sha(self, key: str) -> str:
        return self._valid(key, validate_sha)

    def sha_or_none(self, key: str) -> str | None:
        """A sha, or None for the all-zero sha providers use for 'no commit' (a new or deleted ref)."""
        return None if _ZERO_SHA.fullmatch(self.text(key)) else self.sha(key)

    def repo(self, key: str) -> str:
        name = self.text(key)
        if not _REPO_NAME.fullmatch(name):
            raise WebhookPayloadError(
                f"{self.what}: '{self.path}{key}' {name[:100]!r} is not a repository name"
            )
        return name

    def _short_name(self, key: str, prefix: str) -> str:
        return self._valid(key, lambda name: validate_ref(prefix + validate_ref(name))[len(prefix) :])

    def _valid(self, key: str, check: Callable[[str], str]) -> str:
        try:
            return check(self.text(key))
        except GitError as exc:
            raise WebhookPayloadError(f"{self.what}: '{self.path}{key}': {exc}") from None

    def _missing(self, key: str, problem: str) -> WebhookPayloadError:
        return WebhookPayloadError(f"{self.what} {problem} '{self.path}{key}'")

    def _wrong(self, key: str, expected: str) -> WebhookPayloadError:
        return WebhookPayloadError(f"{self.what}: '{self.path}{key}' is not {expected}")


def _load(body: bytes) -> dict[str, object]:
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise WebhookPayloadError("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise WebhookPayloadError(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookPayloadError(f"body is a JSON {type(payload).__name__}, not an object")
    return payload


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _header(headers: Mapping[str, str], name: str, pattern: re.Pattern[str], *fallbacks: str) -> str:
    for candidate in (name, *fallbacks):
        values = header_values(headers, candidate)
        if len(values) > 1:
            raise WebhookPayloadError(f"more than one {candidate} header")
        if values and values[0]:
            if not pattern.fullmatch(values[0]):
                raise WebhookPayloadError(f"{candidate} header {values[0][:100]!r} is not valid")
            return values[0]
    raise WebhookPayloadError(f"missing {name} header")


def _check_provider(provider: str) -> Provider:
    for known in PROVIDERS:
        if provider == known:
            return known
    raise WebhookPayloadError(
        f"unknown webhook provider {provider!r}; expected one of {', '.join(PROVIDERS)}"
    )


def _ref_event(event: WebhookEvent, ref: str) -> WebhookEvent:
    """Kind, branch or tag from a full ref; refs that are neither are recorded as `other`."""
    if ref.startswith(_HEADS):
        return replace(event, kind="push", ref=ref, branch=ref[len(_HEADS) :])
    if ref.startswith(_TAGS):
        return replace(event, kind="tag", ref=ref, tag=ref[len(_TAGS) :])
    return replace(event, kind="other", ref=ref)


def _changed_paths(commits: list[_Obj]) -> tuple[str, ...] | None:
    paths: set[str] = set()
    for commit in commits:
        for key in ("added", "modified", "removed"):
            files = commit.strings(key)
            if files is None:
                return None  # a commit without its file lists: the change set is unknown
            paths.update(files)
    return tuple(sorted(paths))


def _sender(payload: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    value: object = payload
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None
