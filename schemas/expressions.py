"""The safe expression language of `if:` in `.comet.yml`: tokenizer, parser and evaluator.

Nothing here calls `eval`; an expression can only read the names below and call the functions
below, and evaluating a parsed expression never raises.

Grammar (lowest precedence first)::

    expr     := and (("||" | "or") and)*
    and      := unary (("&&" | "and") unary)*
    unary    := ("!" | "not") unary | compare        # so `!a == b` means `!(a == b)`
    compare  := primary (("==" | "!=") primary)?     # not chained: `a == b == c` is an error
    primary  := STRING | INT | "true" | "false" | "null" | NAME | CALL | "(" expr ")"
    CALL     := FUNCTION "(" [expr ("," expr)*] ")"
    STRING   := '...' | "..."                        # a backslash makes the next character literal
    NAME     := ref | branch | tag | event | sha | variables.NAME | needs.STAGE.status

Functions: `startsWith(a, b)`, `endsWith(a, b)`, `contains(a, b)` (substring, case-sensitive),
`matches(glob, value)` (see `schemas.globs`), and the status checks `success()` (the run is not
being cancelled and every need succeeded or failed with `allow_failure`), `failure()` (a need
failed and was not allowed to), `always()` and `cancelled()` (the run is being cancelled).

Values are text, integers, booleans and null. `==` compares text with text; when one side is text
and the other is not, the other is written as text first (`3` -> "3", `true` -> "true",
`null` -> ""), so `variables.COUNT == 3` works. A missing variable is "". The result is true
unless it is false, null, 0 or "" (so the text "false" is true, as in GitHub Actions).

As in GitHub Actions, an expression that calls none of the status functions only holds when
`success()` does too: `if: ref == 'refs/heads/main'` does not run after a failed need.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from schemas.globs import glob_match

Value = str | int | bool | None

DEFAULT_CONDITION = "success()"
"""The condition of a stage without `if:`."""

MAX_LENGTH = 2000
MAX_DEPTH = 32  # nesting of parentheses and negations; keeps the recursive parser far from the stack limit

_SIMPLE_NAMES = frozenset({"ref", "branch", "tag", "event", "sha"})
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KNOWN = "ref, branch, tag, event, sha, variables.NAME, needs.STAGE.status"
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}
_STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")  # ordered: messages list them
_ARITY = {"startsWith": 2, "endsWith": 2, "contains": 2, "matches": 2} | dict.fromkeys(_STATUS_FUNCTIONS, 0)


class ExpressionError(ValueError):
    """An expression that does not parse; `column` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.column = column
        self.reason = message


@dataclass(frozen=True)
class ExpressionContext:
    """What an expression can read. `needs` maps each needed stage (matrix legs by leg name) to
    its status; `allowed_failures` names the needs that failed with `allow_failure: true`."""

    ref: str = ""
    branch: str = ""
    tag: str = ""
    event: str = ""
    sha: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    needs: Mapping[str, str] = field(default_factory=dict)
    cancelled: bool = False
    allowed_failures: frozenset[str] = frozenset()


# --- syntax tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Value


@dataclass(frozen=True, slots=True)
class _Name:
    kind: str  # "simple", "variable" or "need"
    key: str


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _Logic:
    # n-ary, so a long `a || b || c ...` is a flat tuple, not a tree as deep as the text is long
    op: str  # "&&" or "||"
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str  # "==" or "!="
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[_Node, ...]


_Node = _Literal | _Name | _Not | _Logic | _Compare | _Call


@dataclass(frozen=True)
class Expression:
    """A parsed `if:` expression."""

    text: str
    root: _Node = field(repr=False)
    has_status_check: bool
    needed_stages: frozenset[str]
    """Stages read as `needs.STAGE.status`; a definition checks they are among the stage's needs."""

    def evaluate(self, context: ExpressionContext) -> bool:
        if not self.has_status_check and not _success(context):
            return False
        return _truthy(_evaluate(self.root, context))


