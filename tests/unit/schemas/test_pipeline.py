"""parse_definition: `.comet.yml` into typed models, or errors that name the line and the field."""

from __future__ import annotations

import json
import textwrap

import pytest

from schemas.pipeline import (
    DefinitionError,
    PipelineDefinition,
    definition_json_schema,
    parse_definition,
)

CONTRACT_EXAMPLE = """\
name: ci
on:                                   # default: push to any branch, and manual
  push: {branches: [main, "release/**"], tags: ["v*"], paths: ["src/**"]}
  pull_request: {branches: [main]}
  schedule: [{cron: "0 3 * * *"}]
  manual: true
env: {PYTHONUNBUFFERED: "1"}
concurrency: {group: "deploy-${{ ref }}", cancel_in_progress: true}
stages:
  lint:
    run: ruff check .
  unit:
    needs: [lint]
    matrix: {python: ["3.11", "3.12"]}
    type: test
    run: pytest --junitxml=reports/junit.xml --cov --cov-report=xml
    reports: {junit: ["reports/*.xml"], coverage: coverage.xml}
    retry: 2
    timeout: 10m
  build:
    needs: [lint]
    pool: linux
    run: ./build.sh
  deploy:
    needs: [unit, build]
    if: ref == 'refs/heads/main'
    environment: production
    approval: true
"""


def parse(text: str) -> PipelineDefinition:
    return parse_definition(textwrap.dedent(text))


def error_of(text: str) -> str:
    with pytest.raises(DefinitionError) as caught:
        parse(text)
    return str(caught.value)


def test_contract_example_parses_into_typed_models() -> None:
    definition = parse_definition(CONTRACT_EXAMPLE)
    assert definition.name == "ci"
    assert definition.on.push is not None
    assert definition.on.push.branches == ["main", "release/**"]
    assert definition.on.schedule[0].cron == "0 3 * * *"
    assert definition.concurrency is not None
    assert definition.concurrency.cancel_in_progress is True
    assert list(definition.stages) == ["lint", "unit", "build", "deploy"]
    unit = definition.stages["unit"]
    assert unit.timeout == 600.0
    assert unit.retry.count == 2
    assert unit.retry.when == ["script_failure", "lost_worker", "timeout"]
    assert unit.reports is not None
    assert unit.reports.junit == ["reports/*.xml"]
    assert unit.matrix is not None
    assert unit.matrix.legs() == [{"python": "3.11"}, {"python": "3.12"}]
    deploy = definition.stages["deploy"]
    assert deploy.if_ == "ref == 'refs/heads/main'"
    assert deploy.approval is True
    assert deploy.script() == ""
    assert definition.stages["build"].pool == "linux"
    assert definition.stages["lint"].timeout == 3600.0


def test_defaults_of_a_minimal_definition() -> None:
    definition = parse("stages:\n  only:\n    run: make\n")
    assert definition.name == "pipeline"
    assert definition.on.push is not None
    assert definition.on.manual is True
    assert definition.env == {}
    assert definition.concurrency is None
    stage = definition.stages["only"]
    assert (stage.pool, stage.needs, stage.retry.count, stage.if_) == ("default", [], 0, None)


def test_on_key_is_not_read_as_a_boolean() -> None:
    definition = parse("on:\n  manual: false\nstages:\n  a: {run: x}\n")
    assert definition.on.manual is False
    assert definition.on.push is None


def test_data_loaded_by_plain_yaml_with_true_for_on_is_accepted() -> None:
    definition = PipelineDefinition.model_validate({True: {"manual": False}, "stages": {"a": {"run": "x"}}})
    assert definition.on.manual is False


