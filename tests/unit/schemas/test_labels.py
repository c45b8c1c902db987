"""Labels: one rule for what a worker advertises and what a stage asks for, and the stage's labels
in `.comet.yml` as the planner carries them to its spec."""

from __future__ import annotations

import pytest

from orchestrator.planner import plan
from schemas.labels import describe, parse_labels
from schemas.pipeline import DefinitionError, parse_definition


def test_worker_labels_are_parsed_from_key_value_text() -> None:
    assert parse_labels(" arch=arm64, gpu=a100 ,kubernetes.io/os=linux,empty=") == {
        "arch": "arm64",
        "gpu": "a100",
        "kubernetes.io/os": "linux",
        "empty": "",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("arch", "label 'arch' is not key=value"),
        ("=arm64", "label '=arm64' is not key=value"),
        ("a b=c", "label key 'a b' is not valid"),
        ("arch=arm 64", "label value 'arm 64' of 'arch' is not valid"),
        ("arch=a=b", "label value 'a=b' of 'arch' is not valid"),
        ("-x=1", "label key '-x' is not valid"),
    ],
)
def test_labels_that_are_not_key_value_are_refused_naming_the_item(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="^" + says.replace("(", r"\(")):
        parse_labels(text)


def test_labels_are_described_sorted_by_key() -> None:
    assert describe({"gpu": "true", "arch": "arm64"}) == "arch=arm64,gpu=true"
    assert describe({}) == ""


def test_a_stages_labels_go_into_its_spec_as_text_for_every_matrix_leg() -> None:
    definition = parse_definition(
        "stages:\n"
        "  build:\n"
        "    matrix: {python: ['3.11', '3.12']}\n"
        "    labels: {arch: arm64, gpu: true, cores: 8}\n"
        "    run: make\n"
        "  lint:\n"
        "    run: ruff\n"
    )

    stages = {s.name: s for s in plan(definition)}

    for leg in ("build[python=3.11]", "build[python=3.12]"):
        assert stages[leg].spec["labels"] == {"arch": "arm64", "gpu": "true", "cores": "8"}
    assert "labels" not in stages["lint"].spec


def test_a_stage_label_that_breaks_the_rule_fails_the_definition_with_its_line() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition("stages:\n  build:\n    run: make\n    labels: {'arch x': arm64}\n")

    assert "label key 'arch x' is not valid" in str(caught.value)
    assert caught.value.line == 4