def parse_expression(text: str) -> Expression:
    """Parse `text`, or raise ExpressionError with the column of the problem."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    parser = _Parser(_tokenize(text))
    root = parser.expression()
    parser.expect_end()
    return Expression(text, root, parser.status_check, frozenset(parser.stages))


def stage_condition(text: str | None) -> Expression:
    """The parsed condition of a stage whose `if:` is `text` (None: `DEFAULT_CONDITION`)."""
    return parse_expression(DEFAULT_CONDITION if text is None else text)


# --- tokenizer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "str", "int", "name", "op", "end"
    text: str
    column: int


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*")
_INT = re.compile(r"[0-9]+(?![A-Za-z_.])")
_OPERATORS = ("==", "!=", "&&", "||", "!", "(", ")", ",")
_HINTS = {"=": "use == to compare", "&": "use && (or and)", "|": "use || (or or)"}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        column = i + 1
        if char.isspace():
            i += 1
        elif char in "'\"":
            value, i = _read_string(text, i)
            tokens.append(_Token("str", value, column))
        elif (match := _INT.match(text, i)) is not None:
            tokens.append(_Token("int", match.group(), column))
            i = match.end()
        elif (match := _NAME.match(text, i)) is not None:
            word = match.group()
            kind = "op" if word in _KEYWORDS else "name"
            tokens.append(_Token(kind, _KEYWORDS.get(word, word), column))
            i = match.end()
        else:
            op = next((op for op in _OPERATORS if text.startswith(op, i)), None)
            if op is None:
                hint = _HINTS.get(char, "not part of the expression language")
                raise ExpressionError(f"unexpected character {char!r} ({hint})", column)
            tokens.append(_Token("op", op, column))
            i += len(op)
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif char == quote:
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise ExpressionError("unclosed string", start + 1)


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.status_check = False
        self.stages: set[str] = set()

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, op: str) -> bool:
        token = self.peek()
        if token.kind == "op" and token.text == op:
            self.pos += 1
            return True
        return False

    def expect(self, op: str, after: str) -> None:
        if not self.accept(op):
            raise ExpressionError(
                f"expected {op!r} {after}, found {_describe(self.peek())}", self.peek().column
            )

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {_describe(token)}", token.column)

    def nest(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels", column)

    def expression(self) -> _Node:
        nodes = [self.conjunction()]
        while self.accept("||"):
            nodes.append(self.conjunction())
        return nodes[0] if len(nodes) == 1 else _Logic("||", tuple(nodes))

    def conjunction(self) -> _Node:
        nodes = [self.unary()]
        while self.accept("&&"):
            nodes.append(self.unary())
        return nodes[0] if len(nodes) == 1 else _Logic("&&", tuple(nodes))

    def unary(self) -> _Node:
        token = self.peek()
        if self.accept("!"):
            self.nest(token.column)
            node: _Node = _Not(self.unary())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.primary()
        token = self.peek()
        if token.kind == "op" and token.text in ("==", "!="):
            self.pos += 1
            return _Compare(token.text, left, self.primary())
        return left

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "str":
            return _Literal(token.text)
        if token.kind == "int":
            return _Literal(int(token.text))
        if token.kind == "name":
            if token.text in _LITERALS:
                return _Literal(_LITERALS[token.text])
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call(token)
            return self.name(token)
        if token.kind == "op" and token.text == "(":
            self.nest(token.column)
            node = self.expression()
            self.expect(")", "to close '('")
            self.depth -= 1
            return node
        raise ExpressionError(f"expected a value, found {_describe(token)}", token.column)

    def call(self, token: _Token) -> _Node:
        arity = _ARITY.get(token.text)
        if arity is None:
            known = ", ".join(_ARITY)
            raise ExpressionError(f"unknown function {token.text!r} (known: {known})", token.column)
        self.take()  # the "("
        self.nest(token.column)
        args: list[_Node] = []
        if not self.accept(")"):
            args.append(self.expression())
            while self.accept(","):
                args.append(self.expression())
            self.expect(")", f"to close {token.text}(")
        self.depth -= 1
        if len(args) != arity:
            raise ExpressionError(f"{token.text}() takes {arity} arguments, not {len(args)}", token.column)
        self.status_check = self.status_check or token.text in _STATUS_FUNCTIONS
        return _Call(token.text, tuple(args))

    def name(self, token: _Token) -> _Node:
        parts = token.text.split(".")
        if token.text in _SIMPLE_NAMES:
            return _Name("simple", token.text)
        if parts[0] == "variables" and len(parts) == 2 and _VARIABLE.fullmatch(parts[1]):
            return _Name("variable", parts[1])
        if parts[0] == "needs" and len(parts) >= 3 and parts[-1] == "status":
            stage = ".".join(parts[1:-1])  # stage names may themselves contain dots
            self.stages.add(stage)
            return _Name("need", stage)
        raise ExpressionError(f"unknown name {token.text!r} (known: {_KNOWN})", token.column)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "str":
        return f"string {token.text!r}"
    return repr(token.text)


# --- evaluator ---------------------------------------------------------------------------------


def _evaluate(node: _Node, context: ExpressionContext) -> Value:
    match node:
        case _Literal(value):
            return value
        case _Name(kind, key):
            return _lookup(kind, key, context)
        case _Not(operand):
            return not _truthy(_evaluate(operand, context))
        case _Logic("&&", operands):
            return all(_truthy(_evaluate(operand, context)) for operand in operands)
        case _Logic(_, operands):
            return any(_truthy(_evaluate(operand, context)) for operand in operands)
        case _Compare(op, left, right):
            equal = _equal(_evaluate(left, context), _evaluate(right, context))
            return equal if op == "==" else not equal
        case _Call(name, args):
            values = [_text(_evaluate(arg, context)) for arg in args]
            return _FUNCTIONS[name](context, *values)
    raise AssertionError(node)  # unreachable: the parser builds only the nodes above


def _lookup(kind: str, key: str, context: ExpressionContext) -> str:
    if kind == "simple":
        value: str = getattr(context, key)
        return value
    if kind == "variable":
        return context.variables.get(key, "")
    return _need_status(key, context.needs)


def _need_status(stage: str, needs: Mapping[str, str]) -> str:
    """Status of `stage`; for a matrix stage given leg by leg, the worst status of its legs."""
    if stage in needs:
        return needs[stage]
    legs = [status for name, status in needs.items() if name.startswith(stage + "[")]
    if not legs or all(status == legs[0] for status in legs):
        return legs[0] if legs else ""
    for worst in ("failed", "cancelled", "skipped"):
        if worst in legs:
            return worst
    return next(status for status in legs if status != "succeeded")


def _success(context: ExpressionContext) -> bool:
    return not context.cancelled and all(
        status == "succeeded" or (status == "failed" and name in context.allowed_failures)
        for name, status in context.needs.items()
    )


def _failure(context: ExpressionContext) -> bool:
    return any(
        status == "failed" and name not in context.allowed_failures for name, status in context.needs.items()
    )


def _matches(pattern: str, value: str) -> bool:
    try:
        return glob_match(pattern, value)
    except ValueError:  # a malformed glob built from run-time values simply does not match
        return False


_FUNCTIONS: dict[str, Callable[..., bool]] = {
    "startsWith": lambda _, a, b: a.startswith(b),
    "endsWith": lambda _, a, b: a.endswith(b),
    "contains": lambda _, a, b: b in a,
    "matches": lambda _, pattern, value: _matches(pattern, value),
    "success": _success,
    "failure": _failure,
    "always": lambda _: True,
    "cancelled": lambda context: context.cancelled,
}


def _text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _equal(left: Value, right: Value) -> bool:
    if isinstance(left, str) or isinstance(right, str):
        return _text(left) == _text(right)
    # bool is a subclass of int in Python; `true == 1` must still be false.
    return type(left) is type(right) and left == right


def _truthy(value: Value) -> bool:
    return value not in (None, False, 0, "")
