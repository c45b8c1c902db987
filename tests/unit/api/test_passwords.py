"""Argon2id password hashing and the password policy."""

from __future__ import annotations

import pytest

from api.auth.passwords import hash_password, needs_rehash, password_problems, verify_dummy, verify_password


def test_a_hash_is_argon2id_at_owasp_parameters() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "correct horse" not in hashed


def test_the_right_password_verifies_and_a_wrong_one_does_not() -> None:
    hashed = hash_password("correct horse battery staple")
    assert verify_password(hashed, "correct horse battery staple") is True
    assert verify_password(hashed, "correct horse battery stapler") is False


def test_the_same_password_hashes_differently_each_time() -> None:
    assert hash_password("same password twice") != hash_password("same password twice")


@pytest.mark.parametrize("garbage", ["", "not a hash", "$argon2id$v=19$m=1,t=1,p=1$bad"])
def test_an_unreadable_hash_never_verifies_and_never_raises(garbage: str) -> None:
    assert verify_password(garbage, "anything at all") is False


def test_verifying_against_the_dummy_hash_is_always_false() -> None:
    assert verify_dummy("comet: a password nobody has, to spend the same time on unknown users") is False


def test_a_hash_with_weaker_parameters_needs_a_rehash() -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("correct horse battery staple")
    assert needs_rehash(weak) is True
    assert needs_rehash(hash_password("correct horse battery staple")) is False
    assert needs_rehash("garbage") is True


def test_a_long_varied_password_passes_the_policy() -> None:
    assert password_problems("correct horse battery staple", email="alice@example.com") == []


@pytest.mark.parametrize(
    ("password", "email", "expected"),
    [
        ("short", None, "at least 12 characters"),
        ("aaaaaaaaaaaaaaaa", None, "single character repeated"),
        ("alice.wonderland", "Alice.Wonderland@example.com", "e-mail address"),
        ("x" * 1025 + "y", None, "at most 1024 characters"),
    ],
)
def test_weak_passwords_are_refused_with_a_clear_reason(
    password: str, email: str | None, expected: str
) -> None:
    problems = password_problems(password, email=email)
    assert any(expected in p for p in problems), problems
