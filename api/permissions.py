"""The permission table: every action on a project, the least role it needs, and the API-token
scope that may perform it. `docs/permissions.md` shows this table (a unit test keeps them equal).

Roles rank `owner > maintainer > developer > viewer`; a global admin acts as an owner of every
project. Who cannot see a project at all (no membership, not admin) gets 404 for it and for
everything in it, before any of this is consulted, so existence never leaks.

API tokens carry scopes: `read` allows only safe methods (GET, HEAD, OPTIONS); `trigger` also
allows the actions whose scope is `trigger` (trigger, cancel, retry runs); `admin` allows
everything the token's user may do. A login session (JWT) has every scope. A scope never adds
rights: the user's role is checked as well.

The checks are here and only here: `api/access.py` applies `authorize` and `check_grant` for
project- and run-scoped routes, and `api/deps.py` applies `authorize_scope` to every
authenticated request.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from api.errors import Forbidden
from schemas.roles import Role


class Action(StrEnum):
    READ = "read"
    TRIGGER = "trigger"
    CANCEL = "cancel"
    RETRY = "retry"
    APPROVE_DEPLOYS = "approve_deploys"
    CONFIGURE = "configure"
    MANAGE_TESTS = "manage_tests"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_SECRETS = "manage_secrets"
    MANAGE_INTEGRATIONS = "manage_integrations"
    MANAGE_WEBHOOKS = "manage_webhooks"
    REPLAY = "replay"
    DELETE = "delete"


class Scope(StrEnum):
    READ = "read"
    TRIGGER = "trigger"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _SCOPE_RANK[self]


_SCOPE_RANK = {Scope.READ: 1, Scope.TRIGGER: 2, Scope.ADMIN: 3}
ALL_SCOPES = frozenset(Scope)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Rule:
    role: Role  # the least project role that may do it
    scope: Scope  # the least API-token scope that may do it with an unsafe method
    what: str  # "to <what> you need ..."


PERMISSIONS: Mapping[Action, Rule] = {
    Action.READ: Rule(Role.VIEWER, Scope.READ, "see the project, its runs, logs, tests and settings"),
    Action.TRIGGER: Rule(Role.DEVELOPER, Scope.TRIGGER, "trigger runs"),
    Action.CANCEL: Rule(Role.DEVELOPER, Scope.TRIGGER, "cancel runs"),
    Action.RETRY: Rule(Role.DEVELOPER, Scope.TRIGGER, "retry runs"),
    Action.APPROVE_DEPLOYS: Rule(Role.MAINTAINER, Scope.ADMIN, "approve deployments"),
    Action.CONFIGURE: Rule(Role.MAINTAINER, Scope.ADMIN, "change the project's settings and test suites"),
    Action.MANAGE_TESTS: Rule(Role.MAINTAINER, Scope.ADMIN, "quarantine and release tests"),
    Action.MANAGE_MEMBERS: Rule(Role.MAINTAINER, Scope.ADMIN, "manage members"),
    Action.MANAGE_SECRETS: Rule(Role.MAINTAINER, Scope.ADMIN, "manage secrets"),
    Action.MANAGE_INTEGRATIONS: Rule(Role.MAINTAINER, Scope.ADMIN, "manage integrations"),
    Action.MANAGE_WEBHOOKS: Rule(
        Role.MAINTAINER, Scope.ADMIN, "see webhook deliveries and rotate the webhook secret"
    ),
    Action.REPLAY: Rule(Role.MAINTAINER, Scope.ADMIN, "replay or redeliver webhooks"),
    Action.DELETE: Rule(Role.OWNER, Scope.ADMIN, "delete the project"),
}
"""Action -> the least role and token scope. The one table; nothing else grants project rights."""

RATE_LIMITED: Mapping[Action, str] = {
    Action.TRIGGER: "trigger",
    Action.CANCEL: "trigger",
    Action.RETRY: "trigger",
}
"""Actions that count against a rate-limit bucket (per user)."""


def allows(role: Role, action: Action) -> bool:
    """Whether `role` may perform `action` (the table, as a predicate)."""
    return role.at_least(PERMISSIONS[action].role)


def authorize(role: Role, action: Action) -> None:
    """Forbidden (naming the role needed) unless `role` may perform `action`."""
    rule = PERMISSIONS[action]
    if not role.at_least(rule.role):
        raise Forbidden(
            f"To {rule.what} you need the {rule.role.value} role or higher; yours is {role.value}."
        )


def check_grant(have: Role, want: Role, current: Role | None) -> None:
    """Whether someone with `have` may give a member the role `want` (replacing `current`).

    Managing members needs `manage_members`; on top of that nobody grants a role above their own,
    nor changes the role of someone ranked above them.
    """
    authorize(have, Action.MANAGE_MEMBERS)
    if not have.at_least(want):
        raise Forbidden(f"You cannot grant the {want.value} role: it is above yours ({have.value}).")
    if current is not None and not have.at_least(current):
        article = "an" if current.value[0] in "aeiou" else "a"
        raise Forbidden(
            f"You cannot change the role of {article} {current.value}: it is above yours ({have.value})."
        )


def scope_needed(method: str, action: Action | None) -> Scope:
    """The token scope a request needs: `read` for safe methods; for others the declared action's
    scope when it is `trigger` or `admin`, else `admin` (fail closed: a route that changes something
    without declaring a changing action needs the widest scope)."""
    if method.upper() in SAFE_METHODS:
        return Scope.READ
    if action is not None and PERMISSIONS[action].scope is not Scope.READ:
        return PERMISSIONS[action].scope
    return Scope.ADMIN


def scopes_from(values: Iterable[str]) -> frozenset[Scope]:
    """The known scopes among `values` (unknown names grant nothing)."""
    known = {s.value: s for s in Scope}
    return frozenset(known[v] for v in values if v in known)


def widest(scopes: frozenset[Scope]) -> Scope | None:
    return max(scopes, key=lambda s: s.rank, default=None)


def authorize_scope(scopes: frozenset[Scope], method: str, action: Action | None) -> None:
    """Forbidden unless a token with `scopes` may make a `method` request performing `action`."""
    needed = scope_needed(method, action)
    best = widest(scopes)
    if best is None or best.rank < needed.rank:
        held = ", ".join(sorted(scopes)) or "none"
        raise Forbidden(
            f"This API token's scopes ({held}) do not allow this request; it needs the {needed.value} scope."
        )


def require_at_least(need: Role, have: Role, what: str) -> None:
    """A bare role check, for routes that still call `api.access.require_role`."""
    if not have.at_least(need):
        raise Forbidden(f"To {what} you need the {need.value} role or higher; yours is {have.value}.")


# -- which action a route performs --------------------------------------------------------------------
class ActionDependency:
    """Base of the dependencies that declare a route's action (`api.access.ProjectPermit`,
    `RunPermit`); `declared_action` finds them, so the scope check and the tests know each route's
    action from the route itself."""

    action: Action | None = None


_NOT_CACHED = object()


def _walk(dependant: Any) -> Action | None:
    for dependency in getattr(dependant, "dependencies", ()):
        call = getattr(dependency, "call", None)
        if isinstance(call, ActionDependency) and call.action is not None:
            return call.action
        found = _walk(dependency)
        if found is not None:
            return found
    return None


def declared_action(route: object) -> Action | None:
    """The action a FastAPI route declares through its dependencies (None: it declares none).
    Remembered on the route object, so the walk happens once per route."""
    if route is None:
        return None
    found = getattr(route, "_comet_action", _NOT_CACHED)
    if found is None or isinstance(found, Action):
        return found
    action = _walk(getattr(route, "dependant", None))
    if hasattr(route, "__dict__"):
        vars(route)["_comet_action"] = action
    return action


# -- the table as documentation ---------------------------------------------------------------------
def markdown_table() -> str:
    """The permission table as Markdown: one row per action, a column per role, and the scope."""
    roles = list(Role)
    header = "| action | " + " | ".join(r.value for r in roles) + " | API token scope | what |"
    rule = "|---|" + "---|" * len(roles) + "---|---|"
    rows = [
        f"| `{action.value}` | "
        + " | ".join("✓" if allows(r, action) else "—" for r in roles)
        + f" | `{PERMISSIONS[action].scope.value}` | {PERMISSIONS[action].what} |"
        for action in Action
    ]
    return "\n".join([header, rule, *rows])


_SCOPED_PARAMS = ("{project_id}", "{run_id}", "{deployment_id}")


def _flatten(routes: Iterable[Any]) -> Iterator[tuple[str, set[str], Any]]:
    """(path, methods, route) of every route, looking inside included routers."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            for context in contexts():
                yield context.path, set(context.methods or ()), context.original_route
        else:
            yield getattr(route, "path", ""), set(getattr(route, "methods", None) or ()), route


