"""Gateway concerns without a database: HSTS only over TLS, CORS closed unless configured, rate
limits answering 429 with Retry-After, and the login throttle's exponential backoff."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from limits.aio.storage import MemoryStorage

from api.app import create_app
from api.auth.throttle import LoginThrottle
from api.ratelimit import RateLimited, RateLimiter, make_storage
from config.settings import ApiSettings

UNREACHABLE: dict[str, Any] = {
    "database_url": "postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
    "kafka_bootstrap_servers": "127.0.0.1:1",
}


def _settings(**values: Any) -> ApiSettings:
    return ApiSettings(jwt_secret="j" * 64, secret_key="k" * 64, **UNREACHABLE, **values)


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://comet.test")


async def _get(settings: ApiSettings, path: str, *, method: str = "GET", **kwargs: Any) -> httpx.Response:
    async with _client(create_app(settings)) as client:
        return await client.request(method, path, **kwargs)


async def test_hsts_is_sent_only_when_served_over_tls() -> None:
    plain = await _get(_settings(), "/healthz")
    assert "strict-transport-security" not in plain.headers
    tls = await _get(_settings(tls=True, hsts_max_age_s=31536000), "/healthz")
    assert tls.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert tls.headers["x-content-type-options"] == "nosniff"


async def test_cors_is_closed_by_default() -> None:
    preflight = await _get(
        _settings(),
        "/api/v1/projects",
        method="OPTIONS",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    simple = await _get(_settings(), "/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_allows_only_the_configured_origins() -> None:
    settings = _settings(cors_origins="https://ci.example.com")
    headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = await _get(
        settings,
        "/api/v1/projects",
        method="OPTIONS",
        headers={"Origin": "https://ci.example.com", **headers},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ci.example.com"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    other = await _get(
        settings, "/api/v1/projects", method="OPTIONS", headers={"Origin": "https://evil.example", **headers}
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_a_malformed_origin_or_rate_stops_start_up() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        _settings(cors_origins="ci.example.com")
    with pytest.raises(ValueError, match="is not a rate"):
        _settings(rate_limit_webhook="fast")


async def test_a_rate_limited_route_answers_429_with_retry_after_once_over_the_limit() -> None:
    app = create_app(_settings(rate_limit_webhook="3/minute"))

    @app.post("/test/hook", dependencies=[Depends(RateLimited("webhook"))])
    async def hook() -> dict[str, bool]:
        return {"ok": True}

    async with _client(app) as client:
        statuses = [(await client.post("/test/hook")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = await client.post("/test/hook")
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-limit"] == "3"


async def test_rate_limits_can_be_switched_off() -> None:
    limiter = RateLimiter(_settings(rate_limit_auth="1/minute", rate_limits_enabled=False))
    verdicts = [await limiter.hit("auth", "1.2.3.4") for _ in range(5)]
    assert all(v.allowed for v in verdicts)


async def test_limits_are_counted_per_identity_and_per_bucket() -> None:
    limiter = RateLimiter(_settings(rate_limit_auth="2/minute", rate_limit_trigger="2/minute"))
    for _ in range(2):
        assert (await limiter.hit("auth", "a")).allowed
    assert not (await limiter.hit("auth", "a")).allowed
    assert (await limiter.hit("auth", "b")).allowed
    assert (await limiter.hit("trigger", "a")).allowed


def test_the_store_is_memory_unless_a_redis_url_is_set() -> None:
    assert isinstance(make_storage(_settings()), MemoryStorage)


# -- login throttle -------------------------------------------------------------------------------
def _throttle(**values: Any) -> LoginThrottle:
    settings = _settings(**{"login_max_failures": 3, "login_max_failures_per_address": 10, **values})
    return LoginThrottle(settings, MemoryStorage())


def test_backoff_doubles_after_the_threshold_up_to_the_maximum() -> None:
    throttle = _throttle(login_backoff_base_s=1, login_backoff_max_s=60)
    assert [throttle.backoff_s(n, 3) for n in range(1, 11)] == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert throttle.backoff_s(10_000, 3) == 60


async def test_an_account_is_locked_out_after_its_threshold_and_a_success_clears_it() -> None:
    throttle = _throttle(login_backoff_base_s=30)
    for _ in range(2):
        await throttle.failed("Dev@Example.com", "10.0.0.1")
        assert await throttle.locked_out("dev@example.com", "10.0.0.1") is None
    await throttle.failed("dev@example.com", "10.0.0.2")
    lockout = await throttle.locked_out("DEV@example.com", "10.0.0.9")
    assert lockout is not None
    assert lockout.reason == "account"
    assert 29 <= lockout.retry_after_s <= 30
    assert await throttle.locked_out("other@example.com", "10.0.0.9") is None
    await throttle.succeeded("dev@example.com", "10.0.0.9")
    assert await throttle.locked_out("dev@example.com", "10.0.0.9") is None


async def test_an_address_guessing_many_accounts_is_locked_out() -> None:
    throttle = _throttle(login_backoff_base_s=5)
    for i in range(10):
        await throttle.failed(f"user{i}@example.com", "192.0.2.7")
    lockout = await throttle.locked_out("someone-new@example.com", "192.0.2.7")
    assert lockout is not None
    assert lockout.reason == "address"
    assert await throttle.locked_out("someone-new@example.com", "192.0.2.8") is None


async def test_each_failure_past_the_threshold_locks_out_for_longer() -> None:
    throttle = _throttle(login_backoff_base_s=10, login_backoff_max_s=1000)
    waits = []
    for _ in range(5):
        await throttle.failed("x@example.com", "203.0.113.1")
        lockout = await throttle.locked_out("x@example.com", "203.0.113.1")
        waits.append(0 if lockout is None else lockout.retry_after_s)
    assert waits[:2] == [0, 0]
    assert waits[2] <= 10 < waits[3] <= 20 < waits[4] <= 40
