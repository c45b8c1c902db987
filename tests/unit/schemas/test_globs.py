"""glob_match: the branch, tag and path patterns of `.comet.yml` filters."""

from __future__ import annotations

import pytest

from schemas.globs import check_glob, glob_match, glob_match_any


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("main", "main", True),
        ("main", "mainline", False),
        ("feature/*", "feature/login", True),
        ("feature/*", "feature/login/oauth", False),
        ("release/**", "release/1.0", True),
        ("release/**", "release/1.0/hotfix", True),
        ("release/**", "release", False),
        ("src/**/test_*.py", "src/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/a_test.py", False),
        ("**", "any/thing/at/all", True),
        ("*.md", "README.md", True),
        ("*.md", "docs/README.md", False),
        ("v?", "v1", True),
        ("v?", "v10", False),
        ("a?b", "a/b", False),
        ("v[0-9].*", "v1.2", True),
        ("v[0-9].*", "vx.2", False),
        ("v[!0-9]", "vx", True),
        ("v[!0-9]", "v1", False),
        ("[]]", "]", True),
        ("[^]", "^", True),
        ("a[", "a[", True),
        ("a.b", "axb", False),
        ("(a|b)", "(a|b)", True),
        ("!main", "main", False),
        ("!main", "!main", True),
    ],
)
def test_glob_matches_as_documented(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_first_matching_pattern_is_named_for_explanations() -> None:
    assert glob_match_any(["docs/**", "src/**"], "src/a.py") == "src/**"
    assert glob_match_any(["docs/**"], "src/a.py") is None


def test_malformed_class_is_a_value_error_naming_the_pattern() -> None:
    with pytest.raises(ValueError, match=r"'\[z-a\]' is not a valid glob"):
        check_glob("[z-a]")
