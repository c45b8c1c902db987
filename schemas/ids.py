"""Identifiers: UUIDv7 (time-ordered) for every row and event Comet creates.

Within one process ids are strictly increasing, also within the same millisecond (RFC 9562
§6.2 method 2: the random tail of the previous id plus one), so ordering by id is ordering by
creation wherever it matters (cursor pagination, concurrency-group queues).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0
_RAND_B = (1 << 62) - 1


def _compose(ms: int, rand: int) -> int:
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & _RAND_B  # rand_b (62 bits)
    return value


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then 74 bits random (monotonic per process)."""
    global _last  # noqa: PLW0603 - the monotonic counter is process-wide by design
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = _compose(ms, int.from_bytes(os.urandom(10), "big"))
    with _lock:
        if now_ms is None and value <= _last and (_last & _RAND_B) != _RAND_B:
            value = _last + 1
        _last = max(_last, value)
    return uuid.UUID(int=value)
