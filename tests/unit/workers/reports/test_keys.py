"""Test keys: one key per test across frameworks, runs and formatting; different tests apart."""

from __future__ import annotations

import re

import pytest

from workers.reports.keys import case_key, case_scope


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("tests.test_x", "test_a", None), ("", "test_a", "tests/test_x.py")),
        (("tests.test_x", "test_a", None), ("tests.test_x", "test_a", "tests/test_x.py")),
        (("tests.test_x", "test_a", None), ("", "test_a", "./tests/test_x.py")),
        (("tests.test_x", "test_a", None), ("", "test_a", "tests\\test_x.py")),
        (("github.com/acme/app/pkg", "TestX", None), ("github.com.acme.app.pkg", "TestX", None)),
        (("Acme::Cart", "total", None), ("Acme.Cart", "total", None)),
        (("  tests.test_x ", "test_a", None), ("tests.test_x", "test_a", None)),
        (("c", "adds  two\n numbers", None), ("c", "adds two numbers", None)),
        (
            ("Acme.MathTests", "Add(1,2)", "/a/bin/Acme.dll"),
            ("Acme.MathTests", "Add(1,2)", "/b/bin/Acme.dll"),
        ),
    ],
    ids=[
        "pytest-classname-vs-file",
        "file-ignored-when-classname-given",
        "dot-slash",
        "backslashes",
        "go-package-path",
        "ruby-double-colon",
        "classname-spaces",
        "name-white-space",
        "dll-path-ignored",
    ],
)
def test_the_same_test_written_differently_gets_one_key(
    one: tuple[str, str, str | None], other: tuple[str, str, str | None]
) -> None:
    assert case_key(*one) == case_key(*other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("tests.test_x", "test_add[1-2]", None), ("tests.test_x", "test_add[2-1]", None)),
        (("tests.test_x", "test_add[1-2]", None), ("tests.test_x", "test_add", None)),
        (("tests.test_x", "test_a", None), ("tests.test_y", "test_a", None)),
        (("tests.test_x.TestA", "test_a", None), ("tests.test_x", "test_a", None)),
        (("Calc", "Adds", None), ("Calc", "adds", None)),
        (("", "a.phpt", "tests/a.phpt"), ("", "a.phpt", "tests/b.phpt")),
        (("a", "b c", None), ("a b", "c", None)),
    ],
    ids=["parameters", "bracketed-vs-bare", "module", "class", "case", "file-as-scope", "split-point"],
)
def test_different_tests_get_different_keys(
    one: tuple[str, str, str | None], other: tuple[str, str, str | None]
) -> None:
    assert case_key(*one) != case_key(*other)


def test_a_key_is_twenty_url_safe_hex_digits_and_stable_across_releases() -> None:
    key = case_key("tests.test_calc", "test_add_many[2-2-5]")
    assert re.fullmatch(r"[0-9a-f]{20}", key)
    # Pinned: a change of the rule would orphan every stored history and quarantine.
    assert key == "d77af8215e1ff2bcdb44"


def test_huge_names_give_short_keys() -> None:
    assert len(case_key("c", "n" * 1_000_000)) == 20


@pytest.mark.parametrize(
    ("classname", "file", "scope"),
    [
        ("tests.test_x.TestA", None, "tests.test_x.TestA"),
        ("", "tests/test_x.py", "tests.test_x"),
        ("", ".github/.hidden", "github.hidden"),
        ("", "spec/models/user_spec.rb", "spec.models.user_spec"),
        ("/leading/and/trailing/", None, "leading.and.trailing"),
        ("", None, ""),
    ],
)
def test_the_scope_is_the_normalised_classname_or_the_file_without_its_extension(
    classname: str, file: str | None, scope: str
) -> None:
    assert case_scope(classname, file) == scope
