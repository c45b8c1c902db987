"""The stage executor on real bash processes: exit codes, streaming, timeout, cancel, nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import pytest

from schemas.states import FailureKind
from workers import executor
from workers.executor import ExecutionResult, execute


class Sink:
    """Collects output chunks; optionally sets an event once a marker has been seen."""

    def __init__(self, *, when: bytes = b"", then: asyncio.Event | None = None) -> None:
        self.chunks: list[bytes] = []
        self._when = when
        self._then = then

    async def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        if self._then is not None and self._when in self.data:
            self._then.set()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def text(self) -> str:
        return self.data.decode()


async def run(
    tmp_path: Path,
    script: str,
    *,
    timeout_s: float = 30.0,
    kill_grace_s: float = 1.0,
    sink: Sink | None = None,
    cancel: asyncio.Event | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[ExecutionResult, Sink]:
    sink = sink or Sink()
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    result = await execute(
        script,
        cwd=workdir,
        env={"PATH": os.environ["PATH"]} if env is None else env,
        timeout_s=timeout_s,
        kill_grace_s=kill_grace_s,
        on_output=sink,
        cancel=cancel or asyncio.Event(),
        script_dir=tmp_path / "scratch",
    )
    return result, sink


def is_gone(pid: int) -> bool:
    # An orphan killed by us may stay a zombie until init reaps it: dead all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def wait_gone(pid: int) -> bool:
    for _ in range(100):
        if is_gone(pid):
            return True
        await asyncio.sleep(0.05)
    return False


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


async def test_successful_script_exits_zero_and_streams_its_output(tmp_path: Path) -> None:
    result, sink = await run(tmp_path, "echo hello\necho world")
    assert result.exit_code == 0
    assert result.failure_kind is None
    assert result.reason is None
    assert result.succeeded
    assert sink.text == "hello\nworld\n"
    assert result.duration_s >= 0


async def test_failing_command_stops_the_script_with_its_exit_code(tmp_path: Path) -> None:
    result, sink = await run(tmp_path, "echo before\n(exit 3)\necho never")
    assert result.exit_code == 3
    assert result.failure_kind == FailureKind.SCRIPT_FAILURE
    assert result.reason == "exit code 3"
    assert sink.text == "before\n"


async def test_failure_inside_a_pipeline_fails_the_script(tmp_path: Path) -> None:
    result, sink = await run(tmp_path, "false | cat\necho never")
    assert result.exit_code == 1
    assert result.failure_kind == FailureKind.SCRIPT_FAILURE
    assert "never" not in sink.text


async def test_stdout_and_stderr_arrive_merged_in_order(tmp_path: Path) -> None:
    _, sink = await run(tmp_path, "echo out\necho err >&2\necho out2")
    assert sink.text == "out\nerr\nout2\n"


async def test_output_without_newline_is_streamed_while_the_script_runs(tmp_path: Path) -> None:
    # The script only ends when cancelled, and it is cancelled only once its prompt has arrived.
    cancel = asyncio.Event()
    sink = Sink(when=b"ready", then=cancel)
    result, _ = await run(tmp_path, "printf ready\nsleep 30", sink=sink, cancel=cancel)
    assert result.failure_kind == FailureKind.CANCELLED
    assert sink.data.startswith(b"ready")


async def test_large_output_arrives_whole_in_chunks_of_at_most_64_kib(tmp_path: Path) -> None:
    result, sink = await run(tmp_path, "head -c 1000000 /dev/zero")
    assert result.exit_code == 0
    assert len(sink.data) == 1_000_000
    assert max(len(chunk) for chunk in sink.chunks) <= 64 * 1024


async def test_environment_is_exactly_the_one_given(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "COMET_STAGE": "unit; rm -rf /"}
    result, sink = await run(tmp_path, 'echo "${HOME-unset}|${USER-unset}|$COMET_STAGE"', env=env)
    assert result.exit_code == 0
    assert sink.text == "unset|unset|unit; rm -rf /\n"


async def test_script_runs_in_the_given_directory(tmp_path: Path) -> None:
    _, sink = await run(tmp_path, "pwd")
    assert sink.text == f"{tmp_path / 'work'}\n"


async def test_script_file_is_private_and_removed_afterwards(tmp_path: Path) -> None:
    result, sink = await run(tmp_path, 'stat -c %a "$0" "$(dirname "$0")"')
    assert result.exit_code == 0
    assert sink.text == "600\n700\n"
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 1000 &\necho $! > {pidfile}\nsleep 1000"
    result, _ = await run(tmp_path, script, timeout_s=0.5, kill_grace_s=1.0)
    assert result.failure_kind == FailureKind.TIMEOUT
    assert result.reason == "timed out after 0.5 s"
    assert result.exit_code == 128 + signal.SIGTERM
    assert await wait_gone(read_pid(pidfile))


async def test_stage_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # An ignored signal stays ignored in children, so the whole group shrugs off SIGTERM.
    script = f"trap '' TERM\nsleep 1000 &\necho $! > {pidfile}\nsleep 1000"
    result, _ = await run(tmp_path, script, timeout_s=0.3, kill_grace_s=0.3)
    assert result.failure_kind == FailureKind.TIMEOUT
    assert result.exit_code == 128 + signal.SIGKILL
    assert await wait_gone(read_pid(pidfile))


async def test_background_children_do_not_survive_the_stage(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The background sleep also holds the output pipe open: execute must not wait for it.
    result, sink = await run(tmp_path, f"sleep 1000 &\necho $! > {pidfile}\necho done")
    assert result.exit_code == 0
    assert sink.text == "done\n"
    assert await wait_gone(read_pid(pidfile))


async def test_cancel_mid_run_terminates_the_stage(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    cancel = asyncio.Event()
    sink = Sink(when=b"started", then=cancel)
    script = f"sleep 1000 &\necho $! > {pidfile}\necho started\nsleep 1000"
    result, _ = await run(tmp_path, script, sink=sink, cancel=cancel)
    assert result.failure_kind == FailureKind.CANCELLED
    assert result.reason == "cancelled"
    assert await wait_gone(read_pid(pidfile))


async def test_cancel_set_before_start_runs_nothing(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    cancel.set()
    marker = tmp_path / "ran"
    result, sink = await run(tmp_path, f"touch {marker}", cancel=cancel)
    assert result == ExecutionResult(None, FailureKind.CANCELLED, "cancelled", 0.0)
    assert not marker.exists()
    assert sink.chunks == []


async def test_death_by_signal_reports_128_plus_the_signal(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, "kill -KILL $$")
    assert result.exit_code == 128 + signal.SIGKILL
    assert result.failure_kind == FailureKind.SCRIPT_FAILURE
    assert result.reason == "killed by signal SIGKILL"


async def test_process_escaping_the_group_cannot_hold_the_reader_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "DRAIN_S", 0.2)
    pidfile = tmp_path / "escaped.pid"
    script = (
        f"setsid bash -c 'echo $$ > {pidfile}; exec sleep 1000' &\n"
        f"while [ ! -s {pidfile} ]; do :; done\n"
        "echo done"
    )
    try:
        result, sink = await run(tmp_path, script)
        assert result.exit_code == 0
        assert sink.text == "done\n"
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(read_pid(pidfile), signal.SIGKILL)


async def test_failing_output_sink_kills_the_stage_and_propagates(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"

    async def broken(chunk: bytes) -> None:
        raise RuntimeError("log store down")

    script = f"sleep 1000 &\necho $! > {pidfile}\necho started\nsleep 1000"
    with pytest.raises(RuntimeError, match="log store down"):
        await execute(
            script,
            cwd=tmp_path,
            env={"PATH": os.environ["PATH"]},
            timeout_s=30.0,
            kill_grace_s=1.0,
            on_output=broken,
            cancel=asyncio.Event(),
            script_dir=tmp_path / "scratch",
        )
    assert await wait_gone(read_pid(pidfile))


async def test_cancelling_the_execute_task_kills_the_stage(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    started = asyncio.Event()
    sink = Sink(when=b"started", then=started)
    script = f"sleep 1000 &\necho $! > {pidfile}\necho started\nsleep 1000"
    task = asyncio.create_task(run(tmp_path, script, sink=sink))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(read_pid(pidfile))


async def test_missing_working_directory_raises_and_leaves_no_script_behind(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await execute(
            "true",
            cwd=tmp_path / "absent",
            env={},
            timeout_s=5.0,
            kill_grace_s=1.0,
            on_output=Sink(),
            cancel=asyncio.Event(),
            script_dir=tmp_path / "scratch",
        )
    assert list((tmp_path / "scratch").iterdir()) == []


def test_under_uvloop_a_stage_closes_its_output_pipe_once_and_leaks_no_descriptor(tmp_path: Path) -> None:
    """uvloop's pipe transport closes the pipe's fd itself (MagicStack/uvloop#763): a file object
    closing it too would close whatever took that number meanwhile, so under uvloop the file object
    leaves it alone. Then nothing else closes it: the stages must not leak it either, and a
    descriptor opened after each stage (it takes the freed number) must stay open."""
    import gc

    import uvloop

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def stages() -> tuple[int, int, list[str]]:
        lost = []
        await run(tmp_path, "true")  # the loop's own descriptors, before counting
        gc.collect()
        before = open_fds()
        for i in range(30):
            result, _ = await run(tmp_path, f"echo {i}")
            assert result.succeeded
            probe = os.open(os.devnull, os.O_RDONLY)
            gc.collect()
            await asyncio.sleep(0.01)
            try:
                os.fstat(probe)
                os.close(probe)
            except OSError as exc:
                lost.append(f"stage {i}: {exc}")
        gc.collect()
        return before, open_fds(), lost

    before, after, lost = uvloop.run(stages())
    assert lost == []
    assert after <= before + 2, f"{after - before} descriptors leaked over 30 stages"
