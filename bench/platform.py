"""A throwaway Comet for one benchmark scenario: real `comet api`, `orchestrator` and `worker`
subprocesses on a fresh database, topic namespace, git repository, admin user and project.

    async with bench_platform(settings, {"fan-in": FAN_IN_YML}) as p:
        await p.start_api()
        p.start_orchestrator()
        p.start_worker()
        run_id, sent_at = await p.trigger("fan-in")

A process gets settings of its own as keyword arguments (`p.start_worker(instance_id="w-1")` →
`COMET_INSTANCE_ID=w-1`); `p.restart(proc)` starts one that exited (killed, say) again with the
same name, arguments and settings, as a supervisor would.

The database (`comet_bench_<hex>`) is created and migrated here and dropped at the end, the
namespace's topics are deleted, and every process started is stopped (SIGTERM, then SIGKILL)
whatever happens, Ctrl-C included. Processes also get SIGTERM from the kernel if the bench
process itself dies (PR_SET_PDEATHSIG), so none outlives it. Only 127.0.0.1 is used. With
`COMET_BENCH_KEEP=1` the temporary directory (the processes' logs, the repository) is kept. With
`COMET_BENCH_PROFILE=<dir>` (`python -m bench --profile DIR`) every process is sampled by py-spy
for its whole life, into `<dir>/NN-name.txt` (collapsed stacks; `python -m bench.profile DIR`
prints the top costs of each).

Each pipeline is one commit of the repository; triggers name its `sha`, so neither the
orchestrator nor the workers fetch or resolve a ref per run (the mirror is cloned once).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from api.auth.passwords import hash_password
from bench.machine import kafka_broker_pids
from config.settings import CommonSettings
from db.crypto import SecretBox
from db.engine import asyncpg_dsn, make_engine, make_sessionmaker
from db.migrations import upgrade
from db.models import Membership, Project
from db.repositories import users
from db.repositories.projects import add_webhook_secret
from db.repositories.runs import create_run
from events.topics import Topics
from schemas.roles import Role

COMET = Path(sys.executable).with_name("comet")
PY_SPY = Path(sys.executable).with_name("py-spy")
PROFILE_RATE_HZ = 100
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
ADMIN_EMAIL = "bench@comet.local"
PROBLEM_LEVELS = frozenset({"warning", "error", "critical", "exception"})
_PR_SET_PDEATHSIG = 1


class PlatformError(Exception):
    """The platform could not be set up, or one of its processes died."""


# -- pure helpers (unit-tested) -----------------------------------------------------------------


def vm_rss_kib(status_text: str) -> int | None:
    """The `VmRSS` of a `/proc/<pid>/status` text, in KiB; None when absent (a zombie has none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def log_problems(text: str) -> list[str]:
    """Lines of a process log that are warnings or worse (JSON lines by `level`), or not JSON at
    all (a traceback or a crash message printed outside structlog)."""
    problems: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        try:
            record = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            problems.append(stripped)
            continue
        level = str(record.get("level", "")).lower() if isinstance(record, dict) else ""
        if level in PROBLEM_LEVELS or not isinstance(record, dict):
            problems.append(stripped)
    return problems


def with_database(url: str, name: str) -> str:
    """`url` naming database `name` instead (the URL's other parts kept)."""
    base, sep, _ = url.rpartition("/")
    if not sep or "://" not in base:
        raise ValueError(f"not a database URL: {url}")
    return f"{base}/{name}"


def process_env(base: Mapping[str, str], settings: Mapping[str, object]) -> dict[str, str]:
    """`base` without any `COMET_*` variable, plus `COMET_<KEY>` for each of `settings`."""
    env = {k: v for k, v in base.items() if not k.startswith("COMET_")}
    env.update({f"COMET_{key.upper()}": str(value) for key, value in settings.items()})
    return env


# -- processes ---------------------------------------------------------------------------------


def _rss_of(pid: int) -> int | None:
    try:
        return vm_rss_kib(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


def _descendants(pid: int, *, limit: int = 1000) -> list[int]:
    """Children, grandchildren, … of `pid` (from /proc/<pid>/task/*/children), at most `limit`."""
    found: list[int] = []
    pending = [pid]
    while pending and len(found) < limit:
        parent = pending.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            pending.extend(children)
    return found[:limit]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class CometProcess:
    """One `comet …` subprocess; its output goes to `log`. `settings` are the ones it was started
    with beyond the platform's common ones (what `Platform.restart` starts it with again)."""

    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes]
    stopping: bool = False
    settings: dict[str, object] = field(default_factory=dict)
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def descendants(self) -> list[int]:
        """Pids of its children, grandchildren, … (a worker's stage shells, uvicorn's workers)."""
        return _descendants(self.pid)

    def rss_kib(self) -> int | None:
        """VmRSS of the process plus its descendants' (a stage's shell, uvicorn workers), in KiB."""
        own = _rss_of(self.pid)
        if own is None:
            return None
        return own + sum(_rss_of(child) or 0 for child in _descendants(self.pid))

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (the process drains), SIGKILL after `timeout_s`."""
        self.stopping = True
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGCONT)
                self.popen.terminate()
            deadline = time.monotonic() + timeout_s
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if self.popen.poll() is None:
            self.kill()
        self._await_profiler()
        return self.popen.returncode

    def kill(self) -> None:
        self.stopping = True
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
        self._await_profiler()

    def _await_profiler(self) -> None:
        """py-spy writes its file once its target has exited; give it a moment, then stop it."""
        if self.profiler is None:
            return
        try:
            self.profiler.wait(10)
        except subprocess.TimeoutExpired:
            self.profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.profiler.wait(5)


# -- the platform ------------------------------------------------------------------------------


def _profile(pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """With `COMET_BENCH_PROFILE=<dir>`, py-spy samples `pid` (and its children) into
    `<dir>/<name>.txt` until it exits; None otherwise."""
    directory = os.environ.get("COMET_BENCH_PROFILE")
    if not directory:
        return None
    if not PY_SPY.exists():
        raise PlatformError(f"COMET_BENCH_PROFILE is set but {PY_SPY} is missing (uv sync installs it)")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.py-spy.log").open("ab") as err:
        return subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--gil",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                str(PROFILE_RATE_HZ),
                "--output",
                str(out / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl, no locks
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=bench@comet.local", "-c", "user.name=Comet Bench", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()


def make_repository(path: Path, pipelines: Mapping[str, str]) -> dict[str, str]:
    """A git repository at `path` with one commit per pipeline (its `.comet.yml`); name -> sha."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, timeout=30)
    shas: dict[str, str] = {}
    for name, definition in pipelines.items():
        (path / ".comet.yml").write_text(definition)
        _git(path, "add", ".comet.yml")
        _git(path, "commit", "-q", "--allow-empty", "-m", f"bench pipeline {name}")
        shas[name] = _git(path, "rev-parse", "HEAD")
    return shas


@dataclass(frozen=True, slots=True)
class Transactions:
    commits: int
    rollbacks: int

    def __sub__(self, other: Transactions) -> Transactions:
        return Transactions(self.commits - other.commits, self.rollbacks - other.rollbacks)


def read_marks(path: Path) -> dict[uuid.UUID, list[float]]:
    """`<run id> <$EPOCHREALTIME>` lines by run (the decimal comma of some locales accepted);
    lines that are not such a pair are ignored."""
    starts: dict[uuid.UUID, list[float]] = {}
    if not path.exists():
        return starts
    for line in path.read_text().splitlines():
        run_id, _, at = line.partition(" ")
        with contextlib.suppress(ValueError):
            starts.setdefault(uuid.UUID(run_id), []).append(float(at.replace(",", ".")))
    return starts


@dataclass
class Platform:
    """What a scenario drives: the processes, an API client and a database connection."""

    settings: CommonSettings
    root: Path
    database_url: str
    namespace: str
    project_id: uuid.UUID
    user_id: uuid.UUID
    password: str
    shas: dict[str, str]
    db: asyncpg.Connection
    progress: Callable[[str], None]
    common: dict[str, object] = field(default_factory=dict)
    processes: list[CometProcess] = field(default_factory=list)
    api_url: str | None = None
    client: httpx.AsyncClient | None = None
    queries: int = 0  # statements the bench itself ran on `db` (each its own transaction)
    _counter: int = 0

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    @property
    def marks(self) -> Path:
        """The file stage scripts append `<run id> <$EPOCHREALTIME>` to (`@MARKS@` in a pipeline)."""
        return self.root / "marks"

    def script_starts(self) -> dict[uuid.UUID, list[float]]:
        """When each run's stage scripts ran (wall clock, seconds), from the marks file."""
        return read_marks(self.marks)

    # -- the bench's own queries (counted, so they can be told apart in pg_stat_database) -----

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        self.queries += 1
        return await self.db.fetch(query, *args)

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None:
        self.queries += 1
        return await self.db.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: object) -> Any:
        self.queries += 1
        return await self.db.fetchval(query, *args)

    async def transactions(self) -> Transactions:
        """Commits and rollbacks in the platform's database so far, the bench's own excluded.

        Approximate: a backend flushes its counters at most once a second while busy, and only
        after 10 s once it falls idle, so the last moments of activity may not be counted yet."""
        row = await self.fetchrow(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        assert row is not None
        return Transactions(int(row["xact_commit"]) - self.queries, int(row["xact_rollback"]))

    async def service_pids(self) -> dict[str, int]:
        """The services' processes, for a `CpuLedger` (grouped by the part before `/`): every
        process of this PostgreSQL server (`postgres/<pid>`: backends of all databases and its
        background processes, from pg_stat_activity; the postmaster itself is not listed there)
        and the Kafka broker (`kafka/<pid>`) when it is the only one on this machine."""
        pids = {
            f"postgres/{r['pid']}": int(r["pid"])
            for r in await self.fetch("SELECT pid FROM pg_stat_activity")
        }
        brokers = kafka_broker_pids()
        if len(brokers) == 1:
            pids[f"kafka/{brokers[0]}"] = brokers[0]
        return pids

    # -- processes ---------------------------------------------------------------------------

    def start(self, name: str, args: Sequence[str], **extra: object) -> CometProcess:
        """Start `comet <args>` with the platform's settings plus `extra` (as `COMET_*`)."""
        self._counter += 1
        log = self.root / "logs" / f"{self._counter:02d}-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = process_env(os.environ, {**self.common, **extra})
        env["PYTHONUNBUFFERED"] = "1"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(COMET), *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl, no locks
            )
        proc = CometProcess(name, list(args), log, popen, settings=dict(extra))
        proc.profiler = _profile(popen.pid, log.name.removesuffix(".log"))
        self.processes.append(proc)
        return proc

    def restart(self, proc: CometProcess) -> CometProcess:
        """Start `proc` again as a supervisor would once it has exited: the same name, arguments
        and settings (an instance id included), its own directories reused. Refuses a live one."""
        if proc.alive:
            raise PlatformError(f"{proc.name} (pid {proc.pid}) is still running; stop or kill it first")
        return self.start(proc.name, proc.args, **proc.settings)

    async def start_api(self, **extra: object) -> CometProcess:
        """`comet api` on a free port, with `extra` settings (`api_workers=2` → `COMET_API_WORKERS=2`);
        returns once `/readyz` answers 200 and the admin is logged in on `client`. A client left
        from an earlier `start_api` is closed first (stop the earlier API yourself)."""
        port = _free_port()
        proc = self.start("api", ["api"], **{**extra, "api_host": HOST, "api_port": port})
        self.api_url = f"http://{HOST}:{port}"
        if self.client is not None:
            await self.client.aclose()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self.client = httpx.AsyncClient(base_url=self.api_url, timeout=30.0, limits=limits)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not proc.alive:
                raise PlatformError(f"comet api exited with {proc.popen.returncode}:\n{proc.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await self.client.get("/readyz", timeout=2.0)).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise PlatformError(f"comet api not ready within {READY_TIMEOUT_S:.0f} s:\n{proc.tail()}")
            await asyncio.sleep(0.05)
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": self.password}
        )
        if response.status_code != 200:
            raise PlatformError(f"login failed: {response.status_code} {response.text}")
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return proc

    def start_orchestrator(self, **extra: object) -> CometProcess:
        """`comet orchestrator` with `extra` settings (`instance_id="o-1"` → `COMET_INSTANCE_ID=o-1`)."""
        return self.start(
            "orchestrator", ["orchestrator"], **{"git_cache_dir": self.root / "git-orchestrator", **extra}
        )

    def start_worker(self, concurrency: int = 4, **extra: object) -> CometProcess:
        """`comet worker` number n (its own git cache and workspaces), with `extra` settings."""
        n = len({p.name for p in self.processes if p.name.startswith("worker")})
        return self.start(
            f"worker{n}",
            ["worker", "--concurrency", str(concurrency)],
            **{
                "git_cache_dir": self.root / f"git-worker{n}",
                "workspace_dir": self.root / f"workspaces-{n}",
                "drain_timeout_s": "10s",
                **extra,
            },
        )

    def check_alive(self) -> None:
        """Raise if a process this platform did not stop has exited."""
        for proc in self.processes:
            if not proc.stopping and not proc.alive:
                raise PlatformError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    def live(self, prefix: str) -> list[CometProcess]:
        return [p for p in self.processes if p.name.startswith(prefix) and p.alive]

    async def wait_group_stable(self, group: str, *, timeout_s: float = 60.0, poll_s: float = 0.01) -> float:
        """Poll the broker until consumer group `group` is `Stable` with members (its consumers
        hold their partitions and start fetching); returns the wall-clock time it was seen so."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, request_timeout_ms=10_000
        )
        await asyncio.wait_for(admin.start(), 10)
        try:
            coordinator = await admin.find_coordinator(group)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                response = await admin.describe_consumer_groups([group], group_coordinator_id=coordinator)
                described = response[0].to_object()["groups"][0]
                if described["state"] == "Stable" and described["members"]:
                    return time.time()
                self.check_alive()
                await asyncio.sleep(poll_s)
        finally:
            await admin.close()
        raise PlatformError(f"consumer group {group} not stable within {timeout_s:.0f} s")

    def problems(self) -> list[tuple[str, str]]:
        """(process, line) for every warning-or-worse line any process logged so far."""
        return [(p.name, line) for p in self.processes for line in log_problems(p.output())]

    # -- runs --------------------------------------------------------------------------------

    async def trigger(self, pipeline: str) -> tuple[uuid.UUID, float]:
        """POST a run of `pipeline` (its commit's sha given); (run id, wall-clock time sent)."""
        assert self.client is not None, "start_api() first"
        body = {"ref": "refs/heads/main", "sha": self.shas[pipeline]}
        sent = time.time()
        response = await self.client.post(f"/api/v1/projects/{self.project_id}/runs", json=body)
        if response.status_code != 202:
            raise PlatformError(f"trigger answered {response.status_code}: {response.text[:500]}")
        return uuid.UUID(response.json()["run_id"]), sent

    async def cancel(self, run_id: uuid.UUID) -> None:
        """Ask the API to cancel a run; a run that has already finished (409) is fine."""
        assert self.client is not None, "start_api() first"
        response = await self.client.post(f"/api/v1/runs/{run_id}/cancel")
        if response.status_code not in (202, 409):
            raise PlatformError(f"cancel answered {response.status_code}: {response.text[:500]}")

    async def enable_webhooks(self, provider: str, provider_repo: str) -> str:
        """Point the bench project at `provider_repo` on `provider` (what webhook deliveries name)
        and give it a webhook secret, written straight to the database; returns the secret."""
        engine = make_engine(
            CommonSettings(database_url=self.database_url, db_pool_size=1, db_max_overflow=0),
            application_name="comet-bench",
        )
        try:
            async with make_sessionmaker(engine).begin() as session:
                project = await session.get(Project, self.project_id)
                if project is None:
                    raise PlatformError(f"bench project {self.project_id} is gone")
                project.provider, project.provider_repo = provider, provider_repo
                box = SecretBox(str(self.common["secret_key"]))
                secret = await add_webhook_secret(session, box, self.project_id)
        finally:
            await engine.dispose()
        return secret

    async def create_runs(self, pipeline: str, count: int, *, per_transaction: int = 50) -> list[uuid.UUID]:
        """`count` runs inserted with `create_run` directly (no API), committed in batches."""
        engine = make_engine(
            CommonSettings(database_url=self.database_url, db_pool_size=1, db_max_overflow=0),
            application_name="comet-bench",
        )
        ids: list[uuid.UUID] = []
        try:
            sessions = make_sessionmaker(engine)
            while len(ids) < count:
                async with sessions.begin() as session:
                    for _ in range(min(per_transaction, count - len(ids))):
                        run = await create_run(
                            session,
                            self.topics,
                            project_id=self.project_id,
                            ref="refs/heads/main",
                            sha=self.shas[pipeline],
                            trigger={"kind": "api", "actor": str(self.user_id), "event": "manual"},
                            variables={},
                            created_by=self.user_id,
                        )
                        ids.append(run.id)
        finally:
            await engine.dispose()
        return ids


async def _admin_connect(settings: CommonSettings) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(settings.database_url), timeout=15)


