"""Which planned stages a run holds when it runs only part of the pipeline (a test suite): the
stages a selection names, and every stage they need, transitively.

Pure: planned stages in, the names to keep out (`apply_selection` prunes a whole plan). A selection entry matches a planned stage when it
equals, or matches as a glob (`schemas/globs.py`), the stage's base name — which selects every
leg of a matrix or `parallel:` stage — or its full name (`unit[python=3.12]`, `e2e[2/4]`), which
selects that one leg. Exact names are compared first, so a leg name with `[` is never read as a
character class. The trigger of a run carries the selection as `trigger["stages"]`; the shell
applies it to the finished plan (after test files are split among `parallel:` legs, so a selected
leg keeps its own share of the files).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.model import PlanFailed, Planned
from schemas.globs import glob_match

MAX_SHOWN = 20  # stage names listed in a "selects nothing" message


class PlannedLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def base_name(self) -> str: ...

    @property
    def needs(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class StageSelection:
    """Names or globs of the stages to run; `label` says whose selection it is, for messages."""

    patterns: tuple[str, ...]
    label: str = "the selection"

    def nothing_matched(self, where: str, names: Iterable[str]) -> str:
        shown = list(names)
        listed = ", ".join(shown[:MAX_SHOWN]) + (" …" if len(shown) > MAX_SHOWN else "")
        return (
            f"{self.label} selects no stage of {where}: {', '.join(self.patterns)} "
            f"match none of its stages ({listed or 'none'})"
        )


def matching(pattern: str, stages: Sequence[PlannedLike]) -> list[str]:
    """The names of the planned stages one selection entry names. An entry equal to a stage's base
    or full name is that name, literally (a leg name's `[` is not a character class); any other
    entry is a glob over base and full names."""
    if any(pattern in (stage.name, stage.base_name) for stage in stages):
        return [stage.name for stage in stages if pattern in (stage.name, stage.base_name)]
    try:
        return [s.name for s in stages if glob_match(pattern, s.base_name) or glob_match(pattern, s.name)]
    except ValueError:  # a malformed glob that is no stage's name names nothing
        return []


def select_stages(stages: Sequence[PlannedLike], patterns: Iterable[str]) -> frozenset[str]:
    """The names of the stages to keep: those the patterns match and all they need, transitively.
    Empty when no pattern matches any stage."""
    by_name = {stage.name: stage for stage in stages}
    keep: set[str] = set()
    todo = [name for pattern in patterns for name in matching(pattern, stages)]
    while todo:
        name = todo.pop()
        if name in keep or name not in by_name:
            continue
        keep.add(name)
        todo.extend(by_name[name].needs)
    return frozenset(keep)


def apply_selection(
    plan: Planned | PlanFailed, selection: StageSelection | None, definition_path: str = ".comet.yml"
) -> Planned | PlanFailed:
    """The plan holding only the selected stages and what they need; a failed plan when the
    selection matches no stage (naming the selection, the commit and the stages there are)."""
    if selection is None or isinstance(plan, PlanFailed):
        return plan
    keep = select_stages(plan.stages, selection.patterns)
    if not keep:
        where = f"{definition_path} at {plan.sha[:12]}"
        return PlanFailed(selection.nothing_matched(where, [s.name for s in plan.stages]), sha=plan.sha)
    return dataclasses.replace(plan, stages=tuple(s for s in plan.stages if s.name in keep))


def selection_from_trigger(trigger: Mapping[str, Any]) -> StageSelection | None:
    """The selection a run's trigger carries (`stages`: a list of names or globs), or None when the
    run holds the whole pipeline. Entries that are not text are ignored; a `stages` key with no
    usable entry selects nothing (the run fails saying so) rather than everything."""
    raw = trigger.get("stages")
    if raw is None:
        return None
    patterns = tuple(p for p in raw if isinstance(p, str) and p) if isinstance(raw, list) else ()
    suite = trigger.get("suite")
    label = f"test suite {suite!r}" if isinstance(suite, str) and suite else "the run's stage selection"
    return StageSelection(patterns, label)
