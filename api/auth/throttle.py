"""Login throttling per account and per client address, with exponential backoff.

Failures are counted per account (the e-mail, whether or not it has an account, so throttling
does not reveal which do) and per address, over `login_failure_window_s`. Once a count reaches
its threshold, every further failure locks that account or address out for
`base * 2**(failures - threshold)` seconds (at most `login_backoff_max_s`). A locked-out login
is answered 429 with `Retry-After` before the password is even looked at. A successful login
clears its account's count (not the address's: one good account must not launder an address
that is guessing others).

The counters live in the rate limiter's storage (`limits`: memory, or Redis when configured),
so several API processes share them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from limits.aio.storage import Storage

from config.settings import ApiSettings


def _digest(value: str) -> str:
    # Keys never hold the e-mail itself (a shared Redis is not a place for personal data).
    return hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Lockout:
    retry_after_s: int
    reason: str  # "account" | "address"


class LoginThrottle:
    def __init__(self, settings: ApiSettings, storage: Storage) -> None:
        self.storage = storage
        self.enabled = settings.rate_limits_enabled
        self.window_s = settings.login_failure_window_s
        self.base_s = settings.login_backoff_base_s
        self.max_s = settings.login_backoff_max_s
        self.thresholds = {
            "account": settings.login_max_failures,
            "address": settings.login_max_failures_per_address,
        }

    def _keys(self, email: str, address: str) -> dict[str, str]:
        return {
            "account": f"login:account:{_digest(email.strip().casefold())}",
            "address": f"login:address:{_digest(address)}",
        }

    async def locked_out(self, email: str, address: str) -> Lockout | None:
        """The longest current lock-out of this account or address, if any."""
        if not self.enabled:
            return None
        worst: Lockout | None = None
        now = time.time()
        for kind, key in self._keys(email, address).items():
            if await self.storage.get(f"{key}:lock") > 0:
                remaining = max(1, math.ceil(await self.storage.get_expiry(f"{key}:lock") - now))
                if worst is None or remaining > worst.retry_after_s:
                    worst = Lockout(remaining, kind)
        return worst

    def backoff_s(self, failures: int, threshold: int) -> float:
        """How long the `failures`-th failure locks out, given the threshold (0 below it)."""
        if failures < threshold:
            return 0.0
        return float(min(self.base_s * 2 ** min(failures - threshold, 32), self.max_s))

    async def failed(self, email: str, address: str) -> None:
        """Count a failed login; lock out the account and/or address when past their thresholds."""
        if not self.enabled:
            return
        for kind, key in self._keys(email, address).items():
            failures = await self.storage.incr(f"{key}:failures", math.ceil(self.window_s))
            lock_s = self.backoff_s(failures, self.thresholds[kind])
            if lock_s > 0:
                await self.storage.clear(f"{key}:lock")
                await self.storage.incr(f"{key}:lock", max(1, math.ceil(lock_s)))

    async def succeeded(self, email: str, address: str) -> None:
        if not self.enabled:
            return
        key = self._keys(email, address)["account"]
        await self.storage.clear(f"{key}:failures")
        await self.storage.clear(f"{key}:lock")
