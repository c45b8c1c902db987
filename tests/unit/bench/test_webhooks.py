"""Pure parts of the webhook ingest scenario: the deliveries it sends (which Comet must accept as
genuine GitHub pushes to a branch the pipeline ignores), what counts as sustained, and CPU notes."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from api.webhooks.parsing import parse, peek_repository
from api.webhooks.signatures import verify_github
from bench.scenarios._http import Load, Sample
from bench.scenarios.webhooks import (
    FIXTURE,
    IGNORED_REF,
    PROVIDER_REPO,
    Step,
    describe_load,
    describe_step_cpu,
    github_push,
    group_cpu,
    highest_sustained,
    prepare,
    signed_delivery,
)

SHA = "a" * 40
SECRET = b"bench-secret"


def template() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(FIXTURE.read_bytes())
    return data


def test_a_push_names_the_repository_ref_and_commits_and_leaves_the_template_alone() -> None:
    original = template()
    kept = copy.deepcopy(original)
    body = github_push(original, full_name=PROVIDER_REPO, ref=IGNORED_REF, sha=SHA, before="b" * 40)
    assert original == kept
    assert body["repository"]["full_name"] == PROVIDER_REPO
    assert body["repository"]["name"] == "webhooks"
    assert (body["ref"], body["before"], body["after"]) == (IGNORED_REF, "b" * 40, SHA)
    assert body["head_commit"]["id"] == SHA


def test_a_signed_delivery_verifies_and_parses_as_a_push_to_the_ignored_branch() -> None:
    payload = github_push(template(), full_name=PROVIDER_REPO, ref=IGNORED_REF, sha=SHA, before="b" * 40)
    d = signed_delivery(payload, SECRET, "delivery-1")
    assert verify_github(d.body, d.headers, [SECRET]).ok
    assert not verify_github(d.body, d.headers, [b"another secret"]).ok
    assert peek_repository("github", d.body) == PROVIDER_REPO
    [event] = parse("github", d.headers, d.body)
    assert (event.kind, event.branch, event.sha, event.delivery_id) == (
        "push",
        "bench-ignored",
        SHA,
        "delivery-1",
    )


def test_prepared_deliveries_are_distinct_bodies_with_unique_ids() -> None:
    deliveries = prepare(template(), 50, secret=SECRET, full_name=PROVIDER_REPO, ref=IGNORED_REF, sha=SHA)
    assert len({d.delivery_id for d in deliveries}) == 50
    assert len({d.body for d in deliveries}) == 50
    assert all(d.headers["X-GitHub-Delivery"] == d.delivery_id for d in deliveries)


def _step(rate: float, answered: int, *, seconds: float = 1.0, skipped: int = 0, status: int = 202) -> Step:
    samples = [
        Sample(i / answered * seconds, i / answered * seconds, seconds, status) for i in range(answered)
    ]
    return Step(f"{rate:g}/s", rate, Load(samples=samples, started=answered, skipped=skipped))


def test_a_step_is_sustained_when_all_answers_are_202_none_skipped_and_the_rate_is_reached() -> None:
    assert _step(100, 100).sustained
    assert not _step(100, 100, skipped=1).sustained
    assert not _step(100, 100, status=503).sustained
    assert not _step(100, 50).sustained  # 50/s where 100/s was asked


def test_the_highest_sustained_step_is_the_highest_rate_that_held() -> None:
    steps = [_step(50, 50), _step(100, 100), _step(250, 120, skipped=130)]
    best = highest_sustained(steps)
    assert best is not None
    assert best.rate == 100
    assert highest_sustained([_step(250, 120, skipped=130)]) is None


def test_cpu_is_grouped_by_role() -> None:
    spent = {
        "api": 1.0,
        "api/12": 0.5,
        "api/13": 0.25,
        "worker0": 0.5,
        "worker1": 0.5,
        "bench": 0.1,
        "machine": 4.0,
    }
    assert group_cpu(spent) == {"api": 1.75, "workers": 1.0, "bench": 0.1, "machine": 4.0}


def test_the_cpu_note_gives_milliseconds_per_202_and_how_busy_the_machine_was() -> None:
    spent = {
        "api": 1.0,
        "orchestrator": 0.5,
        "postgres/7": 0.2,
        "postgres/8": 0.1,
        "bench": 0.1,
        "machine": 2.0,
    }
    assert describe_step_cpu(spent, 100, 2.0, 2) == (
        "CPU per 202: api 10.00 ms, orchestrator 5.00 ms, postgres 3.00 ms, bench 1.00 ms, rest of the "
        "machine (Kafka included) 1.00 ms; machine 50% busy of 2 CPUs"
    )
    with_kafka = describe_step_cpu({"api": 1.0, "kafka/9": 0.5, "machine": 2.0}, 100, 2.0, 2)
    assert (
        with_kafka
        == "CPU per 202: api 10.00 ms, kafka 5.00 ms, rest of the machine 5.00 ms; machine 50% busy of 2 CPUs"
    )
    assert describe_step_cpu({}, 100, 1.0, 2) == "CPU: not measured"


def test_a_load_is_described_by_its_rate_latency_and_answers() -> None:
    assert describe_load(Load()) == "achieved 0/s, no 202; sent 0, not 202: 0"
    text = describe_load(_step(100, 100).load)
    assert text.startswith("achieved 100/s, p50 ")
    assert text.endswith("sent 100, 202: 100, not 202: 0")


@pytest.mark.parametrize("header", ["X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery"])
def test_a_delivery_carries_the_headers_github_sends(header: str) -> None:
    d = signed_delivery({"repository": {"full_name": PROVIDER_REPO}}, SECRET, "d")
    assert header in d.headers
