"""`db/crypto.py`: AES-GCM under a key derived from COMET_SECRET_KEY."""

from __future__ import annotations

import pytest

from db.crypto import DecryptionError, SecretBox, decrypt, encrypt

KEY = "a-secret-key-of-at-least-thirty-two-chars"


def test_a_secret_round_trips_and_is_not_stored_in_clear() -> None:
    box = SecretBox(KEY)
    ciphertext = box.encrypt(b"webhook secret")
    assert b"webhook secret" not in ciphertext
    assert box.decrypt(ciphertext) == b"webhook secret"
    assert decrypt(encrypt(b"x", KEY), KEY) == b"x"


def test_the_same_secret_encrypts_differently_each_time() -> None:
    assert encrypt(b"same", KEY) != encrypt(b"same", KEY)


def test_another_key_cannot_decrypt() -> None:
    with pytest.raises(DecryptionError):
        decrypt(encrypt(b"x", KEY), "another-secret-key-of-thirty-two-chars!")


def test_a_tampered_ciphertext_is_refused() -> None:
    ciphertext = bytearray(encrypt(b"webhook secret", KEY))
    ciphertext[-1] ^= 1
    with pytest.raises(DecryptionError):
        decrypt(bytes(ciphertext), KEY)


def test_a_ciphertext_bound_to_one_row_does_not_decrypt_for_another() -> None:
    ciphertext = encrypt(b"x", KEY, context=b"row-1")
    assert decrypt(ciphertext, KEY, context=b"row-1") == b"x"
    with pytest.raises(DecryptionError):
        decrypt(ciphertext, KEY, context=b"row-2")


@pytest.mark.parametrize("garbage", [b"", b"\x01short", b"\x02" + b"0" * 40])
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(DecryptionError):
        decrypt(garbage, KEY)


def test_the_box_does_not_show_its_key() -> None:
    assert KEY not in repr(SecretBox(KEY))
