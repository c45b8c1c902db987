"""One router per resource; `api/app.py` mounts them. Every router but health's carries the full
`/api/v1/...` prefix itself, so a route's path template (metrics label) is its real path."""

from typing import Annotated

from fastapi import Query

API_PREFIX = "/api/v1"


# The opaque `?cursor=` of every paginated list: its shape, so a client (and the conformance test)
# knows what may be sent. A well-formed cursor this API did not hand out is still a 422.
Cursor = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page, as it was given: an opaque token of 1 to 200 "
        "URL-safe base64 characters. One this API did not hand out is answered 422.",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
    ),
]
