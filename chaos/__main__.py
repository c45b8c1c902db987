"""`python -m chaos [--runs N] [--rate R] [--faults F] [--seed S]`: prints the table; exits 1 when
anything was lost, duplicated, committed twice, or moved illegally (decision 0029)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from chaos.harness import FAULT_KINDS, Options, run


def _progress(line: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--runs", type=int, default=300, help="runs to trigger (default 300)")
    parser.add_argument("--rate", type=float, default=2.5, help="triggers per second (default 2.5)")
    parser.add_argument(
        "--faults", type=int, default=None, help="faults to inject (default: runs/30, at least 10)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault schedule and victims")
    parser.add_argument(
        "--kinds",
        default=",".join(FAULT_KINDS),
        help="comma-separated kinds of fault to inject (default: all): " + ", ".join(FAULT_KINDS),
    )
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if unknown := [k for k in kinds if k not in FAULT_KINDS]:
        parser.error(f"unknown fault kind(s): {', '.join(unknown)}")
    if args.runs < 1 or args.rate <= 0:
        parser.error("--runs must be at least 1 and --rate positive")
    verdict = asyncio.run(
        run(Options(args.runs, args.rate, args.faults, args.seed, kinds=kinds or FAULT_KINDS), _progress)
    )
    print(verdict.text)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
