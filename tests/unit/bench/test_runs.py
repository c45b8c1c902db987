"""Pure parts of the scenario helpers: the open-loop schedule and the figures derived from
database timestamps."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import cast

import pytest

from bench.platform import Platform, read_marks
from bench.scenarios._runs import (
    BatchResult,
    OpenLoop,
    RunTimings,
    Triggered,
    median_steps,
    open_loop,
    open_loop_offsets,
    streaming,
)


def test_open_loop_offsets_are_a_fixed_interval_of_one_over_the_rate() -> None:
    offsets = open_loop_offsets(50, 1.0)
    assert len(offsets) == 50
    assert offsets[:3] == pytest.approx([0.0, 0.02, 0.04])
    assert offsets[-1] == pytest.approx(0.98)


@pytest.mark.parametrize(("rate", "duration"), [(0, 1.0), (50, 0), (-1, 1.0)])
def test_open_loop_needs_a_positive_rate_and_duration(rate: float, duration: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        open_loop_offsets(rate, duration)


def test_run_timings_give_latencies_in_milliseconds_from_the_run_creation() -> None:
    t = RunTimings(uuid.uuid4(), "succeeded", created=100.0, first_start=100.008, finished=100.030)
    assert t.first_stage_ms == pytest.approx(8.0)
    assert t.end_to_end_ms == pytest.approx(30.0)


def test_a_run_not_started_or_not_finished_has_no_latency() -> None:
    t = RunTimings(uuid.uuid4(), "queued", created=100.0, first_start=None, finished=None)
    assert t.first_stage_ms is None
    assert t.end_to_end_ms is None


def test_stages_per_second_counts_succeeded_stages_over_the_window() -> None:
    assert BatchResult(succeeded=500, total=500, window_s=4.0).stages_per_s == pytest.approx(125.0)
    assert BatchResult(succeeded=0, total=0, window_s=0.0).stages_per_s == 0.0


def test_the_achieved_rate_of_an_open_loop_is_measured_between_first_and_last_send() -> None:
    sent = [Triggered(uuid.uuid4(), 10.0 + i * 0.025, 10.0 + i * 0.025 + 0.004) for i in range(41)]
    assert OpenLoop(triggered=sent).achieved_rate == pytest.approx(40.0)
    assert OpenLoop(triggered=sent[:1]).achieved_rate == 0.0


def test_post_latency_is_from_send_to_answer() -> None:
    assert Triggered(uuid.uuid4(), 1.0, 1.0045).post_ms == pytest.approx(4.5)


def test_median_steps_are_the_medians_of_consecutive_differences_in_ms() -> None:
    rows: list[dict[str, float | None]] = [
        {"a": 10.0, "b": 10.002, "c": 10.010},
        {"a": 20.0, "b": 20.004, "c": 20.005},
        {"a": 30.0, "b": 30.006, "c": None},
    ]
    steps = median_steps(rows, ["a", "b", "c"])
    assert steps[0] == pytest.approx(4.0)
    assert steps[1] == pytest.approx(1.0)  # nearest rank of [1, 8]: the lower one


def test_a_step_no_row_has_both_ends_of_is_none() -> None:
    assert median_steps([{"a": 1.0, "b": None}], ["a", "b"]) == [None]


class _FakeApi:
    """Answers every trigger at once, counting them."""

    def __init__(self) -> None:
        self.calls = 0

    async def trigger(self, pipeline: str) -> tuple[uuid.UUID, float]:
        self.calls += 1
        return uuid.uuid4(), time.time()


async def test_an_open_loop_ends_early_once_its_stop_event_is_set() -> None:
    api = _FakeApi()
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.25, stop.set)
    started = time.monotonic()
    result = await open_loop(cast("Platform", api), "one", 100.0, 30.0, stop=stop)
    assert time.monotonic() - started < 2.0
    assert 10 <= len(result.triggered) == api.calls <= 40
    assert not result.errors


async def test_a_stream_triggers_in_the_background_until_it_is_ended() -> None:
    api = _FakeApi()
    async with streaming(cast("Platform", api), "one", 100.0) as stream:
        await asyncio.sleep(0.2)
        sent = await stream.end()
        calls = api.calls
        await asyncio.sleep(0.1)
    assert api.calls == calls == len(sent.triggered) >= 5
    assert stream.started <= stream.ended


async def test_a_stream_left_without_end_is_cancelled_with_the_block() -> None:
    api = _FakeApi()
    with contextlib.suppress(RuntimeError):
        async with streaming(cast("Platform", api), "one", 100.0) as stream:
            await asyncio.sleep(0.05)
            raise RuntimeError("case failed")
    assert stream.task.done()
    calls = api.calls
    await asyncio.sleep(0.1)
    assert api.calls == calls


def test_the_bench_pipelines_are_valid_definitions_whose_stages_note_when_their_script_ran() -> None:
    from bench.scenarios._runs import FAN_IN, FAN_IN_NO_CHECKOUT, ONE_STAGE
    from schemas.pipeline import parse_definition

    for text in (ONE_STAGE, FAN_IN, FAN_IN_NO_CHECKOUT):
        definition = parse_definition(text.replace("@MARKS@", "/tmp/marks"))
        for stage in definition.stages.values():
            assert "$EPOCHREALTIME" in (stage.run or "")
            assert ">> /tmp/marks" in (stage.run or "")
    assert all(not s.checkout for s in parse_definition(FAN_IN_NO_CHECKOUT).stages.values())
    assert all(s.checkout for s in parse_definition(FAN_IN).stages.values())


def test_script_starts_are_read_per_run_from_the_marks_file(tmp_path: Path) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    marks = tmp_path / "marks"
    assert read_marks(marks) == {}  # no stage ran yet
    marks.write_text(f"{first} 100.25\n{second} 101,5\n{first} 99.75\nnot a line\n")
    assert read_marks(marks) == {first: [100.25, 99.75], second: [101.5]}
