"""`${{ name }}` placeholders: replaced from the context, refused when unknown or unclosed."""

from __future__ import annotations

import re

import pytest

from schemas.interpolation import build_context, check_template, interpolate, placeholder_names

CONTEXT = build_context(
    ref="refs/heads/main", branch="main", tag="", event="push", sha="abc", variables={"TARGET": "prod"}
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("deploy-${{ ref }}", "deploy-refs/heads/main"),
        ("${{branch}}/${{ sha }}", "main/abc"),
        ("${{   event   }}", "push"),
        ("to-${{ variables.TARGET }}", "to-prod"),
        ("to-${{ variables.MISSING }}!", "to-!"),
        ("tag=${{ tag }}", "tag="),
        ("no placeholders", "no placeholders"),
        ("a single { brace } and $ sign", "a single { brace } and $ sign"),
        ("", ""),
    ],
)
def test_placeholders_are_replaced_from_the_context(template: str, expected: str) -> None:
    assert interpolate(template, CONTEXT) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("deploy-${{ ref", "unclosed ${{ at column 8"),
        ("${{ ref }}-${{ sha", "unclosed ${{ at column 12"),
        ("${{ secrets.TOKEN }}", "unknown name 'secrets.TOKEN'"),
        ("${{ }}", "unknown name ''"),
        ("${{ variables.A-B }}", "unknown name 'variables.A-B'"),
    ],
)
def test_unknown_name_or_unclosed_placeholder_is_a_value_error(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        interpolate(template, CONTEXT)


def test_templates_are_checked_without_a_context() -> None:
    assert placeholder_names("${{ ref }}-${{ variables.X }}") == ["ref", "variables.X"]
    assert check_template("group-${{ ref }}-${{ variables.X }}") == "group-${{ ref }}-${{ variables.X }}"
    with pytest.raises(ValueError, match=re.escape("unknown name 'matrix.os'")):
        check_template("${{ matrix.os }}")
