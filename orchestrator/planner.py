"""The planner: a validated pipeline definition becomes the flat, ordered list of stages of a run.

Pure: no I/O. Matrix stages expand into one planned stage per leg, named `base[key=value,...]`;
a need on a matrix stage becomes a need on every one of its legs (fan-in). Each planned stage
carries a JSON-serialisable `spec`, which is all a worker and `decide` need to know about it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from schemas.pipeline import PipelineDefinition, StageSpec, check_needs


class PlanError(ValueError):
    """A definition whose needs do not form a graph that can run (unknown stage, cycle)."""


@dataclass(frozen=True)
class PlannedStage:
    name: str
    base_name: str
    matrix: dict[str, str]
    needs: tuple[str, ...]
    pool: str
    spec: dict[str, Any]
    position: int


def plan(definition: PipelineDefinition) -> list[PlannedStage]:
    """Every stage (matrix legs expanded) in topological order; definition order among peers."""
    stages = definition.stages
    problems = check_needs({name: stage.needs for name, stage in stages.items()})
    if problems:
        raise PlanError(problems[0][1])
    legs: dict[str, list[dict[str, str]]] = {
        name: (stage.matrix.legs() if stage.matrix else [{}]) for name, stage in stages.items()
    }
    leg_names = {name: [leg_name(name, leg) for leg in legs[name]] for name in stages}
    planned: list[PlannedStage] = []
    for name in _topological(definition):
        stage = stages[name]
        needs = tuple(leg for need in stage.needs for leg in leg_names[need])
        for values, planned_name in zip(legs[name], leg_names[name], strict=True):
            spec = _spec(definition, stage, values)
            planned.append(PlannedStage(planned_name, name, values, needs, stage.pool, spec, len(planned)))
    return planned


def leg_name(base: str, values: dict[str, str]) -> str:
    """`base` for a plain stage, `base[key=value,key2=value2]` for a matrix leg."""
    if not values:
        return base
    return f"{base}[{','.join(f'{key}={value}' for key, value in values.items())}]"


def _topological(definition: PipelineDefinition) -> list[str]:
    """Kahn's algorithm; the ready stage that comes first in the file goes first."""
    order = {name: index for index, name in enumerate(definition.stages)}
    waiting = {name: len(stage.needs) for name, stage in definition.stages.items()}
    dependants: dict[str, list[str]] = {name: [] for name in definition.stages}
    for name, stage in definition.stages.items():
        for need in stage.needs:
            dependants[need].append(name)
    ready = [order[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(definition.stages)
    result: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        result.append(name)
        for dependant in dependants[name]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, order[dependant])
    return result


def _spec(definition: PipelineDefinition, stage: StageSpec, values: dict[str, str]) -> dict[str, Any]:
    retry = stage.retry
    return {
        "script": stage.script(),
        "env": {**definition.env, **stage.env},
        "timeout_s": float(stage.timeout),
        "retry": {"count": int(retry.count), "when": list(retry.when), "backoff_s": float(retry.backoff)},
        "if": stage.if_,
        "allow_failure": stage.allow_failure,
        "type": stage.type,
        "reports": None if stage.reports is None else stage.reports.model_dump(mode="json"),
        "environment": stage.environment,
        "approval": stage.approval,
        "matrix": dict(values),
    }
