"""The planner: a validated pipeline definition becomes the flat, ordered list of stages of a run.

Pure: no I/O. Matrix stages expand into one planned stage per leg, named `base[key=value,...]`,
and `parallel: N` stages into `base[1/N]` … `base[N/N]` (each with `node: {index, total}` in its
spec); a need on such a stage becomes a need on every one of its legs (fan-in). Each planned
stage carries a JSON-serialisable `spec`, which is all a worker and `decide` need to know about
it. Which test files each leg of a `split` runs is decided later, by the planning shell, which
can read the commit's files and the recorded durations (`orchestrator/split.py`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from orchestrator.split import leg_names
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
    legs = {name: _legs(name, stage) for name, stage in stages.items()}
    planned: list[PlannedStage] = []
    for name in _topological(definition):
        stage = stages[name]
        needs = tuple(leg.name for need in stage.needs for leg in legs[need])
        for leg in legs[name]:
            spec = _spec(definition, stage, leg)
            planned.append(PlannedStage(leg.name, name, leg.values, needs, stage.pool, spec, len(planned)))
    return planned


@dataclass(frozen=True)
class _Leg:
    name: str
    values: dict[str, str]  # matrix values
    node: tuple[int, int] | None  # (index, total) of a parallel leg


def _legs(name: str, stage: StageSpec) -> list[_Leg]:
    if stage.parallel is not None:
        return [_Leg(n, {}, (i, stage.parallel)) for i, n in enumerate(leg_names(name, stage.parallel), 1)]
    if stage.matrix is not None:
        return [_Leg(leg_name(name, values), values, None) for values in stage.matrix.legs()]
    return [_Leg(name, {}, None)]


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


def _spec(definition: PipelineDefinition, stage: StageSpec, leg: _Leg) -> dict[str, Any]:
    retry = stage.retry
    spec: dict[str, Any] = {
        "script": stage.script(),
        "env": {**definition.env, **stage.env},
        "timeout_s": float(stage.timeout),
        "retry": {"count": int(retry.count), "when": list(retry.when), "backoff_s": float(retry.backoff)},
        "if": stage.if_,
        "allow_failure": stage.allow_failure,
        "type": stage.type,
        "reports": None if stage.reports is None else stage.reports.model_dump(mode="json"),
        "environment": stage.environment_name(),
        "environment_url": stage.environment_url(),
        "approval": stage.approval,
        "matrix": dict(leg.values),
        "coverage_min": None if stage.coverage is None else stage.coverage.min,
        "checkout": stage.checkout,
    }
    if stage.labels:
        spec["labels"] = dict(stage.labels)
    if leg.node is not None:
        spec["node"] = {"index": leg.node[0], "total": leg.node[1]}
    if stage.split is not None:
        spec["split"] = stage.split.model_dump(mode="json")
    return spec
