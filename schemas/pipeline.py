"""The `.comet.yml` pipeline definition: typed models, and `parse_definition` from YAML text.

A definition is parsed and validated once. Every problem is reported as `line N: field.path:
reason`, the line found by walking the YAML node tree along pydantic's error location. The YAML
is read with two deliberate departures from YAML 1.1: mapping keys are text exactly as written
(so `on:` is "on", not True, and a stage called `1.10` keeps its name), and every scalar but null
stays text until a field asks for a number or a boolean (so `python: [3.10]` is "3.10", not 3.1,
and `country: [NO]` is "NO", not false); boolean fields take true/false, yes/no, on/off, 1/0.
Duplicate keys are an error. Top-level keys starting with `x-` are ignored, so they can hold YAML
anchors (`<<: *defaults`) for stages.
"""

from __future__ import annotations

import difflib
import itertools
import re
import types
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from schemas.durations import parse_duration
from schemas.expressions import parse_expression
from schemas.globs import check_glob
from schemas.interpolation import check_template
from schemas.labels import check_labels
from schemas.triggers import (
    Globs,
    PullRequestFilter,
    PushFilter,
    Schedule,
    Triggers,
    default_triggers,
    one_or_many,
)

__all__ = [
    "Concurrency",
    "CoverageRule",
    "DefinitionError",
    "DefinitionProblem",
    "Matrix",
    "PipelineDefinition",
    "PullRequestFilter",
    "PushFilter",
    "Reports",
    "RetryPolicy",
    "Schedule",
    "Split",
    "StageSpec",
    "Triggers",
    "check_needs",
    "definition_json_schema",
    "parse_definition",
]

MAX_DEFINITION_CHARS = 1_000_000
MAX_MATRIX_LEGS = 256
MAX_PARALLEL = 64
# Deeper YAML would exhaust the (recursive) composer: a RecursionError instead of a message.
MAX_NESTING = 64
MAX_PROBLEMS_SHOWN = 20  # the message is shown to people (and stored on the run); all are in .problems
STAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # env, variable and matrix key names
RetryKind = Literal["script_failure", "lost_worker", "timeout"]
Loc = tuple[str | int, ...]


# --- field types -------------------------------------------------------------------------------


