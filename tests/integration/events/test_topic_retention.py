"""Every topic's Kafka retention is set explicitly from `TOPIC_RETENTION`, at creation and, for a
topic that exists with another config, by altering it at start."""

from __future__ import annotations

import secrets

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events.admin import TopicAdmin
from events.topics import TOPIC_RETENTION, Topics
from tests.integration.conftest import KAFKA

pytestmark = pytest.mark.integration


async def _configs(topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(["retention.ms", "cleanup.policy"]))
                for t in topics
            ]
        )
    finally:
        await admin.close()
    return {
        name: {entry[0]: entry[1] for entry in entries}
        for response in described
        for _e, _m, _t, name, entries in response.resources
    }


async def test_topics_are_created_with_their_retention_and_an_altered_one_is_set_back_at_start(
    services_up: None,
) -> None:
    topics = Topics(f"rt{secrets.token_hex(4)}")
    names = [*topics.core(), topics.dispatch("default")]
    await TopicAdmin(KAFKA, partitions=1, configs=topics.retention).ensure(names)

    created = await _configs(names)
    assert created[topics.webhooks] == TOPIC_RETENTION["webhooks"]
    assert created[topics.dead_letters] == TOPIC_RETENTION["dead-letters"]
    assert created[topics.dispatch("default")] == TOPIC_RETENTION["dispatch"]

    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.run_status, {"retention.ms": "60000"})]
        )
    finally:
        await admin.close()
    assert (await _configs([topics.run_status]))[topics.run_status]["retention.ms"] == "60000"

    await TopicAdmin(KAFKA, partitions=1, configs=topics.retention).ensure(topics.core())

    assert (await _configs([topics.run_status]))[topics.run_status] == TOPIC_RETENTION["run-status"]
