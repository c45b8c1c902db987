"""Where the event log stands: each topic partition's end offset and each consumer group's
committed offsets, for a namespace. `comet backup` records them in its manifest (taken *before*
the database snapshot, so every event committed after the snapshot lies at or after them), and
`comet replay catch-up` reads the topics from there after a restore (docs/decisions/0020)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.topics import Topics

# topic -> partition -> offset
Offsets = dict[str, dict[int, int]]


@dataclass
class LogPosition:
    topics: Offsets = field(default_factory=dict)  # end offsets (the next offset to be written)
    groups: dict[str, Offsets] = field(default_factory=dict)  # committed offsets per group

    def to_json(self) -> dict[str, object]:
        return {
            "end_offsets": {t: {str(p): o for p, o in ps.items()} for t, ps in self.topics.items()},
            "group_offsets": {
                g: {t: {str(p): o for p, o in ps.items()} for t, ps in offs.items()}
                for g, offs in self.groups.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LogPosition:
        ends = data.get("end_offsets")
        groups = data.get("group_offsets")
        if not isinstance(ends, dict) or not isinstance(groups, dict):
            raise ValueError("no end_offsets / group_offsets")
        return cls(
            topics={str(t): {int(p): int(o) for p, o in ps.items()} for t, ps in ends.items()},
            groups={
                str(g): {str(t): {int(p): int(o) for p, o in ps.items()} for t, ps in offs.items()}
                for g, offs in groups.items()
            },
        )


async def namespace_partitions(bootstrap: str, topics: Topics) -> list[TopicPartition]:
    """The partitions of the namespace's core topics and of every pool's dispatch topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        await admin.start()
        existing = list(await admin.list_topics())
        names = [t for t in topics.core() if t in existing] + topics.dispatch_topics(existing)
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return sorted(
        (TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def end_offsets(bootstrap: str, partitions: list[TopicPartition]) -> Offsets:
    found: Offsets = {}
    for tp in partitions:
        found.setdefault(tp.topic, {})
    if not partitions:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        await consumer.start()
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    for tp, offset in ends.items():
        found[tp.topic][tp.partition] = offset
    return found


async def group_offsets(bootstrap: str, topics: Topics) -> dict[str, Offsets]:
    """Committed offsets of the namespace's consumer groups (events/topics.py names them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    found: dict[str, Offsets] = {}
    try:
        await admin.start()
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if topics.owns_group(g[0]))
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            per_topic: Offsets = {}
            for tp, meta in offsets.items():
                per_topic.setdefault(tp.topic, {})[tp.partition] = meta.offset
            found[group] = per_topic
    finally:
        await admin.close()
    return found


async def log_position(bootstrap: str, topics: Topics) -> LogPosition:
    """The namespace's end offsets and its groups' committed offsets, now."""
    partitions = await namespace_partitions(bootstrap, topics)
    return LogPosition(
        topics=await end_offsets(bootstrap, partitions), groups=await group_offsets(bootstrap, topics)
    )
