"""Glob patterns for branch, tag and path filters in `.comet.yml`.

`*` matches any run of characters except `/`, `**` matches across `/` (and `**/` also matches no
directory at all, so `src/**/test.py` matches `src/test.py`), `?` matches one character other than
`/`, and `[...]` is a character class (`[!...]` negates it). A leading `!` has no special meaning:
exclusions are written in the `*_ignore` lists instead, so a pattern never depends on list order.
"""

from __future__ import annotations

import re
from functools import lru_cache


def glob_match(pattern: str, value: str) -> bool:
    """Whether the whole of `value` matches `pattern`; ValueError if the pattern is malformed."""
    return _compile(pattern).fullmatch(value) is not None


def glob_match_any(patterns: list[str] | tuple[str, ...], value: str) -> str | None:
    """The first pattern that matches `value`, or None; callers use it to explain a decision."""
    for pattern in patterns:
        if glob_match(pattern, value):
            return pattern
    return None


def check_glob(pattern: str) -> str:
    """`pattern` itself, or ValueError naming the problem; definitions call it when parsed."""
    _compile(pattern)
    return pattern


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            end = _class_end(pattern, i)
            if end < 0:
                # An unclosed `[` is an ordinary character, as in fnmatch.
                out.append(re.escape(char))
                i += 1
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                # Escape all but `-` so `^`, `[` and backslashes stay literal inside the class.
                chars = "".join(c if c == "-" else re.escape(c) for c in body)
                out.append(("[^" if negate else "[") + chars + "]")
                i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error as exc:  # e.g. a reversed range such as [z-a]
        raise ValueError(f"{pattern!r} is not a valid glob: {exc}") from None


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start`, or -1."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "!":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1  # a `]` first in the class is a literal, as in fnmatch
    return pattern.find("]", i)
