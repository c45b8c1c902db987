"""Secrets at rest: AES-256-GCM with a key derived (HKDF-SHA256) from `COMET_SECRET_KEY`.

A ciphertext is `version byte | 12-byte random nonce | AES-GCM ciphertext and tag`. The version
byte leaves room for key rotation; decryption refuses anything tampered with or foreign.
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
_NONCE_BYTES = 12
_INFO = b"comet/secrets-at-rest/v1"


class DecryptionError(Exception):
    """The ciphertext was not made with this key, or was altered. Not retriable."""

    retriable = False


@functools.lru_cache(maxsize=8)
def _aead(secret_key: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode())
    return AESGCM(key)


def encrypt(plaintext: bytes, secret_key: str, *, context: bytes = b"") -> bytes:
    """Encrypt `plaintext`; `context` (e.g. a row id) is authenticated but not stored."""
    nonce = os.urandom(_NONCE_BYTES)
    return VERSION + nonce + _aead(secret_key).encrypt(nonce, plaintext, context)


def decrypt(ciphertext: bytes, secret_key: str, *, context: bytes = b"") -> bytes:
    """The plaintext of `encrypt(...)`'s output; DecryptionError if it is not authentic."""
    if len(ciphertext) < 1 + _NONCE_BYTES + 16 or ciphertext[:1] != VERSION:
        raise DecryptionError("not a Comet ciphertext")
    nonce, body = ciphertext[1 : 1 + _NONCE_BYTES], ciphertext[1 + _NONCE_BYTES :]
    try:
        return _aead(secret_key).decrypt(nonce, body, context)
    except InvalidTag:
        raise DecryptionError("ciphertext is not authentic under this key") from None


class SecretBox:
    """`encrypt(bytes) -> bytes` and `decrypt(bytes) -> bytes` under one `COMET_SECRET_KEY`."""

    __slots__ = ("_secret_key",)

    def __init__(self, secret_key: str) -> None:
        self._secret_key = secret_key

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def encrypt(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        return encrypt(plaintext, self._secret_key, context=context)

    def decrypt(self, ciphertext: bytes, *, context: bytes = b"") -> bytes:
        return decrypt(ciphertext, self._secret_key, context=context)