def _checks_role_itself(route: Any) -> bool:
    """Whether the route's handler calls the bare `require_role` (not yet on the table)."""
    try:
        return "require_role(" in inspect.getsource(route.endpoint)
    except (AttributeError, OSError, TypeError):
        return False


def scoped_routes(routes: Iterable[Any]) -> list[tuple[str, str, Action | None]]:
    """(method, path, declared action) for every route inside a project or a run, sorted; None
    for routes that declare no action or still check a bare role in their handler."""
    found = [
        (method, path, None if _checks_role_itself(route) else declared_action(route))
        for path, methods, route in _flatten(routes)
        if any(param in path for param in _SCOPED_PARAMS)
        for method in methods
        if method != "HEAD"
    ]
    return sorted(found, key=lambda row: (row[1], row[0]))


def endpoints_table(routes: Iterable[Any]) -> str:
    """Markdown: each project- or run-scoped endpoint and the action it performs."""
    lines = ["| endpoint | action | least role |", "|---|---|---|"]
    for method, path, action in scoped_routes(routes):
        if action is None or (action is Action.READ and method not in SAFE_METHODS):
            cell, role = "not declared: the handler checks a role itself", "see the route"
        else:
            cell, role = f"`{action.value}`", PERMISSIONS[action].role.value
        lines.append(f"| `{method} {path}` | {cell} | {role} |")
    return "\n".join(lines)


