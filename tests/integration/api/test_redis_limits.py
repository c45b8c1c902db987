"""With COMET_REDIS_URL set, rate limits and the login throttle live in Redis, so every API process
counts against the same limits. Runs a real `redis-server` on a free port (`make test` installs
Debian's redis-server when it is missing; without it this fails rather than skips)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth.throttle import LoginThrottle
from api.ratelimit import RateLimiter
from config.settings import ApiSettings
from tests.integration.api.conftest import settings_for

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
async def redis_url() -> AsyncIterator[str]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; `make test` installs Debian's redis-server")
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def _settings(redis_url: str, **values: Any) -> ApiSettings:
    return ApiSettings(jwt_secret="j" * 64, secret_key="k" * 64, redis_url=redis_url, **values)


async def test_two_api_processes_share_one_count_in_redis(redis_url: str) -> None:
    settings = _settings(redis_url, rate_limit_webhook="3/minute")
    first, second = RateLimiter(settings), RateLimiter(settings)
    try:
        assert type(first.storage).__name__ == "RedisStorage"
        assert await first.storage.check()
        verdicts = [await first.hit("webhook", "192.0.2.10"), await second.hit("webhook", "192.0.2.10")]
        verdicts += [await first.hit("webhook", "192.0.2.10"), await second.hit("webhook", "192.0.2.10")]
    finally:
        await first.aclose()
        await second.aclose()
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert 1 <= verdicts[-1].retry_after_s <= 60


async def test_the_login_throttle_locks_out_across_processes_in_redis(redis_url: str) -> None:
    settings = _settings(redis_url, login_max_failures=2, login_backoff_base_s=20)
    limiters = RateLimiter(settings), RateLimiter(settings)
    first, second = (LoginThrottle(settings, limiter.storage) for limiter in limiters)
    try:
        await first.failed("shared@example.com", "192.0.2.20")
        await second.failed("shared@example.com", "192.0.2.21")
        lockout = await first.locked_out("shared@example.com", "192.0.2.22")
        assert lockout is not None
        assert 15 <= lockout.retry_after_s <= 21  # Redis keeps whole seconds
        await second.succeeded("shared@example.com", "192.0.2.22")
        assert await first.locked_out("shared@example.com", "192.0.2.22") is None
    finally:
        for limiter in limiters:
            await limiter.aclose()


async def test_the_api_counts_in_redis_when_comet_redis_url_is_set(api_db_url: str, redis_url: str) -> None:
    app = create_app(settings_for(api_db_url, redis_url=redis_url, rate_limit_auth="2/minute"))
    transport = httpx.ASGITransport(app, client=("192.0.2.30", 1234))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        body = {"refresh_token": "cmr_" + "x" * 43}
        statuses = [(await client.post("/api/v1/auth/refresh", json=body)).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
