"""The pure parts of `Idempotency-Key`: the request fingerprint, the key's validation, whose key it
is, what of an answer is remembered, and that every creating POST declares the header (OpenAPI).

Nothing here touches Postgres or Kafka (the app is built without its lifespan)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from api.app import create_app
from api.deps import Principal
from api.errors import ValidationFailed
from api.idempotency import (
    KEY_HEADER,
    REPLAYED_HEADER,
    canonical_body,
    fingerprint,
    remembered_body,
    scope_of,
    validate_key,
)
from api.permissions import ALL_SCOPES
from config.settings import ApiSettings
from db.models import User
from schemas.api.projects import ProjectCreated
from schemas.api.tokens import TokenCreated
from schemas.roles import Role

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RUNS = "/api/v1/projects/0193a1b2-0000-7000-8000-000000000001/runs"


def test_key_order_and_white_space_do_not_change_the_fingerprint() -> None:
    compact = b'{"ref":"main","variables":{"A":"1","B":"2"}}'
    spaced = b'{\n  "variables": {"B": "2", "A": "1"},\n  "ref": "main"\n}\n'
    assert canonical_body(compact) == canonical_body(spaced) == compact.decode()
    assert fingerprint("POST", RUNS, "", compact) == fingerprint("post", RUNS, "", spaced)


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("POST", RUNS, "", b'{"ref":"develop","variables":{"A":"1","B":"2"}}'),
        ("POST", RUNS, "", b'{"ref":"main","variables":{"A":"1","B":"3"}}'),
        ("POST", RUNS, "", b'{"ref":"main","variables":{"A":"1","B":"2"},"sha":null}'),
        ("POST", RUNS, "", b'[{"ref":"main","variables":{"A":"1","B":"2"}}]'),
        ("POST", "/api/v1/projects", "", b'{"ref":"main","variables":{"A":"1","B":"2"}}'),
        ("PUT", RUNS, "", b'{"ref":"main","variables":{"A":"1","B":"2"}}'),
        ("POST", RUNS, "dry_run=true", b'{"ref":"main","variables":{"A":"1","B":"2"}}'),
    ],
)
def test_another_method_path_query_or_body_is_another_fingerprint(
    method: str, path: str, query: str, body: bytes
) -> None:
    first = fingerprint("POST", RUNS, "", b'{"ref":"main","variables":{"A":"1","B":"2"}}')
    assert fingerprint(method, path, query, body) != first


def test_query_parameters_are_compared_in_sorted_order() -> None:
    assert fingerprint("POST", RUNS, "b=2&a=1", b"{}") == fingerprint("POST", RUNS, "a=1&b=2", b"{}")
    assert fingerprint("POST", RUNS, "a=1", b"{}") != fingerprint("POST", RUNS, "a=2", b"{}")


def test_the_fingerprint_is_a_sha256_hex_digest() -> None:
    digest = fingerprint("POST", RUNS, "", b"{}")
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_an_empty_body_and_a_body_that_is_not_json() -> None:
    assert canonical_body(b"") == canonical_body(b"  \n") == ""
    assert canonical_body(b"{not json").startswith("bytes:")
    assert canonical_body(b"{not json") != canonical_body(b"{not  json")
    assert canonical_body(b'{"a": "\xc3\xa9"}') == '{"a":"\u00e9"}'


@pytest.mark.parametrize(
    "key",
    [
        "a",
        str(uuid.uuid4()),
        "deploy 2026-11-29 #3 (retry-safe)",
        "~" * 255,
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
    ],
)
def test_printable_ascii_keys_of_up_to_255_characters_are_accepted(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "must not be empty"),
        ("k" * 256, "must be at most 255 characters"),
        ("tab\there", "must be printable ASCII"),
        ("bell\x07", "must be printable ASCII"),
        ("del\x7f", "must be printable ASCII"),
        ("cl\u00e9", "must be printable ASCII"),
    ],
)
def test_other_keys_are_a_422_naming_the_header(key: str, problem: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_key(key)
    assert raised.value.errors == [("header.Idempotency-Key", problem)]
    assert KEY_HEADER in str(raised.value.detail)


def test_a_key_belongs_to_its_user_and_to_the_api_token_used() -> None:
    alice, bob = User(id=uuid.uuid4()), User(id=uuid.uuid4())
    token = uuid.uuid4()
    assert scope_of(Principal(alice, ALL_SCOPES)) == f"user:{alice.id}"
    assert scope_of(Principal(alice, ALL_SCOPES, api_token_id=token)) == f"user:{alice.id}:token:{token}"
    assert scope_of(Principal(alice, ALL_SCOPES)) != scope_of(Principal(bob, ALL_SCOPES))


def test_secrets_shown_once_are_never_remembered() -> None:
    token = TokenCreated(
        id=uuid.uuid4(),
        name="ci",
        prefix="comet_pat_abcdef",
        scopes=["trigger"],
        created_at=NOW,
        expires_at=None,
        last_used_at=None,
        token="comet_pat_secret",
    )
    remembered = remembered_body(token)
    assert remembered["token"] is None
    assert remembered["id"] == str(token.id)
    assert remembered["created_at"] == "2026-11-29T12:00:00Z"
    assert "comet_pat_secret" not in str(remembered)

    project = ProjectCreated(
        id=uuid.uuid4(),
        name="demo",
        repo_url="/srv/git/demo.git",
        default_branch="main",
        provider="local",
        provider_repo=None,
        role=Role.OWNER,
        created_at=NOW,
        updated_at=NOW,
        webhook_secret="whsec",
    )
    remembered = remembered_body(project)
    assert remembered["webhook_secret"] is None
    assert remembered["role"] == "owner"
    assert {k: v for k, v in remembered.items() if k != "webhook_secret"} == {
        k: v for k, v in project.model_dump(mode="json").items() if k != "webhook_secret"
    }


CREATING_POSTS = {
    "/api/v1/projects",
    "/api/v1/projects/{project_id}/runs",
    "/api/v1/users",
    "/api/v1/tokens",
    "/api/v1/projects/{project_id}/integrations",
    "/api/v1/projects/{project_id}/test-suites",
    "/api/v1/projects/{project_id}/test-suites/{suite_id}/runs",
    "/api/v1/projects/{project_id}/webhooks/replay",  # starts runs (with force: new ones)
    "/api/v1/projects/{project_id}/environments/{name}/rollback",  # starts a run
}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    settings = ApiSettings(
        jwt_secret="j" * 64,
        secret_key="k" * 64,
        database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
        kafka_bootstrap_servers="127.0.0.1:1",
    )
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def _takes_key(operation: dict[str, Any]) -> bool:
    return any(p["in"] == "header" and p["name"] == KEY_HEADER for p in operation.get("parameters", []))


def test_every_creating_post_and_no_other_route_takes_the_key(openapi: dict[str, Any]) -> None:
    taking = {path for path, ops in openapi["paths"].items() if any(_takes_key(op) for op in ops.values())}
    assert taking == CREATING_POSTS
    created = {
        path
        for path, ops in openapi["paths"].items()
        if "201" in ops.get("post", {}).get("responses", {}) and not path.startswith("/api/v1/webhooks")
    }
    assert created <= taking, "a POST answering 201 Created must declare the Idempotent dependency"


def test_the_key_its_replay_header_and_its_422_are_documented(openapi: dict[str, Any]) -> None:
    for path in CREATING_POSTS:
        operation = openapi["paths"][path]["post"]
        (parameter,) = [p for p in operation["parameters"] if p["name"] == KEY_HEADER]
        assert parameter["required"] is False
        assert "24 hours" in parameter["description"]
        successes = [r for s, r in operation["responses"].items() if s.startswith("2")]
        assert successes
        for response in successes:
            assert REPLAYED_HEADER in response["headers"]
        unprocessable = operation["responses"]["422"]
        assert KEY_HEADER in unprocessable["description"]
        assert list(unprocessable["content"]) == ["application/problem+json"]
    token = openapi["components"]["schemas"]["TokenCreated"]["properties"]["token"]
    assert token["x-shown-once"] is True