def test_scalars_become_text_exactly_as_written() -> None:
    definition = parse("""\
        env: {WORKERS: 4, DEBUG: true, MODE: on, RATIO: 1.50, EMPTY: null, OCTAL: 010}
        variables: {TARGET: , REGION: eu}
        stages:
          unit:
            run: pytest
            matrix: {python: [3.10, 3.12], country: [NO, SE]}
            env: {VERSION: 2024-01-01}
        """)
    assert definition.env == {
        "WORKERS": "4",
        "DEBUG": "true",
        "MODE": "on",
        "RATIO": "1.50",
        "EMPTY": "",
        "OCTAL": "010",
    }
    assert definition.variables == {"TARGET": "", "REGION": "eu"}
    unit = definition.stages["unit"]
    assert unit.env == {"VERSION": "2024-01-01"}
    assert unit.matrix is not None
    assert unit.matrix.axes == {"python": ["3.10", "3.12"], "country": ["NO", "SE"]}


@pytest.mark.parametrize(
    ("written", "expected"), [("true", True), ("yes", True), ("off", False), ("0", False)]
)
def test_boolean_fields_read_yaml_booleans(written: str, expected: bool) -> None:
    definition = parse(f"stages:\n  a:\n    run: x\n    allow_failure: {written}\n")
    assert definition.stages["a"].allow_failure is expected


def test_python_data_with_numbers_and_booleans_is_coerced_to_text() -> None:
    definition = PipelineDefinition.model_validate(
        {"env": {"A": 1, "B": 1.5, "C": False, "D": None}, "stages": {"a": {"run": "x", "retry": 2}}}
    )
    assert definition.env == {"A": "1", "B": "1.5", "C": "false", "D": ""}
    assert definition.stages["a"].retry.count == 2


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("needs: lint", ["lint"]),
        ("needs: [lint, lint]", ["lint"]),
    ],
)
def test_single_need_may_be_a_string(stage: str, expected: list[str]) -> None:
    definition = parse(f"stages:\n  lint: {{run: x}}\n  a:\n    run: y\n    {stage}\n")
    assert definition.stages["a"].needs == expected


def test_steps_are_joined_into_one_script() -> None:
    definition = parse("stages:\n  a:\n    steps: [make, make test]\n")
    assert definition.stages["a"].script() == "make\nmake test"


def test_retry_full_form() -> None:
    definition = parse("stages:\n  a:\n    run: x\n    retry: {count: 3, when: [lost_worker], backoff: 5s}\n")
    retry = definition.stages["a"].retry
    assert (retry.count, retry.when, retry.backoff) == (3, ["lost_worker"], 5.0)


