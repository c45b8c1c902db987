"""Pure parts of the authentication scenario: page faults from /proc and the per-load note."""

from __future__ import annotations

from bench.scenarios._http import Load, Sample
from bench.scenarios.auth import Measured, describe_measured, minor_faults

STAT = (
    "27400 (comet (api) x) R 27396 27396 29274 0 -1 4194304 4865 0 0 0 3 1 0 0 20 0 7 0 1400935 "
    "3133440 418 18446744073709551615"
)


def test_minor_faults_are_field_ten_of_a_proc_stat_text_whatever_the_command_name() -> None:
    assert minor_faults(STAT) == 4865


def test_a_measured_load_is_described_with_its_cpu_per_request() -> None:
    samples = [Sample(i / 10, i / 10, i / 10 + 0.005, 200) for i in range(10)]
    m = Measured(Load(samples=samples, started=10), {"api": 0.05, "bench": 0.01, "machine": 0.1}, wall_s=1.0)
    text = describe_measured(m, 200, 2)
    assert text.startswith("11.0/s, p50 5.0 ms, p99 5.0 ms; sent 10, 200: 10, not 200: 0; ")
    assert text.endswith(
        "CPU per request: api 5.00 ms, bench 1.00 ms, rest of the machine (Kafka included) 4.00 ms; "
        "machine 5% busy of 2 CPUs"
    )


def test_with_the_broker_measured_the_rest_of_the_machine_is_everything_else() -> None:
    samples = [Sample(i / 10, i / 10, i / 10 + 0.005, 200) for i in range(10)]
    spent = {"api": 0.05, "postgres": 0.02, "kafka": 0.01, "machine": 0.1}
    text = describe_measured(Measured(Load(samples=samples, started=10), spent, wall_s=1.0), 200, 2)
    assert "api 5.00 ms, postgres 2.00 ms, kafka 1.00 ms, rest of the machine 2.00 ms;" in text


def test_a_load_without_answers_says_so() -> None:
    assert describe_measured(Measured(Load(), {}, 0.0), 200, 2) == "0.0/s, no 200; sent 0, not 200: 0"
