"""Running one claimed attempt: fresh workspace, checkout of the commit, the stage's script under
`bash -eo pipefail` in its own process group, logs shipped as it runs, and the one result
committed under the fencing token together with its `attempt.finished` event.

A finished attempt's result is held while the database is unreachable and committed once it is
back (heartbeats keep the lease meanwhile); the fencing token decides whether it still counts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import WorkerSettings
from db.crypto import SecretBox
from db.projection import record_result
from db.repositories.attempts import Claim
from db.repositories.secrets import decrypt_secrets, decrypted_secrets, encrypted_secrets_of
from db.repositories.test_results import AttemptRef, store_reports
from events.envelope import new_envelope
from events.faults import is_transient, retry_transient
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import AttemptFinished
from schemas.states import AttemptStatus, FailureKind
from workers.executor import ExecutionResult, execute
from workers.git import GitError, MirrorCache
from workers.logs import LogShipper
from workers.reports.collect import StageReports, collect_reports
from workers.workspace import Workspace, Workspaces

log = structlog.get_logger(__name__)

# Only these of the worker's own environment reach a stage; everything else comes from Comet.
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE", "JAVA_HOME")


@dataclass
class RunningAttempt:
    claim: Claim
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    lease_lost: bool = False
    # Set when the worker stops before the stage finished (drain timeout): the attempt is
    # reported lost at once, so it is retried now rather than after its lease expires.
    handed_back: bool = False
    # The project's secrets for this stage, read with the claim (None: read them when it starts).
    secrets: dict[str, str] | None = None
    # Set once the script has ended and its result is being reported: the attempt leaves the
    # `running` state with that commit, so a heartbeat that no longer finds it is not a lost lease
    # (were the lease truly lost, the fencing token refuses the result).
    finishing: bool = False


def stage_environment(claim: Claim, workspace: str) -> dict[str, str]:
    """The environment a stage sees: a clean base, pipeline and stage `env`, trigger variables,
    then Comet's own `COMET_*` and `MATRIX_*` (which user values cannot override)."""
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["HOME"] = workspace
    env["CI"] = "true"
    env.update(claim.spec.get("env", {}))
    env.update(claim.variables)
    env.update(
        {
            "COMET_RUN_ID": str(claim.run_id),
            "COMET_RUN_NUMBER": str(claim.run_number),
            "COMET_PROJECT": claim.project,
            "COMET_PROJECT_ID": str(claim.project_id),
            "COMET_REF": claim.ref,
            "COMET_SHA": claim.sha,
            "COMET_STAGE": claim.stage,
            "COMET_ATTEMPT": str(claim.number),
            "COMET_WORKSPACE": workspace,
        }
    )
    branch = claim.ref.removeprefix("refs/heads/") if claim.ref.startswith("refs/heads/") else ""
    if branch:
        env["COMET_BRANCH"] = branch
    for key, value in claim.matrix.items():
        env[f"MATRIX_{_env_name(key)}"] = value
    node = claim.spec.get("node")
    if node:
        env["COMET_NODE_INDEX"] = str(node["index"])
        env["COMET_NODE_TOTAL"] = str(node["total"])
    return env


def _env_name(key: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in key).upper()


