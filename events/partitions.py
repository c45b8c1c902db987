"""Partition counts per topic (`COMET_KAFKA_TOPIC_PARTITIONS=dispatch=12,webhooks=3`), over the
default `COMET_KAFKA_PARTITIONS` (docs/decisions/0026).

A topic's partitions bound its consumer group: each partition is read by one member at a time, so
a group of more members than partitions leaves the extra members idle on that topic. The run-keyed
topics analytics reads together (run-commands, stage-results, run-status) must keep one count, or
the same run's events would land on different partition numbers (faust joins them by partition).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from events.topics import TOPIC_RETENTION, Topics

MAX_PARTITIONS = 1000
# Topics keyed by run id that are read together by partition (events/analytics): one count.
CO_PARTITIONED = ("run-commands", "stage-results", "run-status")
_NAMES = frozenset(TOPIC_RETENTION)


def parse_topic_partitions(text: str) -> dict[str, int]:
    """`name=N,...` -> {name: N}; ValueError naming the bad item."""
    from schemas.pipeline import POOL_NAME

    found: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, count = (p.strip() for p in item.partition("="))
        pool = name.removeprefix("dispatch.")
        if not sep or not (name in _NAMES or (pool != name and POOL_NAME.fullmatch(pool))):
            raise ValueError(
                f"{item!r} is not TOPIC=N with TOPIC one of {', '.join(sorted(_NAMES))} or dispatch.POOL"
            )
        if not count.isdigit() or not 1 <= int(count) <= MAX_PARTITIONS:
            raise ValueError(f"{item!r}: the partitions must be a whole number from 1 to {MAX_PARTITIONS}")
        found[name] = int(count)
    named = {n: found[n] for n in CO_PARTITIONED if n in found}
    if named and (len(named) < len(CO_PARTITIONED) or len(set(named.values())) > 1):
        raise ValueError(f"{', '.join(CO_PARTITIONED)} must all be given, with one partition count")
    return found


def partitions_of(topics: Topics, default: int, overrides: Mapping[str, int]) -> Callable[[str], int]:
    """The partition count of each of `topics`' topics: its override, else `dispatch`'s for a pool's
    dispatch topic, else `default`."""

    def count(topic: str) -> int:
        name = topic.removeprefix(f"{topics.namespace}.")
        if name in overrides:
            return overrides[name]
        if name.startswith("dispatch.") and "dispatch" in overrides:
            return overrides["dispatch"]
        return default

    return count
