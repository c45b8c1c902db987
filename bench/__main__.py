"""`python -m bench`: measures the references, runs the registered scenarios, prints the report.

Settings come from the `COMET_*` environment like every Comet process; the services must be
running (`make services`). Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback

import uvloop
from sqlalchemy.engine import make_url

from bench.machine import CpuMeter
from bench.references import ReferenceUnavailableError, measure_references
from bench.report import Section, render
from bench.scenarios import BenchContext, ScenarioInfo, discover
from config.logging import configure
from config.settings import CommonSettings, SettingsError, load

FULL_SAMPLES = 500
QUICK_SAMPLES = 100


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SAMPLES} samples instead of {FULL_SAMPLES}"
    )
    parser.add_argument(
        "--samples", type=int, metavar="N", help="samples per latency figure (overrides --quick)"
    )
    parser.add_argument(
        "--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample every Comet process with py-spy into DIR (then: python -m bench.profile DIR)",
    )
    return parser


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    """`Type: first line … last line` of an exception (a process's log tail can be long)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{type(exc).__name__}: {lines[0]} … {lines[-1]}"
    return f"{type(exc).__name__}: {lines[0]}" if lines else repr(exc)


def _select(available: list[ScenarioInfo], names: list[str] | None) -> list[ScenarioInfo]:
    if not names:
        return available
    known = {s.name: s for s in available}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(
            f"bench: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}"
        )
    return [known[n] for n in names]


async def _run(settings: CommonSettings, samples: int, quick: bool, scenarios: list[ScenarioInfo]) -> int:
    _progress(f"measuring the references ({samples} samples each)")
    started = time.perf_counter()
    meter = CpuMeter()
    try:
        references = await measure_references(settings, samples)
    except ReferenceUnavailableError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    sections = [
        Section(
            f"references ({samples} samples each, measured in {time.perf_counter() - started:.1f} s)",
            references.figures(),
            notes=(
                f"{references.kafka.name}: {references.kafka.note}",
                f"{references.postgres.name}: {references.postgres.note}",
                meter.summary(),
            ),
        )
    ]
    failed = 0
    for scenario in scenarios:
        _progress(f"scenario {scenario.name}")
        ctx = BenchContext(settings=settings, samples=samples, quick=quick, references=references)
        started = time.perf_counter()
        meter = CpuMeter()
        try:
            figures = await scenario.run(ctx)
        except Exception as exc:
            failed += 1
            _progress(f"scenario {scenario.name} failed: {exc!r}")
            traceback.print_exc(file=sys.stderr)
            notes = (*ctx.notes, meter.summary(), f"FAILED: {_one_line(exc)}")
            sections.append(Section(scenario.summary or scenario.name, [], notes=notes))
            continue
        title = f"{scenario.summary or scenario.name} (measured in {time.perf_counter() - started:.0f} s)"
        sections.append(Section(title, figures, notes=(*ctx.notes, meter.summary())))
    url = make_url(settings.database_url)
    print(
        f"Comet benchmarks: Kafka {settings.kafka_bootstrap_servers}, "
        f"PostgreSQL {url.host}:{url.port}/{url.database}\n"
    )
    print(render(sections))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenarios = discover()
    if args.list:
        for s in scenarios:
            print(f"{s.name:<24} {s.summary}")
        return 0
    selected = _select(scenarios, args.scenario)
    if args.profile:
        os.environ["COMET_BENCH_PROFILE"] = os.path.abspath(args.profile)
    try:
        settings = load(CommonSettings)
    except SettingsError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    configure("bench", level="warning", fmt=settings.log_format or "console")
    samples = args.samples or (QUICK_SAMPLES if args.quick else FULL_SAMPLES)
    if samples < 1:
        print("bench: --samples must be at least 1", file=sys.stderr)
        return 2
    # SIGTERM takes the Ctrl-C path: the running scenario stops its processes and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        return uvloop.run(_run(settings, samples, args.quick, selected))
    except KeyboardInterrupt:
        print("bench: interrupted; the processes and databases it started were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
