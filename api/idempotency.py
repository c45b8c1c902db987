"""`Idempotency-Key` on the POSTs that create something (CONTRACT §4): a retry with the same key
and body within 24 hours gets the first successful answer again and creates nothing; the same key
with another request (body, or endpoint) is a 422. Without the header nothing changes.

A creating route declares the dependency and ends with `commit` instead of `session.commit()`:

    async def create_thing(body: ThingCreate, session: SessionDep, idempotent: Idempotent) -> Thing:
        thing = await things.create(session, ...)
        answer = Thing(...)
        await idempotent.commit(answer, location=f"{API_PREFIX}/things/{thing.id}")
        return answer

How it holds:
- The dependency (after authentication: a key belongs to its principal, see `scope_of`) takes a
  transaction lock on (scope, key), then looks for a live record. Found: the stored answer is sent
  again (`Replay`, with `Idempotent-Replayed: true`) if the fingerprint matches, else a 422; the
  handler does not run. Two identical requests racing therefore run one after the other, and the
  second replays the first's answer.
- `commit` stores the record in the handler's own transaction, then commits: the resource and
  its record are durable together (a process killed right after the commit still leaves the
  record for the client's retry). Should the insert meet a record stored by another transaction
  anyway, everything is rolled back and the winner's stored answer is sent.
- Only answers that reach `commit` are remembered: an error (4xx) raised before it stores nothing,
  so the client can fix the request and retry with the same key.
- Fields a response shows once (`SHOWN_ONCE`: a new API token, a webhook secret) are stored as
  null: a replay says what was created but never shows a secret again
  (docs/decisions/0011-idempotency-keys.md).
- Expired records are deleted when their key is looked up again, and in bounded batches whenever
  a record is stored (`db/repositories/idempotency.py`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import Depends, FastAPI, Header, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from api.deps import CurrentPrincipal, Principal, SessionDep
from api.errors import PROBLEM_JSON, Conflict, ValidationFailed
from db.repositories import idempotency
from db.repositories.errors import AlreadyExistsError
from db.repositories.idempotency import StoredAnswer
from schemas.api.common import SHOWN_ONCE

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
KEY_FIELD = f"header.{KEY_HEADER}"

KEY_DESCRIPTION = (
    "Makes the request safe to retry: any printable ASCII string of up to 255 characters that "
    "names this one request (a fresh UUID is a good choice). A retry with the same key and the "
    "same body within 24 hours creates nothing and gets the first successful answer again, marked "
    f"`{REPLAYED_HEADER}: true`; secrets that answer showed once are null in the replay. The same "
    "key with another body or on another endpoint is a 422. Error answers are not remembered: fix "
    "the request and retry with the same key. Keys are per user (and per API token)."
)
_422_DESCRIPTION = (
    f"Invalid fields, an invalid `{KEY_HEADER}`, or an `{KEY_HEADER}` already used with another "
    "request (problem type `urn:comet:problem:idempotency-key-reused`)."
)


class IdempotencyKeyReused(ValidationFailed):
    slug = "idempotency-key-reused"
    default_detail = (
        f"This {KEY_HEADER} was already used with another request (another body or endpoint); "
        "use a new key for a new request."
    )


class Replay(Exception):
    """Raised to answer with a stored answer instead of running the handler."""

    def __init__(self, answer: StoredAnswer) -> None:
        super().__init__(answer.status_code)
        self.answer = answer


# -- the pure parts -------------------------------------------------------------------------------
def validate_key(value: str) -> str:
    """The key if it is 1-255 printable ASCII characters, else a 422 naming the header."""
    if not value:
        problem = "must not be empty"
    elif len(value) > MAX_KEY_LENGTH:
        problem = f"must be at most {MAX_KEY_LENGTH} characters"
    elif not all(" " <= c <= "~" for c in value):
        problem = "must be printable ASCII"
    else:
        return value
    raise ValidationFailed(f"The {KEY_HEADER} header {problem}.", errors=[(KEY_FIELD, problem)])


def canonical_body(body: bytes) -> str:
    """The body as canonical JSON (sorted keys, no white space), so that key order and spacing do
    not make two equal requests differ. A body that is not JSON is kept as the hash of its bytes
    (such a request fails validation anyway and is never remembered)."""
    if not body.strip():
        return ""
    try:
        value = json.loads(body)
    except ValueError:
        return "bytes:" + hashlib.sha256(body).hexdigest()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """SHA-256 (hex) of what makes a request this request: method, path (and query parameters, in
    sorted order), canonical body."""
    target = path
    if query:
        target += "?" + urlencode(sorted(parse_qsl(query, keep_blank_values=True)))
    text = f"{method.upper()}\n{target}\n{canonical_body(body)}"
    return hashlib.sha256(text.encode()).hexdigest()


def scope_of(principal: Principal) -> str:
    """Whose key it is: the user, and the personal API token when one was used."""
    scope = f"user:{principal.user_id}"
    if principal.api_token_id is not None:
        scope += f":token:{principal.api_token_id}"
    return scope


def remembered_body(answer: BaseModel) -> dict[str, Any]:
    """The answer as it is stored and replayed: its JSON, with fields shown once set to null."""
    body: dict[str, Any] = answer.model_dump(mode="json", by_alias=True)
    for name, field in type(answer).model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get(SHOWN_ONCE):
            body[field.alias or name] = None
    return body


@dataclass(frozen=True, slots=True)
class Claim:
    scope: str
    key: str
    fingerprint: str


def _outcome(stored: StoredAnswer | None, claim: Claim) -> Exception:
    if stored is None:  # the winner's record expired in between: nothing to replay
        return Conflict(f"A concurrent request with this {KEY_HEADER} finished first; retry.")
    if stored.fingerprint != claim.fingerprint:
        return IdempotencyKeyReused(errors=[(KEY_FIELD, "was already used with another request")])
    return Replay(stored)


# -- the dependency -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """What a creating handler gets: `commit` ends its transaction, storing the answer with it
    when the request carries a key."""

    session: AsyncSession
    response: Response
    status_code: int
    claim: Claim | None

    async def commit(self, answer: BaseModel, *, location: str | None = None) -> None:
        """Set `Location` (when given), store the answer for the key (if any) and commit."""
        headers = {"Location": location} if location is not None else {}
        self.response.headers.update(headers)
        if self.claim is None:
            await self.session.commit()
            return
        stored = StoredAnswer(self.claim.fingerprint, self.status_code, remembered_body(answer), headers)
        await self.session.flush()  # the handler's own writes fail as its errors, not as a lost race
        try:
            await idempotency.save(self.session, self.claim.scope, self.claim.key, stored)
            await self.session.commit()
        except AlreadyExistsError:
            # Another transaction stored this key first: undo what this one created, answer theirs.
            await self.session.rollback()
            winner = await idempotency.find_live(self.session, self.claim.scope, self.claim.key)
            raise _outcome(winner, self.claim) from None


def _route_status(request: Request) -> int:
    status: int = getattr(request.scope.get("route"), "status_code", None) or 200
    if not 200 <= status < 300:
        raise RuntimeError(f"an idempotent route answers {status}: only successes are remembered")
    return status


async def idempotent_request(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    session: SessionDep,
    key: Annotated[str | None, Header(alias=KEY_HEADER, description=KEY_DESCRIPTION)] = None,
) -> IdempotentRequest:
    """No key: the handler runs as usual. A key: lock (scope, key) for this transaction, then
    replay a live record (or 422 when it was for another request), or let the handler run."""
    status_code = _route_status(request)
    if key is None:
        return IdempotentRequest(session, response, status_code, None)
    claim = Claim(
        scope_of(principal),
        validate_key(key),
        fingerprint(request.method, request.url.path, request.url.query, await request.body()),
    )
    await idempotency.lock(session, claim.scope, claim.key)
    stored = await idempotency.find_live(session, claim.scope, claim.key)
    if stored is not None:
        raise _outcome(stored, claim)
    return IdempotentRequest(session, response, status_code, claim)


Idempotent = Annotated[IdempotentRequest, Depends(idempotent_request)]


# -- the app's side ---------------------------------------------------------------------------------
async def _replay(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    answer = exc.answer
    return Response(
        orjson.dumps(answer.body),
        status_code=answer.status_code,
        headers={**answer.headers, REPLAYED_HEADER: "true"},
        media_type="application/json",
    )


def _document(app: FastAPI) -> None:
    """In the OpenAPI schema, every operation taking the key says that its success may be a
    replay (the `Idempotent-Replayed` header) and when it answers 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                parameters = operation.get("parameters", [])
                if not any(p.get("in") == "header" and p.get("name") == KEY_HEADER for p in parameters):
                    continue
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if str(status).startswith("2"):
                        response.setdefault("headers", {})[REPLAYED_HEADER] = {
                            "description": f"`true` when this is the stored answer to an earlier "
                            f"request with the same `{KEY_HEADER}`.",
                            "schema": {"type": "string", "enum": ["true"]},
                        }
                problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
                responses.setdefault("422", {"content": problem})["description"] = _422_DESCRIPTION
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Answer `Replay` with the stored answer, and document the key's effects in OpenAPI."""
    app.add_exception_handler(Replay, _replay)
    _document(app)
