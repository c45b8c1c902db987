"""Opening a stage's report files for reading, safely: confined to the workspace, size-capped.

`ReportOpener.open(rel)` opens the resolved path with `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot
hang the worker), then checks what was really opened through /proc/self/fd (a symlink swapped in
after the search cannot smuggle in a file from outside), that it is a regular file, and that it
fits both the per-file cap and what is left of the stage's budget. The file is then read through
its cap: one that grows past it while being read fails with a ReportError instead of filling
memory. Every refusal is a ReportError whose reason is shown on the stage.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import IO, TYPE_CHECKING

from workers.reports.safexml import ReportError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MB = 1024 * 1024


class ReportOpener:
    """Opens report files after the symlink and size checks, counting the stage's byte budget."""

    def __init__(self, workspace: Path, *, max_file_bytes: int, max_stage_bytes: int) -> None:
        self._workspace = workspace
        self._real_root = Path(os.path.realpath(workspace))
        self._max_file = max_file_bytes
        self._stage_limit = max_stage_bytes
        self._left = max_stage_bytes

    def open(self, rel: str) -> IO[bytes]:
        """The file, opened for reading through its cap; ReportError when it must be skipped."""
        real = os.path.realpath(self._workspace / rel)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise ReportError(f"cannot be opened: {exc.strerror or exc}") from None
        try:
            self._check(fd)
        except BaseException:
            os.close(fd)
            raise
        return io.BufferedReader(_Capped(fd, self._max_file))

    def _check(self, fd: int) -> None:
        info = os.fstat(fd)
        proc = f"/proc/self/fd/{fd}"  # what was really opened, whatever changed since the walk
        if os.path.exists(proc) and not Path(os.readlink(proc)).is_relative_to(self._real_root):
            raise ReportError("resolves to outside the workspace: refused")
        if not stat.S_ISREG(info.st_mode):
            raise ReportError("not a regular file")
        if info.st_size > self._max_file:
            raise ReportError(
                f"skipped: {_size(info.st_size)} is over the limit of {_size(self._max_file)} per report file"
            )
        if info.st_size > self._left:
            raise ReportError(
                f"skipped: it would bring the stage's reports over the limit of {_size(self._stage_limit)}"
            )
        self._left -= info.st_size


class _Capped(io.RawIOBase):
    """A file read through a byte cap: growing past it while being read is a ReportError."""

    def __init__(self, fd: int, cap: int) -> None:
        self._file = io.FileIO(fd, "rb", closefd=True)
        self._left = cap

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("only a rewind to the start is supported")
        self._left += self._file.tell()
        return self._file.seek(0)

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = self._file.readinto(buffer) or 0
        self._left -= count
        if self._left < 0:
            raise ReportError("grew over the size limit while being read: skipped")
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _size(count: int) -> str:
    return f"{count / MB:,.1f} MB" if count >= MB else f"{count:,} bytes"
