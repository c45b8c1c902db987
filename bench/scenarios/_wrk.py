"""A native load generator for the HTTP figures: `wrk` (Debian's package), closed loop, replaying
requests prepared by the bench — each one distinct (its own delivery id and signature), so the
server never sees a duplicate.

The requests are written as raw HTTP/1.1 bytes to a data file (`<length>\\n<bytes>` each); a small
Lua script loads it in every wrk thread, thread `t` of `n` sends requests t, t+n, t+2n, … and counts
the answers by status; at the end one line `COMET_WRK {json}` reports the counts, the duration and
wrk's latency percentiles. Prepared requests running out is reported (`exhausted`): the thread then
repeats its last request, whose duplicate answer is not a 202.

The generator's own CPU is measured (`getrusage` of the bench's reaped children): when its threads
were busy ≥ 90 % of the wall time, the figure says the generator, not the server, was the limit.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

SATURATED_SHARE = 0.9

LUA = r"""
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  reqs = {}
  while true do
    local line = f:read("*l")
    if not line then break end
    reqs[#reqs + 1] = f:read(tonumber(line))
  end
  f:close()
  stride = tonumber(args[2])
  index = id + 1
  statuses = {}
  exhausted = 0
end

function request()
  if index > #reqs then
    exhausted = exhausted + 1
    return reqs[#reqs]
  end
  local r = reqs[index]
  index = index + stride
  return r
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local counts, exhausted_total = {}, 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    exhausted_total = exhausted_total + t:get("exhausted")
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%s": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'COMET_WRK {"requests": %d, "duration_us": %d, "statuses": {%s}, "exhausted": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
      .. '"p50_us": %f, "p99_us": %f}\n',
    summary.requests, summary.duration, table.concat(parts, ", "), exhausted_total,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


class WrkError(Exception):
    """wrk is missing, or did not report."""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def raw_request(url: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """The bytes of an HTTP/1.1 POST of `body` to `path` on `url`'s host, keeping the connection."""
    host = urlsplit(url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def data_file(requests: Sequence[bytes]) -> bytes:
    """The data file the Lua script reads: `<length>\\n<bytes>` per request."""
    return b"".join(str(len(r)).encode() + b"\n" + r for r in requests)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    statuses: dict[int, int]
    exhausted: int
    socket_errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu_s: float  # wrk's user + system CPU
    threads: int

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)

    def rate(self, status: int) -> float:
        return self.count(status) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def busy_share(self) -> float:
        """wrk's CPU over what its threads could have used in the run's wall time."""
        return self.cpu_s / (self.duration_s * self.threads) if self.duration_s > 0 else 0.0

    @property
    def generator_saturated(self) -> bool:
        return self.busy_share >= SATURATED_SHARE

    def describe(self, status: int) -> str:
        others = {s: n for s, n in sorted(self.statuses.items()) if s != status}
        errors = {k: v for k, v in self.socket_errors.items() if v}
        return (
            f"wrk: {self.requests} requests in {self.duration_s:.1f} s, {status}: {self.count(status)}"
            + (f", others: {others}" if others else "")
            + (f", socket errors: {errors}" if errors else "")
            + (f", prepared requests ran out ({self.exhausted} repeats)" if self.exhausted else "")
            + f"; latency (all answers) p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms; wrk CPU "
            f"{self.busy_share:.0%} of its {self.threads} threads"
            + (" — the GENERATOR was the limit" if self.generator_saturated else " (not the limit)")
        )


def parse_report(output: str) -> dict[str, object]:
    """The `COMET_WRK {json}` line of wrk's output."""
    for line in output.splitlines():
        if line.startswith("COMET_WRK "):
            parsed = orjson.loads(line.removeprefix("COMET_WRK "))
            if isinstance(parsed, dict):
                return parsed
    raise WrkError(f"wrk did not report; it printed: {output.strip()[-300:]!r}")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_wrk(
    url: str,
    requests: Sequence[bytes],
    *,
    seconds: float,
    connections: int,
    threads: int,
    workdir: Path,
    timeout_s: float = 5.0,
) -> WrkResult:
    """Closed loop for `seconds`: `connections` keep-alive connections over `threads` threads."""
    binary = wrk_path()
    if binary is None:
        raise WrkError("wrk is not installed (Debian: apt-get install wrk)")
    script, data = workdir / "load.lua", workdir / "requests.bin"

    def write() -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        script.write_text(LUA)
        data.write_bytes(data_file(requests))

    await asyncio.to_thread(write)
    before = _children_cpu_s()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        url,
        "--",
        str(data),
        str(threads),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LC_ALL": "C"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    cpu = _children_cpu_s() - before
    report = parse_report(out.decode(errors="replace"))
    if proc.returncode != 0:
        raise WrkError(f"wrk exited {proc.returncode}: {out.decode(errors='replace').strip()[-300:]}")
    statuses = report.get("statuses")
    errors = report.get("errors")
    duration_us = float(str(report["duration_us"]))
    return WrkResult(
        requests=int(str(report["requests"])),
        duration_s=duration_us / 1e6 if duration_us > 0 else time.monotonic() - started,
        statuses={int(k): int(v) for k, v in statuses.items()} if isinstance(statuses, dict) else {},
        exhausted=int(str(report.get("exhausted", 0))),
        socket_errors={str(k): int(v) for k, v in errors.items()} if isinstance(errors, dict) else {},
        p50_ms=float(str(report["p50_us"])) / 1000.0,
        p99_ms=float(str(report["p99_us"])) / 1000.0,
        cpu_s=cpu,
        threads=threads,
    )