def test_yaml_anchors_under_x_keys_can_be_merged_into_stages() -> None:
    definition = parse("""\
        x-defaults: &defaults {pool: linux, timeout: 5m}
        stages:
          a: {<<: *defaults, run: x, timeout: 1m}
        """)
    stage = definition.stages["a"]
    assert (stage.pool, stage.timeout) == ("linux", 60.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "stages:\n  a:\n    run: x\n    timeout: 10x\n",
            "line 4: stages.a.timeout: '10x' is not a duration (use e.g. 30s, 10m, 1h30m or seconds)",
        ),
        (
            "stages:\n  a:\n    run: x\n    timeout: 0\n",
            "line 4: stages.a.timeout: input should be greater than 0",
        ),
        (
            "stages:\n  a:\n    run: x\n    tiemout: 3\n",
            "line 4: stages.a.tiemout: unknown key 'tiemout' (did you mean 'timeout'?)",
        ),
        ("nmae: x\nstages:\n  a: {run: x}\n", "line 1: nmae: unknown key 'nmae' (did you mean 'name'?)"),
        (
            "on:\n  push:\n    branch: [main]\nstages:\n  a: {run: x}\n",
            "line 3: on.push.branch: unknown key 'branch' (did you mean 'branches'?)",
        ),
        ("stages:\n  a:\n    pool: linux\n", "line 2: stages.a: stage 'a' has neither run nor steps"),
        (
            "stages:\n  a:\n    run: x\n    steps: [y]\n",
            "line 2: stages.a: stage 'a' has both run and steps; give one",
        ),
        (
            "stages:\n  a: {run: x}\n  deploy:\n    run: y\n    needs: [a, biuld]\n",
            "line 5: stages.deploy.needs[1]: stage 'deploy' needs unknown stage 'biuld'",
        ),
        ("stages:\n  a:\n    run: x\n    needs: a\n", "line 4: stages.a.needs[0]: stage 'a' needs itself"),
        (
            "stages:\n  a: {run: x, needs: b}\n  b: {run: x, needs: c}\n  c: {run: x, needs: a}\n",
            "line 2: stages.a.needs: needs form a cycle: a -> b -> c -> a",
        ),
        (
            "stages:\n  a:\n    run: x\n    if: ref === 'x'\n",
            "line 4: stages.a.if: column 7: unexpected character '=' (use == to compare)",
        ),
        (
            "stages:\n  a:\n    run: x\n    if: os == 'linux'\n",
            "line 4: stages.a.if: column 1: unknown name 'os'",
        ),
        (
            "stages:\n  b: {run: x}\n  a:\n    run: x\n    if: needs.b.status == 'failed'\n",
            "line 5: stages.a.if: needs.b.status: stage 'b' is not in this stage's needs",
        ),
        (
            "stages:\n  Bad Name:\n    run: x\n",
            "line 2: stages.Bad Name: 'Bad Name' is not a valid stage name",
        ),
        (
            "stages:\n  a:\n    run: x\n    pool: Linux\n",
            "line 4: stages.a.pool: 'Linux' is not a valid pool name",
        ),
        (
            "stages:\n  a:\n    run: x\n    env:\n      COMET_SHA: x\n",
            "line 5: stages.a.env.COMET_SHA: 'COMET_SHA': names starting with COMET_ are set by Comet itself",
        ),
        (
            "stages:\n  a:\n    run: x\n    env: {1X: y}\n",
            "line 4: stages.a.env.1X: '1X' is not a valid environment",
        ),
        (
            "stages:\n  a:\n    run: x\n    retry: 11\n",
            "line 4: stages.a.retry.count: input should be less than or equal to 10 (got '11')",
        ),
        (
            "stages:\n  a:\n    run: x\n    retry: {when: [oom]}\n",
            "line 4: stages.a.retry.when[0]: input should be 'script_failure', 'lost_worker' or 'timeout'",
        ),
        (
            "stages:\n  a:\n    run: x\n    type: lint\n",
            "line 4: stages.a.type: input should be 'build', 'test' or 'deploy' (got 'lint')",
        ),
        (
            "stages:\n  a:\n    run: x\n    allow_failure: maybe\n",
            "line 4: stages.a.allow_failure: input should be a valid boolean",
        ),
        ("stages:\n  a:\n    run: [x]\n", "line 3: stages.a.run: input should be a valid string"),
        (
            "on:\n  schedule:\n    - cron: '0 3 * *'\nstages:\n  a: {run: x}\n",
            "line 3: on.schedule[0].cron: '0 3 * *' is not a 5-field cron expression",
        ),
        (
            "on:\n  schedule:\n    - cron: '61 3 * * *'\nstages:\n  a: {run: x}\n",
            "line 3: on.schedule[0].cron: '61 3 * * *' is not a valid cron expression",
        ),
        (
            "on:\n  push:\n    branches: ['[z-a]']\nstages:\n  a: {run: x}\n",
            "line 3: on.push.branches[0]: '[z-a]' is not a valid glob",
        ),
        (
            "on:\n  pull_request: {types: [merged]}\nstages:\n  a: {run: x}\n",
            "line 2: on.pull_request.types[0]: input should be 'opened'",
        ),
        (
            "concurrency:\n  cancel_in_progress: true\nstages:\n  a: {run: x}\n",
            "line 1: concurrency.group: required but missing",
        ),
        (
            "concurrency:\n  group: 'deploy-${{ secrets.X }}'\nstages:\n  a: {run: x}\n",
            "line 2: concurrency.group: unknown name 'secrets.X'",
        ),
        (
            "concurrency: {group: x, queue: -1}\nstages:\n  a: {run: x}\n",
            "line 1: concurrency.queue: input should be greater than or equal to 0",
        ),
        ("stages: {}\n", "line 1: stages: dictionary should have at least 1 item"),
        ("name: x\n", "line 1: stages: required but missing"),
        ("- a\n- b\n", "line 1: the file must be a mapping with at least stages:"),
        ("", "line 1: the file is empty"),
        ("stages:\n  a: {run: x}\n  a: {run: y}\n", "line 3: invalid YAML: duplicate key 'a'"),
        ("stages:\n  a: {run: x\n", "line 3: invalid YAML:"),
        ("stages:\n  a: {run: x}\n\x07\n", "line 3: invalid YAML: special characters are not allowed"),
        (
            "stages:\n  a: {run: x}\n---\nname: y\n",
            "line 3: invalid YAML: expected a single document in the stream, but found another document",
        ),
        (
            "stages: !!python/object/apply:os.system [ls]\n",
            "line 1: invalid YAML: could not determine a constructor",
        ),
        ("stages:\n  a:\n  run: x\n   b: 1\n", "line 4: invalid YAML: mapping values are not allowed here"),
    ],
)
def test_invalid_definition_names_the_line_and_the_field(text: str, message: str) -> None:
    assert error_of(text).startswith(message)


