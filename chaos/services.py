"""The chaos run's own services: a PostgreSQL cluster and a Kafka broker started by
`scripts/postgres.sh` / `scripts/kafka.sh` under a `COMET_HOME` of their own, on free ports, so
that they can be restarted at will without touching the ones `make services` runs for everyone.
Comet's processes reach both through a network-fault proxy (toxiproxy when it was built, else the
project's own in-process TCP proxy, which can only cut connections); the harness itself connects
to Postgres directly. Kafka advertises the proxy's port (`COMET_KAFKA_ADVERTISED_PORT`), so every
client connection to the broker goes through it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
HOST = "127.0.0.1"
SCRIPT_TIMEOUT_S = 240.0


class ServiceError(Exception):
    """A service could not be started, stopped or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def toxiproxy_path() -> Path | None:
    """The toxiproxy server `scripts/chaos.sh` built (COMET_TOXIPROXY), if it is there."""
    given = os.environ.get("COMET_TOXIPROXY")
    if given and Path(given).is_file() and os.access(given, os.X_OK):
        return Path(given)
    return None


class Proxies:
    """Network faults between Comet and its services (`kafka`, `postgres`)."""

    kind = "none"

    async def add(self, name: str, listen: int, upstream: int) -> None:
        raise NotImplementedError

    async def fault(self, name: str, toxic: str) -> None:
        """`latency`, `reset` or `timeout` on every connection through proxy `name` from now on."""
        raise NotImplementedError

    async def heal(self, name: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def supports(self, toxic: str) -> bool:
        return False


TOXICS: dict[str, dict[str, Any]] = {
    # 400 ms (± 100) more on every chunk both ways.
    "latency": {"type": "latency", "attributes": {"latency": 400, "jitter": 100}},
    # Every connection reset (RST) as soon as data flows.
    "reset": {"type": "reset_peer", "attributes": {"timeout": 0}},
    # Data stops; connections hang until the toxic is removed (clients' own timeouts fire).
    "timeout": {"type": "timeout", "attributes": {"timeout": 0}},
}


@dataclass
class Toxiproxy(Proxies):
    binary: Path
    log: Path
    port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None
    client: httpx.AsyncClient | None = None
    kind = "toxiproxy"

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [str(self.binary), "-host", HOST, "-port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.client = httpx.AsyncClient(base_url=f"http://{HOST}:{self.port}", timeout=10.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.client.get("/version")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise ServiceError("toxiproxy did not answer within 30 s")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        assert self.client is not None
        response = await self.client.request(method, path, json=body)
        if response.status_code >= 300 and not (method == "DELETE" and response.status_code == 404):
            raise ServiceError(f"toxiproxy {method} {path}: {response.status_code} {response.text}")

    async def add(self, name: str, listen: int, upstream: int) -> None:
        await self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": f"{HOST}:{listen}", "upstream": f"{HOST}:{upstream}", "enabled": True},
        )

    def supports(self, toxic: str) -> bool:
        return toxic in TOXICS

    async def fault(self, name: str, toxic: str) -> None:
        spec = TOXICS[toxic]
        for stream in ("downstream", "upstream"):
            body = {"name": f"chaos-{stream}", "stream": stream, "toxicity": 1.0, **spec}
            await self._call("POST", f"/proxies/{name}/toxics", body)

    async def heal(self, name: str) -> None:
        for stream in ("downstream", "upstream"):
            await self._call("DELETE", f"/proxies/{name}/toxics/chaos-{stream}")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
            if self.popen.poll() is None:
                self.popen.kill()


class _Pipe:
    """One forwarding: listen → upstream, connections cut on `fault(reset)`."""

    def __init__(self, listen: int, upstream: int) -> None:
        self.listen, self.upstream = listen, upstream
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, HOST, self.listen)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._copy(reader, up_writer), self._copy(up_reader, writer))

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
            self.writers.discard(writer)

    def cut(self) -> None:
        for writer in list(self.writers):
            with contextlib.suppress(OSError, RuntimeError):
                writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@dataclass
