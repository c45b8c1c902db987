"""The HTTP load shapes: open-loop schedule and skips, closed-loop bounds, what a load reports,
and the one-connection client pool against the null server."""

from __future__ import annotations

import asyncio

import pytest

from bench.scenarios import _http
from bench.scenarios._http import ClientPool, Load, Sample, closed_loop, null_server, open_loop, throughput


def test_a_sample_gives_its_latency_and_how_late_it_went_out_in_milliseconds() -> None:
    s = Sample(due=10.0, sent=10.002, answered=10.012, status=202)
    assert s.latency_ms == pytest.approx(10.0)
    assert s.late_ms == pytest.approx(2.0)


def test_throughput_counts_answers_of_one_status_from_the_first_sent_to_the_last_such_answer() -> None:
    samples = [
        Sample(0.0, 0.0, 0.1, 202),
        Sample(0.5, 0.5, 0.6, 202),
        Sample(0.9, 0.9, 5.0, 500),  # sent inside the window, but not a 202: not counted, not the end
        Sample(1.0, 1.0, 1.0 + 1.0, 202),
    ]
    assert throughput(samples, 202) == pytest.approx(3 / 2.0)


def test_throughput_of_fewer_than_two_answers_is_zero() -> None:
    assert throughput([], 202) == 0.0
    assert throughput([Sample(0, 0, 1, 202), Sample(0, 0, 1, 500)], 202) == 0.0


def test_a_load_counts_other_statuses_exceptions_skips_and_unanswered_as_not_ok() -> None:
    load = Load(
        samples=[Sample(0, 0, 0.01, 202), Sample(0, 0, 0.01, 503), Sample(0, 0, 0.01, 0)],
        started=4,
        skipped=2,
        unanswered=1,
        errors=["ReadError('')"],
        error_count=1,
    )
    assert load.other_than(202) == 1 + 1 + 2 + 1
    assert load.describe(202) == (
        "sent 4, exception: 1, 202: 1, 503: 1, skipped 2 (in-flight bound reached), "
        f"unanswered 1 after {_http.DRAIN_TIMEOUT_S:.0f} s, e.g. ReadError(''), not 202: 5"
    )


def test_a_load_without_answers_of_a_status_has_no_latency_for_it() -> None:
    assert Load(samples=[Sample(0, 0, 0.01, 500)]).latency(202) is None
    assert Load().lateness() is None


async def test_open_loop_sends_every_slot_of_the_schedule_with_consecutive_indexes() -> None:
    seen: list[int] = []

    async def send(index: int) -> int:
        seen.append(index)
        return 202

    # An in-flight bound above the slot count: a stalled event loop (a busy machine) cannot make
    # any slot be skipped, so what is asserted does not depend on timing.
    load = await open_loop(send, 200.0, 0.05, max_in_flight=100, first_index=7)
    assert sorted(seen) == list(range(7, 17))
    assert load.started == 10
    assert load.skipped == 0
    assert load.statuses() == {202: 10}


async def test_open_loop_skips_slots_due_while_the_in_flight_bound_is_reached() -> None:
    release = asyncio.Event()

    async def send(_: int) -> int:
        await release.wait()
        return 202

    task = asyncio.create_task(open_loop(send, 400.0, 0.05, max_in_flight=2))
    await asyncio.sleep(0.3)  # the schedule ends after 0.06 s
    release.set()
    load = await task
    assert load.started == 2
    assert load.skipped == 18
    assert load.other_than(202) == 18


async def test_an_exception_in_a_request_is_status_zero_and_its_text_is_kept() -> None:
    async def send(index: int) -> int:
        if index % 2:
            raise ConnectionError("reset")
        return 200

    load = await closed_loop(send, 2, 5.0, max_requests=6)
    assert load.statuses() == {200: 3, 0: 3}
    assert load.error_count == 3
    assert load.errors[0] == "ConnectionError('reset')"


async def test_closed_loop_stops_at_its_request_budget() -> None:
    async def send(_: int) -> int:
        await asyncio.sleep(0)
        return 200

    load = await closed_loop(send, 4, 30.0, max_requests=25)
    assert load.started == 25
    assert len(load.samples) == 25


async def test_closed_loop_stops_at_its_deadline() -> None:
    async def send(_: int) -> int:
        await asyncio.sleep(0.01)
        return 200

    load = await closed_loop(send, 2, 0.1, max_requests=10_000)
    assert 4 <= len(load.samples) <= 30


@pytest.mark.parametrize(("clients", "seconds", "most"), [(0, 1.0, 1), (1, 0, 1), (1, 1.0, 0)])
async def test_closed_loop_needs_positive_bounds(clients: int, seconds: float, most: int) -> None:
    async def send(_: int) -> int:
        return 200

    with pytest.raises(ValueError, match="positive"):
        await closed_loop(send, clients, seconds, max_requests=most)


async def test_requests_still_unanswered_when_the_drain_times_out_are_cancelled_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_http, "DRAIN_TIMEOUT_S", 0.05)

    async def send(index: int) -> int:
        if index == 0:
            await asyncio.sleep(60)
        return 202

    load = await open_loop(send, 100.0, 0.03, max_in_flight=10)
    assert load.started == 3
    assert load.unanswered == 1
    assert len(load.samples) == 2


async def test_the_client_pool_lends_one_client_per_request_against_the_null_server() -> None:
    async with null_server() as url:
        pool = ClientPool(url, 4)
        try:
            await pool.touch()

            async def send(_: int) -> int:
                async with pool.client() as client:
                    return (await client.post("/anything", content=b'{"a": 1}')).status_code

            load = await closed_loop(send, 4, 5.0, max_requests=40)
        finally:
            await pool.aclose()
    assert load.statuses() == {202: 40}
