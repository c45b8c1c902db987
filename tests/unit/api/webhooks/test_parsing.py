"""Webhook parsing: realistic GitHub, GitLab and Bitbucket Cloud deliveries into normalized events,
and every malformed or hostile body refused with a reason that names the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from api.webhooks.events import WebhookEvent
from api.webhooks.parsing import WebhookPayloadError, parse, peek_repository, repo_name
from schemas.triggers import PullRequestFilter, PushFilter, TriggerEvent, Triggers, default_triggers, matches

FIXTURES = Path(__file__).parents[3] / "fixtures" / "webhooks"
GITHUB_DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
GITLAB_DELIVERY = "9cebe914-4827-408f-b014-cfa23a47a35f"
BITBUCKET_DELIVERY = "8c0e8a4c-58a3-4a27-9c8b-1b2c3d4e5f60"
ZERO = "0" * 40


def fixture(provider: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / provider / f"{name}.json").read_text())
    return data


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def github(event: str, data: dict[str, Any] | bytes) -> list[WebhookEvent]:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": GITHUB_DELIVERY, "X-GitHub-Hook-ID": "459812345"}
    return parse("github", headers, data if isinstance(data, bytes) else raw(data))


def gitlab(event: str, data: dict[str, Any] | bytes) -> list[WebhookEvent]:
    headers = {
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": GITLAB_DELIVERY,
        "X-Gitlab-Instance": "gitlab.example.com",
    }
    return parse("gitlab", headers, data if isinstance(data, bytes) else raw(data))


def bitbucket(event: str, data: dict[str, Any] | bytes) -> list[WebhookEvent]:
    headers = {"X-Event-Key": event, "X-Request-UUID": BITBUCKET_DELIVERY, "X-Attempt-Number": "1"}
    return parse("bitbucket", headers, data if isinstance(data, bytes) else raw(data))


def only(events: list[WebhookEvent]) -> WebhookEvent:
    assert len(events) == 1
    return events[0]


# --- GitHub ----------------------------------------------------------------------------------------


def test_github_push_to_a_branch() -> None:
    event = only(github("push", fixture("github", "push_branch")))
    assert event == WebhookEvent(
        provider="github",
        delivery_id=GITHUB_DELIVERY,
        event="push",
        kind="push",
        repo="octo/hello",
        ref="refs/heads/main",
        sha="7638417db6d59f3c431d3e1f261cc637155684cd",
        before="9049f1265b7d61be4a8904a9a27120d2064dab3b",
        branch="main",
        changed_paths=("README.md", "docs/index.md", "src/old_parser.py", "src/parser.py"),
        sender="octocat",
    )
    assert event.may_start_run
    assert event.trigger_event() == TriggerEvent(
        kind="push", branch="main", changed_paths=event.changed_paths
    )


def test_github_annotated_tag_push_builds_the_tagged_commit_not_the_tag_object() -> None:
    event = only(github("push", fixture("github", "push_tag")))
    assert (event.kind, event.ref, event.tag, event.branch) == ("tag", "refs/tags/v1.2.0", "v1.2.0", None)
    assert event.sha == "7638417db6d59f3c431d3e1f261cc637155684cd"
    assert event.before is None  # all zeros: the tag is new
    assert event.changed_paths is None
    assert event.trigger_event() == TriggerEvent(kind="tag", tag="v1.2.0")


def test_github_branch_deletion_is_recorded_but_starts_no_run() -> None:
    event = only(github("push", fixture("github", "push_branch_deleted")))
    assert (event.kind, event.branch, event.deleted, event.sha) == ("push", "feature/old-ui", True, None)
    assert event.before == "6dcb09b5b57875f334f61aebed695e2e4193db5e"
    assert not event.may_start_run
    with pytest.raises(ValueError, match="deletion"):
        event.trigger_event()


def test_github_after_of_zeros_is_a_deletion_even_without_the_deleted_flag() -> None:
    data = fixture("github", "push_branch_deleted")
    del data["deleted"]
    assert only(github("push", data)).deleted


def test_github_pull_request_opened_from_a_fork() -> None:
    event = only(github("pull_request", fixture("github", "pull_request_opened_fork")))
    assert event == WebhookEvent(
        provider="github",
        delivery_id=GITHUB_DELIVERY,
        event="pull_request",
        kind="pull_request",
        repo="octo/hello",
        action="opened",
        ref="refs/pull/42/head",
        sha="7638417db6d59f3c431d3e1f261cc637155684cd",
        branch="fix-typo",
        base_branch="main",
        fork=True,
        pr_number=42,
        sender="mona",
        title="Fix a typo; rm -rf / `$(reboot)`",  # kept verbatim: it is data, never a command
    )
    assert event.trigger_event() == TriggerEvent(
        kind="pull_request", branch="fix-typo", base_branch="main", action="opened"
    )


def test_github_pull_request_synchronize_from_the_same_repository() -> None:
    event = only(github("pull_request", fixture("github", "pull_request_synchronize")))
    assert (event.kind, event.action, event.fork, event.pr_number) == (
        "pull_request",
        "synchronize",
        False,
        43,
    )
    assert event.before == "6dcb09b5b57875f334f61aebed695e2e4193db5e"
    assert (event.branch, event.base_branch, event.ref) == ("feature/login", "main", "refs/pull/43/head")


def test_github_merged_pull_request_is_closed() -> None:
    event = only(github("pull_request", fixture("github", "pull_request_closed")))
    assert (event.kind, event.action, event.pr_number, event.fork) == ("pull_request", "closed", 44, False)
    assert event.may_start_run
    closed_runs = Triggers(pull_request=PullRequestFilter(types=["closed"]))
    assert matches(closed_runs, event.trigger_event())[0]
    assert not matches(Triggers(pull_request=PullRequestFilter()), event.trigger_event())[0]


def test_github_pull_request_whose_fork_was_deleted_counts_as_a_fork() -> None:
    data = fixture("github", "pull_request_synchronize")
    data["pull_request"]["head"]["repo"] = None
    assert only(github("pull_request", data)).fork


@pytest.mark.parametrize("action", ["labeled", "assigned", "review_requested", "converted_to_draft"])
def test_github_pull_request_actions_outside_the_trigger_types_are_other(action: str) -> None:
    data = fixture("github", "pull_request_synchronize")
    data["action"] = action
    event = only(github("pull_request", data))
    assert (event.kind, event.action, event.pr_number) == ("other", None, 43)
    assert not event.may_start_run


def test_github_ping() -> None:
    event = only(github("ping", fixture("github", "ping")))
    assert (event.kind, event.repo, event.sender, event.ref, event.sha) == (
        "ping",
        "octo/hello",
        "octocat",
        None,
        None,
    )
    assert not event.may_start_run
    with pytest.raises(ValueError, match="a ping event starts no run"):
        event.trigger_event()


def test_github_ping_of_an_organization_hook_names_no_repository() -> None:
    data = fixture("github", "ping")
    del data["repository"]
    assert only(github("ping", data)).repo is None


@pytest.mark.parametrize("name", ["issues", "workflow_run", "release", "check_suite"])
def test_github_other_events_are_recorded_as_other(name: str) -> None:
    event = only(github(name, {"action": "created", "repository": {"full_name": "octo/hello"}}))
    assert (event.kind, event.event, event.repo) == ("other", name, "octo/hello")


def test_github_push_to_a_ref_that_is_no_branch_or_tag_is_other() -> None:
    data = fixture("github", "push_branch")
    data["ref"] = "refs/notes/commits"
    event = only(github("push", data))
    assert (event.kind, event.ref, event.branch, event.tag) == ("other", "refs/notes/commits", None, None)


# --- changed paths ---------------------------------------------------------------------------------


def test_github_commit_list_of_twenty_may_be_truncated_so_paths_are_unknown() -> None:
    data = fixture("github", "push_branch")
    data["commits"] = data["commits"] * 10
    assert only(github("push", data)).changed_paths is None
    data["commits"] = data["commits"][:19]
    assert only(github("push", data)).changed_paths is not None


def test_github_size_larger_than_the_commit_list_means_truncated() -> None:
    data = fixture("github", "push_branch")
    data["size"] = 3
    assert only(github("push", data)).changed_paths is None
    data["size"] = 2
    assert only(github("push", data)).changed_paths == (
        "README.md",
        "docs/index.md",
        "src/old_parser.py",
        "src/parser.py",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("forced", True), ("created", True), ("before", ZERO), ("commits", [])],
    ids=["force-push", "new-branch", "before-zero", "no-commits"],
)
def test_github_paths_are_unknown_when_the_commit_list_does_not_describe_the_change(
    field: str, value: object
) -> None:
    data = fixture("github", "push_branch")
    data[field] = value
    assert only(github("push", data)).changed_paths is None


def test_github_commit_without_file_lists_makes_paths_unknown() -> None:
    data = fixture("github", "push_branch")
    del data["commits"][0]["modified"]
    assert only(github("push", data)).changed_paths is None


def test_paths_filter_passes_when_paths_are_unknown() -> None:
    data = fixture("github", "push_branch")
    docs_only = Triggers(push=PushFilter(paths=["docs/**"]))
    ui_only = Triggers(push=PushFilter(paths=["ui/**"]))
    assert matches(docs_only, only(github("push", data)).trigger_event())[0]
    assert not matches(ui_only, only(github("push", data)).trigger_event())[0]
    data["commits"] = data["commits"] * 10
    assert matches(ui_only, only(github("push", data)).trigger_event())[0]


# --- GitLab ----------------------------------------------------------------------------------------


def test_gitlab_push() -> None:
    event = only(gitlab("Push Hook", fixture("gitlab", "push")))
    assert event == WebhookEvent(
        provider="gitlab",
        delivery_id=GITLAB_DELIVERY,
        event="Push Hook",
        kind="push",
        repo="mike/platform/diaspora",
        ref="refs/heads/main",
        sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        before="95790bf891e76fee5e1747ab589903a6a1f80f22",
        branch="main",
        changed_paths=("CHANGELOG", "README.md", "docs/old.md", "locale/ca.yml"),
        sender="jsmith",
    )
    assert matches(default_triggers(), event.trigger_event())[0]


def test_gitlab_total_commits_count_above_the_list_means_truncated() -> None:
    data = fixture("gitlab", "push")
    data["total_commits_count"] = 25
    assert only(gitlab("Push Hook", data)).changed_paths is None


def test_gitlab_tag_push_builds_the_checkout_sha() -> None:
    event = only(gitlab("Tag Push Hook", fixture("gitlab", "tag_push")))
    assert (event.kind, event.ref, event.tag, event.before) == ("tag", "refs/tags/v1.0.0", "v1.0.0", None)
    assert event.sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
    assert event.repo == "mike/platform/diaspora"


def test_gitlab_branch_deletion() -> None:
    data = fixture("gitlab", "push")
    data.update(after=ZERO, checkout_sha=None, commits=[], total_commits_count=0)
    event = only(gitlab("Push Hook", data))
    assert (event.kind, event.deleted, event.sha, event.changed_paths) == ("push", True, None, None)
    assert not event.may_start_run


def test_gitlab_merge_request_opened_from_a_fork() -> None:
    event = only(gitlab("Merge Request Hook", fixture("gitlab", "merge_request_open")))
    assert event == WebhookEvent(
        provider="gitlab",
        delivery_id=GITLAB_DELIVERY,
        event="Merge Request Hook",
        kind="pull_request",
        repo="mike/platform/diaspora",
        action="opened",
        ref="refs/merge-requests/7/head",
        sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        branch="ms-viewport",
        base_branch="main",
        fork=True,
        pr_number=7,
        sender="root",
        title="MS-Viewport",
    )


def test_gitlab_merge_request_update_with_new_commits_is_synchronize() -> None:
    event = only(gitlab("Merge Request Hook", fixture("gitlab", "merge_request_update")))
    assert (event.kind, event.action, event.fork, event.pr_number) == (
        "pull_request",
        "synchronize",
        False,
        8,
    )
    assert event.before == "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"


@pytest.mark.parametrize(
    ("changes", "kind", "action"),
    [
        ({"title": {"previous": "WIP", "current": "MS-Viewport"}}, "pull_request", "edited"),
        ({"draft": {"previous": True, "current": False}}, "pull_request", "ready_for_review"),
        ({"labels": {"previous": [], "current": [{"title": "bug"}]}}, "other", None),
        ({}, "other", None),
    ],
    ids=["title-edit", "ready", "labels", "nothing"],
)
def test_gitlab_merge_request_update_without_new_commits(
    changes: dict[str, Any], kind: str, action: str | None
) -> None:
    data = fixture("gitlab", "merge_request_update")
    del data["object_attributes"]["oldrev"]
    data["changes"] = changes
    event = only(gitlab("Merge Request Hook", data))
    assert (event.kind, event.action) == (kind, action)


@pytest.mark.parametrize(
    ("action", "kind", "normalised"),
    [
        ("close", "pull_request", "closed"),
        ("merge", "pull_request", "closed"),
        ("reopen", "pull_request", "reopened"),
        ("approved", "other", None),
        (None, "other", None),
    ],
)
def test_gitlab_merge_request_actions(action: str | None, kind: str, normalised: str | None) -> None:
    data = fixture("gitlab", "merge_request_open")
    data["object_attributes"]["action"] = action
    event = only(gitlab("Merge Request Hook", data))
    assert (event.kind, event.action) == (kind, normalised)


@pytest.mark.parametrize("name", ["System Hook", "Pipeline Hook", "Note Hook", "Job Hook"])
def test_gitlab_other_hooks_are_other(name: str) -> None:
    event = only(gitlab(name, fixture("gitlab", "push")))  # a system hook for a push looks like this
    assert (event.kind, event.repo, event.ref) == ("other", "mike/platform/diaspora", None)


@pytest.mark.parametrize(
    ("headers", "delivery"),
    [
        (
            {
                "X-Gitlab-Event-UUID": "event-1",
                "Idempotency-Key": "idem-1",
                "X-Gitlab-Webhook-UUID": "hook-1",
            },
            "event-1",
        ),
        ({"Idempotency-Key": "idem-1", "X-Gitlab-Webhook-UUID": "hook-1"}, "idem-1"),
        ({"x-gitlab-webhook-uuid": "hook-1"}, "hook-1"),
    ],
)
def test_gitlab_delivery_id_falls_back_from_event_uuid(headers: dict[str, str], delivery: str) -> None:
    event = only(parse("gitlab", {"X-Gitlab-Event": "Push Hook", **headers}, raw(fixture("gitlab", "push"))))
    assert event.delivery_id == delivery


# --- Bitbucket Cloud -------------------------------------------------------------------------------


def test_bitbucket_push_with_two_changes_is_two_events() -> None:
    branch, tag = bitbucket("repo:push", fixture("bitbucket", "push_two_changes"))
    assert branch == WebhookEvent(
        provider="bitbucket",
        delivery_id=BITBUCKET_DELIVERY,
        event="repo:push",
        kind="push",
        repo="acme/widgets",
        ref="refs/heads/main",
        sha="03f4a7270240708834de475bcf21532d6134777e",
        before="1e65c05c1d5171631d92438a13901ca7dae9618c",
        branch="main",
        changed_paths=None,  # Bitbucket never lists files
        sender="emma",
        change_index=0,
    )
    assert (tag.kind, tag.ref, tag.tag, tag.before, tag.change_index) == (
        "tag",
        "refs/tags/v2.0.0",
        "v2.0.0",
        None,
        1,
    )
    assert tag.sha == "5b2c0c4e2ad8f0c62bb2cd5c0e4d4c8a0b7f6e21"
    assert tag.delivery_id == branch.delivery_id


def test_bitbucket_branch_deletion_has_new_null() -> None:
    data = fixture("bitbucket", "push_two_changes")
    change = data["push"]["changes"][0]
    change.update(new=None, closed=True, commits=[])
    event = bitbucket("repo:push", data)[0]
    assert (event.kind, event.branch, event.deleted, event.sha) == ("push", "main", True, None)
    assert event.before == "1e65c05c1d5171631d92438a13901ca7dae9618c"


def test_bitbucket_pull_request_created_from_a_fork() -> None:
    event = only(bitbucket("pullrequest:created", fixture("bitbucket", "pullrequest_created")))
    assert event == WebhookEvent(
        provider="bitbucket",
        delivery_id=BITBUCKET_DELIVERY,
        event="pullrequest:created",
        kind="pull_request",
        repo="acme/widgets",
        action="opened",
        ref="refs/heads/perf/cache",
        sha="d3022fc0ca3d",  # Bitbucket sends abbreviated shas for pull requests
        branch="perf/cache",
        base_branch="main",
        fork=True,
        pr_number=17,
        sender="emma",
        title="Make widgets faster",
    )


@pytest.mark.parametrize(
    ("key", "kind", "action"),
    [
        ("pullrequest:updated", "pull_request", "synchronize"),
        ("pullrequest:fulfilled", "pull_request", "closed"),
        ("pullrequest:rejected", "pull_request", "closed"),
        ("pullrequest:approved", "other", None),
        ("pullrequest:comment_created", "other", None),
        ("repo:fork", "other", None),
    ],
)
def test_bitbucket_event_keys(key: str, kind: str, action: str | None) -> None:
    event = only(bitbucket(key, fixture("bitbucket", "pullrequest_created")))
    assert (event.kind, event.action, event.repo) == (kind, action, "acme/widgets")


# --- malformed and hostile -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is not valid JSON: Expecting value"),
        (b"{", "body is not valid JSON"),
        (b"{'ref': 'x'}", "body is not valid JSON"),
        (b'{"ref": NaN}', "body is not valid JSON: NaN is not a JSON number"),
        (b"\xff\xfe\x00", "body is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON"),
        (b"[]", "body is a JSON list, not an object"),
        (b'"push"', "body is a JSON str, not an object"),
        (b"null", "body is a JSON NoneType, not an object"),
    ],
    ids=["empty", "unclosed", "single-quotes", "nan", "not-utf8", "deeply-nested", "list", "string", "null"],
)
def test_malformed_body_is_refused(body: bytes, reason: str) -> None:
    for provider, headers in [
        ("github", {"X-GitHub-Event": "push", "X-GitHub-Delivery": GITHUB_DELIVERY}),
        ("gitlab", {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": GITLAB_DELIVERY}),
        ("bitbucket", {"X-Event-Key": "repo:push", "X-Request-UUID": BITBUCKET_DELIVERY}),
    ]:
        with pytest.raises(WebhookPayloadError, match="^" + reason.replace("(", r"\(")):
            parse(provider, headers, body)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d.pop("ref"), "push payload has no 'ref'"),
        (lambda d: d.update(ref=""), "push payload has an empty 'ref'"),
        (lambda d: d.update(ref=7), "push payload: 'ref' is not a string"),
        (lambda d: d.update(ref="-refs/heads/x"), "push payload: 'ref': ref '-refs/heads/x' starts with '-'"),
        (lambda d: d.update(ref="refs/heads/a..b"), "contains '..'"),
        (lambda d: d.update(ref="refs/heads/x y"), "forbidden character"),
        (lambda d: d.update(after="not-a-sha"), "push payload: 'after': 'not-a-sha' is not a commit sha"),
        (lambda d: d["head_commit"].update(id="--upload-pack=evil"), "push payload: 'head_commit.id'"),
        (lambda d: d.pop("repository"), "push payload has no 'repository'"),
        (lambda d: d["repository"].update(full_name="\nevil"), "is not a repository name"),
        (lambda d: d.update(deleted="yes"), "push payload: 'deleted' is not true or false"),
        (lambda d: d.update(commits={}), "push payload: 'commits' is not a list"),
        (
            lambda d: d["commits"][1].update(added=[1]),
            "push payload: 'commits[1].added' is not a list of strings",
        ),
        (lambda d: d.update(size=True), "push payload: 'size' is not a whole number"),
    ],
)
def test_bad_github_push_is_refused_naming_the_field(edit: Any, reason: str) -> None:
    data = fixture("github", "push_branch")
    edit(data)
    with pytest.raises(WebhookPayloadError) as info:
        github("push", data)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            lambda d: d["pull_request"]["head"].update(ref="-c core.sshCommand=evil"),
            "'pull_request.head.ref': ref '-c core.sshCommand=evil' contains the forbidden character ' '",
        ),
        (
            lambda d: d["pull_request"]["head"].update(ref="--help"),
            "'pull_request.head.ref': ref '--help' starts with '-'",
        ),
        (lambda d: d["pull_request"]["base"].update(ref="main.lock"), "'pull_request.base.ref'"),
        (
            lambda d: d["pull_request"]["head"].pop("sha"),
            "pull_request payload has no 'pull_request.head.sha'",
        ),
        (lambda d: d.update(number="42"), "pull_request payload: 'number' is not a whole number"),
        (lambda d: d.update(number=True), "pull_request payload: 'number' is not a whole number"),
        (lambda d: d.update(pull_request=[]), "pull_request payload: 'pull_request' is not an object"),
    ],
)
def test_bad_github_pull_request_is_refused_naming_the_field(edit: Any, reason: str) -> None:
    data = fixture("github", "pull_request_opened_fork")
    edit(data)
    with pytest.raises(WebhookPayloadError) as info:
        github("pull_request", data)
    assert reason in str(info.value)


def test_ref_starting_with_a_dash_is_refused_for_every_provider() -> None:
    gitlab_push = fixture("gitlab", "push")
    gitlab_push["ref"] = "-uhelp"
    with pytest.raises(WebhookPayloadError, match="starts with '-'"):
        gitlab("Push Hook", gitlab_push)
    merge_request = fixture("gitlab", "merge_request_open")
    merge_request["object_attributes"]["source_branch"] = "--output=/etc/passwd"
    with pytest.raises(WebhookPayloadError, match=r"'object_attributes\.source_branch'.*starts with '-'"):
        gitlab("Merge Request Hook", merge_request)
    bitbucket_push = fixture("bitbucket", "push_two_changes")
    bitbucket_push["push"]["changes"][1]["new"]["name"] = "-v2"
    with pytest.raises(WebhookPayloadError, match=r"'push.changes\[1\].new.name'.*starts with '-'"):
        bitbucket("repo:push", bitbucket_push)
    pull_request = fixture("bitbucket", "pullrequest_created")
    pull_request["pullrequest"]["destination"]["branch"]["name"] = "-main"
    with pytest.raises(
        WebhookPayloadError, match=r"'pullrequest\.destination\.branch\.name'.*starts with '-'"
    ):
        bitbucket("pullrequest:created", pull_request)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d["push"].update(changes=[]), "push payload has no 'push.changes'"),
        (lambda d: d["push"].pop("changes"), "push payload has no 'push.changes'"),
        (
            lambda d: d["push"]["changes"][0].update(new=None, old=None),
            "'push.changes[0].new' and 'push.changes[0].old' are both null",
        ),
        (
            lambda d: d["push"]["changes"][0]["new"].update(type="bookmark"),
            "is 'bookmark', not 'branch' or 'tag'",
        ),
        (
            lambda d: d["push"]["changes"][0]["new"]["target"].pop("hash"),
            "has no 'push.changes[0].new.target.hash'",
        ),
        (lambda d: d["push"]["changes"].append("main"), "'push.changes[2]' is not an object"),
    ],
)
def test_bad_bitbucket_push_is_refused_naming_the_field(edit: Any, reason: str) -> None:
    data = fixture("bitbucket", "push_two_changes")
    edit(data)
    with pytest.raises(WebhookPayloadError) as info:
        bitbucket("repo:push", data)
    assert reason in str(info.value)


def test_bad_gitlab_merge_request_is_refused_naming_the_field() -> None:
    data = fixture("gitlab", "merge_request_update")
    data["object_attributes"]["last_commit"] = None
    with pytest.raises(
        WebhookPayloadError, match=r"merge request payload has no 'object_attributes\.last_commit'"
    ):
        gitlab("Merge Request Hook", data)


@pytest.mark.parametrize(
    ("provider", "headers", "reason"),
    [
        ("github", {"X-GitHub-Event": "push"}, "missing X-GitHub-Delivery header"),
        ("github", {"X-GitHub-Event": "push", "X-GitHub-Delivery": ""}, "missing X-GitHub-Delivery header"),
        ("github", {"X-GitHub-Delivery": GITHUB_DELIVERY}, "missing X-GitHub-Event header"),
        (
            "github",
            {"X-GitHub-Event": "push", "X-GitHub-Delivery": "a b"},
            "X-GitHub-Delivery header 'a b' is not valid",
        ),
        (
            "github",
            {"X-GitHub-Event": "push\n", "X-GitHub-Delivery": GITHUB_DELIVERY},
            "X-GitHub-Event header",
        ),
        ("github", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "x" * 201}, "is not valid"),
        ("gitlab", {"X-Gitlab-Event": "Push Hook"}, "missing X-Gitlab-Event-UUID header"),
        ("gitlab", {"X-Gitlab-Event-UUID": GITLAB_DELIVERY}, "missing X-Gitlab-Event header"),
        ("bitbucket", {"X-Event-Key": "repo:push"}, "missing X-Request-UUID header"),
        ("bitbucket", {"X-Request-UUID": BITBUCKET_DELIVERY}, "missing X-Event-Key header"),
    ],
)
def test_missing_or_bad_event_headers_are_refused(
    provider: str, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        parse(provider, headers, b"{}")
    assert reason in str(info.value)


def test_event_headers_are_found_whatever_their_case() -> None:
    headers = {"x-github-event": "ping", "X-GITHUB-DELIVERY": GITHUB_DELIVERY}
    assert only(parse("github", headers, raw(fixture("github", "ping")))).kind == "ping"


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(WebhookPayloadError, match="unknown webhook provider 'gitea'"):
        parse("gitea", {}, b"{}")
    with pytest.raises(WebhookPayloadError, match="unknown webhook provider"):
        peek_repository("GitHub", b"{}")


# --- peeking at the repository before verification -------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "name", "repo"),
    [
        ("github", "push_branch", "octo/hello"),
        ("github", "pull_request_opened_fork", "octo/hello"),  # the base repository, not the fork
        ("gitlab", "push", "mike/platform/diaspora"),
        ("gitlab", "merge_request_open", "mike/platform/diaspora"),
        ("bitbucket", "push_two_changes", "acme/widgets"),
        ("bitbucket", "pullrequest_created", "acme/widgets"),
    ],
)
def test_peek_repository_reads_the_repository_the_delivery_is_for(
    provider: str, name: str, repo: str
) -> None:
    body = (FIXTURES / provider / f"{name}.json").read_bytes()
    assert peek_repository(provider, body) == repo
    assert all(event.repo == repo for event in parse(provider, _headers_for(provider), body))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"[" * 100_000,
        b'{"repository": "octo/hello"}',
        b'{"repository": {"full_name": 7}}',
        b'{"repository": {"full_name": ""}}',
        b'{"repository": {"full_name": "octo/hello\\n"}}',
        b'{"repository": {"full_name": "/octo"}}',
        b'{"repository": {"full_name": "' + b"a" * 401 + b'"}}',
        b'{"project": {"path_with_namespace": "octo/hello"}}',  # GitLab's key, not GitHub's
    ],
)
def test_peek_repository_tolerates_junk(body: bytes) -> None:
    assert peek_repository("github", body) is None


def test_repo_name_reads_each_providers_field() -> None:
    assert repo_name("gitlab", {"project": {"path_with_namespace": "a/b/c"}}) == "a/b/c"
    assert repo_name("gitlab", {"repository": {"full_name": "a/b"}}) is None
    assert repo_name("bitbucket", {"repository": {"full_name": "ws/repo"}}) == "ws/repo"


def _headers_for(provider: str) -> dict[str, str]:
    if provider == "github":
        return {"X-GitHub-Event": "other", "X-GitHub-Delivery": GITHUB_DELIVERY}
    if provider == "gitlab":
        return {"X-Gitlab-Event": "Note Hook", "X-Gitlab-Event-UUID": GITLAB_DELIVERY}
    return {"X-Event-Key": "repo:fork", "X-Request-UUID": BITBUCKET_DELIVERY}
