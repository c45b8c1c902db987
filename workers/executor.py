"""Runs one stage script: `bash -eo pipefail` in its own process group, output streamed, nothing left behind.

The script goes to a private file (never through a shell string); stdout and stderr share one
pipe that this module owns, so it can stop reading even when an escaped background process keeps
the write end open. On timeout or cancel the whole group gets SIGTERM, then SIGKILL after the
grace period; after the main process exits for any reason, whatever is left of its group is
killed too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.states import FailureKind

CHUNK_BYTES = 64 * 1024
# How long to keep reading after the group is dead: only a process that left the group with
# setsid() can still hold the pipe open, and its output no longer belongs to the stage.
DRAIN_S = 2.0


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    # 128+N when killed by signal N (as a shell reports it); None only if the script never started.
    exit_code: int | None
    failure_kind: FailureKind | None
    reason: str | None
    duration_s: float

    @property
    def succeeded(self) -> bool:
        return self.failure_kind is None


OutputSink = Callable[[bytes], Awaitable[None]]


async def execute(
    script: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    kill_grace_s: float,
    on_output: OutputSink,
    cancel: asyncio.Event,
    script_dir: Path,
) -> ExecutionResult:
    """Run `script` until it exits, times out or `cancel` is set.

    An exception raised by `on_output` kills the stage and propagates; so does our own cancellation.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    if cancel.is_set():
        return ExecutionResult(None, FailureKind.CANCELLED, "cancelled", 0.0)
    script_path = _write_script(script_dir, script)
    try:
        proc, reader, transport = await _spawn(script_path, cwd, env)
        pump = asyncio.create_task(_pump(reader, on_output))
        try:
            kind = await _supervise(proc, pump, cancel, timeout_s, kill_grace_s)
        finally:
            # Whatever happened (success, failure, our own cancellation): the group dies now.
            _kill_group(proc.pid, signal.SIGKILL)
            await _reap(proc)
            await _drain(pump, transport)
        pump.result()  # an exception from on_output surfaces here
    finally:
        script_path.unlink(missing_ok=True)
    assert proc.returncode is not None
    return _result(proc.returncode, kind, timeout_s, loop.time() - started)


def _write_script(script_dir: Path, script: str) -> Path:
    script_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    script_dir.chmod(0o700)  # mkdir's mode is masked by umask and ignored for an existing dir
    fd, name = tempfile.mkstemp(prefix="stage-", suffix=".sh", dir=script_dir)  # 0600
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(script)
        if not script.endswith("\n"):
            file.write("\n")
    return Path(name)


# If the worker dies (kill -9), the kernel kills the stage's shell too instead of leaving it
# running unsupervised; its lease expires and the stage is re-dispatched as a new attempt.
_SETPRIV = shutil.which("setpriv")
_DEATH_SIGNAL: tuple[str, ...] = (_SETPRIV, "--pdeathsig", "KILL", "--") if _SETPRIV else ()