@pytest.mark.parametrize(
    ("matrix", "legs"),
    [
        ("{os: [linux, mac], py: ['3.11', '3.12']}", 4),
        ("{os: [linux, mac], py: ['3.11', '3.12'], exclude: [{os: mac, py: '3.11'}]}", 3),
        ("{os: [linux], exclude: [{os: linux}], include: [{os: bsd}]}", 1),
        ("{include: [{os: linux}, {os: mac}]}", 2),
        ("{os: [linux, mac], include: [{os: linux, extra: x}, {os: windows}]}", 3),
    ],
)
def test_matrix_expands_with_include_and_exclude(matrix: str, legs: int) -> None:
    definition = parse(f"stages:\n  a:\n    run: x\n    matrix: {matrix}\n")
    stage_matrix = definition.stages["a"].matrix
    assert stage_matrix is not None
    assert len(stage_matrix.legs()) == legs


def test_matrix_include_follows_github_semantics() -> None:
    # The example of GitHub's documentation, result for result.
    definition = parse("""\
        stages:
          a:
            run: x
            matrix:
              fruit: [apple, pear]
              animal: [cat, dog]
              include:
                - color: green
                - color: pink
                  animal: cat
                - fruit: apple
                  shape: circle
                - fruit: banana
                - fruit: banana
                  animal: cat
        """)
    matrix = definition.stages["a"].matrix
    assert matrix is not None
    assert matrix.legs() == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ("{a: [1,2,3,4,5,6,7,8,9], b: [1,2,3,4,5,6,7,8,9], c: [1,2,3,4]}", "more than 256 legs"),
        ("{os: [linux], exclude: [{os: linux}]}", "matrix has no legs"),
        ("{os: [linux], exclude: [{python: x}]}", "exclude names 'python', which is not a matrix key"),
        ("{os: []}", "list should have at least 1 item"),
        ("{os-name: [linux]}", "'os-name' is not a valid matrix key"),
        ("{os: [[linux]]}", "input should be a valid string"),
    ],
)
def test_invalid_matrix_is_refused_with_its_line(matrix: str, message: str) -> None:
    error = error_of(f"stages:\n  a:\n    run: x\n    matrix: {matrix}\n")
    assert error.startswith("line 4: stages.a.matrix")
    assert message in error


def test_every_problem_is_reported_one_per_line_in_line_order() -> None:
    error = error_of(
        "stages:\n  a:\n    run: x\n    pool: BAD\n    timeout: never\n  b:\n    run: y\n    typo: 1\n"
    )
    assert error.splitlines() == [
        "line 4: stages.a.pool: 'BAD' is not a valid pool name (lowercase letters, digits, '_', '.', '-')",
        "line 5: stages.a.timeout: 'never' is not a duration (use e.g. 30s, 10m, 1h30m or seconds)",
        "line 8: stages.b.typo: unknown key 'typo' (did you mean 'type'?)",
    ]


