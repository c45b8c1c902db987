"""`bench/profile.py`: reading py-spy's collapsed stacks into per-process top costs."""

from __future__ import annotations

from bench.profile import frame_name, is_own, parse, render


def test_a_frame_keeps_its_function_and_module_but_not_its_line() -> None:
    assert frame_name("execute (/v/lib/python3.11/site-packages/asyncpg/connection.py:318)") == (
        "execute (asyncpg/connection.py)"
    )
    assert frame_name("wait (/usr/lib/python3.11/threading.py:320)") == "wait (threading.py)"


def test_own_frames_are_those_of_comets_packages() -> None:
    assert is_own("handle (orchestrator/handlers.py)")
    assert not is_own("execute (asyncpg/connection.py)")


def test_samples_add_up_per_leaf_and_each_own_function_counts_once_per_stack() -> None:
    lines = [
        'process 1:"comet";main (cli/main.py:1);handle (orchestrator/handlers.py:10);'
        "execute (/x/site-packages/asyncpg/connection.py:5) 7",
        "main (cli/main.py:1);handle (orchestrator/handlers.py:10);handle (orchestrator/handlers.py:12);"
        "dumps (/usr/lib/python3.11/json/__init__.py:9) 3",
        "a line py-spy never writes",
    ]
    profile = parse(lines)

    assert profile.samples == 10
    assert profile.leaves["execute (asyncpg/connection.py)"] == 7
    assert profile.leaves["dumps (json/__init__.py)"] == 3
    assert profile.own["handle (orchestrator/handlers.py)"] == 10  # recursion counted once
    assert "process 1" not in " ".join(profile.leaves)


def test_the_report_shows_shares_and_cpu_seconds() -> None:
    profile = parse(["main (cli/main.py:1);leaf (x.py:2) 150", "main (cli/main.py:1) 50"])
    text = render("02-orchestrator", profile, rate_hz=100, top=5)
    assert text.startswith("02-orchestrator: 200 samples ≈ 2.0 CPU-s")
    assert "75.0 %  leaf (x.py)" in text
    assert "100.0 %  main (cli/main.py)" in text
