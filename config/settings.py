"""Settings for each Comet process, read from `COMET_*` environment variables.

One class per process, built once at its entry point with `load()` and passed down. A missing or
malformed value stops start-up with one clear line per bad value (`SettingsError`).
"""

from __future__ import annotations

import re
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)

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
    jwt_secret: SecretStr = Field(min_length=32)
    jwt_issuer: str = "comet"
    jwt_audience: str = "comet-api"
    access_token_ttl_s: float = 900.0
    refresh_token_ttl_s: float = 30 * 86400.0
    # Encrypts secrets at rest (webhook secrets, project secrets, provider tokens).
    secret_key: SecretStr = Field(min_length=32)
    redis_url: str | None = None
    max_body_bytes: int = 25 * 1024 * 1024
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


class OrchestratorSettings(CommonSettings):
    git_cache_dir: str = ".comet/git-cache"
    # Pull requests from forks run here, never on the trusted pools, and get no secrets.
    untrusted_pool: str = "untrusted"
    # Decrypts integration tokens (commit statuses); without it, nothing is reported to Git hosts.
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    # Where people reach this Comet: commit statuses link to runs here.
    public_url: str = "http://127.0.0.1:8000"
    reaper_interval_s: float = 1.0
    relay: bool = True

    @field_validator("reaper_interval_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return _seconds(value)


class WorkerSettings(CommonSettings):
    pool: str = "default"
    concurrency: int = Field(default=4, ge=1, le=256)
    labels: dict[str, str] = Field(default_factory=dict)
    workspace_dir: str = ".comet/workspaces"
    git_cache_dir: str = ".comet/git-cache"
    lease_s: float = 15.0
    heartbeat_s: float = 3.0
    kill_grace_s: float = 10.0
    drain_timeout_s: float = 300.0
    log_flush_s: float = 0.2
    log_cap_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Decrypts project secrets for stages; without it, stages get no secrets.
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    relay: bool = True

    @field_validator(
        "lease_s", "heartbeat_s", "kill_grace_s", "drain_timeout_s", "log_flush_s", mode="before"
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


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` -> dict; raises ValueError naming the bad item."""
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"label {item!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


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
