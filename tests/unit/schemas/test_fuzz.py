"""Fuzzed `.comet.yml` and `if:` expressions: whatever text a repository holds, `parse_definition`
answers a definition or a `DefinitionError`, and `parse_expression` an expression or an
`ExpressionError`; an expression that parses evaluates to a bool in any context. Anything else
would fail a run's planning with a traceback instead of a message naming the line.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.expressions import ExpressionContext, ExpressionError, parse_expression
from schemas.pipeline import DefinitionError, parse_definition

_BOUNDED = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
_KEYS = st.sampled_from(
    [
        "name",
        "on",
        "push",
        "pull_request",
        "schedule",
        "cron",
        "manual",
        "branches",
        "tags",
        "paths",
        "env",
        "variables",
        "concurrency",
        "group",
        "cancel_in_progress",
        "stages",
        "run",
        "script",
        "needs",
        "if",
        "retry",
        "count",
        "when",
        "backoff",
        "timeout",
        "matrix",
        "include",
        "exclude",
        "image",
        "pool",
        "allow_failure",
        "approval",
        "environment",
        "reports",
        "junit",
        "coverage",
        "min",
        "cache",
        "artifacts",
        "lint",
        "unit",
        "deploy",
        "<<",
        "COMET_X",
        "a.b",
        "",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "${{ ref }}",
            "${{",
            "}}",
            "$(touch /tmp/comet-canary)",
            "`id`",
            "1e999",
            "9" * 5000,
            "-1",
            "1h30m",
            "10x",
            "success() && failure(",
            "needs.a.status == 'failed'",
            "**/*",
            "../..",
            "\x00",
            "\ud7ff",
            "~",
            "!!python/object:os.system",
            ".inf",
            "0x1F",
        ]
    )
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_KEYS, children, max_size=5),
    max_leaves=25,
)
_STRUCTURED = st.dictionaries(_KEYS, _VALUES, max_size=6) | st.fixed_dictionaries(
    {"stages": st.dictionaries(_KEYS | st.text(max_size=10), st.dictionaries(_KEYS, _VALUES, max_size=6))}
)


def _parse_or_refuse(text: str) -> None:
    try:
        parse_definition(text)
    except DefinitionError as exc:
        refused: DefinitionError | None = exc
    else:
        refused = None
    assert refused is None or (refused.problems and str(refused))


@_BOUNDED
@given(text=st.text(max_size=500))
def test_any_text_is_a_definition_or_a_definition_error(text: str) -> None:
    _parse_or_refuse(text)


@_BOUNDED
@given(data=_STRUCTURED, as_json=st.booleans())
def test_structured_but_wrong_yaml_is_a_definition_or_a_definition_error(data: object, as_json: bool) -> None:
    text = json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=True)
    _parse_or_refuse(text)


@_BOUNDED
@given(
    fragments=st.lists(
        st.sampled_from(
            [
                "stages:",
                "\n",
                "  ",
                "a:",
                " run: x",
                "- ",
                "&x ",
                "*x",
                "<<: *x",
                "!!binary ",
                "!!python/name:os.system ",
                "{",
                "}",
                "[",
                "]",
                "? ",
                ": ",
                "|",
                ">",
                "'",
                '"',
                "#",
                "---",
                "...",
                "%YAML 1.1",
                "%TAG ! !x",
                "\t",
                "needs: [",
                "matrix:",
                "if: ",
                "${{",
                "retry: ",
                "timeout: ",
                "9" * 400,
                "\ufeff",
                "\x85",
                "\u2028",
            ]
        ),
        max_size=40,
    )
)
def test_yaml_made_of_syntax_fragments_is_a_definition_or_a_definition_error(fragments: list[str]) -> None:
    _parse_or_refuse("".join(fragments))


def test_deep_nesting_aliases_and_huge_values_are_definition_errors() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    for text in (
        "[" * 10_000 + "]" * 10_000,
        "{a: " * 10_000 + "1" + "}" * 10_000,
        "stages:\n" + "".join("  " * i + f"k{i}:\n" for i in range(300)),
        "- " * 5_000 + "x",
        laughs + "stages: {a: {run: x}}\n",
        "stages: {a: {run: x, timeout: " + "9" * 5_000 + "}}",
        "stages: {a: {run: x, retry: " + "9" * 5_000 + "}}",
        "stages: {a: {run: x, matrix: {k: [" + ",".join(map(str, range(5_000))) + "]}}}",
        "x" * 2_000_000,
    ):
        _parse_or_refuse(text)


_EXPRESSION_TOKENS = st.sampled_from(
    [
        "(",
        ")",
        "!",
        "&&",
        "||",
        "==",
        "!=",
        ",",
        "'",
        "'a'",
        "''",
        "1",
        "0",
        "99999999999999999999999",
        "true",
        "false",
        "null",
        "ref",
        "branch",
        "tag",
        "event",
        "sha",
        "vars.X",
        "variables.X",
        "needs.a.status",
        "needs.a",
        "success()",
        "failure()",
        "always()",
        "cancelled()",
        "startsWith",
        "contains",
        "matches",
        "endsWith",
        " ",
        "and",
        "or",
        "not",
        "=",
        "&",
        "|",
        "$",
        "{",
        "}",
        "\\",
        "\x00",
        "é",
        "٣",
    ]
)


@_BOUNDED
@given(text=st.text(max_size=200) | st.lists(_EXPRESSION_TOKENS, max_size=40).map("".join))
def test_any_if_text_is_an_expression_or_an_expression_error(text: str) -> None:
    try:
        expression = parse_expression(text)
    except ExpressionError as exc:
        column = exc.column
        assert column >= 0
        return
    context = ExpressionContext(
        ref="refs/heads/main", branch="main", variables={"X": "1"}, needs={"a": "failed"}, cancelled=True
    )
    assert isinstance(expression.evaluate(context), bool)
    assert isinstance(expression.evaluate(ExpressionContext()), bool)


def test_deeply_nested_and_long_expressions_are_expression_errors_or_evaluate() -> None:
    for text in (
        "(" * 10_000 + "true" + ")" * 10_000,
        "!" * 10_000 + "true",
        "true && " * 5_000 + "true",
        "'" + "a" * 100_000 + "'",
        "1" * 10_000 + " == 1",
    ):
        with contextlib.suppress(ExpressionError):
            parse_expression(text).evaluate(ExpressionContext())


def test_yaml_nested_deeper_than_the_limit_is_refused_with_the_limit_not_a_recursion_error() -> None:
    for text in ("[" * 10_000 + "]" * 10_000, "- " * 5_000 + "x"):
        with pytest.raises(DefinitionError) as refused:
            parse_definition(text)
        assert str(refused.value) == "line 1: invalid YAML: nested deeper than 64 levels"
