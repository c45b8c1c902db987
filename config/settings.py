"""Settings for each Comet process, read from `COMET_*` environment variables.

One class per process, built once at its entry point with `load()` and passed down. A missing or
malformed value stops start-up with one clear line per bad value (`SettingsError`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from schemas.durations import parse_duration

DEFAULT_DATABASE_URL = "postgresql+asyncpg://comet:comet@127.0.0.1:15432/comet"
DEFAULT_KAFKA = "127.0.0.1:9092"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class SettingsError(Exception):
    """Bad configuration: the message has one line per offending setting."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMET_", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    kafka_bootstrap_servers: str = DEFAULT_KAFKA
    # Namespaces topics and consumer groups, so several Comets (or test sessions) share a broker.
    topic_namespace: str = "comet"
    kafka_partitions: int = Field(default=6, ge=1, le=1000)
    # Partitions per topic where they differ from `kafka_partitions`, by the topic's name without
    # the namespace: `dispatch=12,webhooks=3` (`dispatch` for every pool's dispatch topic,
    # `dispatch.POOL` for one). Applied when a topic is created. The partitions of a topic bound
    # its consumer group: at most that many members get work from it (docs/scaling.md, 0026).
    kafka_topic_partitions: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    # A stable name for this process among its kind (e.g. `worker-1`). With it, the process is a
    # static member of its Kafka consumer groups: restarted within the session timeout, it takes
    # its partitions back at once, and nobody else pauses for a rebalance (docs/decisions/0012).
    # Two live processes must never share one.
    instance_id: str | None = None
    # How long the group waits for a member that stopped heartbeating before giving its partitions
    # to the others (Kafka brokers accept 6 s to 300 s by default).
    kafka_session_timeout_s: float = Field(default=10.0, ge=1.0, le=1800.0)
    # `comet orchestrator` / `comet worker`: serve /healthz, /readyz and /metrics on this port
    # (off when unset; the API serves its own on COMET_API_PORT).
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=1, le=65535)
    # -- webhook replay (issue 11, docs/decisions/0018) -----------------------------------------
    # Deliveries per second `comet replay webhooks` re-drives (its --rate): paced so that live
    # webhooks keep their latency while a large window is replayed.
    webhook_replay_rate: float = Field(default=200.0, gt=0, le=100_000)
    # -- retention and archives (issue 11, docs/decisions/0020) --------------------------------
    # Finished runs' event history (and run-less events) older than this moves from Postgres to
    # gzip'd JSON-lines files in `archive_dir` (the orchestrators do it every archive_interval);
    # `comet replay` reads the archives too. Every orchestrator and `comet replay` must see the
    # same directory (shared storage when they run on several machines).
    history_retention: float = Field(default=30 * 86400.0, gt=0)
    archive_dir: Path = Path(".comet/archives")
    archive_interval: float = Field(default=3600.0, gt=0)
    # -- outbound notifications (issue 13, docs/decisions/0024) -------------------------------
    # Hosts or CIDRs (comma-separated) that notifications may reach although they are private or
    # loopback, and over http; empty: https to public addresses only. The API checks it when an
    # integration is created, the orchestrator again at each send.
    outbound_allow: str = ""

    @field_validator("outbound_allow")
    @classmethod
    def _outbound_allow(cls, value: str) -> str:
        from schemas.outbound import parse_allow

        parse_allow(value)
        return value

    @field_validator("kafka_session_timeout_s", "history_retention", "archive_interval", mode="before")
    @classmethod
    def _session_timeout(cls, value: object) -> float:
        return _seconds(value)

    @field_validator("kafka_topic_partitions", mode="before")
    @classmethod
    def _topic_partitions(cls, value: object) -> object:
        if isinstance(value, str):
            from events.partitions import parse_topic_partitions

            return parse_topic_partitions(value)
        return value

    @field_validator("instance_id")
    @classmethod
    def _instance(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits, '.', '_' or '-'")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_url(cls, value: str) -> str:
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg://")
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for part in value.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("must be HOST:PORT[,HOST:PORT...]")
        return value

    @field_validator("topic_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits, '.', '_' or '-'")
        return value


def _seconds(value: object) -> float:
    return parse_duration(value) if isinstance(value, str | int | float) else float("nan")


class ApiSettings(CommonSettings):
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # Processes serving the API (uvicorn workers); 1 keeps everything in one process.
    api_workers: int = Field(default=1, ge=1, le=64)
    # The JWT signing keys, from a file instead of COMET_JWT_SECRET: the first non-empty line signs,
    # the following lines only verify (previous keys, kept until their tokens have expired).
    jwt_secret_file: Path | None = None
    # Declared after jwt_secret_file: its validators read the file when no secret is set.
    jwt_secret: SecretStr = Field(default=SecretStr(""), validate_default=True)
    # Previous signing keys, comma-separated: they verify tokens they signed, never sign new ones.
    jwt_previous_secrets: SecretStr = Field(default=SecretStr(""), validate_default=True)
    jwt_issuer: str = "comet"
    jwt_audience: str = "comet-api"
    access_token_ttl_s: float = 900.0
    refresh_token_ttl_s: float = 30 * 86400.0
    # Encrypts secrets at rest (webhook secrets, project secrets, provider tokens).
    secret_key: SecretStr = Field(min_length=32)
    redis_url: str | None = None
    max_body_bytes: int = 25 * 1024 * 1024
    # `POST …/webhooks/replay` (docs/decisions/0018): at most this many deliveries per request (a
    # larger window is for `comet replay webhooks`, which paces itself), planned against
    # `.comet.yml` read from mirrors here.
    webhook_replay_max: int = Field(default=1000, ge=1, le=100_000)
    git_cache_dir: str = ".comet/git-cache"
    relay: bool = True

    @field_validator("access_token_ttl_s", "refresh_token_ttl_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return _seconds(value)

    @field_validator("access_token_ttl_s")
    @classmethod
    def _short_access(cls, value: float) -> float:
        if not 0 < value <= 900:
            raise ValueError("access tokens live at most 15 minutes (900 s)")
        return value

    # -- identity and gateway (issue 5) -----------------------------------------------------------
    # HTTPS in front of the API: adds Strict-Transport-Security and marks cookies Secure.
    tls: bool = False
    hsts_max_age_s: int = Field(default=63_072_000, ge=0)
    # Origins allowed to call the API from a browser, comma-separated; none by default (closed).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Rate limits (`N/second|minute|hour`, the `limits` library's notation), in memory unless
    # COMET_REDIS_URL is set. auth and webhook are per client address, trigger per user.
    rate_limits_enabled: bool = True
    rate_limit_auth: str = "30/minute"
    rate_limit_trigger: str = "60/minute"
    # Per sending address: Git hosts deliver from few addresses, so this is generous.
    rate_limit_webhook: str = "100/second"
    # Login throttling: after this many failures, each further one locks out for an exponentially
    # growing time (base * 2**k, at most max) during which logins answer 429 with Retry-After.
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=50, ge=1)
    login_backoff_base_s: float = Field(default=1.0, gt=0)
    login_backoff_max_s: float = Field(default=900.0, gt=0)
    login_failure_window_s: float = Field(default=3600.0, gt=0)
    # OAuth login. A provider is offered once its client id and secret are set. The URLs default to
    # the public hosts; point them at GitHub Enterprise or a self-managed GitLab as needed.
    public_url: str | None = None  # where browsers reach the API (OAuth callback); default: request's
    oauth_allow_signup: bool = True  # create a user on first OAuth login (by verified e-mail)
    oauth_github_client_id: str | None = None
    oauth_github_client_secret: SecretStr | None = None
    oauth_github_authorize_url: str = "https://github.com/login/oauth/authorize"
    oauth_github_token_url: str = "https://github.com/login/oauth/access_token"
    oauth_github_api_url: str = "https://api.github.com"
    oauth_gitlab_client_id: str | None = None
    oauth_gitlab_client_secret: SecretStr | None = None
    oauth_gitlab_authorize_url: str = "https://gitlab.com/oauth/authorize"
    oauth_gitlab_token_url: str = "https://gitlab.com/oauth/token"
    oauth_gitlab_api_url: str = "https://gitlab.com/api/v4"
    oauth_bitbucket_client_id: str | None = None
    oauth_bitbucket_client_secret: SecretStr | None = None
    oauth_bitbucket_authorize_url: str = "https://bitbucket.org/site/oauth2/authorize"
    oauth_bitbucket_token_url: str = "https://bitbucket.org/site/oauth2/access_token"
    oauth_bitbucket_api_url: str = "https://api.bitbucket.org/2.0"

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if not value.get_secret_value():
            path = info.data.get("jwt_secret_file")
            keys = _key_file_lines(path) if path is not None else []
            if not keys:
                raise ValueError("is required but not set (or set COMET_JWT_SECRET_FILE)")
            value = SecretStr(keys[0])
        if len(value.get_secret_value()) < MIN_JWT_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_JWT_SECRET_CHARS} characters long")
        return value

    @field_validator("jwt_previous_secrets")
    @classmethod
    def _jwt_previous(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        path = info.data.get("jwt_secret_file")
        if path is not None:
            keys += _key_file_lines(path)[1:]
        if any(len(k) < MIN_JWT_SECRET_CHARS for k in keys):
            raise ValueError(f"each key must be at least {MIN_JWT_SECRET_CHARS} characters long")
        return SecretStr(",".join(keys))

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [o.strip() for o in value.split(",") if o.strip()]
        if isinstance(value, list | tuple):
            for origin in value:
                if not isinstance(origin, str) or not (origin == "*" or _ORIGIN.match(origin)):
                    raise ValueError(f"{origin!r} is not an origin like https://ci.example.com")
        return value

    @field_validator("rate_limit_auth", "rate_limit_trigger", "rate_limit_webhook")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like 30/minute") from None
        return value

    def jwt_verification_keys(self) -> list[str]:
        """The previous signing keys (they verify, never sign)."""
        return [k for k in self.jwt_previous_secrets.get_secret_value().split(",") if k]


MIN_JWT_SECRET_CHARS = 32
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _key_file_lines(path: Path) -> list[str]:
    """The non-empty, non-comment lines of a JWT key file; ValueError naming the file if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the key file {path}: {exc.strerror}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class OrchestratorSettings(CommonSettings):
    git_cache_dir: str = ".comet/git-cache"
    # Pull requests from forks run here, never on the trusted pools, and get no secrets.
    untrusted_pool: str = "untrusted"
    # Decrypts integration tokens (commit statuses); without it, nothing is reported to Git hosts.
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    # Where people reach this Comet: commit statuses link to runs here.
    public_url: str = "http://127.0.0.1:8000"
    reaper_interval_s: float = 1.0
    # After Postgres (re)starts, or the reaper reconnects to it, leases are not judged for this
    # long: workers' heartbeats (and results held through the outage) land first.
    reaper_outage_grace_s: float = Field(default=10.0, ge=0)
    # Schedules: how often due ones are fired; how often every project's pipeline schedules are
    # re-read from its default branch, and how soon a created or changed project's are.
    scheduler_interval_s: float = Field(default=1.0, gt=0)
    schedule_refresh_s: float = Field(default=300.0, gt=0)
    schedule_scan_s: float = Field(default=5.0, gt=0)
    relay: bool = True
    # The run engine gathers what arrives this soon after an event into the same batch (one
    # transaction for a wave of stage starts or results, decision 0033); 0 handles each at once.
    engine_linger_s: float = Field(default=0.003, ge=0, le=1.0)
    # Deployments (decision 0027): a deployment waiting for approvals longer than this fails; how
    # often wait timers and approval deadlines are checked.
    deploy_approval_timeout_s: float = Field(default=24 * 3600.0, gt=0)
    deploy_timer_interval_s: float = Field(default=1.0, gt=0)

    @field_validator(
        "deploy_approval_timeout_s",
        "deploy_timer_interval_s",
        "reaper_interval_s",
        "reaper_outage_grace_s",
        "scheduler_interval_s",
        "schedule_refresh_s",
        "schedule_scan_s",
        "engine_linger_s",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> float:
        return _seconds(value)


def default_workspace_dir() -> str:
    """`$TMPDIR/comet-<uid>/workspaces`: per user, outside any checkout."""
    return str(Path(tempfile.gettempdir()) / f"comet-{os.getuid()}" / "workspaces")


class WorkerSettings(CommonSettings):
    pool: str = "default"
    concurrency: int = Field(default=4, ge=1, le=256)
    # `k=v,k2=v2` in COMET_LABELS (not JSON): NoDecode hands the text to `_labels`.
    labels: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # Outside any project tree: tools that look upward for their configuration (pytest's rootdir,
    # eslint, editorconfig) must find the stage's checkout, never files around the workspace.
    workspace_dir: str = Field(default_factory=default_workspace_dir)
    git_cache_dir: str = ".comet/git-cache"
    lease_s: float = 15.0
    heartbeat_s: float = 3.0
    kill_grace_s: float = 10.0
    drain_timeout_s: float = 300.0
    log_flush_s: float = 0.2
    # With free slots, a worker claims the oldest attempts of its pool queued in Postgres when the
    # orchestrator notifies (at once), when a slot frees up, and every `sweep_s`; `stale_dispatch_s`
    # leaves younger attempts to the Kafka dispatch path (0: take any).
    sweep_s: float = Field(default=1.0, gt=0)
    stale_dispatch_s: float = Field(default=0.0, ge=0)
    log_cap_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Decrypts project secrets for stages; without it, stages get no secrets.
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    relay: bool = True

    @field_validator(
        "lease_s",
        "heartbeat_s",
        "kill_grace_s",
        "drain_timeout_s",
        "log_flush_s",
        "sweep_s",
        "stale_dispatch_s",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> float:
        return _seconds(value)

    @field_validator("pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lowercase letters, digits, '.', '_' or '-'")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_labels(value)
        return value

    @field_validator("labels")
    @classmethod
    def _label_rules(cls, value: dict[str, str]) -> dict[str, str]:
        from schemas.labels import check_labels

        return check_labels(value)


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> dict; raises ValueError naming the bad item (the rule of schemas/labels.py,
    which `.comet.yml` stage labels follow too)."""
    from schemas.labels import parse_labels as parse

    return parse(text)


class AnalyticsSettings(CommonSettings):
    """`comet analytics` (issue 13, docs/decisions/0025): the faust-streaming insights process."""

    # How often the facts folded since the last write go to Postgres in one transaction.
    analytics_flush_interval: float = Field(default=1.0, gt=0, le=60)
    # faust's own data directory (its table state is in memory and in its Kafka changelog).
    analytics_data_dir: Path = Path(".comet/analytics")
    # A run whose events have waited this long for an earlier one, or that finished this long ago
    # with no fact, is folded again from its history in Postgres (decision 0030).
    analytics_repair_after: float = Field(default=10.0, gt=0, le=3600)

    @field_validator("analytics_flush_interval", "analytics_repair_after", mode="before")
    @classmethod
    def _flush_interval(cls, value: object) -> float:
        return _seconds(value)


S = TypeVar("S", bound=CommonSettings)


def load(cls: type[S], **overrides: object) -> S:
    """Build settings from the environment (and overrides), or raise SettingsError with one line each."""
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "is required but not set"
            lines.append(f"COMET_{field.upper()}: {message}")
        raise SettingsError("\n".join(lines)) from None