def _to_text(value: object) -> object:
    """YAML scalars where text is expected: numbers as written, booleans as true/false, null as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _checked(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return AfterValidator(check)


def _env_name(value: str) -> str:
    if value.startswith("COMET_"):
        raise ValueError(f"{value!r}: names starting with COMET_ are set by Comet itself")
    return value


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError("a duration is a number of seconds or text like 30s, 10m, 1h30m")
    return parse_duration(value)


def _retry_shorthand(value: object) -> object:
    """`retry: 2` means two more attempts on any retryable failure."""
    if isinstance(value, str) and value.strip().isdigit():
        return {"count": value}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"count": value}
    return value


def _check_condition(value: str | None) -> str | None:
    if value is not None:
        parse_expression(value)  # ExpressionError is a ValueError naming the column
    return value


Text = Annotated[str, BeforeValidator(_to_text, json_schema_input_type=str | int | float | bool | None)]
EnvName = Annotated[str, _checked(_IDENTIFIER, "environment variable name"), AfterValidator(_env_name)]
VariableName = Annotated[str, _checked(_IDENTIFIER, "variable name")]
StageName = Annotated[str, _checked(STAGE_NAME, "stage name (letters, digits, '_', '.', '-')")]
PoolName = Annotated[str, _checked(POOL_NAME, "pool name (lowercase letters, digits, '_', '.', '-')")]
Duration = Annotated[float, BeforeValidator(_duration, json_schema_input_type=str | float)]
Names = Annotated[list[str], BeforeValidator(one_or_many, json_schema_input_type=str | list[str])]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- models ------------------------------------------------------------------------------------


class RetryPolicy(_Model):
    count: int = Field(default=0, ge=0, le=10, description="more attempts after the first")
    when: list[RetryKind] = ["script_failure", "lost_worker", "timeout"]
    backoff: Duration = Field(default=0.0, description="wait before each new attempt")


class Reports(_Model):
    junit: Globs = Field(default=[], description="JUnit XML files (globs in the workspace)")
    coverage: Globs = Field(default=[], description="Cobertura XML or lcov files (globs in the workspace)")


class CoverageRule(_Model):
    min: float = Field(ge=0, le=100, description="the stage fails below this line coverage (percent)")


class Split(_Model):
    """How the legs of `parallel: N` share the test files: every file matching `files` goes to
    exactly one leg (listed in the file `$COMET_TEST_FILES`), balanced by the durations recorded
    from earlier reports (`by: timings`), or by count."""

    files: Annotated[str, AfterValidator(check_glob)] = Field(min_length=1)
    by: Literal["timings", "count"] = "timings"


class Matrix(BaseModel):
    """Keys map to lists of values; `include` and `exclude` follow GitHub Actions."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, Annotated[list[Text], Field(min_length=1)]] = Field(init=False)
    include: list[dict[str, Text]] = []
    exclude: list[dict[str, Text]] = []

    @property
    def axes(self) -> dict[str, list[str]]:
        return dict(self.__pydantic_extra__ or {})

    @model_validator(mode="after")
    def _check(self) -> Matrix:
        axes = self.axes
        for key in itertools.chain(axes, *self.include, *self.exclude):
            if not _IDENTIFIER.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid matrix key (it becomes MATRIX_{key.upper()})")
        for entry in self.exclude:
            unknown = sorted(set(entry) - set(axes))
            if unknown:
                raise ValueError(f"exclude names {unknown[0]!r}, which is not a matrix key")
        size = 1
        for values in axes.values():
            size *= len(values)
        # Checked before expanding, so a huge product is refused without being built.
        if size > MAX_MATRIX_LEGS or len(self.include) > MAX_MATRIX_LEGS:
            raise ValueError(f"matrix has more than {MAX_MATRIX_LEGS} legs")
        count = len(self.legs())
        if count == 0:
            raise ValueError("matrix has no legs (everything is excluded)")
        if count > MAX_MATRIX_LEGS:
            raise ValueError(f"matrix has {count} legs; the limit is {MAX_MATRIX_LEGS}")
        return self

    def legs(self) -> list[dict[str, str]]:
        """Each leg's values, keys in definition order; exclude applies before include."""
        axes = self.axes
        originals = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
        if not axes:
            originals = []
        originals = [leg for leg in originals if not any(_within(entry, leg) for entry in self.exclude)]
        legs = [dict(leg) for leg in originals]
        added: list[dict[str, str]] = []
        for entry in self.include:
            # An include extends every leg whose original values it agrees with; added values
            # may be overwritten by later includes. If it extends none, it is a leg of its own.
            fits = [leg for leg, original in zip(legs, originals, strict=True) if _agrees(entry, original)]
            for leg in fits:
                leg.update(entry)
            if not fits:
                added.append(dict(entry))
        unique: list[dict[str, str]] = []
        for leg in legs + added:
            if leg not in unique:
                unique.append(leg)
        return unique


def _within(entry: Mapping[str, str], leg: Mapping[str, str]) -> bool:
    return all(leg.get(key) == value for key, value in entry.items())


def _agrees(entry: Mapping[str, str], original: Mapping[str, str]) -> bool:
    return all(original[key] == value for key, value in entry.items() if key in original)


class EnvironmentRef(_Model):
    """`environment: {name, url}`: where a stage deploys, and where people find what it deployed."""

    name: str = Field(min_length=1)
    url: str | None = Field(default=None, min_length=1)


class StageSpec(_Model):
    needs: Names = []
    run: str | None = Field(default=None, min_length=1, description="a bash script (bash -eo pipefail)")
    steps: list[str] | None = Field(default=None, min_length=1, description="commands run as one script")
    pool: PoolName = "default"
    env: dict[EnvName, Text] = {}
    timeout: Duration = Field(default=3600.0, gt=0, description="seconds, or e.g. 30s, 10m, 1h30m")
    retry: Annotated[
        RetryPolicy, BeforeValidator(_retry_shorthand, json_schema_input_type=int | RetryPolicy)
    ] = RetryPolicy()
    if_: Annotated[str | None, AfterValidator(_check_condition)] = Field(default=None, alias="if")
    matrix: Matrix | None = None
    allow_failure: bool = False
    type: Literal["build", "test", "deploy"] | None = None
    reports: Reports | None = None
    coverage: CoverageRule | None = None
    parallel: int | None = Field(
        default=None, ge=1, le=MAX_PARALLEL, description="legs stage[1/N] … stage[N/N]"
    )
    split: Split | None = None
    environment: Annotated[str, Field(min_length=1)] | EnvironmentRef | None = Field(
        default=None, description="records a Deployment: a name, or {name, url}"
    )
    approval: bool = False
    checkout: bool = Field(default=True, description="false: the stage starts in an empty workspace")
    labels: Annotated[dict[Text, Text], AfterValidator(check_labels)] = Field(
        default={}, description="runs only on a worker of its pool that advertises all of these"
    )

    @field_validator("needs")
    @classmethod
    def _dedupe_needs(cls, needs: list[str]) -> list[str]:
        return list(dict.fromkeys(needs))

    def environment_name(self) -> str | None:
        return self.environment.name if isinstance(self.environment, EnvironmentRef) else self.environment

    def environment_url(self) -> str | None:
        return self.environment.url if isinstance(self.environment, EnvironmentRef) else None

    def script(self) -> str:
        """The script to run: `run`, or `steps` one per line; "" for a pure approval gate."""
        if self.run is not None:
            return self.run
        return "\n".join(self.steps or [])