class OwnProxy(Proxies):
    """The fallback without toxiproxy: only `reset` (every connection cut) is possible."""

    pipes: dict[str, _Pipe] = field(default_factory=dict)
    kind = "tcp-proxy"

    async def add(self, name: str, listen: int, upstream: int) -> None:
        self.pipes[name] = pipe = _Pipe(listen, upstream)
        await pipe.start()

    def supports(self, toxic: str) -> bool:
        return toxic == "reset"

    async def fault(self, name: str, toxic: str) -> None:
        self.pipes[name].cut()

    async def heal(self, name: str) -> None:
        return None

    async def close(self) -> None:
        for pipe in self.pipes.values():
            await pipe.close()


@dataclass
class Services:
    home: Path
    pg_port: int
    kafka_port: int
    controller_port: int
    pg_proxy_port: int
    kafka_proxy_port: int
    proxies: Proxies
    log: Path

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("COMET_DATABASE_URL", "COMET_KAFKA_BOOTSTRAP_SERVERS")
        }
        env.update(
            COMET_HOME=str(self.home),
            COMET_PG_PORT=str(self.pg_port),
            COMET_KAFKA_PORT=str(self.kafka_port),
            COMET_KAFKA_CONTROLLER_PORT=str(self.controller_port),
            COMET_KAFKA_ADVERTISED_PORT=str(self.kafka_proxy_port),
        )
        return env

    @property
    def database_url(self) -> str:
        """Direct (the harness's own connections)."""
        return f"postgresql+asyncpg://comet:comet@{HOST}:{self.pg_port}/comet"

    @property
    def proxied_database_url(self) -> str:
        return f"postgresql+asyncpg://comet:comet@{HOST}:{self.pg_proxy_port}/comet"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka_proxy_port}"

    async def script(self, name: str, *args: str) -> float:
        """Run `scripts/<name>.sh args` (in a session of its own); the time it finished."""
        with self.log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                str(SCRIPTS / f"{name}.sh"),
                *args,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), SCRIPT_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise ServiceError(
                    f"scripts/{name}.sh {' '.join(args)} took over {SCRIPT_TIMEOUT_S:.0f} s"
                ) from None
        if code != 0:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise ServiceError(f"scripts/{name}.sh {' '.join(args)} exited with {code}:\n{tail}")
        return time.time()


@contextlib.asynccontextmanager
async def own_services(progress: Any) -> AsyncIterator[Services]:
    """Start the chaos run's own PostgreSQL, proxies and Kafka; stop and remove them on the way out."""
    home = Path(tempfile.mkdtemp(prefix="comet-chaos-"))
    log = home / "services.log"
    binary = toxiproxy_path()
    proxies: Proxies = Toxiproxy(binary, home / "toxiproxy.log") if binary else OwnProxy()
    services = Services(
        home=home,
        pg_port=free_port(),
        kafka_port=free_port(),
        controller_port=free_port(),
        pg_proxy_port=free_port(),
        kafka_proxy_port=free_port(),
        proxies=proxies,
        log=log,
    )
    try:
        if isinstance(proxies, Toxiproxy):
            await proxies.start()
        await proxies.add("postgres", services.pg_proxy_port, services.pg_port)
        await proxies.add("kafka", services.kafka_proxy_port, services.kafka_port)
        progress(
            f"services: PostgreSQL :{services.pg_port}, Kafka :{services.kafka_port} under {home} ({proxies.kind})"
        )
        await services.script("postgres", "start")
        await services.script("kafka", "start")
        yield services
    finally:
        for name in ("kafka", "postgres"):
            with contextlib.suppress(Exception):
                await asyncio.shield(services.script(name, "stop"))
        with contextlib.suppress(Exception):
            await proxies.close()
        if os.environ.get("COMET_CHAOS_KEEP"):
            progress(f"kept {home} (COMET_CHAOS_KEEP is set)")
        else:
            shutil.rmtree(home, ignore_errors=True)