async def _create_database(settings: CommonSettings, name: str) -> str:
    conn = await _admin_connect(settings)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(settings.database_url, name)


async def _drop_database(settings: CommonSettings, name: str) -> None:
    conn = await _admin_connect(settings)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _seed(database_url: str, repo: Path, password: str) -> tuple[uuid.UUID, uuid.UUID]:
    engine = make_engine(CommonSettings(database_url=database_url), application_name="comet-bench")
    try:
        async with make_sessionmaker(engine).begin() as session:
            user = await users.create_user(
                session, email=ADMIN_EMAIL, password_hash=hash_password(password), is_admin=True
            )
            project = Project(
                name="bench",
                repo_url=f"file://{repo}",
                provider="local",
                default_branch="main",
                created_by=user.id,
            )
            session.add(project)
            await session.flush()
            session.add(Membership(project_id=project.id, user_id=user.id, role=Role.OWNER.value))
            return user.id, project.id
    finally:
        await engine.dispose()


async def _delete_topics(bootstrap: str, namespace: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        ours = [t for t in await admin.list_topics() if t.startswith(f"{namespace}.")]
        if ours:
            await admin.delete_topics(ours, timeout_ms=10_000)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def bench_platform(
    settings: CommonSettings,
    pipelines: Mapping[str, str],
    *,
    progress: Callable[[str], None] = lambda _: None,
    kafka_partitions: int | None = None,
) -> AsyncIterator[Platform]:
    """A fresh database, namespace, repository, admin and project; no process started yet."""
    root = Path(tempfile.mkdtemp(prefix="comet-bench-"))
    db_name = f"comet_bench_{secrets.token_hex(4)}"
    namespace = f"bench{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    created = False
    platform: Platform | None = None
    try:
        progress(f"platform: database {db_name}, namespace {namespace}, dir {root}")
        database_url = await _create_database(settings, db_name)
        created = True
        await asyncio.to_thread(upgrade, database_url)
        marks = str(root / "marks")
        pipelines = {name: text.replace("@MARKS@", marks) for name, text in pipelines.items()}
        shas = await asyncio.to_thread(make_repository, root / "repo", pipelines)
        user_id, project_id = await _seed(database_url, root / "repo", password)
        db = await asyncpg.connect(
            asyncpg_dsn(database_url), timeout=15, server_settings={"application_name": "comet-bench"}
        )
        common: dict[str, object] = {
            "database_url": database_url,
            "kafka_bootstrap_servers": settings.kafka_bootstrap_servers,
            "topic_namespace": namespace,
            "jwt_secret": secrets.token_urlsafe(48),
            "secret_key": secrets.token_urlsafe(48),
            "log_level": "warning",
            "log_format": "json",
            # One API process (its VmRSS is the API's), and no per-user trigger limit: the default
            # 60 triggers/minute would refuse the load the benchmark is about.
            "api_workers": 1,
            "rate_limits_enabled": "false",
        }
        if kafka_partitions is not None:
            common["kafka_partitions"] = kafka_partitions
        platform = Platform(
            settings=settings,
            root=root,
            database_url=database_url,
            namespace=namespace,
            project_id=project_id,
            user_id=user_id,
            password=password,
            shas=shas,
            db=db,
            progress=progress,
            common=common,
        )
        yield platform
    finally:
        await _teardown(settings, platform, db_name if created else None, namespace, root)


async def _teardown(
    settings: CommonSettings, platform: Platform | None, db_name: str | None, namespace: str, root: Path
) -> None:
    """Stop everything this platform started, whatever state it is in; never raises."""
    if platform is not None:
        try:
            await asyncio.gather(*(p.stop() for p in platform.processes), return_exceptions=True)
        finally:
            for proc in platform.processes:  # also when the gather above was cancelled
                proc.kill()
        if platform.client is not None:
            with contextlib.suppress(Exception):
                await platform.client.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(platform.db.close(), 5)
    for what, coro in (
        ("topics", _delete_topics(settings.kafka_bootstrap_servers, namespace)),
        ("database", _drop_database(settings, db_name) if db_name else None),
    ):
        if coro is None:
            continue
        try:
            await asyncio.wait_for(coro, 30)
        except Exception as exc:
            print(f"[bench] could not remove the bench {what}: {exc!r}", file=sys.stderr)
    if os.environ.get("COMET_BENCH_KEEP"):
        print(f"[bench] kept {root} (COMET_BENCH_KEEP is set)", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


def rss_mib(processes: Sequence[CometProcess]) -> dict[str, float]:
    """VmRSS of each live process, in MiB, by name."""
    out: dict[str, float] = {}
    for proc in processes:
        kib = proc.rss_kib()
        if kib is not None:
            out[proc.name] = kib / 1024.0
    return out


def describe_problems(problems: Sequence[tuple[str, str]], *, limit: int = 5) -> list[str]:
    """Notes for the report: how many warning-or-worse log lines, and the first few."""
    if not problems:
        return ["no warnings or errors in the processes' logs"]
    notes = [f"{len(problems)} warning-or-worse log line(s) in the processes' logs; first {limit}:"]
    notes.extend(f"{name}: {_problem_summary(line)[:400]}" for name, line in problems[:limit])
    return notes


def _problem_summary(line: str) -> str:
    """A log line as the report shows it: a JSON record's event, with the last line of its
    traceback (the exception itself) when it has one; any other line as it is."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(record, dict):
        return line
    summary = f"{record.get('level', '?')}: {record.get('event', '?')}"
    exception = record.get("exception")
    if isinstance(exception, str) and exception.strip():
        summary += f" — {exception.strip().splitlines()[-1]}"
    return summary


__all__: list[str] = [
    "CometProcess",
    "Platform",
    "PlatformError",
    "bench_platform",
    "describe_problems",
    "log_problems",
    "make_repository",
    "process_env",
    "rss_mib",
    "vm_rss_kib",
    "with_database",
]
