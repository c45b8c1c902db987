"""`on:` filters: which events start a run, and the reason given either way."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.pipeline import parse_definition
from schemas.triggers import TriggerEvent, Triggers, default_triggers, matches


def triggers(on: Any) -> Triggers:
    return Triggers.model_validate(on)


FILTERED = {
    "push": {"branches": ["main", "release/**"], "branches_ignore": ["release/old*"], "tags": ["v*"]},
    "pull_request": {"branches": ["main"]},
    "schedule": [{"cron": "0 3 * * *"}],
    "manual": False,
}


@pytest.mark.parametrize(
    ("on", "event", "expected"),
    [
        # No `on:` at all: any branch push, manual and api; no tags, no pull requests, no schedules.
        (None, TriggerEvent("push", branch="feature/x"), True),
        (None, TriggerEvent("push", branch="refs/heads/main"), True),
        (None, TriggerEvent("tag", tag="v1.0"), False),
        (None, TriggerEvent("pull_request", base_branch="main", action="opened"), False),
        (None, TriggerEvent("schedule"), False),
        (None, TriggerEvent("manual"), True),
        (None, TriggerEvent("api"), True),
        (FILTERED, TriggerEvent("push", branch="main"), True),
        (FILTERED, TriggerEvent("push", branch="release/1.2"), True),
        (FILTERED, TriggerEvent("push", branch="release/old-1"), False),
        (FILTERED, TriggerEvent("push", branch="feature/x"), False),
        (FILTERED, TriggerEvent("push"), False),
        (FILTERED, TriggerEvent("tag", tag="v2.0"), True),
        (FILTERED, TriggerEvent("tag", tag="refs/tags/v2.0"), True),
        (FILTERED, TriggerEvent("tag", tag="nightly"), False),
        (FILTERED, TriggerEvent("pull_request", base_branch="main", action="opened"), True),
        (FILTERED, TriggerEvent("pull_request", base_branch="main", action="synchronize"), True),
        (FILTERED, TriggerEvent("pull_request", base_branch="main", action="closed"), False),
        (FILTERED, TriggerEvent("pull_request", base_branch="dev", action="opened"), False),
        (FILTERED, TriggerEvent("pull_request", action="opened"), False),
        (FILTERED, TriggerEvent("schedule"), True),
        (FILTERED, TriggerEvent("manual"), False),
        (FILTERED, TriggerEvent("api"), False),
        ({"push": {"tags": ["v*"]}}, TriggerEvent("push", branch="main"), False),
        ({"push": {"tags": ["v*"]}}, TriggerEvent("tag", tag="v1"), True),
        ({"push": None}, TriggerEvent("push", branch="anything"), True),
        ({"pull_request": None}, TriggerEvent("pull_request", base_branch="x", action="reopened"), True),
        ({"pull_request": {"types": ["closed"]}}, TriggerEvent("pull_request", action="closed"), True),
        ("push", TriggerEvent("push", branch="main"), True),
        (["push", "pull_request"], TriggerEvent("pull_request", base_branch="main"), True),
        ({"manual": True}, TriggerEvent("push", branch="main"), False),
    ],
)
def test_event_starts_a_run_when_the_filters_say_so(on: Any, event: TriggerEvent, expected: bool) -> None:
    configured = default_triggers() if on is None else triggers(on)
    matched, reason = matches(configured, event)
    assert matched is expected, reason
    assert reason


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (None, True),  # unknown: the filter passes
        (("src/app.py",), True),
        (("docs/index.md", "src/a/b.py"), True),
        (("docs/index.md",), False),
        (("src/app_test.md",), False),  # matches paths, but also paths_ignore
        ((), False),
    ],
)
def test_paths_filter_needs_one_changed_path_that_is_not_ignored(
    changed: tuple[str, ...] | None, expected: bool
) -> None:
    on = triggers({"push": {"paths": ["src/**"], "paths_ignore": ["**/*.md"]}})
    matched, reason = matches(on, TriggerEvent("push", branch="main", changed_paths=changed))
    assert matched is expected, reason


def test_paths_filter_does_not_apply_to_tags() -> None:
    on = triggers({"push": {"tags": ["v*"], "paths": ["src/**"]}})
    assert matches(on, TriggerEvent("tag", tag="v1", changed_paths=("docs/a.md",)))[0] is True


@pytest.mark.parametrize(
    ("on", "event", "reason"),
    [
        (None, TriggerEvent("tag", tag="v1"), "tags do not run unless on.push.tags lists them"),
        (FILTERED, TriggerEvent("push", branch="dev"), "branch 'dev' matches none of on.push.branches"),
        (
            FILTERED,
            TriggerEvent("push", branch="release/old"),
            "branch 'release/old' matches on.push.branches_ignore 'release/old*'",
        ),
        (FILTERED, TriggerEvent("tag", tag="v3"), "tag 'v3' matches on.push.tags 'v*'"),
        (FILTERED, TriggerEvent("manual"), "manual runs are off (on.manual: false)"),
        ({"manual": True}, TriggerEvent("push", branch="main"), "on.push is not set"),
    ],
)
def test_reason_explains_the_decision(on: Any, event: TriggerEvent, reason: str) -> None:
    configured = default_triggers() if on is None else triggers(on)
    assert matches(configured, event)[1] == reason


def test_definition_without_on_gets_the_default_triggers() -> None:
    definition = parse_definition("stages:\n  a: {run: x}\n")
    assert definition.on == default_triggers()
    assert matches(definition.on, TriggerEvent("push", branch="main"))[0] is True