BEGIN_ACTIONS, END_ACTIONS = "<!-- actions:begin -->", "<!-- actions:end -->"
BEGIN_ENDPOINTS, END_ENDPOINTS = "<!-- endpoints:begin -->", "<!-- endpoints:end -->"


def render_doc(template: str, routes: Iterable[Any]) -> str:
    """`template` (docs/permissions.md) with its generated sections replaced by the current tables."""

    def fill(text: str, begin: str, end: str, table: str) -> str:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        return f"{head}{begin}\n{table}\n{end}{tail}"

    text = fill(template, BEGIN_ACTIONS, END_ACTIONS, markdown_table())
    return fill(text, BEGIN_ENDPOINTS, END_ENDPOINTS, endpoints_table(routes))


def _main() -> None:  # pragma: no cover - a maintenance command
    """`python -m api.permissions`: rewrite docs/permissions.md's generated tables from the code."""
    # Run as `__main__`, this module is a second copy: use the one the routes were built with.
    import importlib
    from pathlib import Path

    from api.app import create_app
    from config.settings import ApiSettings

    settings = ApiSettings(jwt_secret="x" * 32, secret_key="x" * 32)
    doc = Path(__file__).resolve().parent.parent / "docs" / "permissions.md"
    permissions = importlib.import_module("api.permissions")
    text = permissions.render_doc(doc.read_text(encoding="utf-8"), create_app(settings).routes)
    doc.write_text(text, encoding="utf-8")
    print(f"wrote {doc}")


if __name__ == "__main__":  # pragma: no cover
    _main()
