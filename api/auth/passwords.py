"""Password hashing (Argon2id at OWASP's recommended parameters) and the password policy.

`hash_password` and `verify_password` are CPU-bound (tens of milliseconds by design): call them
off the event loop (`asyncio.to_thread`) in request handlers.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from schemas.api.auth import MAX_PASSWORD_CHARS

MIN_PASSWORD_CHARS = 12

# OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)


def hash_password(password: str) -> str:
    """An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`."""
    return HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False for a wrong password or an unreadable hash. Never raises
    for a mismatch; the comparison is the library's constant-time one."""
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (rehash at next login)."""
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return hash_password("comet: a password nobody has, to spend the same time on unknown users")


def warm_up() -> None:
    """Compute the dummy hash now, so the first login of an unknown e-mail is not the slow one."""
    _dummy_hash()


def verify_dummy(password: str) -> bool:
    """Spend the time of a real verification (for unknown users, so timing reveals nothing). False."""
    verify_password(_dummy_hash(), password)
    return False


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """What is wrong with `password` as a new password, one sentence each (empty: acceptable)."""
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_CHARS:
        problems.append(f"must be at least {MIN_PASSWORD_CHARS} characters long")
    if len(password) > MAX_PASSWORD_CHARS:
        problems.append(f"must be at most {MAX_PASSWORD_CHARS} characters long")
    if password and len(set(password)) == 1:
        problems.append("must not be a single character repeated")
    if email:
        local = email.partition("@")[0].strip().casefold()
        if local and password.strip().casefold() == local:
            problems.append("must not be the e-mail address's name part")
    return problems
