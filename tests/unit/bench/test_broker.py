"""The broker control of fault scenarios, on a fake `kafka.sh` that records what it was asked:
a broker it stopped is always started again, whatever happened inside the block."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.broker import Broker, BrokerError, broker_outage, log_size, read_log


def fake_script(tmp_path: Path, *, fail: str = "", slow: str = "") -> tuple[Path, Path]:
    """A `kafka.sh` stand-in appending its action to a file; exits 3 on the action `fail`; takes
    0.5 s over the action `slow`, and then appends `<action>-done`."""
    calls = tmp_path / "calls"
    script = tmp_path / "kafka.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> "{calls}"\n'
        f'if [ "$1" = "{fail}" ]; then echo "kafka: cannot $1" >&2; exit 3; fi\n'
        f'if [ "$1" = "{slow}" ]; then sleep 0.5; echo "$1-done" >> "{calls}"; fi\n'
    )
    script.chmod(0o755)
    return script, calls


def actions(calls: Path) -> list[str]:
    return calls.read_text().split() if calls.exists() else []


def no_broker() -> list[int]:
    return []


async def test_stop_then_start_run_the_script_and_return_when_each_finished(tmp_path: Path) -> None:
    script, calls = fake_script(tmp_path)
    before = time.time()
    async with broker_outage(script, no_broker) as broker:
        stopped = await broker.stop()
        down_after_stop = broker.down
        ready = await broker.start()
        down_after_start = broker.down
    assert (down_after_stop, down_after_start) == (True, False)
    assert before <= stopped <= ready <= time.time()
    assert actions(calls) == ["stop", "start"]


async def test_a_broker_left_stopped_by_an_error_is_started_again_on_the_way_out(tmp_path: Path) -> None:
    script, calls = fake_script(tmp_path)

    async def scenario() -> None:
        async with broker_outage(script, no_broker) as broker:
            await broker.stop()
            raise RuntimeError("scenario failed")

    with pytest.raises(RuntimeError, match="scenario failed"):
        await scenario()
    assert actions(calls) == ["stop", "start"]


async def test_a_cancelled_block_still_starts_the_broker_again(tmp_path: Path) -> None:
    script, calls = fake_script(tmp_path)
    stopped = asyncio.Event()

    async def scenario() -> None:
        async with broker_outage(script, no_broker) as broker:
            await broker.stop()
            stopped.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(scenario())
    await stopped.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert actions(calls) == ["stop", "start"]


async def test_a_stop_cut_short_by_a_cancellation_is_let_finish_before_the_start(tmp_path: Path) -> None:
    script, calls = fake_script(tmp_path, slow="stop")

    async def scenario() -> None:
        async with broker_outage(script, no_broker) as broker:
            await broker.stop()

    task = asyncio.create_task(scenario())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert actions(calls) == ["stop", "stop-done", "start"]


async def test_a_block_that_never_stopped_the_broker_does_not_start_it(tmp_path: Path) -> None:
    script, calls = fake_script(tmp_path)
    async with broker_outage(script, no_broker):
        pass
    assert actions(calls) == []


async def test_a_broker_still_running_after_stop_is_an_error_and_is_started_again(tmp_path: Path) -> None:
    script, calls = fake_script(tmp_path)

    async def scenario() -> None:
        async with broker_outage(script, lambda: [4242]) as broker:
            await broker.stop()

    with pytest.raises(BrokerError, match=r"still runs after `kafka.sh stop` \(pids \[4242\]\)"):
        await scenario()
    assert actions(calls) == ["stop", "start"]


async def test_a_failing_script_raises_with_its_output(tmp_path: Path) -> None:
    script, _ = fake_script(tmp_path, fail="start")
    broker = Broker(script, no_broker)
    await broker.stop()
    with pytest.raises(BrokerError, match="start exited with 3: kafka: cannot start"):
        await broker.start()
    assert broker.down
    with pytest.raises(BrokerError, match="could not start Kafka again"):
        broker.ensure_started()


def test_the_broker_log_is_read_from_an_offset_or_whole_once_rotated(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    assert log_size(log) == 0
    assert read_log(0, log) is None
    log.write_text("before\n")
    offset = log_size(log)
    with log.open("a") as f:
        f.write("during\n")
    assert read_log(offset, log) == "during\n"
    log.write_text("new\n")  # rotated: shorter than the offset
    assert read_log(offset, log) == "new\n"
