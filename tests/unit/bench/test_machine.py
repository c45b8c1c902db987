"""Reading the machine's CPU use from /proc/stat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.machine import (
    CpuLedger,
    CpuMeter,
    CpuTimes,
    busy_share,
    by_role,
    describe_cpu,
    is_kafka_broker,
    kafka_broker_pids,
    parse_proc_stat,
    process_cpu_ticks,
)

STAT = """cpu  100 5 50 800 40 3 2 0 0 0
cpu0 50 2 25 400 20 1 1 0 0 0
cpu1 50 3 25 400 20 2 1 0 0 0
intr 12345
"""


def test_the_aggregate_line_gives_busy_and_total_ticks_with_iowait_counted_as_idle() -> None:
    assert parse_proc_stat(STAT) == CpuTimes(busy=160, total=1000)


def test_a_stat_text_without_the_aggregate_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        parse_proc_stat("cpu0 1 2 3 4\n")


def test_busy_share_is_the_busy_part_of_the_ticks_between_two_readings() -> None:
    assert busy_share(CpuTimes(100, 1000), CpuTimes(400, 2000)) == pytest.approx(0.3)


def test_busy_share_without_elapsed_ticks_is_none() -> None:
    assert busy_share(CpuTimes(100, 1000), CpuTimes(100, 1000)) is None


def test_the_meter_summary_names_the_cpus_and_the_load() -> None:
    summary = CpuMeter().summary()
    assert summary.startswith("machine: ")
    assert "CPUs" in summary


def test_process_cpu_ticks_add_user_system_and_reaped_children() -> None:
    stat = "4418 (a (weird) name) S 1 2 3 0 -1 4194304 126 0 0 0 7 5 11 13 20 0 1 0 1016109"
    assert process_cpu_ticks(stat) == 7 + 5 + 11 + 13
    assert process_cpu_ticks(stat, with_children=False) == 12


def test_describe_cpu_gives_each_process_share_per_unit_and_the_rest_of_the_machine() -> None:
    text = describe_cpu({"api": 0.5, "worker0": 1.5, "bench": 0.2, "machine": 4.2}, 100, "stage")
    assert text == (
        "CPU per stage: api 5.0 ms, worker0 15.0 ms, bench 2.0 ms; rest of the machine 20.0 ms "
        "(PostgreSQL, Kafka, anything else running); machine total 4.2 CPU-s"
    )


def test_services_measured_apart_are_named_and_left_out_of_the_rest() -> None:
    spent = by_role({"api": 0.5, "postgres/11": 0.4, "postgres/12": 0.6, "kafka/9": 0.8, "machine": 3.0})
    assert spent == {"api": 0.5, "postgres": 1.0, "kafka": 0.8, "machine": 3.0}
    assert describe_cpu(spent, 100, "stage") == (
        "CPU per stage: api 5.0 ms, postgres 10.0 ms, kafka 8.0 ms; rest of the machine 7.0 ms "
        "(anything else running); machine total 3.0 CPU-s"
    )


def test_describe_cpu_of_nothing_says_so() -> None:
    assert describe_cpu({}, 10, "stage") == "CPU: not measured"
    assert describe_cpu({"api": 1.0}, 0, "stage") == "CPU: not measured"


def test_a_kafka_broker_is_a_process_running_the_kafka_main_class() -> None:
    broker = "java\0-cp\0/opt/kafka/lib/*\0-Xmx1g\0kafka.Kafka\0/etc/kafka/server.properties\0"
    assert is_kafka_broker(broker)
    assert not is_kafka_broker("java\0-cp\0x\0org.example.KafkaClient\0")
    assert not is_kafka_broker("python\0-m\0kafka.Kafka.tools\0")


def test_kafka_brokers_are_found_among_the_java_processes_of_a_proc_tree(tmp_path: Path) -> None:
    for pid, comm, cmdline in [
        ("101", "java", "java\0kafka.Kafka\0server.properties\0"),
        ("102", "java", "java\0org.gradle.Main\0"),
        ("103", "python3", "python3\0kafka.Kafka\0"),
        ("self", "bash", "bash\0"),
    ]:
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "comm").write_text(comm + "\n")
        (tmp_path / pid / "cmdline").write_text(cmdline)
    (tmp_path / "104").mkdir()  # a process that exited while the tree was read: no files
    assert kafka_broker_pids(tmp_path) == [101]


def test_a_process_not_tracked_from_the_start_counts_with_all_its_cpu() -> None:
    ledger = CpuLedger({})
    spent = ledger.spent({"me": os.getpid()})
    assert spent["me"] > 0  # this test process has used CPU since it started
    assert "me" not in ledger.spent()
