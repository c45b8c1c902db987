"""plan(): a definition becomes ordered planned stages, matrix legs expanded, needs fanned in."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from orchestrator.planner import PlanError, PlannedStage, leg_name, plan
from schemas.pipeline import PipelineDefinition, StageSpec, parse_definition


def planned(text: str) -> list[PlannedStage]:
    return plan(parse_definition(textwrap.dedent(text)))


def unchecked(stages: dict[str, dict[str, Any]]) -> PipelineDefinition:
    """A definition that skipped validation: the graphs the schema refuses, for the planner to refuse too."""
    return PipelineDefinition.model_construct(
        stages={name: StageSpec.model_validate(spec) for name, spec in stages.items()}
    )


def test_diamond_is_ordered_with_definition_order_among_peers() -> None:
    stages = planned("""\
        stages:
          deploy: {run: d, needs: [right, left]}
          right: {run: r, needs: root}
          left: {run: l, needs: root}
          root: {run: x}
        """)
    assert [(s.name, s.needs, s.position) for s in stages] == [
        ("root", (), 0),
        ("right", ("root",), 1),
        ("left", ("root",), 2),
        ("deploy", ("right", "left"), 3),
    ]


def test_independent_stages_keep_definition_order() -> None:
    stages = planned("stages:\n  c: {run: x}\n  a: {run: x}\n  b: {run: x, needs: c}\n")
    assert [s.name for s in stages] == ["c", "a", "b"]


def test_matrix_legs_are_named_by_their_values_in_key_order() -> None:
    stages = planned("""\
        stages:
          unit:
            run: pytest
            matrix:
              python: ['3.11', '3.12']
              os: [linux, mac]
              exclude: [{python: '3.11', os: mac}]
              include: [{python: '3.13', os: linux, experimental: 'true'}, {os: linux, lts: 'yes'}]
        """)
    assert [(s.name, s.base_name, s.matrix) for s in stages] == [
        ("unit[python=3.11,os=linux,lts=yes]", "unit", {"python": "3.11", "os": "linux", "lts": "yes"}),
        ("unit[python=3.12,os=linux,lts=yes]", "unit", {"python": "3.12", "os": "linux", "lts": "yes"}),
        ("unit[python=3.12,os=mac]", "unit", {"python": "3.12", "os": "mac"}),
        (
            "unit[python=3.13,os=linux,experimental=true]",
            "unit",
            {"python": "3.13", "os": "linux", "experimental": "true"},
        ),
    ]
    assert [s.spec["matrix"] for s in stages] == [s.matrix for s in stages]


def test_need_on_a_matrix_stage_fans_in_from_every_leg() -> None:
    stages = planned("""\
        stages:
          lint: {run: x}
          unit: {run: x, needs: lint, matrix: {py: ['3.11', '3.12']}}
          report: {run: x, needs: unit}
        """)
    by_name = {s.name: s for s in stages}
    assert by_name["unit[py=3.11]"].needs == ("lint",)
    assert by_name["unit[py=3.12]"].needs == ("lint",)
    assert by_name["report"].needs == ("unit[py=3.11]", "unit[py=3.12]")
    assert [s.position for s in stages] == [0, 1, 2, 3]


def test_matrix_stage_needing_a_matrix_stage_needs_all_its_legs() -> None:
    stages = planned("""\
        stages:
          build: {run: x, matrix: {os: [a, b]}}
          test: {run: x, needs: build, matrix: {os: [a, b]}}
        """)
    tests = [s for s in stages if s.base_name == "test"]
    assert all(s.needs == ("build[os=a]", "build[os=b]") for s in tests)


def test_spec_holds_everything_a_worker_needs_and_is_json() -> None:
    stages = planned("""\
        env: {SHARED: pipeline, LEVEL: pipeline}
        stages:
          lint: {run: x}
          deploy:
            needs: lint
            steps: [./deploy.sh, ./smoke.sh]
            env: {LEVEL: stage}
            timeout: 1h30m
            retry: {count: 2, when: [lost_worker], backoff: 10s}
            if: ref == 'refs/heads/main'
            allow_failure: true
            type: deploy
            pool: linux
            reports: {junit: out/*.xml}
            environment: production
            approval: true
        """)
    deploy = stages[1]
    assert deploy.pool == "linux"
    assert deploy.spec == {
        "script": "./deploy.sh\n./smoke.sh",
        "env": {"SHARED": "pipeline", "LEVEL": "stage"},
        "timeout_s": 5400.0,
        "retry": {"count": 2, "when": ["lost_worker"], "backoff_s": 10.0},
        "if": "ref == 'refs/heads/main'",
        "allow_failure": True,
        "type": "deploy",
        "reports": {"junit": ["out/*.xml"], "coverage": []},
        "environment": "production",
        "environment_url": None,
        "approval": True,
        "matrix": {},
        "coverage_min": None,
        "checkout": True,
    }
    assert json.loads(json.dumps(deploy.spec)) == deploy.spec
    assert stages[0].spec["reports"] is None


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            {"build": {"run": "x"}, "deploy": {"run": "x", "needs": ["biuld"]}},
            "stage 'deploy' needs unknown stage 'biuld'",
        ),
        ({"a": {"run": "x", "needs": ["a"]}}, "stage 'a' needs itself"),
        (
            {
                "a": {"run": "x", "needs": ["b"]},
                "b": {"run": "x", "needs": ["c"]},
                "c": {"run": "x", "needs": ["a"]},
            },
            "needs form a cycle: a -> b -> c -> a",
        ),
        (
            {
                "root": {"run": "x"},
                "a": {"run": "x", "needs": ["root", "b"]},
                "b": {"run": "x", "needs": ["a"]},
            },
            "needs form a cycle: a -> b -> a",
        ),
    ],
)
def test_graph_that_cannot_run_is_refused_naming_the_problem(
    stages: dict[str, dict[str, Any]], message: str
) -> None:
    with pytest.raises(PlanError) as caught:
        plan(unchecked(stages))
    assert str(caught.value) == message


def test_unknown_need_names_the_missing_stage() -> None:
    with pytest.raises(ValueError, match="needs unknown stage 'biuld'"):
        plan(unchecked({"deploy": {"run": "x", "needs": "biuld"}}))


def test_leg_name_of_a_plain_stage_is_its_name() -> None:
    assert leg_name("lint", {}) == "lint"
    assert leg_name("unit", {"py": "3.12", "os": "linux"}) == "unit[py=3.12,os=linux]"


def test_a_parallel_stage_becomes_numbered_legs_that_its_dependants_all_need() -> None:
    stages = planned("""\
        stages:
          e2e:
            parallel: 3
            split: {files: "tests/**/test_*.py"}
            run: pytest $(cat "$COMET_TEST_FILES")
          report: {needs: e2e, run: x}
        """)
    names = [s.name for s in stages]
    assert names == ["e2e[1/3]", "e2e[2/3]", "e2e[3/3]", "report"]
    assert [s.spec["node"] for s in stages[:3]] == [{"index": i, "total": 3} for i in (1, 2, 3)]
    assert stages[0].spec["split"] == {"files": "tests/**/test_*.py", "by": "timings"}
    assert {s.base_name for s in stages[:3]} == {"e2e"}
    assert stages[3].needs == ("e2e[1/3]", "e2e[2/3]", "e2e[3/3]")
    assert "node" not in stages[3].spec


def test_an_environment_with_a_url_keeps_its_name_and_url_apart() -> None:
    stages = planned("""\
        stages:
          deploy:
            run: ./deploy.sh
            environment: {name: production, url: "https://example.com"}
        """)

    assert (stages[0].spec["environment"], stages[0].spec["environment_url"]) == (
        "production",
        "https://example.com",
    )
