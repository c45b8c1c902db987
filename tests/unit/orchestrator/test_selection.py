"""Stage selection: a test suite's run holds only the stages its names or globs match and all they
need, transitively; a selection matching nothing fails the run naming the suite, commit and stages."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from orchestrator.model import PlanFailed, Planned, StageState
from orchestrator.planner import plan
from orchestrator.planning import assign_splits, planned_from_text
from orchestrator.selection import (
    StageSelection,
    apply_selection,
    matching,
    select_stages,
    selection_from_trigger,
)
from schemas.pipeline import parse_definition
from schemas.states import StageStatus


@dataclass(frozen=True)
class S:
    name: str
    needs: tuple[str, ...] = ()
    base_name: str = ""

    def __post_init__(self) -> None:
        if not self.base_name:
            object.__setattr__(self, "base_name", self.name.split("[", 1)[0])


PIPELINE = [
    S("lint"),
    S("build", ("lint",)),
    S("unit[python=3.11]", ("build",)),
    S("unit[python=3.12]", ("build",)),
    S("e2e[1/2]", ("build",)),
    S("e2e[2/2]", ("build",)),
    S("docs"),
    S("deploy", ("unit[python=3.11]", "unit[python=3.12]", "e2e[1/2]", "e2e[2/2]")),
]


@pytest.mark.parametrize(
    ("patterns", "kept"),
    [
        (["lint"], {"lint"}),
        (["build"], {"lint", "build"}),
        (["unit"], {"lint", "build", "unit[python=3.11]", "unit[python=3.12]"}),
        (["unit[python=3.12]"], {"lint", "build", "unit[python=3.12]"}),
        (["e2e[2/2]"], {"lint", "build", "e2e[2/2]"}),
        (["e2e*"], {"lint", "build", "e2e[1/2]", "e2e[2/2]"}),
        (["unit*", "docs"], {"lint", "build", "unit[python=3.11]", "unit[python=3.12]", "docs"}),
        (["*"], {s.name for s in PIPELINE}),
        (["deploy"], {s.name for s in PIPELINE} - {"docs"}),
        (["d?cs"], {"docs"}),
        (["nothing", "docs"], {"docs"}),
    ],
    ids=lambda value: ",".join(value) if isinstance(value, list) else None,
)
def test_a_selection_keeps_the_matched_stages_and_everything_they_need(
    patterns: list[str], kept: set[str]
) -> None:
    assert select_stages(PIPELINE, patterns) == kept


def test_a_selection_matching_nothing_keeps_nothing() -> None:
    assert select_stages(PIPELINE, ["integration", "unit[python=2.7]"]) == frozenset()
    assert select_stages(PIPELINE, []) == frozenset()


def test_a_leg_name_with_brackets_is_matched_exactly_not_as_a_character_class() -> None:
    stages = [S("unit[python=3.12]"), S("unitp"), S("unity")]
    assert matching("unit[python=3.12]", stages) == ["unit[python=3.12]"]
    # The same text is a glob when it names no stage: a class of one character.
    assert matching("unit[python=3.12]", [S("unitp"), S("unity")]) == ["unitp", "unity"]


def test_a_malformed_glob_names_nothing_unless_it_is_a_stage_name() -> None:
    assert matching("[z-a]", [S("lint")]) == []
    assert matching("[z-a]", [S("[z-a]", base_name="[z-a]")]) == ["[z-a]"]


def test_a_glob_matches_the_base_name_so_it_selects_every_leg() -> None:
    legs = [S("unit[python=3.11]"), S("unit[python=3.12]")]
    assert select_stages(legs, ["un?t"]) == {"unit[python=3.11]", "unit[python=3.12]"}


def test_selection_works_on_the_planners_matrix_legs() -> None:
    definition = parse_definition(
        textwrap.dedent("""\
            stages:
              lint: {run: x}
              unit: {run: x, needs: [lint], matrix: {python: ['3.11', '3.12']}}
              slow: {run: x, needs: [unit]}
              other: {run: x}
            """)
    )
    stages = plan(definition)
    assert select_stages(stages, ["slow"]) == {"lint", "unit[python=3.11]", "unit[python=3.12]", "slow"}


def _state(name: str, needs: tuple[str, ...] = (), position: int = 0) -> StageState:
    return StageState(name=name, base_name=name, status=StageStatus.PENDING, needs=needs, position=position)


PLANNED = Planned(
    sha="0123456789abcdef0123",
    stages=(
        _state("lint"),
        _state("unit", ("lint",), 1),
        _state("e2e", ("lint",), 2),
        _state("deploy", ("unit",), 3),
    ),
)


def test_applying_a_selection_prunes_the_plan_and_keeps_its_order() -> None:
    result = apply_selection(PLANNED, StageSelection(("unit",), "test suite 'fast'"))
    assert isinstance(result, Planned)
    assert [s.name for s in result.stages] == ["lint", "unit"]
    assert result.sha == PLANNED.sha


def test_a_selection_matching_nothing_fails_the_run_naming_suite_commit_and_stages() -> None:
    result = apply_selection(PLANNED, StageSelection(("integration*",), "test suite 'nightly'"))
    assert isinstance(result, PlanFailed)
    assert result.sha == PLANNED.sha
    assert result.reason == (
        "test suite 'nightly' selects no stage of .comet.yml at 0123456789ab: integration* match none "
        "of its stages (lint, unit, e2e, deploy)"
    )


def test_no_selection_or_a_failed_plan_passes_through() -> None:
    assert apply_selection(PLANNED, None) is PLANNED
    failed = PlanFailed("broken", sha="x")
    assert apply_selection(failed, StageSelection(("unit",))) is failed


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ({"kind": "api"}, None),
        (
            {"kind": "test_suite", "suite": "fast", "stages": ["unit", "lint*"]},
            StageSelection(("unit", "lint*"), "test suite 'fast'"),
        ),
        (
            {"kind": "schedule", "suite": "nightly", "stages": ["e2e"]},
            StageSelection(("e2e",), "test suite 'nightly'"),
        ),
        ({"stages": ["unit", 3, None, ""]}, StageSelection(("unit",), "the run's stage selection")),
        ({"stages": "unit"}, StageSelection((), "the run's stage selection")),
    ],
)
def test_the_selection_comes_from_the_runs_trigger(
    trigger: dict[str, object], expected: StageSelection | None
) -> None:
    assert selection_from_trigger(trigger) == expected


async def _none(_stage: str) -> list[tuple[str | None, str, float]]:
    return []


async def test_a_selected_parallel_leg_keeps_its_own_share_of_the_split_test_files() -> None:
    text = textwrap.dedent("""\
        stages:
          build: {run: x}
          e2e:
            needs: [build]
            run: pytest
            parallel: 3
            split: {files: "tests/*.py", by: count}
        """)
    planned = planned_from_text(text, sha="f" * 40, ref="refs/heads/main", event="api", variables={})
    assert isinstance(planned, Planned)
    files = [f"tests/test_{i}.py" for i in range(7)]
    split = await assign_splits(planned, files, _none)
    shares = {s.name: s.spec["test_files"] for s in split.stages if "test_files" in s.spec}
    assert sorted(f for share in shares.values() for f in share) == files

    selected = apply_selection(split, StageSelection(("e2e[2/3]",), "test suite 'leg two'"))

    assert isinstance(selected, Planned)
    assert [s.name for s in selected.stages] == ["build", "e2e[2/3]"]
    assert selected.stages[1].spec["test_files"] == shares["e2e[2/3]"]
    assert len(shares["e2e[2/3]"]) < len(files)
