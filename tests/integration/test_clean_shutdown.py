"""Clean shutdown: `comet api`, `comet orchestrator`, `comet worker` and `comet analytics` as real
processes carry a run through, then each gets SIGTERM and exits 0 within its drain time, having
logged no warning- or error-level line (nor anything that is not a JSON log line: a traceback,
"Unclosed AIOKafkaProducer", "Task was destroyed but it is pending!") from start to stop.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bench.platform import CometProcess, Platform, bench_platform, log_problems
from config.settings import CommonSettings
from tests.integration.conftest import BASE_DB_URL, KAFKA

pytestmark = pytest.mark.integration

PIPELINE = """
stages:
  build: {run: "echo built"}
  test: {run: "echo tested", needs: [build]}
"""
# What each process is given to stop: the worker its drain timeout (its stages are done by then),
# the others a few seconds (they finish a batch, commit offsets and leave their groups).
DRAIN_S = {"api": 10.0, "orchestrator": 10.0, "worker0": 10.0, "analytics": 20.0}


async def _stop(proc: CometProcess, within_s: float) -> tuple[int | None, float]:
    """SIGTERM, then wait up to `within_s`: (exit code or None if still running, seconds taken)."""
    began = time.monotonic()
    proc.stopping = True
    proc.popen.terminate()
    while proc.popen.poll() is None and time.monotonic() - began < within_s:
        await asyncio.sleep(0.05)
    return proc.popen.poll(), time.monotonic() - began


async def _run_finished(p: Platform, run_id: object) -> str:
    async with asyncio.timeout(90):
        while True:
            p.check_alive()
            status = await p.fetchval("SELECT status FROM runs WHERE id = $1", run_id)
            if status in ("succeeded", "failed", "cancelled"):
                return str(status)
            await asyncio.sleep(0.2)


@pytest.mark.timeout(240)
async def test_every_process_exits_zero_on_sigterm_within_its_drain_time_with_no_warning_logged() -> None:
    settings = CommonSettings(database_url=BASE_DB_URL, kafka_bootstrap_servers=KAFKA)
    async with bench_platform(settings, {"ci": PIPELINE}) as p:
        p.common["log_level"] = "info"  # every line at info and above is read, warnings are problems
        await p.start_api()
        p.start_orchestrator()
        p.start_worker(concurrency=2)
        analytics = p.start("analytics", ["analytics"])
        await p.wait_group_stable(p.topics.analytics_group, timeout_s=90)
        run_id, _ = await p.trigger("ci")
        assert await _run_finished(p, run_id) == "succeeded"
        await asyncio.sleep(1.0)  # let analytics consume the run's events and the relays settle
        p.check_alive()
        assert p.client is not None
        await p.client.aclose()
        p.client = None
        stopped = {}
        # Producers of work first, the way an operator stops a deployment.
        for name in ("api", "orchestrator", "worker0", "analytics"):
            (proc,) = [q for q in p.processes if q.name == name]
            stopped[name] = await _stop(proc, DRAIN_S[name])
        problems = {proc.name: log_problems(proc.output()) for proc in p.processes}
        assert {name: code for name, (code, _) in stopped.items()} == dict.fromkeys(DRAIN_S, 0), (
            stopped,
            {proc.name: proc.output()[-6000:] for proc in p.processes},
        )
        assert problems == {name: [] for name in DRAIN_S}
        (stopped_line,) = [
            json.loads(line) for line in analytics.output().splitlines() if '"analytics stopped"' in line
        ]
        assert stopped_line["consumed"] > 0, "analytics saw none of the run's events"
