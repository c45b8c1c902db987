"""Consumer lag per pool: how many dispatched attempts the pool's consumer group has not read yet."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.topics import Topics

log = structlog.get_logger(__name__)


async def dispatch_lag(
    bootstrap_servers: str, topics: Topics, pools: list[str], timeout_s: float = 5.0
) -> dict[str, int | None]:
    """Messages behind per pool (None when Kafka cannot tell us in time)."""
    result: dict[str, int | None] = dict.fromkeys(pools)
    if not pools:
        return result
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            await probe.start()
            for pool in pools:
                topic = topics.dispatch(pool)
                described = (await admin.describe_topics([topic]))[0]
                if described.get("error_code", 0) or not described.get("partitions"):
                    continue  # no dispatch topic yet: nothing was ever dispatched to this pool
                tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
                ends = await probe.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(topics.worker_group(pool), partitions=tps)
                result[pool] = sum(
                    max(
                        ends[tp]
                        - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0),
                        0,
                    )
                    for tp in tps
                )
    except Exception as exc:  # lag is best effort: unknown is reported as None
        log.debug("could not read dispatch lag", error=repr(exc))
    finally:
        await _stop_quietly(probe)
        with contextlib.suppress(Exception):
            await admin.close()
    return result


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a group-less consumer. aiokafka lets the CancelledError of an internal task escape
    from `stop()`; swallow that one, but never a cancellation of our own task."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        log.debug("lag probe did not stop cleanly", error=repr(exc))
