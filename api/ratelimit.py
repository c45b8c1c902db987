"""Rate limits for the API's hot doors (auth, trigger, webhook), on the `limits` library: a moving
window per bucket, in process memory by default, in Redis when `COMET_REDIS_URL` is set (so several
API processes share one count). Over the limit answers 429 with `Retry-After`.

Routes use the dependencies:

    @router.post("/webhooks/github", dependencies=[Depends(RateLimited("webhook"))])  # per address
    @router.post("/things", dependencies=[Depends(RateLimitedPerUser("trigger"))])    # per user

Triggering, cancelling and retrying runs are limited per user by the permission check itself
(`api/access.py`), so those routes need nothing more. The same storage backs the login throttle
(`api/auth/throttle.py`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from api.deps import CurrentPrincipal
from api.errors import TooManyRequests
from config.settings import ApiSettings

Bucket = Literal["auth", "trigger", "webhook"]


def make_storage(settings: ApiSettings) -> Storage:
    """Redis when `COMET_REDIS_URL` is set (shared by every API process), else this process's memory."""
    if settings.redis_url:
        url = settings.redis_url
        scheme = url if url.startswith("async+") else "async+" + url
        storage = storage_from_string(scheme, implementation="redispy")
        assert isinstance(storage, Storage)
        return storage
    return MemoryStorage()


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


class RateLimiter:
    """The app's limiter: one moving window per bucket and identity."""

    def __init__(self, settings: ApiSettings, storage: Storage | None = None) -> None:
        self.enabled = settings.rate_limits_enabled
        self.storage = storage or make_storage(settings)
        self._limiter = MovingWindowRateLimiter(self.storage)
        self.items: Mapping[str, RateLimitItem] = {
            "auth": parse(settings.rate_limit_auth),
            "trigger": parse(settings.rate_limit_trigger),
            "webhook": parse(settings.rate_limit_webhook),
        }

    async def hit(self, bucket: str, identity: str) -> Verdict:
        item = self.items[bucket]
        if not self.enabled:
            return Verdict(True, item.amount, item.amount, 0)
        allowed = await self._limiter.hit(item, bucket, identity)
        stats = await self._limiter.get_window_stats(item, bucket, identity)
        retry = 0 if allowed else max(1, math.ceil(stats.reset_time - time.time()))
        return Verdict(allowed, item.amount, stats.remaining, retry)

    async def aclose(self) -> None:
        """Close the Redis connections, if the counts live there (memory needs nothing)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()

    async def enforce(self, bucket: str, identity: str, what: str) -> None:
        """Count one request; `TooManyRequests` with `Retry-After` once over the limit."""
        verdict = await self.hit(bucket, identity)
        if not verdict.allowed:
            raise TooManyRequests(
                f"Too many {what}; retry in {verdict.retry_after_s} s.",
                headers={
                    "Retry-After": str(verdict.retry_after_s),
                    "RateLimit-Limit": str(verdict.limit),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(verdict.retry_after_s),
                },
            )


def limiter_of(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def client_address(request: Request) -> str:
    """The caller's address as the server saw it (uvicorn resolves trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


_WHAT: Mapping[str, str] = {
    "auth": "authentication attempts",
    "trigger": "run requests",
    "webhook": "webhook deliveries",
}


class RateLimited:
    """A dependency counting each request against `bucket`, per client address."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def __call__(self, request: Request) -> None:
        await limiter_of(request).enforce(self.bucket, client_address(request), _WHAT[self.bucket])


async def enforce_for_user(request: Request, bucket: str, user_id: object) -> None:
    await limiter_of(request).enforce(bucket, f"user:{user_id}", _WHAT.get(bucket, "requests"))


class RateLimitedPerUser:
    """A dependency counting each request against `bucket`, per authenticated user."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def __call__(self, request: Request, principal: CurrentPrincipal) -> None:
        await enforce_for_user(request, self.bucket, principal.user_id)
