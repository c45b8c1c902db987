"""Running one claimed attempt: fresh workspace, checkout of the commit, the stage's script under
`bash -eo pipefail` in its own process group, logs shipped as it runs, and the one result
committed under the fencing token together with its `attempt.finished` event.

A finished attempt's result is held while the database is unreachable and committed once it is
back (heartbeats keep the lease meanwhile); the fencing token decides whether it still counts."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import WorkerSettings
from db.crypto import SecretBox
from db.repositories.attempts import Claim, finish
from db.repositories.secrets import decrypted_secrets
from events.envelope import new_envelope
from events.faults import is_transient, retry_transient
from events.outbox import PendingEvent, add_events
from events.topics import Topics
from schemas.events import AttemptFinished
from schemas.states import AttemptStatus, FailureKind
from workers.executor import ExecutionResult, execute
from workers.git import GitError, MirrorCache
from workers.logs import LogShipper
from workers.workspace import Workspaces

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
        result: ExecutionResult | None = None
        failure: tuple[str, str] | None = None
        try:
            try:
                await self._git.checkout(claim.repo_url, claim.sha, workspace.path)
            except GitError as exc:
                failure = (FailureKind.CHECKOUT_FAILED.value, f"checkout of {claim.sha[:12]} failed: {exc}")
                await shipper.note(failure[1])
            else:
                result = await execute(
                    claim.spec.get("script", "true"),
                    cwd=workspace.path,
                    env={**stage_environment(claim, str(workspace.path)), **secrets},
                    timeout_s=float(claim.spec.get("timeout_s", 3600)),
                    kill_grace_s=self._settings.kill_grace_s,
                    on_output=shipper.write,
                    cancel=attempt.cancel,
                    script_dir=workspace.scratch,
                )
                if result.failure_kind is not None and result.reason:
                    await shipper.note(result.reason)
        finally:
            try:
                await shipper.close()
            finally:
                self._workspaces.remove(workspace)
        ended = datetime.now(UTC)
        status = AttemptStatus.FAILED
        if attempt.handed_back:
            reason = f"worker {self._worker_id} shut down before the stage finished (drain timeout)"
            result, failure, status = None, (FailureKind.LOST_WORKER.value, reason), AttemptStatus.LOST
        outcome = _outcome(result, failure, status)
        delay = 0.2
        while True:
            if attempt.lease_lost or shipper.lease_lost:
                log.warning(
                    "lease lost while running; result not reported", stage=claim.stage, attempt=claim.number
                )
                return
            try:
                if await shipper.try_flush() and not shipper.lease_lost:
                    await self._report(claim, outcome, ended)
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

    async def _secrets(self, claim: Claim) -> dict[str, str]:
        """The project's secrets for this stage; none for untrusted triggers (fork pull requests)."""
        if self._box is None or claim.trigger.get("fork"):
            return {}
        async with self._sessions() as session:
            return await decrypted_secrets(session, self._box, claim.project_id)

    async def _report(self, claim: Claim, outcome: _Outcome, ended: datetime) -> None:
        async with self._sessions.begin() as session:
            finished = await finish(
                session,
                claim.attempt_id,
                claim.fencing_token,
                status=outcome.status.value,
                exit_code=outcome.exit_code,
                failure_kind=outcome.kind,
                failure_reason=outcome.reason,
                finished_at=ended,
            )
            if finished is None:
                log.warning(
                    "late completion rejected: the fencing token is stale",
                    run_id=str(claim.run_id),
                    stage=claim.stage,
                    attempt=claim.number,
                )
                return
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
                started_at=finished.started_at,
                finished_at=finished.finished_at,
            )
            await add_events(
                session,
                [PendingEvent(self._topics.stage_results, new_envelope(payload, key=str(claim.run_id)))],
            )
        self._on_commit()
        log.info(
            "attempt finished",
            run_id=str(claim.run_id),
            stage=claim.stage,
            attempt=claim.number,
            status=outcome.status.value,
            exit_code=outcome.exit_code,
        )


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
