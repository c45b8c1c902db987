"""How busy the machine was while a scenario ran: every figure is only as good as the CPU it got.

`CpuMeter` reads the aggregate `cpu` line of `/proc/stat` (everything on the machine: the bench,
Comet's processes, PostgreSQL, Kafka, and whatever else runs there) and the load average, at
the start and at the end, so the report can say that a slow figure ran on a busy machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Aggregate CPU time in clock ticks: busy (everything but idle and iowait) and total."""

    busy: int
    total: int


def parse_proc_stat(text: str) -> CpuTimes:
    """The `cpu` (all CPUs) line of a `/proc/stat` text."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
            values = [int(v) for v in fields[1:9]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values)
            return CpuTimes(busy=total - idle, total=total)
    raise ValueError("no aggregate cpu line in /proc/stat")


def busy_share(before: CpuTimes, after: CpuTimes) -> float | None:
    """Share of all CPUs' time that was busy between two readings (0..1); None if no time passed."""
    total = after.total - before.total
    return None if total <= 0 else (after.busy - before.busy) / total


def _read() -> CpuTimes | None:
    try:
        return parse_proc_stat(PROC_STAT.read_text())
    except (OSError, ValueError):
        return None


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class CpuMeter:
    """Started when created; `summary()` describes the machine's CPU use since then."""

    def __init__(self) -> None:
        self.cpus = os.cpu_count() or 1
        self._start = _read()
        self._load = _load1()
        self._started = time.monotonic()

    def summary(self) -> str:
        end, load = _read(), _load1()
        share = busy_share(self._start, end) if self._start and end else None
        parts = [f"machine: {self.cpus} CPUs"]
        if share is not None:
            parts.append(
                f"{share * 100:.0f}% busy over {time.monotonic() - self._started:.0f} s "
                "(all processes, the bench, PostgreSQL and Kafka included)"
            )
        if self._load is not None and load is not None:
            parts.append(f"load average {self._load:.1f} → {load:.1f}")
        return ", ".join(parts)


def process_cpu_ticks(stat_text: str, *, with_children: bool = True) -> int:
    """utime + stime (+ cutime + cstime: children it has waited for) of a `/proc/<pid>/stat` text."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat_text.rpartition(")")[2].split()
    # fields[0] is the state (field 3), so field N of proc(5) is fields[N - 3].
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return utime + stime + (cutime + cstime if with_children else 0)


def _cpu_s(pid: int, *, with_children: bool = True) -> float | None:
    try:
        ticks = process_cpu_ticks(Path(f"/proc/{pid}/stat").read_text(), with_children=with_children)
    except (OSError, ValueError, IndexError):
        return None
    return ticks / _CLOCK_TICKS


class CpuLedger:
    """CPU seconds spent by named processes (with the children they reaped: a worker's git and
    bash), by the bench itself, and by the whole machine, between creation and `spent()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._start = {name: _cpu_s(pid) for name, pid in self._pids.items()}
        self._bench = _cpu_s(os.getpid(), with_children=False)
        self._machine = _read()

    def spent(self, newcomers: dict[str, int] | None = None) -> dict[str, float]:
        """CPU seconds since creation by name; `newcomers` not tracked since then (processes that
        started meanwhile, such as new PostgreSQL backends) count with all the CPU they used."""
        out: dict[str, float] = {}
        for name, pid in self._pids.items():
            before, after = self._start[name], _cpu_s(pid)
            if before is not None and after is not None:
                out[name] = after - before
        for name, pid in (newcomers or {}).items():
            if name not in self._pids and (used := _cpu_s(pid)) is not None:
                out[name] = used
        bench = _cpu_s(os.getpid(), with_children=False)
        if bench is not None and self._bench is not None:
            out["bench"] = bench - self._bench
        machine = _read()
        if machine is not None and self._machine is not None:
            out["machine"] = (machine.busy - self._machine.busy) / _CLOCK_TICKS
        return out


def describe_cpu(spent: dict[str, float], per: int, unit: str) -> str:
    """`CPU per stage: worker0 12 ms, …; rest of the machine 40 ms (PostgreSQL, Kafka, others)`."""
    if per <= 0 or not spent:
        return "CPU: not measured"
    ours = {k: v for k, v in spent.items() if k != "machine"}
    parts = [f"{name} {v * 1000 / per:.1f} ms" for name, v in ours.items()]
    text = f"CPU per {unit}: " + ", ".join(parts)
    if "machine" in spent:
        rest = spent["machine"] - sum(ours.values())
        unnamed = [
            label for key, label in (("postgres", "PostgreSQL"), ("kafka", "Kafka")) if key not in ours
        ]
        text += (
            f"; rest of the machine {rest * 1000 / per:.1f} ms ({', '.join([*unnamed, 'anything else running'])});"
            f" machine total {spent['machine']:.1f} CPU-s"
        )
    return text


def by_role(spent: dict[str, float]) -> dict[str, float]:
    """CPU seconds with the services' processes summed per service: `postgres/45` → postgres."""
    out: dict[str, float] = {}
    for name, seconds in spent.items():
        role = name.partition("/")[0]
        out[role] = out.get(role, 0.0) + seconds
    return out


def is_kafka_broker(cmdline: str) -> bool:
    """Whether a `/proc/<pid>/cmdline` (arguments separated by NUL) runs a Kafka broker."""
    return "kafka.Kafka" in cmdline.split("\0")


def kafka_broker_pids(proc: Path = Path("/proc")) -> list[int]:
    """Pids of the Kafka brokers (JVMs running `kafka.Kafka`) on this machine."""
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "java":
                continue
            cmdline = (entry / "cmdline").read_text(errors="replace")
        except OSError:
            continue
        if is_kafka_broker(cmdline):
            found.append(int(entry.name))
    return sorted(found)
