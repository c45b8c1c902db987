"""The permission table: its shape, the grant rule, token scopes, and its documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from api.app import create_app
from api.errors import Forbidden
from api.permissions import (
    PERMISSIONS,
    Action,
    Scope,
    allows,
    authorize,
    authorize_scope,
    check_grant,
    render_doc,
    scope_needed,
    scoped_routes,
    scopes_from,
)
from config.settings import ApiSettings
from schemas.api.tokens import TOKEN_SCOPES
from schemas.roles import Role

DOC = Path(__file__).resolve().parents[3] / "docs" / "permissions.md"
ROLES_DOWN = sorted(Role, key=lambda r: -r.rank)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(ApiSettings(jwt_secret="j" * 64, secret_key="k" * 64))


def test_every_action_has_a_rule_and_the_issue_s_actions_are_all_there() -> None:
    assert set(PERMISSIONS) == set(Action)
    wanted = {"read", "trigger", "cancel", "retry", "approve_deploys", "manage_members", "manage_secrets"}
    wanted |= {"manage_integrations", "manage_webhooks", "replay", "delete"}
    assert wanted <= {a.value for a in Action}


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_a_stronger_role_may_do_everything_a_weaker_one_may(action: Action) -> None:
    allowed = [allows(role, action) for role in ROLES_DOWN]
    assert allowed == sorted(allowed, reverse=True)  # once denied, denied for every weaker role
    assert allows(Role.OWNER, action)


def test_viewers_only_read_developers_also_run_maintainers_manage_owners_delete() -> None:
    def can(role: Role) -> set[Action]:
        return {a for a in Action if allows(role, a)}

    assert can(Role.VIEWER) == {Action.READ}
    assert can(Role.DEVELOPER) == {Action.READ, Action.TRIGGER, Action.CANCEL, Action.RETRY}
    assert can(Role.MAINTAINER) == set(Action) - {Action.DELETE}
    assert can(Role.OWNER) == set(Action)


def test_a_refusal_names_the_role_needed_and_the_callers_role() -> None:
    with pytest.raises(Forbidden) as caught:
        authorize(Role.DEVELOPER, Action.MANAGE_SECRETS)
    assert (
        caught.value.detail == "To manage secrets you need the maintainer role or higher; yours is developer."
    )


@pytest.mark.parametrize("have", ROLES_DOWN, ids=lambda r: r.value)
@pytest.mark.parametrize("want", ROLES_DOWN, ids=lambda r: r.value)
def test_nobody_grants_a_role_above_their_own(have: Role, want: Role) -> None:
    if allows(have, Action.MANAGE_MEMBERS) and have.at_least(want):
        check_grant(have, want, None)
    else:
        with pytest.raises(Forbidden):
            check_grant(have, want, None)


def test_nobody_changes_the_role_of_someone_above_them() -> None:
    check_grant(Role.MAINTAINER, Role.VIEWER, Role.DEVELOPER)
    check_grant(Role.MAINTAINER, Role.VIEWER, Role.MAINTAINER)
    with pytest.raises(Forbidden, match="change the role of an owner"):
        check_grant(Role.MAINTAINER, Role.VIEWER, Role.OWNER)


@pytest.mark.parametrize(
    ("method", "action", "needed"),
    [
        ("GET", Action.READ, Scope.READ),
        ("GET", Action.MANAGE_WEBHOOKS, Scope.READ),
        ("HEAD", None, Scope.READ),
        ("POST", Action.TRIGGER, Scope.TRIGGER),
        ("POST", Action.CANCEL, Scope.TRIGGER),
        ("POST", Action.RETRY, Scope.TRIGGER),
        ("PUT", Action.MANAGE_SECRETS, Scope.ADMIN),
        ("DELETE", Action.DELETE, Scope.ADMIN),
        ("POST", Action.READ, Scope.ADMIN),  # a changing route declaring no changing action
        ("POST", None, Scope.ADMIN),
    ],
)
def test_the_scope_a_request_needs(method: str, action: Action | None, needed: Scope) -> None:
    assert scope_needed(method, action) is needed


def test_a_read_token_cannot_change_anything_and_a_trigger_token_only_runs() -> None:
    read, trigger = frozenset({Scope.READ}), frozenset({Scope.TRIGGER})
    authorize_scope(read, "GET", Action.READ)
    with pytest.raises(Forbidden, match=r"scopes \(read\) do not allow"):
        authorize_scope(read, "POST", Action.TRIGGER)
    authorize_scope(trigger, "POST", Action.TRIGGER)
    with pytest.raises(Forbidden, match="needs the admin scope"):
        authorize_scope(trigger, "PUT", Action.MANAGE_SECRETS)
    authorize_scope(frozenset({Scope.ADMIN}), "DELETE", Action.DELETE)
    with pytest.raises(Forbidden):
        authorize_scope(frozenset(), "GET", Action.READ)


def test_unknown_scope_names_grant_nothing_and_the_api_offers_exactly_the_known_ones() -> None:
    assert scopes_from(["read", "root", "ADMIN"]) == {Scope.READ}
    assert set(TOKEN_SCOPES) == {s.value for s in Scope}


def test_every_project_and_run_route_of_the_refactored_routers_declares_its_action(app: FastAPI) -> None:
    declared = {(m, p): a for m, p, a in scoped_routes(app.routes)}
    for key, action in {
        ("PATCH", "/api/v1/projects/{project_id}"): Action.CONFIGURE,
        ("DELETE", "/api/v1/projects/{project_id}"): Action.DELETE,
        ("PUT", "/api/v1/projects/{project_id}/members/{user_id}"): Action.MANAGE_MEMBERS,
        ("POST", "/api/v1/projects/{project_id}/runs"): Action.TRIGGER,
        ("PUT", "/api/v1/projects/{project_id}/secrets/{name}"): Action.MANAGE_SECRETS,
        ("DELETE", "/api/v1/projects/{project_id}/secrets/{name}"): Action.MANAGE_SECRETS,
        ("POST", "/api/v1/runs/{run_id}/cancel"): Action.CANCEL,
        ("POST", "/api/v1/runs/{run_id}/retry"): Action.RETRY,
        ("GET", "/api/v1/runs/{run_id}/stages/{stage}/logs"): Action.READ,
    }.items():
        assert declared[key] is action, key


def test_docs_permissions_md_shows_the_table_the_code_enforces(app: FastAPI) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_doc(text, app.routes) == text, (
        "docs/permissions.md is out of date: run `.venv/bin/python -m api.permissions`"
    )
