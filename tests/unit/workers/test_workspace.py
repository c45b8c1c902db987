"""Per-attempt workspaces on a real disk: fresh, private, removable whatever the stage did, swept."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.workspace import Workspace, WorkspaceError, Workspaces, remove_tree


def crash(workspace: Workspace) -> None:
    """What the kernel does to a dead worker's workspace: the lock goes, the files stay."""
    os.close(workspace.lock_fd)


def test_new_workspace_has_an_empty_checkout_and_a_private_scratch(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path / "ws")
    ws = workspaces.create("0190f0c2-aaaa-7bbb-8ccc-123456789abc")
    assert ws.path.is_dir()
    assert list(ws.path.iterdir()) == []
    assert ws.scratch.is_dir()
    assert stat.S_IMODE(ws.scratch.stat().st_mode) == 0o700
    assert not ws.scratch.is_relative_to(ws.path)
    workspaces.remove(ws)
    assert not ws.base.exists()


def test_workspace_is_fresh_even_when_a_crashed_try_left_files(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path)
    first = workspaces.create("attempt-1")
    (first.path / "stale.txt").write_text("from before the crash")
    crash(first)
    second = workspaces.create("attempt-1")
    assert list(second.path.iterdir()) == []
    workspaces.remove(second)


def test_remove_deletes_read_only_and_unreadable_directories(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path)
    ws = workspaces.create("attempt-1")
    deep = ws.path / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "file").write_text("x")
    (deep / "file").chmod(0o400)
    deep.chmod(0o500)
    (ws.path / "a").chmod(0o000)
    workspaces.remove(ws)
    assert not ws.base.exists()


def test_remove_does_not_follow_a_link_put_in_place_of_the_workspace(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    workspaces = Workspaces(tmp_path / "ws")
    ws = workspaces.create("attempt-1")
    remove_tree(ws.base)
    ws.base.symlink_to(precious)
    workspaces.remove(ws)
    assert not ws.base.is_symlink()
    assert (precious / "keep.txt").read_text() == "keep"


def test_removing_a_missing_tree_is_a_no_op(tmp_path: Path) -> None:
    remove_tree(tmp_path / "never-made")


@pytest.mark.parametrize("attempt_id", ["", "../escape", "a/b", ".locks", "-rf", "x" * 200])
def test_attempt_ids_that_could_escape_the_root_are_refused(tmp_path: Path, attempt_id: str) -> None:
    with pytest.raises(WorkspaceError, match="cannot name a workspace"):
        Workspaces(tmp_path).create(attempt_id)


def test_workspace_held_by_a_live_owner_cannot_be_created_again(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path)
    ws = workspaces.create("attempt-1")
    with pytest.raises(WorkspaceError, match="in use"):
        Workspaces(tmp_path).create("attempt-1")
    workspaces.remove(ws)


def test_sweep_removes_leftovers_of_crashed_attempts_only(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path)
    running = workspaces.create("running")
    crashed = workspaces.create("crashed")
    listed = workspaces.create("listed-active")
    crash(crashed)
    crash(listed)
    (tmp_path / "orphan-without-lock").mkdir()
    removed = workspaces.sweep_stale(active_ids=["listed-active"])
    assert removed == ["crashed", "orphan-without-lock"]
    assert running.path.is_dir()
    assert listed.path.is_dir()
    assert not crashed.base.exists()
    workspaces.remove(running)


def test_sweep_never_takes_a_workspace_from_another_live_worker(tmp_path: Path) -> None:
    program = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from workers.workspace import Workspaces
        Workspaces(Path(sys.argv[1])).create("neighbour")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    neighbour = subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[3],
    )
    try:
        assert neighbour.stdout is not None
        assert neighbour.stdout.readline() == b"ready\n"
        assert Workspaces(tmp_path).sweep_stale() == []
        assert (tmp_path / "neighbour" / "checkout").is_dir()
    finally:
        neighbour.kill()
        neighbour.wait()
        if neighbour.stdout is not None:
            neighbour.stdout.close()
    # Killed: its lock died with it, so its workspace is now a leftover.
    assert Workspaces(tmp_path).sweep_stale() == ["neighbour"]
    assert not (tmp_path / "neighbour").exists()


def test_sweep_of_a_root_that_does_not_exist_removes_nothing(tmp_path: Path) -> None:
    assert Workspaces(tmp_path / "absent").sweep_stale() == []
