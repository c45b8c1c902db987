"""`comet replay verify`: the derived tables of two databases compared row by row (a merge of both
sides in primary-key order, in chunks), for a readable diff — table, key, column: here vs there.

Columns no event describes are left out (`projection.NOT_DERIVED`: a worker's lease and
heartbeat, how much log it shipped): they differ between a live database and a rebuilt one by
design."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from db import projection
from db.rebuild import connect

CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Difference:
    table: str
    key: str
    column: str  # "" when the row is missing on one side
    here: Any
    there: Any

    def line(self) -> str:
        if not self.column:
            side = "only here" if self.there is None else "only there"
            return f"{self.table} {self.key}: {side}"
        return f"{self.table} {self.key} {self.column}: here {self.here!r} vs there {self.there!r}"


@dataclass(slots=True)
class Comparison:
    rows: dict[str, int] = field(default_factory=dict)  # rows compared per table (here)
    differences: list[Difference] = field(default_factory=list)
    total_differences: int = 0

    @property
    def identical(self) -> bool:
        return self.total_differences == 0


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    skip = projection.NOT_DERIVED[table]
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [r["column_name"] for r in rows if r["column_name"] not in skip]


async def _rows(conn: asyncpg.Connection, table: str, columns: list[str]) -> AsyncIterator[asyncpg.Record]:
    names = ", ".join(f'"{c}"' for c in columns)
    after = None
    while True:
        if after is None:
            chunk = await conn.fetch(f"SELECT {names} FROM {table} ORDER BY id LIMIT $1", CHUNK)  # noqa: S608
        else:
            chunk = await conn.fetch(
                f"SELECT {names} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2",  # noqa: S608
                after,
                CHUNK,
            )
        if not chunk:
            return
        for row in chunk:
            yield row
        after = chunk[-1]["id"]


async def compare(
    here_url: str,
    there_url: str,
    *,
    shown: int = 50,
    on_rows: Callable[[int], None] = lambda _n: None,
) -> Comparison:
    """Compare the derived tables of `here_url` and `there_url`; keep the first `shown` differences."""
    result = Comparison()
    here, there = await connect(here_url), await connect(there_url)
    try:
        for table in (t.name for t in projection.DERIVED_TABLES):
            columns = await _columns(here, table)
            missing = set(columns) - set(await _columns(there, table))
            if missing:
                raise ValueError(
                    f"{table} has no column {sorted(missing)[0]} there: are both databases migrated?"
                )
            result.rows[table] = await _compare_table(result, table, columns, here, there, shown, on_rows)
    finally:
        await here.close()
        await there.close()
    return result


async def _compare_table(
    result: Comparison,
    table: str,
    columns: list[str],
    here: asyncpg.Connection,
    there: asyncpg.Connection,
    shown: int,
    on_rows: Callable[[int], None],
) -> int:
    def differ(diff: Difference) -> None:
        result.total_differences += 1
        if len(result.differences) < shown:
            result.differences.append(diff)

    left, right = _rows(here, table, columns).__aiter__(), _rows(there, table, columns).__aiter__()
    a, b = await anext(left, None), await anext(right, None)
    count = 0
    while a is not None or b is not None:
        if b is None or (a is not None and a["id"] < b["id"]):
            assert a is not None
            differ(Difference(table, str(a["id"]), "", True, None))
            a = await anext(left, None)
            count += 1
        elif a is None or b["id"] < a["id"]:
            differ(Difference(table, str(b["id"]), "", None, True))
            b = await anext(right, None)
        else:
            for column in columns:
                if a[column] != b[column]:
                    differ(Difference(table, str(a["id"]), column, a[column], b[column]))
            a, b = await anext(left, None), await anext(right, None)
            count += 1
        if count and count % CHUNK == 0:
            on_rows(CHUNK)
    on_rows(count % CHUNK)
    return count