class _Process:
    """A stage's process: started with plain `subprocess.Popen` and waited on in a thread. Under
    uvloop an asyncio subprocess start costs 5-10 ms of event-loop time; Popen about 1 ms."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._exited: asyncio.Future[int] | None = None

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._exited is None:
            self._exited = asyncio.get_running_loop().run_in_executor(_WAITERS, self._popen.wait)
        # Shielded: a caller that stops waiting leaves the one wait in the thread to finish.
        return await asyncio.shield(self._exited)


_WAITERS = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="stage-wait")


async def _spawn(
    script_path: Path, cwd: Path, env: Mapping[str, str]
) -> tuple[_Process, asyncio.StreamReader, asyncio.ReadTransport]:
    read_fd, write_fd = os.pipe()
    try:
        popen = subprocess.Popen(  # noqa: ASYNC220 - deliberate, see _Process
            [
                *_DEATH_SIGNAL,
                # Resolved from the worker's PATH: the stage's env may not have one.
                shutil.which("bash") or "/bin/bash",
                "-eo",
                "pipefail",
                str(script_path),
            ],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        # Only the child keeps the write end, so EOF means every writer is gone.
        os.close(write_fd)
    proc = _Process(popen)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=CHUNK_BYTES)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), _pipe_file(loop, read_fd)
        )
    except BaseException:
        _kill_group(proc.pid, signal.SIGKILL)
        await _reap(proc)
        raise
    return proc, reader, transport


def _pipe_file(loop: asyncio.AbstractEventLoop, read_fd: int) -> Any:
    """The pipe's read end as the file object `connect_read_pipe` takes. Under uvloop, libuv owns
    the fd and closes it; a file object closing it as well closes a second time whatever took that
    number meanwhile — another stage's workspace directory, a socket (MagicStack/uvloop#763; seen
    here as "Bad file descriptor" in a workspace's removal and a file write landing in the wrong
    place). So there the file object leaves the fd alone; asyncio's own loop closes it through the
    file object, which must then own it."""
    libuv_owns = type(loop).__module__.startswith("uvloop")
    return os.fdopen(read_fd, "rb", buffering=0, closefd=not libuv_owns)


async def _pump(reader: asyncio.StreamReader, on_output: OutputSink) -> None:
    while chunk := await reader.read(CHUNK_BYTES):
        await on_output(chunk)


async def _supervise(
    proc: _Process,
    pump: asyncio.Task[None],
    cancel: asyncio.Event,
    timeout_s: float,
    kill_grace_s: float,
) -> FailureKind | None:
    """Wait for the process, the deadline or `cancel`; returns why we stopped it (None: it exited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    exited = asyncio.create_task(proc.wait())
    cancelled = asyncio.create_task(cancel.wait())
    watched: set[asyncio.Future[Any]] = {exited, cancelled, pump}
    try:
        while True:
            done, _ = await asyncio.wait(
                watched, timeout=max(0.0, deadline - loop.time()), return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                return None
            if cancelled in done:
                kind = FailureKind.CANCELLED
                break
            if pump in done:
                if pump.exception() is not None:
                    return None  # the caller kills the group and re-raises
                watched.discard(pump)  # the script closed its stdout; keep waiting for it
                continue
            kind = FailureKind.TIMEOUT
            break
        _kill_group(proc.pid, signal.SIGTERM)
        await asyncio.wait({exited}, timeout=kill_grace_s)
        return kind
    finally:
        cancelled.cancel()
        exited.cancel()
        await asyncio.gather(exited, cancelled, return_exceptions=True)


async def _reap(proc: _Process) -> None:
    # Cancelled mid-reap, still wait: an unreaped child (and its transport) must not be left behind.
    try:
        await proc.wait()
    except asyncio.CancelledError:
        await proc.wait()
        raise


async def _drain(pump: asyncio.Task[None], transport: asyncio.ReadTransport) -> None:
    """Let the reader reach EOF, but not forever: closing the transport ends it."""
    try:
        await asyncio.wait({pump}, timeout=DRAIN_S)
    finally:
        transport.close()
        if not pump.done():
            # Closing feeds EOF to the reader, so this ends as soon as on_output returns.
            await asyncio.wait({pump})
        if not pump.cancelled():
            pump.exception()  # retrieved here so a cancelled execute() does not log it as lost


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _result(
    returncode: int, kind: FailureKind | None, timeout_s: float, duration_s: float
) -> ExecutionResult:
    exit_code = returncode if returncode >= 0 else 128 - returncode
    if kind is FailureKind.TIMEOUT:
        return ExecutionResult(exit_code, kind, f"timed out after {float(timeout_s)} s", duration_s)
    if kind is FailureKind.CANCELLED:
        return ExecutionResult(exit_code, kind, "cancelled", duration_s)
    if returncode == 0:
        return ExecutionResult(0, None, None, duration_s)
    if returncode < 0:
        try:
            reason = f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            reason = f"killed by signal {-returncode}"
    else:
        reason = f"exit code {returncode}"
    return ExecutionResult(exit_code, FailureKind.SCRIPT_FAILURE, reason, duration_s)
