"""Fuzzed webhook payloads: whatever bytes or headers a delivery carries, `parse` answers events or
a `WebhookPayloadError` naming what is wrong, and `peek_repository` answers a name or None. Any
other exception would be a 500 (or a stuck delivery) for one hostile body.

Inputs: random bytes and text; the real fixtures of the three hosts with one field replaced by a
hostile value (wrong type, huge number, deep nesting, control characters, option-looking refs);
deeply nested JSON; NaN and huge numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.webhooks.parsing import WebhookPayloadError, parse, peek_repository

FIXTURES = Path(__file__).parents[3] / "fixtures" / "webhooks"
_BOUNDED = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
HEADERS: dict[str, dict[str, str]] = {
    "github": {"X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
    "gitlab": {"X-Gitlab-Event-UUID": "9cebe914-4827-408f-b014-cfa23a47a35f"},
    "bitbucket": {"X-Request-UUID": "8c0e8a4c-58a3-4a27-9c8b-1b2c3d4e5f60"},
}
EVENT_HEADER = {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event", "bitbucket": "X-Event-Key"}
# Each fixture with the event name its host sends it under.
SAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    (provider, event, json.loads((FIXTURES / provider / f"{name}.json").read_text()))
    for provider, event, name in [
        ("github", "push", "push_branch"),
        ("github", "push", "push_tag"),
        ("github", "push", "push_branch_deleted"),
        ("github", "pull_request", "pull_request_opened_fork"),
        ("github", "pull_request", "pull_request_synchronize"),
        ("github", "ping", "ping"),
        ("gitlab", "Push Hook", "push"),
        ("gitlab", "Tag Push Hook", "tag_push"),
        ("gitlab", "Merge Request Hook", "merge_request_open"),
        ("gitlab", "Merge Request Hook", "merge_request_update"),
        ("bitbucket", "repo:push", "push_two_changes"),
        ("bitbucket", "pullrequest:created", "pullrequest_created"),
    ]
]

_HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "-",
        "--upload-pack=touch /tmp/comet-canary",
        "refs/heads/--help",
        "refs/heads/../../etc/passwd",
        "refs/heads/$(touch /tmp/comet-canary)",
        "refs/heads/`id`",
        "refs/heads/a\nb",
        "refs/heads/main\x00",
        "refs/tags/v1.0;rm -rf /",
        "ｍａｉｎ",  # fullwidth look-alikes
        "0" * 40,
        "g" * 40,
        "a" * 100_000,
        "\u202eniam",
    ]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | _HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_HOSTILE = st.one_of(
    _JSON,
    _HOSTILE_TEXT,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just(10**4000),
    st.just([[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]),
)


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _replaced(value: Any, path: tuple[object, ...], new: object) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    assert isinstance(head, int)
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


def _parse_or_refuse(provider: str, event: str, body: bytes, headers: dict[str, str] | None = None) -> None:
    all_headers = {**HEADERS[provider], EVENT_HEADER[provider]: event, **(headers or {})}
    try:
        events = parse(provider, all_headers, body)
    except WebhookPayloadError as exc:
        reason = str(exc)
        assert reason
    else:
        assert events
    name = peek_repository(provider, body)
    assert name is None or isinstance(name, str)


@_BOUNDED
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_a_real_payload_with_any_field_replaced_by_a_hostile_value_parses_or_is_refused(
    sample: tuple[str, str, dict[str, Any]], data: st.DataObject
) -> None:
    provider, event, payload = sample
    mutated = payload
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(mutated)))
        mutated = _replaced(mutated, path, data.draw(_HOSTILE))
    _parse_or_refuse(provider, event, json.dumps(mutated).encode())


@_BOUNDED
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_a_real_payload_missing_any_field_parses_or_is_refused(
    sample: tuple[str, str, dict[str, Any]], data: st.DataObject
) -> None:
    provider, event, payload = sample
    path = data.draw(st.sampled_from([p for p in _paths(payload) if p]))
    holder: Any = payload
    for key in path[:-1]:
        holder = holder[key]
    trimmed: object
    if isinstance(holder, dict):
        trimmed = {k: v for k, v in holder.items() if k != path[-1]}
    else:
        trimmed = [v for i, v in enumerate(holder) if i != path[-1]]
    parent = _replaced(payload, path[:-1], trimmed)
    _parse_or_refuse(provider, event, json.dumps(parent).encode())


@_BOUNDED
@given(
    provider=st.sampled_from(["github", "gitlab", "bitbucket"]),
    event=st.sampled_from(["push", "pull_request", "Push Hook", "Merge Request Hook", "repo:push", "x"]),
    body=st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | _JSON.map(lambda v: json.dumps(v).encode()),
)
def test_any_bytes_in_any_host_s_delivery_parse_or_are_refused(
    provider: str, event: str, body: bytes
) -> None:
    _parse_or_refuse(provider, event, body)


@_BOUNDED
@given(
    sample=st.sampled_from(SAMPLES),
    name=st.sampled_from(
        [
            "X-GitHub-Event",
            "X-Gitlab-Event",
            "X-Event-Key",
            "X-GitHub-Delivery",
            "X-Gitlab-Event-UUID",
            "X-Request-UUID",
        ]
    ),
    value=st.text(max_size=300) | _HOSTILE_TEXT,
)
def test_hostile_headers_parse_or_are_refused(
    sample: tuple[str, str, dict[str, Any]], name: str, value: str
) -> None:
    provider, event, payload = sample
    _parse_or_refuse(provider, event, json.dumps(payload).encode(), {name: value})


def test_deep_nesting_huge_numbers_and_json_constants_are_refused_or_parsed() -> None:
    for provider, event, _ in SAMPLES:
        for body in (
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
            b'{"repository": {"full_name": "a/b"}, "number": ' + b"9" * 5_000 + b"}",
            b'{"number": NaN}',
            b'{"number": -Infinity}',
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
        ):
            _parse_or_refuse(provider, event, body)
