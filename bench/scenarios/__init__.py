"""Benchmark scenarios beyond the references: one module per scenario in this package.

How to add one (trigger→first-stage-start, webhook ingest, stages/s, replay events/s, ...):

1. Create `bench/scenarios/<name>.py` (names starting with `_` are helpers, not scenarios).
2. Give it a module docstring (its first line is shown by `python -m bench --list`) and

       async def run(ctx: BenchContext) -> list[Figure]:
           ...

   `ctx.settings` names the services, `ctx.samples` is how many samples to take (500, or 100
   with `--quick`), `ctx.references` holds the raw Kafka and Postgres figures of this run.
   `ctx.note(text)` adds a line under the scenario's title (what a figure includes, the setup,
   problems seen); `ctx.progress(text)` reports progress on stderr.
3. Return each figure compared with the reference that bounds it from below, in the same unit:

       Figure("trigger→first stage p50", p50_ms, "ms").relative_to(ctx.references.kafka.p50)
       Figure("stage transitions", per_s, "/s").relative_to(ctx.references.postgres.rate)

A scenario starts and stops whatever Comet processes it needs, cleans up what it created, and
raises on failure (the runner reports the error and goes on with the next scenario). Scenarios
run one at a time, in name order, after the references; `python -m bench --scenario NAME` runs
only the ones named.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.references import References
from bench.stats import Figure
from config.settings import CommonSettings


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What a scenario gets: the services' settings, its sample budget and this run's references."""

    settings: CommonSettings
    samples: int
    quick: bool
    references: References
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """A line printed under the scenario's title in the report."""
        self.notes.append(text)

    def progress(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


Scenario = Callable[[BenchContext], Awaitable[list[Figure]]]


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    name: str
    summary: str
    run: Scenario


def discover() -> list[ScenarioInfo]:
    """Every scenario module in this package, in name order."""
    found: list[ScenarioInfo] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        run = getattr(module, "run", None)
        if run is None or not inspect.iscoroutinefunction(run):
            raise TypeError(f"bench scenario {module_info.name} has no `async def run(ctx)`")
        summary = next(iter((module.__doc__ or "").strip().splitlines()), "")
        found.append(ScenarioInfo(module_info.name, summary, run))
    return found
