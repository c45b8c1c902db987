"""The API's background Kafka connector stops at shutdown, even when a client swallowed the cancel."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

import api.app
from api.app import KafkaConnector


async def test_stop_ends_the_connector_even_if_the_probe_swallowed_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probing = asyncio.Event()

    async def probe_that_swallows_cancellation(servers: str, timeout_s: float = 3.0) -> bool:
        """Like a client whose inner timeout ended just as the task was cancelled (3.11's wait_for)."""
        probing.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return False
        return False

    monkeypatch.setattr(api.app, "kafka_answers", probe_that_swallows_cancellation)
    backbone = SimpleNamespace(settings=SimpleNamespace(kafka_bootstrap_servers="127.0.0.1:1"))
    connector = KafkaConnector(cast(Any, backbone))
    connector.start()
    await probing.wait()  # the cancel lands inside the probe
    await asyncio.wait_for(connector.stop(), 2)
    assert not connector.connected.is_set()
