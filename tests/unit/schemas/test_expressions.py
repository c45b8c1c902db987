"""The `if:` expression language: what parses, what does not (and where), and what it means."""

from __future__ import annotations

import pytest

from schemas.expressions import (
    DEFAULT_CONDITION,
    MAX_DEPTH,
    ExpressionContext,
    ExpressionError,
    parse_expression,
    stage_condition,
)

MAIN = ExpressionContext(
    ref="refs/heads/main",
    branch="main",
    event="push",
    sha="abc123",
    variables={"TARGET": "prod", "COUNT": "3", "EMPTY": ""},
    needs={"unit": "succeeded", "build": "succeeded"},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ref == 'refs/heads/main'", True),
        ('ref == "refs/heads/main"', True),
        ("ref != 'refs/heads/main'", False),
        ("branch == 'main' && event == 'push'", True),
        ("branch == 'main' and event == 'tag'", False),
        ("branch == 'dev' || event == 'push'", True),
        ("branch == 'dev' or sha == 'abc123'", True),
        ("!(branch == 'dev')", True),
        ("not branch == 'dev'", True),
        ("!branch", False),
        ("tag", False),
        ("tag == ''", True),
        ("tag == null", True),
        ("variables.TARGET == 'prod'", True),
        ("variables.COUNT == 3", True),
        ("variables.MISSING == ''", True),
        ("variables.MISSING", False),
        ("variables.EMPTY || variables.TARGET", True),
        ("startsWith(ref, 'refs/heads/')", True),
        ("endsWith(ref, '/main')", True),
        ("contains(ref, 'heads')", True),
        ("contains(ref, 'HEADS')", False),
        ("matches('ma*', branch)", True),
        ("matches('release/**', branch)", False),
        ("matches('[z-a]', branch)", False),
        ("true", True),
        ("false", False),
        ("null", False),
        ("0", False),
        ("1", True),
        ("'false'", True),
        ("true == 1", False),
        ("1 == 1", True),
        ("'it\\'s' == \"it's\"", True),
        ("needs.unit.status == 'succeeded'", True),
        ("success()", True),
        ("failure()", False),
        ("always()", True),
        ("cancelled()", False),
        ("(branch == 'main' || branch == 'dev') && !cancelled()", True),
        ("true || false && false", True),
    ],
)
def test_expression_evaluates_as_documented(text: str, expected: bool) -> None:
    assert parse_expression(text).evaluate(MAIN) is expected


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("__import__('os')", 1, "unknown function '__import__'"),
        ("__import__('os').system('rm -rf /')", 17, "unexpected character '.'"),
        ("ref.__class__", 1, "unknown name 'ref.__class__'"),
        ("exec('1')", 1, "unknown function 'exec'"),
        ("open", 1, "unknown name 'open'"),
        ("ref; ls", 4, "unexpected character ';'"),
        ("`ls`", 1, "unexpected character '`'"),
        ("$(ls)", 1, "unexpected character '$'"),
        ("[1]", 1, "unexpected character '['"),
        ("ref + 'x'", 5, "unexpected character '+'"),
        ("lambda: 1", 7, "unexpected character ':'"),
        ("foo == 'x'", 1, "unknown name 'foo'"),
        ("True", 1, "unknown name 'True'"),
        ("variables", 1, "unknown name 'variables'"),
        ("variables.A.B", 1, "unknown name 'variables.A.B'"),
        ("needs.unit", 1, "unknown name 'needs.unit'"),
        ("needs.unit.result", 1, "unknown name 'needs.unit.result'"),
        ("ref = 'x'", 5, "use == to compare"),
        ("ref == 'x' & true", 12, "use &&"),
        ("ref == 'x' | true", 12, "use ||"),
        ("ref == 'x", 8, "unclosed string"),
        ("(ref == 'x'", 12, "expected ')' to close '('"),
        ("ref ==", 7, "expected a value, found the end"),
        ("ref == 'a' == 'b'", 12, "unexpected '=='"),
        ("", 1, "expected a value"),
        ("success(1)", 1, "success() takes 0 arguments, not 1"),
        ("startsWith(ref)", 1, "startsWith() takes 2 arguments, not 1"),
        ("startsWith(ref, 'a'", 20, "expected ')' to close startsWith("),
        ("3abc", 1, "unexpected character '3'"),
    ],
)
def test_invalid_expression_is_a_parse_error_naming_the_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert caught.value.column == column
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"column {column}: ")


