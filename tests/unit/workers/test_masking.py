"""Secret masking across arbitrary chunk boundaries, and incremental UTF-8 decoding of log bytes."""

from __future__ import annotations

import random

import pytest

from workers.masking import IncrementalLogDecoder, SecretMasker


def stream(masker: SecretMasker, chunks: list[str]) -> str:
    return "".join(masker.feed(chunk) for chunk in chunks) + masker.flush()


def split_everywhere(text: str, sizes: list[int]) -> list[str]:
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(text[pos : pos + size])
        pos += size
    chunks.append(text[pos:])
    return chunks


def reference_mask(text: str, secrets: list[str]) -> str:
    """Character-by-character oracle: mark every covered character, one `***` per covered run."""
    covered = [False] * len(text)
    for secret in (s for s in secrets if len(s) >= 3):
        for start in range(len(text) - len(secret) + 1):
            if text.startswith(secret, start):
                covered[start : start + len(secret)] = [True] * len(secret)
    out = []
    for index, char in enumerate(text):
        if not covered[index]:
            out.append(char)
        elif index == 0 or not covered[index - 1]:
            out.append("***")
    return "".join(out)


def test_secret_in_one_chunk_is_masked() -> None:
    assert stream(SecretMasker(["hunter2"]), ["password is hunter2, ok\n"]) == "password is ***, ok\n"


def test_secret_split_across_chunks_is_masked() -> None:
    assert stream(SecretMasker(["hunter2"]), ["token=hun", "ter2 done"]) == "token=*** done"


def test_secret_split_across_many_chunks_is_masked() -> None:
    chunks = ["x", "s3", "cr", "e", "t-v", "alue", "y"]
    assert stream(SecretMasker(["s3cret-value"]), chunks) == "x***y"


def test_every_repeated_occurrence_is_masked() -> None:
    assert stream(SecretMasker(["abc123"]), ["abc123 abc", "123abc123"]) == "*** ***"


def test_longest_overlapping_secret_wins() -> None:
    masker = SecretMasker(["secret", "secret-longer"])
    assert stream(masker, ["a secret-long", "er b secret c"]) == "a *** b *** c"


def test_overlapping_occurrences_are_masked_as_one() -> None:
    assert stream(SecretMasker(["abcd", "cdef"]), ["xxabcdefxx"]) == "xx***xx"


def test_short_and_empty_secrets_are_ignored() -> None:
    masker = SecretMasker(["", "a", "no"])
    assert stream(masker, ["a no b"]) == "a no b"
    assert masker.max_len == 0


def test_text_that_cannot_start_a_secret_is_emitted_at_once() -> None:
    masker = SecretMasker(["hunter2"])
    assert masker.feed("plain line\n") == "plain line\n"


def test_at_most_one_character_less_than_the_longest_secret_is_held_back() -> None:
    masker = SecretMasker(["hunter2"])
    assert masker.feed("log: hunter") == "log: "
    assert masker.feed("!") == "hunter!"


def test_a_possible_secret_start_at_the_end_is_released_by_flush() -> None:
    masker = SecretMasker(["hunter2"])
    assert masker.feed("hunt") == ""
    assert masker.flush() == "hunt"


def test_masker_can_be_reused_after_flush() -> None:
    masker = SecretMasker(["abcdef", "cdefghij"])
    assert stream(masker, ["xabcdef"]) == "x***"
    assert stream(masker, ["ghij"]) == "ghij"


def test_mask_continuing_into_held_back_text_is_not_repeated() -> None:
    # "abcd" ends where "cdxyz" could start: the held "cd" is already inside the first mask.
    masker = SecretMasker(["abcd", "cdxyz"])
    assert stream(masker, ["1abcd", "2"]) == "1***2"
    assert stream(masker, ["1abcd", "xyz2"]) == "1***2"


@pytest.mark.parametrize("seed", range(40))
def test_any_chunking_gives_the_same_output_as_masking_the_whole_text(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not crypto
    alphabet = "abc-"
    secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 7))) for _ in range(3)]
    text = "".join(rng.choice([*alphabet, *secrets]) for _ in range(60))
    sizes = [rng.randint(0, 5) for _ in range(rng.randint(0, 40))]
    expected = reference_mask(text, secrets)
    assert stream(SecretMasker(secrets), split_everywhere(text, sizes)) == expected
    assert stream(SecretMasker(secrets), list(text)) == expected


def test_decoder_keeps_a_character_split_between_chunks() -> None:
    decoder = IncrementalLogDecoder()
    data = "héllo ✓".encode()
    text = "".join(decoder.decode(data[i : i + 1]) for i in range(len(data))) + decoder.flush()
    assert text == "héllo ✓"


def test_decoder_replaces_invalid_bytes_instead_of_failing() -> None:
    decoder = IncrementalLogDecoder()
    assert decoder.decode(b"ok \xff\xfe ok") == "ok \ufffd\ufffd ok"
    assert decoder.decode(b"\xe2\x9c") == ""
    assert decoder.flush() == "\ufffd"
