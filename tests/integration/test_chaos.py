"""The short `make chaos` (decision 0029): a mixed workload of 40 runs while one fault of each
kind is injected — kill -9 of a worker, the orchestrator and the API, a worker stopped past its
lease, a Kafka restart, PostgreSQL restarts (fast and immediate), latency, resets and timeouts
between Comet and its services — on the harness's OWN PostgreSQL and Kafka (free ports, its own
COMET_HOME: the shared services are not touched). Marked `outage` so it runs with the other fault
tests at the end of the suite."""

from __future__ import annotations

import pytest

from chaos.harness import FAULT_KINDS, Options, run

pytestmark = [pytest.mark.integration, pytest.mark.outage]


@pytest.mark.timeout(600)
async def test_a_short_storm_of_every_fault_loses_and_duplicates_nothing() -> None:
    lines: list[str] = []
    verdict = await run(Options(runs=40, rate=2.0, faults=len(FAULT_KINDS), seed=29), lines.append)

    assert verdict.ok, verdict.text + "\n" + "\n".join(lines)
    rows = {
        name.strip(): value.strip()
        for name, _, value in (line.rpartition("  ") for line in verdict.text.splitlines()[:8])
    }
    assert int(rows["lost"]) == 0
    assert int(rows["duplicated"]) == 0
    # The 40 runs and a probe run after each fault: every one acknowledged, and finished.
    assert int(rows["acknowledged (triggers + webhooks)"]) >= 40
    assert rows["finished (one run, terminal)"] == rows["acknowledged (triggers + webhooks)"]
    for kind in FAULT_KINDS:
        assert kind in verdict.text
