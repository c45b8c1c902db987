"""Reading and planning a run's pipeline: resolve the ref, read `.comet.yml` at the commit from the
project's repository, validate it and expand it into stages. The I/O half of planning; the
result is an input for `decide()`."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from orchestrator.model import PlanFailed, Planned, StageState
from orchestrator.planner import PlanError, plan
from orchestrator.split import durations_by_file, split_files
from schemas.globs import glob_match
from schemas.interpolation import interpolate
from schemas.pipeline import DefinitionError, PipelineDefinition, parse_definition
from schemas.states import StageStatus
from workers.git import GitError, MirrorCache

DEFINITION_PATH = ".comet.yml"


class DefinitionReader:
    """Reads `.comet.yml` at a commit. A commit's content never changes, so texts are cached by
    (repository, sha): a burst of runs on one commit costs one `git cat-file`."""

    def __init__(self, git: MirrorCache, *, size: int = 512) -> None:
        self.git = git
        self._size = size
        self._cache: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    async def read(self, repo_url: str, ref: str, sha: str | None) -> tuple[str, str | None]:
        """(sha, text of `.comet.yml` or None when the commit has none); raises GitError."""
        commit = sha or await self.git.resolve(repo_url, ref)
        key = (repo_url, commit)
        if key in self._cache:
            self._cache.move_to_end(key)
            return commit, self._cache[key]
        raw = await self.git.read_file(repo_url, commit, DEFINITION_PATH)
        text = None if raw is None else raw.decode("utf-8", errors="replace")
        self._cache[key] = text
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return commit, text


def concurrency_group(
    definition: PipelineDefinition, ref: str, event: str, variables: dict[str, str]
) -> str | None:
    if definition.concurrency is None:
        return None
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else ""
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else ""
    context = {"ref": ref, "branch": branch, "tag": tag, "event": event}
    context.update({f"variables.{k}": v for k, v in variables.items()})
    return interpolate(definition.concurrency.group, context)


def planned_from_text(
    text: str, *, sha: str, ref: str, event: str, variables: dict[str, str], pool_override: str | None = None
) -> Planned | PlanFailed:
    """Pure: `.comet.yml` text -> the stages to create, or the reason the run fails."""
    try:
        definition = parse_definition(text)
        stages = plan(definition)
        group = concurrency_group(definition, ref, event, variables)
    except (DefinitionError, PlanError, ValueError) as exc:
        return PlanFailed(f"{DEFINITION_PATH}: {exc}", sha=sha)
    return Planned(
        sha=sha,
        pipeline_name=definition.name,
        concurrency_group=group,
        cancel_in_progress=bool(definition.concurrency and definition.concurrency.cancel_in_progress),
        queue=definition.concurrency.queue if definition.concurrency else None,
        variable_defaults=dict(definition.variables),
        stages=tuple(
            StageState(
                name=s.name,
                base_name=s.base_name,
                status=StageStatus.PENDING,
                needs=s.needs,
                # Untrusted code (a fork's pull request) runs only on the untrusted pool.
                pool=pool_override or s.pool,
                spec=s.spec,
                position=s.position,
                matrix=s.matrix,
            )
            for s in stages
        ),
    )


# The recorded (file, classname, seconds) of a stage's earlier test cases, by base stage name.
Durations = Callable[[str], Awaitable[Sequence[tuple[str | None, str, float]]]]


async def _no_history(_stage: str) -> Sequence[tuple[str | None, str, float]]:
    return ()


async def plan_run(
    reader: DefinitionReader,
    *,
    repo_url: str,
    ref: str,
    sha: str | None,
    event: str,
    variables: dict[str, str],
    pool_override: str | None = None,
    durations: Durations = _no_history,
) -> Planned | PlanFailed:
    try:
        commit, text = await reader.read(repo_url, ref, sha)
    except GitError as exc:
        return PlanFailed(f"could not read the repository: {exc}", sha=sha)
    if text is None:
        return PlanFailed(f"no {DEFINITION_PATH} at the root of the repository at {commit[:12]}", sha=commit)
    planned = planned_from_text(
        text, sha=commit, ref=ref, event=event, variables=variables, pool_override=pool_override
    )
    if isinstance(planned, PlanFailed) or not any("split" in s.spec for s in planned.stages):
        return planned
    try:
        files = await reader.git.list_files(repo_url, commit)
    except GitError as exc:
        return PlanFailed(f"could not list the files to split: {exc}", sha=commit)
    return await assign_splits(planned, files, durations)


async def assign_splits(planned: Planned, files: Sequence[str], durations: Durations) -> Planned:
    """Give each leg of a `split` stage its test files (`spec.test_files`): every file matching
    `split.files` in exactly one leg, balanced by recorded durations (`by: timings`) or count. The
    assignment is part of the run's plan, so a retried leg runs the same files."""
    legs: dict[str, list[StageState]] = {}
    for stage in planned.stages:
        if "split" in stage.spec:
            legs.setdefault(stage.base_name, []).append(stage)
    assigned: dict[str, list[str]] = {}
    for base, stages in legs.items():
        rule = stages[0].spec["split"]
        matching = [f for f in files if glob_match(rule["files"], f)]
        seconds = durations_by_file(await durations(base), matching) if rule["by"] == "timings" else {}
        for leg in split_files(matching, seconds, len(stages)):
            assigned[stages[leg.index - 1].name] = list(leg.files)
    return dataclasses.replace(
        planned,
        stages=tuple(
            dataclasses.replace(s, spec={**s.spec, "test_files": assigned[s.name]})
            if s.name in assigned
            else s
            for s in planned.stages
        ),
    )
