"""Per-attempt workspaces on the worker's disk: a fresh checkout directory and a private scratch directory.

Each workspace is owned through an flock on `root/.locks/<attempt_id>` for as long as it lives,
so several worker processes can share one root: `sweep_stale` removes only what no live process
holds (the kernel drops the locks of a crashed worker), never a neighbour's running stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_LOCKS = ".locks"
# Each pass of rmtree can unlock one more level of directories a stage made read-only or unreadable.
_REMOVE_PASSES = 32


class WorkspaceError(Exception):
    """A workspace could not be made or is held by another process. Not retriable as such."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Workspace:
    attempt_id: str
    base: Path  # everything of this attempt lives under it
    path: Path  # the checkout; the stage's working directory
    scratch: Path  # 0700, outside the checkout: the stage script and other worker files
    lock_fd: int = field(repr=False, compare=False)


class Workspaces:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, attempt_id: str) -> Workspace:
        """A fresh, empty workspace; anything left under the same id (a crashed earlier try) is wiped."""
        if not _ID.match(attempt_id):
            raise WorkspaceError(f"{attempt_id!r} cannot name a workspace")
        (self.root / _LOCKS).mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = self._try_lock(attempt_id)
        if fd is None:
            raise WorkspaceError(f"workspace {attempt_id} is in use by another process")
        base = self.root / attempt_id
        try:
            remove_tree(base)
            base.mkdir(mode=0o700)
            (base / "checkout").mkdir()
            (base / "scratch").mkdir(mode=0o700)
        except BaseException:
            os.close(fd)
            raise
        return Workspace(attempt_id, base, base / "checkout", base / "scratch", fd)

    def remove(self, workspace: Workspace) -> None:
        """Delete the workspace (read-only files and directories included) and give up its lock."""
        try:
            remove_tree(workspace.base)
            self._lock_path(workspace.attempt_id).unlink(missing_ok=True)
        finally:
            os.close(workspace.lock_fd)

    def sweep_stale(self, active_ids: Iterable[str] = ()) -> list[str]:
        """Remove the workspaces of attempts that no live process holds; returns their ids."""
        if not self.root.is_dir():
            return []
        active = set(active_ids)
        names = {entry.name for entry in self.root.iterdir() if _ID.match(entry.name)}
        lock_dir = self.root / _LOCKS
        if lock_dir.is_dir():
            names |= {entry.name for entry in lock_dir.iterdir() if _ID.match(entry.name)}
        removed = []
        for name in sorted(names - active):
            fd = self._try_lock(name)
            if fd is None:
                continue  # a live process is using it
            try:
                remove_tree(self.root / name)
                self._lock_path(name).unlink(missing_ok=True)
            finally:
                os.close(fd)
            removed.append(name)
        return removed

    def _lock_path(self, attempt_id: str) -> Path:
        return self.root / _LOCKS / attempt_id

    def _try_lock(self, attempt_id: str) -> int | None:
        path = self._lock_path(attempt_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # Its previous owner may have unlinked the file between our open and our flock:
            # a lock on an unlinked file protects nothing, so try again on the current one.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            opened = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                return fd
            os.close(fd)


def remove_tree(path: Path) -> None:
    """rmtree that also removes what a stage made read-only or unreadable; a no-op if `path` is absent."""
    if path.is_symlink():
        path.unlink()  # a stage may replace its directory with a link: never follow it
        return
    for _ in range(_REMOVE_PASSES):
        if not path.exists():
            return
        shutil.rmtree(path, onerror=_make_removable)
    shutil.rmtree(path)  # still there: raise the real error


def _make_removable(func: Callable[..., Any], failed: str, exc_info: Any) -> None:
    if isinstance(exc_info[1], FileNotFoundError):
        return
    # Deleting an entry needs write access to its directory; listing one needs read and execute.
    for target in (os.path.dirname(failed), failed):
        if os.path.isdir(target) and not os.path.islink(target):
            with contextlib.suppress(OSError):
                os.chmod(target, stat.S_IRWXU)
    if func in (os.unlink, os.remove, os.rmdir):
        with contextlib.suppress(OSError):
            func(failed)
