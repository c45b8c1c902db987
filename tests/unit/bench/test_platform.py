"""Pure helpers of the bench platform: /proc memory, log problems, URLs, process environments,
and the benchmark repository."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import cast

import asyncpg
import orjson
import pytest

from bench.platform import (
    Platform,
    PlatformError,
    Transactions,
    describe_problems,
    log_problems,
    make_repository,
    process_env,
    vm_rss_kib,
    with_database,
)
from config.settings import CommonSettings

STATUS = """Name:\tcomet
State:\tS (sleeping)
VmPeak:\t  812340 kB
VmRSS:\t   98765 kB
RssAnon:\t   70000 kB
"""


def test_vm_rss_is_read_from_a_proc_status_text_in_kib() -> None:
    assert vm_rss_kib(STATUS) == 98765


def test_a_status_without_vm_rss_gives_none() -> None:
    assert vm_rss_kib("Name:\tzombie\nState:\tZ (zombie)\n") is None


def test_log_problems_keeps_warnings_errors_and_non_json_lines_only() -> None:
    text = "\n".join(
        [
            '{"event": "started", "level": "info"}',
            '{"event": "relay retry", "level": "warning"}',
            '{"event": "boom", "level": "error"}',
            "",
            "Traceback (most recent call last):",
            '["not", "an", "object"]',
        ]
    )
    assert log_problems(text) == [
        '{"event": "relay retry", "level": "warning"}',
        '{"event": "boom", "level": "error"}',
        "Traceback (most recent call last):",
        '["not", "an", "object"]',
    ]


def test_describe_problems_says_so_when_there_are_none() -> None:
    assert describe_problems([]) == ["no warnings or errors in the processes' logs"]


def test_describe_problems_counts_them_and_quotes_the_first_few() -> None:
    notes = describe_problems([("api", f"line {i}") for i in range(7)], limit=2)
    assert notes == [
        "7 warning-or-worse log line(s) in the processes' logs; first 2:",
        "api: line 0",
        "api: line 1",
    ]


def test_describe_problems_names_a_logged_exception_by_its_last_traceback_line() -> None:
    record = orjson.dumps(
        {
            "event": "unhandled error",
            "level": "error",
            "exception": "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'sha'",
        }
    ).decode()
    assert describe_problems([("api", record)])[1] == "api: error: unhandled error — KeyError: 'sha'"


def test_with_database_replaces_only_the_database_name() -> None:
    url = "postgresql+asyncpg://comet:comet@127.0.0.1:15432/comet"
    assert (
        with_database(url, "comet_bench_ab12")
        == "postgresql+asyncpg://comet:comet@127.0.0.1:15432/comet_bench_ab12"
    )


def test_with_database_rejects_what_is_not_a_url() -> None:
    with pytest.raises(ValueError, match="not a database URL"):
        with_database("comet", "x")


def test_process_env_drops_inherited_comet_settings_and_adds_the_platforms() -> None:
    env = process_env(
        {"PATH": "/bin", "COMET_DATABASE_URL": "postgresql+asyncpg://elsewhere/db"},
        {"database_url": "postgresql+asyncpg://here/db", "api_port": 8123},
    )
    assert env == {
        "PATH": "/bin",
        "COMET_DATABASE_URL": "postgresql+asyncpg://here/db",
        "COMET_API_PORT": "8123",
    }


def test_make_repository_commits_one_pipeline_per_commit(tmp_path: Path) -> None:
    shas = make_repository(tmp_path / "repo", {"one": "stages: {a: {run: 'true'}}\n", "two": "name: two\n"})
    assert list(shas) == ["one", "two"]
    for name, text in (("one", "stages: {a: {run: 'true'}}\n"), ("two", "name: two\n")):
        shown = subprocess.run(
            ["git", "-C", str(tmp_path / "repo"), "show", f"{shas[name]}:.comet.yml"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert shown == text


def test_transactions_subtract_field_by_field() -> None:
    assert Transactions(120, 30) - Transactions(100, 10) == Transactions(20, 20)


# -- restarting a process as a supervisor would ---------------------------------------------------


def _platform(tmp_path: Path) -> Platform:
    return Platform(
        settings=CommonSettings(),
        root=tmp_path,
        database_url="postgresql+asyncpg://u:p@127.0.0.1:1/db",
        namespace="ns1",
        project_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        password="x",
        shas={},
        db=cast("asyncpg.Connection", None),
        progress=lambda _: None,
        common={"topic_namespace": "ns1"},
    )


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def test_a_killed_process_restarts_with_its_name_arguments_and_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "comet"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr("bench.platform.COMET", fake)
    p = _platform(tmp_path)
    first = p.start_worker(3, instance_id="bench-worker-1")
    try:
        with pytest.raises(PlatformError, match="still running"):
            p.restart(first)
        first.kill()
        again = p.restart(first)
        try:
            assert (again.name, again.args) == ("worker0", ["worker", "--concurrency", "3"])
            assert again.pid != first.pid
            assert again.alive
            env = _environ(again.pid)
            assert env["COMET_INSTANCE_ID"] == "bench-worker-1"
            assert env["COMET_WORKSPACE_DIR"] == str(tmp_path / "workspaces-0")
            assert env["COMET_TOPIC_NAMESPACE"] == "ns1"
            # A restart is the same worker: the next one started is worker1, not worker2.
            assert p.start_worker().name == "worker1"
        finally:
            for proc in p.processes:
                proc.kill()
    finally:
        first.kill()