def test_deep_nesting_is_refused_before_the_stack_is() -> None:
    text = "(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(ExpressionError, match="nests deeper"):
        parse_expression(text)
    with pytest.raises(ExpressionError, match="nests deeper"):
        parse_expression("!" * (MAX_DEPTH + 1) + "true")


def test_long_flat_chains_evaluate_without_recursion() -> None:
    text = " || ".join(["false"] * 200 + ["true"])
    assert parse_expression(text).evaluate(MAIN) is True


def test_overlong_expression_is_refused() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        parse_expression("true || " * 400 + "true")


@pytest.mark.parametrize(
    ("needs", "allowed", "cancelled", "success", "failure"),
    [
        ({}, frozenset(), False, True, False),
        ({"a": "succeeded", "b": "succeeded"}, frozenset(), False, True, False),
        ({"a": "succeeded", "b": "failed"}, frozenset(), False, False, True),
        ({"a": "succeeded", "b": "failed"}, frozenset({"b"}), False, True, False),
        ({"a": "skipped"}, frozenset(), False, False, False),
        ({"a": "cancelled"}, frozenset(), False, False, False),
        ({"a": "succeeded"}, frozenset(), True, False, False),
    ],
)
def test_status_functions_read_the_needs(
    needs: dict[str, str], allowed: frozenset[str], cancelled: bool, success: bool, failure: bool
) -> None:
    context = ExpressionContext(needs=needs, allowed_failures=allowed, cancelled=cancelled)
    assert parse_expression("success()").evaluate(context) is success
    assert parse_expression("failure()").evaluate(context) is failure
    assert parse_expression("always()").evaluate(context) is True
    assert parse_expression("cancelled()").evaluate(context) is cancelled


def test_expression_without_status_check_also_needs_success() -> None:
    failed_need = ExpressionContext(ref="refs/heads/main", needs={"unit": "failed"})
    assert parse_expression("ref == 'refs/heads/main'").evaluate(failed_need) is False
    assert parse_expression("always() && ref == 'refs/heads/main'").evaluate(failed_need) is True
    assert parse_expression("failure() && ref == 'refs/heads/main'").evaluate(failed_need) is True


def test_stage_without_if_runs_on_success_only() -> None:
    assert DEFAULT_CONDITION == "success()"
    assert stage_condition(None).evaluate(ExpressionContext(needs={"a": "succeeded"})) is True
    assert stage_condition(None).evaluate(ExpressionContext(needs={"a": "failed"})) is False
    assert stage_condition("always()").evaluate(ExpressionContext(needs={"a": "failed"})) is True


@pytest.mark.parametrize(
    ("legs", "expected"),
    [
        ({"unit[py=3.11]": "succeeded", "unit[py=3.12]": "succeeded"}, "succeeded"),
        ({"unit[py=3.11]": "succeeded", "unit[py=3.12]": "failed"}, "failed"),
        ({"unit[py=3.11]": "cancelled", "unit[py=3.12]": "skipped"}, "cancelled"),
        ({"unit[py=3.11]": "succeeded", "unit[py=3.12]": "running"}, "running"),
        ({"other": "failed"}, ""),
    ],
)
def test_need_status_of_a_matrix_stage_is_its_worst_leg(legs: dict[str, str], expected: str) -> None:
    expression = parse_expression(f"always() && needs.unit.status == '{expected}'")
    assert expression.evaluate(ExpressionContext(needs=legs)) is True


def test_needed_stages_are_reported_including_dotted_names() -> None:
    expression = parse_expression("needs.build.linux.status == 'failed' || needs.lint-1.status == 'x'")
    assert expression.needed_stages == frozenset({"build.linux", "lint-1"})
    assert expression.evaluate(ExpressionContext(needs={"build.linux": "failed"})) is False  # no status check
    assert parse_expression("always() && needs.build.linux.status == 'failed'").evaluate(
        ExpressionContext(needs={"build.linux": "failed"})
    )