class AttemptRunner:
    def __init__(
        self,
        settings: WorkerSettings,
        sessions: async_sessionmaker[AsyncSession],
        topics: Topics,
        git: MirrorCache,
        workspaces: Workspaces,
        worker_id: str,
        *,
        on_commit: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._topics = topics
        self._git = git
        self._workspaces = workspaces
        self._worker_id = worker_id
        self._on_commit = on_commit
        self._box = SecretBox(settings.secret_key.get_secret_value()) if settings.secret_key else None

    async def run(self, attempt: RunningAttempt) -> None:
        claim = attempt.claim
        secrets = attempt.secrets
        if secrets is None:
            secrets = await retry_transient(lambda: self._secrets(claim), what="reading the stage's secrets")
        shipper = LogShipper(
            self._sessions,
            claim.attempt_id,
            claim.fencing_token,
            secrets=secrets.values(),
            flush_s=self._settings.log_flush_s,
            cap_bytes=self._settings.log_cap_bytes,
        )
        shipper.start()
        workspace = self._workspaces.create(str(claim.attempt_id))
        # The workspace goes once the result is committed (or given up): deleting it is not on the
        # way from the script's end to the next stage's start.
        try:
            try:
                ran = await self._run_stage(attempt, workspace, shipper, secrets)
            finally:
                await shipper.close()
            ended = datetime.now(UTC)
            outcome = _outcome(ran.result, ran.failure, AttemptStatus.FAILED)
            if attempt.handed_back:
                reason = f"worker {self._worker_id} shut down before the stage finished (drain timeout)"
                outcome = _outcome(None, (FailureKind.LOST_WORKER.value, reason), AttemptStatus.LOST)
            await self._hold_until_reported(attempt, shipper, outcome, ended, ran.reports)
        finally:
            # Off the event loop: a tree of files takes milliseconds to delete, and other stages'
            # results wait on the loop meanwhile. Shielded: a cancelled stage still gets its
            # workspace deleted and its lock given up.
            await asyncio.shield(asyncio.to_thread(self._workspaces.remove, workspace))

    async def _run_stage(
        self, attempt: RunningAttempt, workspace: Workspace, shipper: LogShipper, secrets: dict[str, str]
    ) -> _Ran:
        """Check out the commit, run the script, read its reports."""
        claim = attempt.claim
        try:
            if claim.spec.get("checkout", True):
                await self._git.checkout(claim.repo_url, claim.sha, workspace.path)
        except GitError as exc:
            failure = (FailureKind.CHECKOUT_FAILED.value, f"checkout of {claim.sha[:12]} failed: {exc}")
            await shipper.note(failure[1])
            return _Ran(None, failure, None)
        env = {**stage_environment(claim, str(workspace.path)), **secrets}
        if "test_files" in claim.spec:
            # This leg's share of the split, one path per line (`$(cat "$COMET_TEST_FILES")`).
            listed = workspace.scratch / "test-files"
            listed.write_text(leg_file_listing(claim.spec["test_files"]))
            env["COMET_TEST_FILES"] = str(listed)
        result = await execute(
            claim.spec.get("script", "true"),
            cwd=workspace.path,
            env=env,
            timeout_s=float(claim.spec.get("timeout_s", 3600)),
            kill_grace_s=self._settings.kill_grace_s,
            on_output=shipper.write,
            cancel=attempt.cancel,
            script_dir=workspace.scratch,
        )
        if result.failure_kind is not None and result.reason:
            await shipper.note(result.reason)
        reports = None
        if result.failure_kind != FailureKind.CANCELLED:
            reports = await self._read_reports(claim, workspace.path, shipper)
        return _Ran(result, None, reports)

    async def _hold_until_reported(
        self,
        attempt: RunningAttempt,
        shipper: LogShipper,
        outcome: _Outcome,
        ended: datetime,
        reports: StageReports | None,
    ) -> None:
        """Commit the rest of the log and the result, retrying while the database is unreachable,
        until done or the lease is truly lost."""
        claim = attempt.claim
        attempt.finishing = True
        delay = 0.2
        while True:
            if attempt.lease_lost or shipper.lease_lost:
                log.warning(
                    "lease lost while running; result not reported", stage=claim.stage, attempt=claim.number
                )
                return
            try:
                if await shipper.try_flush() and not shipper.lease_lost:
                    await self._report(claim, outcome, ended, reports)
                    return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning(
                    "cannot record the attempt's result yet; holding it and retrying",
                    stage=claim.stage,
                    attempt=claim.number,
                    error=repr(exc),
                    retry_in_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def prefetch_secrets(self, session: AsyncSession, attempts: Sequence[RunningAttempt]) -> None:
        """Read the secrets of the attempts being claimed in the claim's own transaction (one query
        for all their projects), so a stage starts without another round trip. An attempt whose
        secrets cannot be decrypted here is left to read them when it starts, and fail there."""
        if self._box is None:
            return
        trusted = [a for a in attempts if not a.claim.trigger.get("fork")]
        encrypted = await encrypted_secrets_of(session, {a.claim.project_id for a in trusted})
        for attempt in trusted:
            try:
                attempt.secrets = decrypt_secrets(
                    self._box, attempt.claim.project_id, encrypted[attempt.claim.project_id]
                )
            except Exception as exc:
                log.warning("secrets not readable at claim; read again at start", error=repr(exc))

    async def _secrets(self, claim: Claim) -> dict[str, str]:
        """The project's secrets for this stage; none for untrusted triggers (fork pull requests)."""
        if self._box is None or claim.trigger.get("fork"):
            return {}
        async with self._sessions() as session:
            return await decrypted_secrets(session, self._box, claim.project_id)

    async def _read_reports(self, claim: Claim, workspace: Path, shipper: LogShipper) -> StageReports | None:
        """The stage's `reports:` read off the event loop; each problem is also a line of its log."""
        spec = claim.spec.get("reports") or {}
        junit, coverage = list(spec.get("junit") or []), _globs(spec.get("coverage"))
        if not junit and not coverage:
            return None
        reports = await asyncio.to_thread(collect_reports, workspace, junit=junit, coverage=coverage)
        for problem in reports.report_errors:
            where = f"{problem.file}: " if problem.file else ""
            await shipper.note(f"report problem: {where}{problem.reason}")
        return reports

    async def _report(
        self, claim: Claim, outcome: _Outcome, ended: datetime, reports: StageReports | None
    ) -> None:
        try:
            async with self._sessions.begin() as session:
                await self._commit_result(session, claim, outcome, ended, reports)
        except _FencedError:
            log.warning(
                "late completion rejected: the fencing token is stale",
                run_id=str(claim.run_id),
                stage=claim.stage,
                attempt=claim.number,
            )
            return
        self._on_commit()
        log.info(
            "attempt finished",
            run_id=str(claim.run_id),
            stage=claim.stage,
            attempt=claim.number,
            status=outcome.status.value,
            exit_code=outcome.exit_code,
        )

    async def _commit_result(
        self,
        session: AsyncSession,
        claim: Claim,
        outcome: _Outcome,
        ended: datetime,
        reports: StageReports | None,
    ) -> None:
        """Store the reports, then write the result through the projection under the claim's
        fencing token; a stale token raises `_FencedError` before the event is written (the
        transaction, reports included, rolls back)."""
        stored = None
        if reports is not None:
            at = AttemptRef(
                claim.attempt_id,
                claim.project_id,
                claim.run_id,
                claim.stage_id,
                claim.stage,
                claim.number,
                claim.ref,
                claim.sha or None,
            )
            junit_asked = bool((claim.spec.get("reports") or {}).get("junit"))
            stored = await store_reports(session, at, reports, junit_asked=junit_asked)
        payload = AttemptFinished(
            run_id=claim.run_id,
            stage_id=claim.stage_id,
            attempt_id=claim.attempt_id,
            stage=claim.stage,
            number=claim.number,
            status=outcome.status.value,
            exit_code=outcome.exit_code,
            failure_kind=outcome.kind,
            failure_reason=outcome.reason,
            worker_id=self._worker_id,
            started_at=claim.started_at,
            # A result held through a database outage keeps its real time (never before its start).
            finished_at=max(ended, claim.started_at),
            tests=stored.tests if stored else None,
            report_errors=stored.report_errors if stored else 0,
            line_rate=stored.line_rate if stored else None,
            branch_rate=stored.branch_rate if stored else None,
            fencing_token=claim.fencing_token,
            report_problems=stored.problems if stored else [],
        )
        envelope = new_envelope(payload, key=str(claim.run_id))
        if not await record_result(await session.connection(), envelope):
            raise _FencedError
        await add_events(session, [PendingEvent(self._topics.stage_results, envelope)])


class _FencedError(Exception):
    """The attempt's fencing token is stale: its result does not count."""


@dataclass(frozen=True, slots=True)
class _Ran:
    result: ExecutionResult | None
    failure: tuple[str, str] | None  # (failure kind, reason) when the script never ran
    reports: StageReports | None


def leg_file_listing(files: list[str]) -> str:
    """A leg's `COMET_TEST_FILES` file: one path per line (git paths cannot hold a line break
    the listing could not express: such a path is refused)."""
    for name in files:
        if "\n" in name or "\r" in name:
            raise ValueError(f"{name!r}: a test file name cannot hold a line break")
    return "".join(f"{name}\n" for name in files)


def _globs(value: object) -> list[str]:
    """`reports.coverage` as a list (definitions stored before it took several globs hold one)."""
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: AttemptStatus
    exit_code: int | None
    kind: str | None
    reason: str | None


def _outcome(
    result: ExecutionResult | None, failure: tuple[str, str] | None, status: AttemptStatus
) -> _Outcome:
    """What to report: the script's result, or a failure before or instead of it."""
    if result is not None and result.failure_kind is None:
        return _Outcome(AttemptStatus.SUCCEEDED, result.exit_code, None, None)
    if result is not None and result.failure_kind == FailureKind.CANCELLED:
        return _Outcome(AttemptStatus.CANCELLED, result.exit_code, result.failure_kind, result.reason)
    if result is not None:
        return _Outcome(AttemptStatus.FAILED, result.exit_code, result.failure_kind, result.reason)
    assert failure is not None
    return _Outcome(status, None, *failure)
