"""Partition counts per topic: parsed from `COMET_KAFKA_TOPIC_PARTITIONS`, looked up by topic name."""

from __future__ import annotations

import pytest

from config.settings import CommonSettings, SettingsError, load
from events.partitions import parse_topic_partitions, partitions_of
from events.topics import Topics


def test_each_topic_gets_its_override_a_pools_dispatch_topic_the_dispatch_one_and_the_rest_the_default() -> (
    None
):
    topics = Topics("ns")
    count = partitions_of(topics, 6, parse_topic_partitions("dispatch=12, dispatch.gpu=2, webhooks=3"))

    assert count(topics.dispatch("linux")) == 12
    assert count(topics.dispatch("gpu")) == 2
    assert count(topics.webhooks) == 3
    assert count(topics.stage_results) == 6


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("dispatch", "'dispatch' is not TOPIC=N"),
        ("queues=3", "'queues=3' is not TOPIC=N"),
        ("dispatch.Bad Pool=3", "is not TOPIC=N"),
        ("dispatch=0", "'dispatch=0': the partitions must be a whole number from 1 to 1000"),
        ("webhooks=x", "must be a whole number"),
        ("run-status=12", "run-commands, stage-results, run-status must all be given"),
        ("run-status=12,run-commands=12,stage-results=6", "with one partition count"),
    ],
)
def test_a_bad_partition_setting_is_refused_naming_the_item(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace(".", r"\.")):
        parse_topic_partitions(text)


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMET_KAFKA_TOPIC_PARTITIONS", "run-status=12,run-commands=12,stage-results=12")
    assert load(CommonSettings).kafka_topic_partitions == {
        "run-status": 12,
        "run-commands": 12,
        "stage-results": 12,
    }
    monkeypatch.setenv("COMET_KAFKA_TOPIC_PARTITIONS", "nope=1")
    with pytest.raises(SettingsError, match=r"^COMET_KAFKA_TOPIC_PARTITIONS: 'nope=1' is not TOPIC=N"):
        load(CommonSettings)
