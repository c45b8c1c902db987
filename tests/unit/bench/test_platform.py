"""Pure helpers of the bench platform: /proc memory, log problems, URLs, process environments,
and the benchmark repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.platform import (
    Transactions,
    describe_problems,
    log_problems,
    make_repository,
    process_env,
    vm_rss_kib,
    with_database,
)

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