class Concurrency(_Model):
    group: Annotated[str, AfterValidator(check_template)] = Field(min_length=1)
    cancel_in_progress: bool = False
    queue: int | None = Field(default=None, ge=0, description="most runs waiting; null = unbounded")


class PipelineDefinition(_Model):
    name: str = Field(default="pipeline", min_length=1)
    on: Triggers = Field(default_factory=default_triggers)
    env: dict[EnvName, Text] = {}
    concurrency: Concurrency | None = None
    variables: dict[VariableName, Text] = Field(default={}, description="names and default values")
    stages: dict[StageName, StageSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        # A plain YAML 1.1 loader reads the key `on` as True; accept data loaded that way too.
        # Top-level `x-` keys hold YAML anchors for reuse (as in compose files) and are dropped.
        return {
            ("on" if key is True else key): value
            for key, value in data.items()
            if not (isinstance(key, str) and key.startswith("x-"))
        }

    @model_validator(mode="after")
    def _check_stages(self) -> PipelineDefinition:
        problems: list[tuple[Loc, str]] = []
        for name, stage in self.stages.items():
            if stage.run is not None and stage.steps is not None:
                problems.append((("stages", name), f"stage {name!r} has both run and steps; give one"))
            elif stage.run is None and stage.steps is None and not stage.approval:
                problems.append((("stages", name), f"stage {name!r} has neither run nor steps"))
            if stage.parallel is not None and stage.matrix is not None:
                problems.append(
                    (("stages", name, "parallel"), f"stage {name!r} has both matrix and parallel; give one")
                )
            if stage.split is not None and stage.parallel is None:
                problems.append((("stages", name, "split"), f"stage {name!r} has split but no parallel: N"))
            if stage.coverage is not None and not (stage.reports and stage.reports.coverage):
                message = f"stage {name!r} has coverage.min but no reports.coverage to measure it"
                problems.append((("stages", name, "coverage"), message))
            if stage.if_ is not None:
                for need in sorted(parse_expression(stage.if_).needed_stages - set(stage.needs)):
                    message = f"needs.{need}.status: stage {need!r} is not in this stage's needs"
                    problems.append((("stages", name, "if"), message))
        problems += check_needs({name: stage.needs for name, stage in self.stages.items()})
        if problems:
            raise _ProblemsError(problems)
        return self


def check_needs(needs: Mapping[str, Sequence[str]]) -> list[tuple[Loc, str]]:
    """Problems of the needs graph, each with its field location: a stage that needs itself or
    an unknown stage, or else (the graph being complete) a cycle."""
    problems: list[tuple[Loc, str]] = []
    for name, wanted in needs.items():
        for index, need in enumerate(wanted):
            if need == name:
                problems.append((("stages", name, "needs", index), f"stage {name!r} needs itself"))
            elif need not in needs:
                message = f"stage {name!r} needs unknown stage {need!r}"
                problems.append((("stages", name, "needs", index), message))
    if not problems:
        cycle = _find_cycle(needs)
        if cycle:
            problems.append((("stages", cycle[0], "needs"), "needs form a cycle: " + " -> ".join(cycle)))
    return problems


def _find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first cycle met walking stages in definition order, as a closed path; iterative, so a
    long chain of stages cannot exhaust the stack."""
    done: set[str] = set()
    for root in needs:
        if root in done:
            continue
        path, pending = [root], [iter(needs[root])]
        while path:
            need = next(pending[-1], None)
            if need is None:
                done.add(path.pop())
                pending.pop()
            elif need in path:
                return [*path[path.index(need) :], need]
            elif need in needs and need not in done:
                path.append(need)
                pending.append(iter(needs[need]))
    return None


def definition_json_schema() -> dict[str, Any]:
    """JSON Schema of `.comet.yml` for editors, with keys as users write them (`on`, `if`)."""
    schema = PipelineDefinition.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Comet .comet.yml", **schema}


# --- errors and parsing ------------------------------------------------------------------------


class _ProblemsError(ValueError):
    """Several problems found at once by a model validator, each with a location below it."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@dataclass(frozen=True)
class DefinitionProblem:
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        parts = [f"line {self.line}"] if self.line is not None else []
        return ": ".join([*parts, *([self.path] if self.path else []), self.message])


class DefinitionError(ValueError):
    """A `.comet.yml` that does not parse or validate; one problem per line of the message."""

    def __init__(self, problems: Sequence[DefinitionProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda problem: problem.line or 0))
        shown = [str(problem) for problem in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS_SHOWN} more problems")
        super().__init__("\n".join(shown))

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None


def parse_definition(text: str) -> PipelineDefinition:
    """The definition in `text`, or DefinitionError naming the line and field of each problem."""
    if len(text) > MAX_DEFINITION_CHARS:
        raise DefinitionError([DefinitionProblem(None, "", f"longer than {MAX_DEFINITION_CHARS} characters")])
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # checked up front, before any parsing
        at = text.count("\n", 0, exc.position) + 1
        raise DefinitionError([DefinitionProblem(at, "", f"invalid YAML: {exc.reason}")]) from None
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        problem = str(exc.problem)
        if problem.startswith("but ") and exc.context:  # e.g. "but found another document"
            problem = f"{exc.context}, {problem}"
        raise DefinitionError([DefinitionProblem(line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([DefinitionProblem(None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        raise DefinitionError([DefinitionProblem(1, "", "the file is empty; it needs at least stages:")])
    try:
        return PipelineDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(list(_problems(exc, root))) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader with text keys, refused duplicate keys, scalars other than null left as text, and
    at most MAX_NESTING levels of lists and mappings."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_NESTING} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = _key_text(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        self.flatten_mapping(node)  # `<<: *anchor` merges; later keys win, as in YAML
        return {_key_text(key): self.construct_object(value, deep=deep) for key, value in node.value}


_TEXT_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _TEXT_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _key_text(node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a key must be a name, not a list or mapping", node.start_mark
        )
    return str(node.value)


def _problems(exc: ValidationError, root: yaml.Node) -> Iterator[DefinitionProblem]:
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _ProblemsError):
            for below, message in cause.problems:
                yield DefinitionProblem(_line(root, loc + below), _path(loc + below), message)
        else:
            yield DefinitionProblem(_line(root, loc), _path(loc), _message(error, loc))


def _line(root: yaml.Node, loc: Loc) -> int:
    """Line of the deepest YAML node on `loc`: the key's line for a mapping entry."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            entry = next(
                (kv for kv in node.value if isinstance(kv[0], yaml.ScalarNode) and kv[0].value == part), None
            )
            if entry is None:
                if part == "[key]":  # pydantic's marker for an invalid dict key: the key is the place
                    continue
                break  # a missing field: the parent is the place
            line, node = entry[0].start_mark.line + 1, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            out += f".{part}" if out else part
    return out


def _message(error: ErrorDetails, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "missing":
        return "required but missing"
    if kind == "model_type" and not loc:
        return "the file must be a mapping with at least stages:"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    message = error["msg"][:1].lower() + error["msg"][1:]
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return f"{message} (got {shown})"
    return message


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    allowed = _keys_at(loc[:-1])
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r} (allowed: {', '.join(allowed)})" if allowed else f"unknown key {key!r}"


def _keys_at(loc: Loc) -> list[str]:
    """The keys the model at `loc` accepts, for suggestions."""
    annotation: Any = PipelineDefinition
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {field.alias or name: field for name, field in annotation.model_fields.items()}
            if part not in fields:
                return []
            annotation = fields[str(part)].annotation
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [field.alias or name for name, field in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """`X` from `Annotated[X, ...]` and `X | None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
