"""Shapes shared by every resource: the list envelope `Page[T]`, the RFC 9457 problem document,
and the opaque cursors lists are paginated with."""

from __future__ import annotations

import base64
import binascii
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

SHOWN_ONCE = "x-shown-once"
"""JSON-schema mark (`Field(json_schema_extra={SHOWN_ONCE: True})`) of a secret a response shows
once only: it is never stored with an idempotent answer, so a replay shows it as null."""


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `next_cursor` back as `?cursor=` for the next one (null: the end)."""

    data: list[T]
    next_cursor: str | None = None


class FieldProblem(BaseModel):
    field: str = Field(description="Where the bad value is, as a dotted path: `body.ref`, `query.limit`.")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 `application/problem+json`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem; stable, switch on it.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong this time, for a human.")
    instance: str = Field(description="The request path this problem occurred on.")
    request_id: str | None = Field(default=None, description="The request's X-Request-ID.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="For validation problems: each offending field."
    )


class CursorError(ValueError):
    """A cursor that this API did not hand out (or that was mangled on the way)."""


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The value inside an opaque cursor; raises CursorError for anything that is not one."""
    if len(cursor) > 200:
        raise CursorError("cursor is too long")
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("not a cursor returned by this API") from None
