"""Dead letters (admin): list and inspect what consumers set aside, redrive a letter through normal
consumption, or discard it (kept, marked with who and when). The logic is in `events/dlq.py`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import BackboneDep, CurrentAdmin, SessionDep
from api.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed, problem_responses
from api.routes import API_PREFIX, Cursor
from db.models import DeadLetter
from db.repositories import dead_letters as repo
from db.repositories.dead_letters import LetterKind, LetterState
from events import dlq
from events.producer import PublishError
from schemas.api.common import CursorError, Page, decode_cursor, encode_cursor
from schemas.api.dead_letters import (
    DeadLetterDetail,
    DeadLetterOut,
    LetterKindName,
    LetterStateName,
    PayloadPreview,
    RedriveAccepted,
)

router = APIRouter(prefix=API_PREFIX, tags=["dead letters"])


def _out(letter: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=letter.id,
        state=repo.state_of(letter).value,
        consumer=letter.consumer,
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        kind="handler_failed" if letter.kind == LetterKind.HANDLER_FAILED else "undecodable",
        reason=letter.reason,
        key=dlq.show_key(letter.key),
        event_id=letter.event_id,
        event_type=letter.event_type,
        run_id=letter.run_id,
        created_at=letter.created_at,
        redriven_at=letter.redriven_at,
        redriven_by=letter.redriven_by,
        redrive_count=letter.redrive_count,
        discarded_at=letter.discarded_at,
        discarded_by=letter.discarded_by,
    )


@router.get(
    "/dead-letters",
    summary="Dead letters (admin)",
    description="Messages consumers set aside (undecodable, or poison events their handler kept "
    "failing on), newest first, with the reason. Filter by consumer group, topic, kind and state.",
    response_model=Page[DeadLetterOut],
    responses=problem_responses(401, 403, 422),
)
async def list_dead_letters(
    _: CurrentAdmin,
    session: SessionDep,
    consumer: Annotated[str | None, Query(max_length=255, description="Only this consumer group.")] = None,
    topic: Annotated[str | None, Query(max_length=255, description="Only this topic.")] = None,
    kind: Annotated[LetterKindName | None, Query(description="Only this kind.")] = None,
    state: Annotated[LetterStateName | None, Query(description="Only letters in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> Page[DeadLetterOut]:
    try:
        before = uuid.UUID(decode_cursor(cursor)) if cursor is not None else None
    except (CursorError, ValueError):
        raise ValidationFailed(errors=[("query.cursor", "is not a cursor returned by this API")]) from None
    rows = await repo.list_letters(
        session,
        limit=limit + 1,
        before=before,
        consumer=_text(consumer, "consumer"),
        topic=_text(topic, "topic"),
        kind=None if kind is None else LetterKind(kind),
        state=None if state is None else LetterState(state),
    )
    page = rows[:limit]
    next_cursor = encode_cursor(str(page[-1].id)) if len(rows) > limit else None
    return Page[DeadLetterOut](data=[_out(r) for r in page], next_cursor=next_cursor)


def _text(value: str | None, name: str) -> str | None:
    # A NUL byte cannot be stored in Postgres text, so no letter can match it: say so, never a 500.
    if value is not None and "\x00" in value:
        raise ValidationFailed(errors=[(f"query.{name}", "must not contain a NUL character")])
    return value


@router.get(
    "/dead-letters/{letter_id}",
    summary="One dead letter with a preview of its payload (admin)",
    description="The payload is decoded as today's code would (upcast to the current schema "
    "version) when it can be, and shown as text or base64 either way (the first 64 KiB).",
    response_model=DeadLetterDetail,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_dead_letter(_: CurrentAdmin, session: SessionDep, letter_id: uuid.UUID) -> DeadLetterDetail:
    letter = await repo.get(session, letter_id)
    if letter is None:
        raise NotFound(f"There is no dead letter {letter_id}.")
    p = dlq.preview(letter.value)
    return DeadLetterDetail(
        **_out(letter).model_dump(),
        payload=PayloadPreview(
            size=p.size,
            truncated=p.truncated,
            event=p.event,
            decode_error=p.decode_error,
            text=p.text,
            base64=p.base64,
        ),
    )


@router.post(
    "/dead-letters/{letter_id}/redrive",
    summary="Redrive a dead letter (admin, audited)",
    description="Re-publishes the stored message to its original topic, so it goes through normal "
    "consumption again (consumers' inboxes make a second copy harmless), and marks it redriven "
    "(202). 409 when it was already redriven or discarded; 503 when Kafka did not acknowledge "
    "(nothing is marked; try again).",
    status_code=202,
    response_model=RedriveAccepted,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def redrive_dead_letter(
    admin: CurrentAdmin, session: SessionDep, backbone: BackboneDep, letter_id: uuid.UUID
) -> RedriveAccepted:
    try:
        done = await dlq.redrive(
            session, backbone.producer, letter_id, by=admin.user.email, actor_id=admin.user_id
        )
    except dlq.DeadLetterNotFoundError:
        raise NotFound(f"There is no dead letter {letter_id}.") from None
    except dlq.DeadLetterConflictError as exc:
        raise Conflict(f"{exc}.") from None
    except PublishError:
        raise ServiceUnavailable(
            "Kafka did not acknowledge the message; the letter is still waiting. Try again.",
            headers={"Retry-After": "5"},
        ) from None
    await session.commit()
    return RedriveAccepted(
        id=done.id, state="redriven", topic=done.topic, redriven_at=done.at, redriven_by=done.by
    )


@router.delete(
    "/dead-letters/{letter_id}",
    summary="Discard a dead letter (admin, audited)",
    description="The letter is kept, marked discarded with who and when, and no longer counts as "
    "waiting. 409 when it was already redriven or discarded.",
    response_model=DeadLetterOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def discard_dead_letter(
    admin: CurrentAdmin, session: SessionDep, letter_id: uuid.UUID
) -> DeadLetterOut:
    try:
        letter = await dlq.discard(session, letter_id, by=admin.user.email, actor_id=admin.user_id)
    except dlq.DeadLetterNotFoundError:
        raise NotFound(f"There is no dead letter {letter_id}.") from None
    except dlq.DeadLetterConflictError as exc:
        raise Conflict(f"{exc}.") from None
    out = _out(letter)
    await session.commit()
    return out