def test_message_lists_at_most_twenty_problems_but_all_are_kept() -> None:
    text = "stages:\n" + "".join(f"  s{i}: {{run: x, pool: X}}\n" for i in range(25))
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    lines = str(caught.value).splitlines()
    assert len(lines) == 21
    assert lines[-1] == "... and 5 more problems"
    assert len(caught.value.problems) == 25


def test_definition_error_is_a_value_error_carrying_its_problems() -> None:
    with pytest.raises(ValueError, match="line 4") as caught:
        parse("stages:\n  a:\n    run: x\n    timeout: -1\n")
    assert isinstance(caught.value, DefinitionError)
    assert caught.value.line == 4
    assert caught.value.problems[0].path == "stages.a.timeout"


def test_json_schema_uses_the_keys_users_write() -> None:
    schema = definition_json_schema()
    json.dumps(schema)  # serialisable as is
    assert "on" in schema["properties"]
    assert "stages" in schema["required"]
    stage = schema["$defs"]["StageSpec"]
    assert "if" in stage["properties"]
    assert "if_" not in stage["properties"]
    assert stage["additionalProperties"] is False


def test_test_stages_take_parallel_legs_a_split_coverage_minimum_and_report_globs() -> None:
    definition = parse_definition(
        """
stages:
  e2e:
    type: test
    parallel: 4
    split: {files: "tests/e2e/**/test_*.py", by: timings}
    run: pytest $(cat "$COMET_TEST_FILES")
    reports: {junit: ["reports/*.xml"], coverage: coverage.xml}
    coverage: {min: 80}
"""
    )
    e2e = definition.stages["e2e"]
    assert e2e.parallel == 4
    assert e2e.split is not None
    assert (e2e.split.files, e2e.split.by) == ("tests/e2e/**/test_*.py", "timings")
    assert e2e.reports is not None
    assert (e2e.reports.junit, e2e.reports.coverage) == (["reports/*.xml"], ["coverage.xml"])
    assert e2e.coverage is not None
    assert e2e.coverage.min == 80


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "stages:\n  a: {run: x, split: {files: 't/*.py'}}\n",
            "line 2: stages.a.split: stage 'a' has split but no parallel: N",
        ),
        (
            "stages:\n  a: {run: x, parallel: 2, matrix: {v: [1, 2]}}\n",
            "line 2: stages.a.parallel: stage 'a' has both matrix and parallel; give one",
        ),
        (
            "stages:\n  a: {run: x, coverage: {min: 80}}\n",
            "line 2: stages.a.coverage: stage 'a' has coverage.min but no reports.coverage",
        ),
        ("stages:\n  a: {run: x, parallel: 0}\n", "line 2: stages.a.parallel: "),
        (
            "stages:\n  a: {run: x, coverage: {min: 101}, reports: {coverage: c.xml}}\n",
            "stages.a.coverage.min",
        ),
        (
            "on:\n  schedule:\n    - {cron: '0 3 * * *', timezone: Europe/Berln}\nstages:\n  a: {run: x}\n",
            "on.schedule[0].timezone: 'Europe/Berln' is not an IANA time zone (did you mean 'Europe/Berlin'?)",
        ),
        (
            "on:\n  schedule: [{cron: '@daily', ref: 'bad..ref'}]\nstages:\n  a: {run: x}\n",
            "line 2: on.schedule[0].ref: must not contain '..'",
        ),
    ],
)
def test_test_stage_mistakes_name_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    assert message in str(caught.value)


def test_a_schedule_names_its_time_zone_and_ref() -> None:
    definition = parse_definition(
        "on:\n  schedule: [{cron: '@daily', timezone: Europe/Berlin, ref: release}]\nstages:\n  a: {run: x}\n"
    )
    (schedule,) = definition.on.schedule
    assert (schedule.cron, schedule.timezone, schedule.ref) == ("0 0 * * *", "Europe/Berlin", "release")
