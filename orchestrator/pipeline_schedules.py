"""Pipeline schedules: the `schedules` rows of a project (source `pipeline`) kept in step with the
`on.schedule` entries of the `.comet.yml` on the project's default branch — as GitHub Actions reads
`schedule:` only from the default branch. Each entry runs its own `ref` (default: the default
branch) with the `.comet.yml` found at that ref.

A pipeline schedule is named by what it fires: `<cron> <timezone> <ref>` (cron normalised, ref
in full), e.g. `0 3 * * * Europe/Berlin refs/heads/main`. Reordering the entries, renaming the
pipeline or adding an unrelated entry changes no row, so no tick is lost or fired again; an
entry whose cron, zone or ref changes is a new schedule (the old row and its ticks go, the new one
fires first at its next tick after the change); identical entries are one schedule.

When the rows are brought in step:
- after the orchestrator plans a run of the default branch at the branch's tip (the definition
  was just read; `default_branch_planned`, run in the background by `follow_planned` so the
  planning does not wait for it);
- within `scan_s` of a project being created or changed (its default branch, say);
- every `refresh_s` for every project, reading the default branch's tip through the git mirror.
A `.comet.yml` that does not validate keeps the last good schedules (logged once per commit; a
run of it fails with the line, as any run does). A default branch without `.comet.yml` has none.
Several orchestrators may sync one project at once: a per-project lock serialises them and the
result is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.repositories import schedules
from db.repositories.schedules import DesiredSchedule
from orchestrator.planning import DEFINITION_PATH, DefinitionReader
from orchestrator.scheduler import Clock, utc_now
from schemas.api.runs import normalise_ref
from schemas.cron import CronSchedule, ScheduleError, next_fire
from schemas.pipeline import DefinitionError, PipelineDefinition, parse_definition
from workers.git import GitError, MirrorCache

log = structlog.get_logger(__name__)

MAX_NAME = 300  # schedules.name


def schedule_name(cron: str, timezone: str, ref: str) -> str:
    """The stable name of a pipeline schedule: what it fires. Past the column's width, a prefix
    and a hash of the whole."""
    name = f"{cron} {timezone} {ref}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: MAX_NAME - 17]}~{digest}"


@dataclass(frozen=True, slots=True)
class Desired:
    schedules: list[DesiredSchedule]
    problems: list[str]


def desired_schedules(definition: PipelineDefinition, default_ref: str, now: datetime) -> Desired:
    """Pure: the pipeline schedules a definition asks for, each with its first tick after `now`.
    Entries that cannot be used (a ref git would refuse) are left out and named in `problems`."""
    found: dict[str, DesiredSchedule] = {}
    problems: list[str] = []
    for index, entry in enumerate(definition.on.schedule):
        try:
            ref = normalise_ref(entry.ref) if entry.ref else default_ref
            cron = CronSchedule(entry.cron, entry.timezone)
            first = next_fire(cron, after=now)
        except (ValueError, ScheduleError) as exc:
            problems.append(f"on.schedule[{index}]: {exc}")
            continue
        name = schedule_name(cron.cron, cron.timezone, ref)
        found.setdefault(name, DesiredSchedule(name, cron.cron, cron.timezone, ref, first))
    return Desired(list(found.values()), problems)


class PipelineScheduleSync:
    """Keeps every project's pipeline schedules in step with its default branch's `.comet.yml`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        git: MirrorCache,
        *,
        clock: Clock = utc_now,
        refresh_s: float = 300.0,
        scan_s: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._reader = DefinitionReader(git)
        self._git = git
        self._clock = clock
        self._refresh_s = refresh_s
        self._scan_s = scan_s
        self._stopping = asyncio.Event()
        # project -> (ref, sha) whose definition the rows follow; skips repeated work.
        self._synced: dict[uuid.UUID, tuple[str, str]] = {}
        # project -> the `updated_at` last synced for (the scan's memory).
        self._seen: dict[uuid.UUID, datetime] = {}
        # Background follows of planned default-branch runs (`follow_planned`), chained in order.
        self._following: set[asyncio.Task[None]] = set()
        self._last_follow: asyncio.Task[None] | None = None

    async def sync_project(self, project_id: uuid.UUID, repo_url: str, default_branch: str) -> bool:
        """Read the default branch's tip (fetching it) and bring the rows in step; False when
        the repository could not be read (the rows stay as they are)."""
        ref = f"refs/heads/{default_branch}"
        try:
            sha, text = await self._reader.read(repo_url, ref, None)
        except GitError as exc:
            log.warning(
                "cannot read the default branch for its schedules; keeping them",
                project_id=str(project_id),
                error=str(exc),
            )
            return False
        await self._apply(project_id, ref, sha, text)
        return True

    async def follow_planned(self, project_id: uuid.UUID, repo_url: str, ref: str, sha: str) -> None:
        """`default_branch_planned` in the background: the git lookup it may need is not on the
        way from a run's request to its first stage. One at a time, in the order planned."""
        if self._synced.get(project_id) == (ref, sha) or self._stopping.is_set():
            return
        previous = self._last_follow

        async def follow() -> None:
            if previous is not None:
                await asyncio.wait({previous})  # its outcome is its own; a cancel of this one propagates
            await self.default_branch_planned(project_id, repo_url, ref, sha)

        task = asyncio.get_running_loop().create_task(follow(), name="follow-default-branch")
        self._last_follow = task
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def default_branch_planned(self, project_id: uuid.UUID, repo_url: str, ref: str, sha: str) -> None:
        """A run of the default branch at `sha` was planned: when `sha` is the branch's tip (as the
        mirror knows it; an older commit's schedules are not the branch's), follow it. Never
        raises: planning goes on whatever happens here."""
        if self._synced.get(project_id) == (ref, sha):
            return
        try:
            if await self._git.resolve(repo_url, ref, refresh=False) != sha:
                return
            _, text = await self._reader.read(repo_url, ref, sha)
            await self._apply(project_id, ref, sha, text)
        except Exception as exc:
            log.warning("could not update pipeline schedules", project_id=str(project_id), error=repr(exc))

    async def _apply(self, project_id: uuid.UUID, ref: str, sha: str, text: str | None) -> None:
        now = self._clock()
        context = {"project_id": str(project_id), "sha": sha[:12], "ref": ref}
        if text is None:
            desired = Desired([], [])
        else:
            try:
                definition = parse_definition(text)
            except DefinitionError as exc:
                if self._synced.get(project_id) != (ref, sha):
                    log.warning(
                        f"{DEFINITION_PATH} of the default branch does not validate; "
                        "keeping the last good schedules",
                        error=str(exc),
                        **context,
                    )
                self._synced[project_id] = (ref, sha)
                return
            desired = desired_schedules(definition, ref, now)
        for problem in desired.problems:
            log.warning("pipeline schedule left out", problem=problem, **context)
        async with self._sessions.begin() as session:
            added, removed = await schedules.replace_pipeline_schedules(
                session, project_id, desired.schedules, now
            )
        self._synced[project_id] = (ref, sha)
        if added or removed:
            log.info("pipeline schedules updated", added=added, removed=removed, **context)

    async def scan_changes(self, within_s: float = 600.0) -> int:
        """Sync projects created or changed in the last `within_s` seconds that were not synced
        since; returns how many were synced."""
        async with self._sessions() as session:
            rows = await schedules.projects_changed_since(session, within_s)
        return await self._sync_rows([r for r in rows if self._seen.get(r.id) != r.updated_at])

    async def refresh_all(self) -> int:
        async with self._sessions() as session:
            rows = await schedules.all_projects(session)
        return await self._sync_rows(rows)

    async def _sync_rows(self, rows: list[schedules.ProjectRow]) -> int:
        synced = 0
        for row in rows:
            if self._stopping.is_set():
                break
            # Seen even when the repository cannot be read: the periodic refresh tries again.
            self._seen[row.id] = row.updated_at
            synced += await self.sync_project(row.id, row.repo_url, row.default_branch)
        return synced

    async def run(self) -> None:
        last_refresh = float("-inf")
        while not self._stopping.is_set():
            try:
                if time.monotonic() - last_refresh >= self._refresh_s:
                    last_refresh = time.monotonic()
                    await self.refresh_all()
                else:
                    await self.scan_changes(within_s=max(600.0, 4 * self._scan_s))
            except Exception as exc:
                log.warning("pipeline schedule sync failed; retrying", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._scan_s)
        if self._following:  # cancelled by stop(): let them end before the database goes
            await asyncio.wait(set(self._following))

    def stop(self) -> None:
        self._stopping.set()
        for task in self._following:
            task.cancel()
