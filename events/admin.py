"""Topic creation: the core topics at start-up, a pool's dispatch topic on first use.

With `configs` (the namespace's `Topics.retention`), every topic gets its retention explicitly:
new topics are created with it, and an existing topic whose config differs is altered to match
the first time this process ensures it (docs/decisions/0020)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

log = structlog.get_logger(__name__)


class TopicAdmin:
    """Creates topics that do not exist yet; remembers which it has seen to stay off the hot path."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int | Callable[[str], int],
        configs: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        # One count for every topic, or a count per topic name (events/partitions.py).
        self._partitions = partitions if callable(partitions) else _everywhere(partitions)
        self._configs = configs or (lambda _topic: {})
        self._known: set[str] = set()
        self._lock = asyncio.Lock()

    async def ensure(self, topics: list[str]) -> None:
        missing = [t for t in topics if t not in self._known]
        if not missing:
            return
        async with self._lock:
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=15000)
            try:
                await admin.start()  # inside the try: a client that failed to start is closed too
                existing = set(await admin.list_topics())
                to_create = [t for t in missing if t not in existing]
                if to_create:
                    try:
                        await admin.create_topics(
                            [
                                NewTopic(t, self._partitions(t), 1, topic_configs=self._configs(t))
                                for t in to_create
                            ],
                            timeout_ms=15000,
                        )
                        log.info(
                            "topics created",
                            topics=to_create,
                            partitions=[self._partitions(t) for t in to_create],
                        )
                    except TopicAlreadyExistsError:
                        pass  # another process created it between our list and create
                await self._wait_for_leaders(admin, to_create)
                await self._align_configs(admin, [t for t in missing if t in existing])
            finally:
                await admin.close()
            self._known.update(missing)

    async def _align_configs(self, admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        """Alter existing topics whose retention differs from `configs` (created before, or by hand)."""
        wanted = {t: self._configs(t) for t in topics}
        wanted = {t: c for t, c in wanted.items() if c}
        if not wanted:
            return
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(c)) for t, c in wanted.items()]
        )
        current: dict[str, dict[str, str]] = {}
        for response in described:
            for _error, _message, _type, name, entries in response.resources:
                current[name] = {entry[0]: entry[1] for entry in entries}
        stale = {t: c for t, c in wanted.items() if any(current.get(t, {}).get(k) != v for k, v in c.items())}
        if not stale:
            return
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, c) for t, c in stale.items()])
        log.info("topic retention aligned", topics=sorted(stale))

    @staticmethod
    async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
        """A new topic's partitions get leaders a moment after creation; producing earlier fails."""
        for _ in range(100):
            if not topics:
                return
            described = await admin.describe_topics(topics)
            if all(
                d.get("error_code", 0) == 0
                and d["partitions"]
                and all(p["leader"] >= 0 for p in d["partitions"])
                for d in described
            ):
                return
            await asyncio.sleep(0.05)


def _everywhere(count: int) -> Callable[[str], int]:
    def partitions(_topic: str) -> int:
        return count

    return partitions
