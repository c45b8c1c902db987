"""Readiness probes for the two services Comet stands on, usable from shell scripts.

`python -m events.probe kafka HOST:PORT` exits 0 once the broker answers a metadata request.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaClient


async def kafka_answers(bootstrap_servers: str, timeout_s: float = 3.0) -> bool:
    """True when a broker at `bootstrap_servers` answers a metadata request."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancel on 3.11
            await client.bootstrap()
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "kafka":
        print("usage: python -m events.probe kafka HOST:PORT", file=sys.stderr)
        return 2
    return 0 if asyncio.run(kafka_answers(argv[2])) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
