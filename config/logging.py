"""structlog, configured once per process: JSON lines off a terminal, readable console on one.

Ids that concern a line (`run_id`, `stage_id`, `event_id`, `correlation_id`, `request_id`) are
bound with `structlog.contextvars.bound_contextvars` by the code that knows them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "refresh_token", "access_token"})


def _drop_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is when a line is written, not when logging was configured:
    a caller that swaps it for a while (a CLI run in-process, a test runner) and closes its stand-in
    must not leave every later log line raising on a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(process: str, *, level: str = "info", fmt: str | None = None) -> None:
    """Set up structlog and the stdlib root logger for the process named `process`."""
    fmt = fmt or ("console" if sys.stderr.isatty() else "json")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(process=process)
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
    # aiokafka logs every reconnect at ERROR; Comet reports those itself where they matter.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if numeric > logging.DEBUG else logging.DEBUG)
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
