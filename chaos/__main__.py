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
    parser.add_argument("--rate", type=float, default=1.0, help="triggers per second (default 1)")
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
    options = Options(args.runs, args.rate, args.faults, args.seed, kinds=kinds or FAULT_KINDS)
    try:
        verdict = asyncio.run(run(options, _progress))
    except KeyboardInterrupt:
        print("chaos: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, not a traceback (the services are stopped already)
        print(f"chaos: could not run: {exc}", file=sys.stderr)
        return 2
    print(verdict.text)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
