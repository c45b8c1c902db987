"""The dashboard in a real browser: Debian's headless Chromium driven by its chromedriver through
selenium, against a real `comet api` subprocess (with an orchestrator and a worker when a test
needs runs to happen) on a database and topic namespace of the test's own.

Chromium and chromedriver missing is a failure with the command that installs them, never a skip
(`make test` installs them: scripts/test.sh).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from api.auth.passwords import hash_password
from bench.browser import INSTALL, missing, start_chrome
from db.models import Membership
from db.repositories import users
from tests.integration.api.oauth_provider import Provider, running_provider
from tests.integration.cluster import Cluster
from tests.integration.processes import CometProcess, process_env

WAIT_S = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Screens:
    """Screenshots of each page: under the test's tmp path, and in `$COMET_HOME/screenshots/` too
    when COMET_HOME is set (so a person can look at what the browser saw)."""

    dirs: list[Path]
    taken: list[Path] = field(default_factory=list)

    def take(self, driver: Chrome, name: str) -> None:
        png = driver.get_screenshot_as_png()
        for directory in self.dirs:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{name}.png"
            path.write_bytes(png)
            self.taken.append(path)


@pytest.fixture
def screens(request: pytest.FixtureRequest, tmp_path: Path) -> Screens:
    dirs = [tmp_path / "screenshots"]
    home = os.environ.get("COMET_HOME")
    if home:
        dirs.append(Path(home) / "screenshots" / request.node.name)
    return Screens(dirs)


@pytest.fixture
def browser() -> Iterator[Chrome]:
    """Headless Chromium (Debian's), with its console kept so tests can check for errors."""
    absent = missing()
    if absent:
        pytest.fail(
            f"{', '.join(absent)} missing: the dashboard's browser tests need Debian's chromium and "
            f"chromium-driver (`{INSTALL}`; `make test` installs them)"
        )
    driver = start_chrome()
    try:
        yield driver
    finally:
        driver.quit()


@dataclass(frozen=True)
class User:
    email: str
    password: str


@dataclass
class LiveComet:
    base_url: str
    cluster: Cluster
    api: CometProcess
    secret_key: str

    async def add_user(self, project_id: object | None = None, role: str | None = None) -> User:
        user = User(f"u-{secrets.token_hex(4)}@example.com", f"long password {secrets.token_hex(6)}")
        async with self.cluster.sessions.begin() as session:
            row = await users.create_user(
                session, email=user.email, password_hash=hash_password(user.password)
            )
            if project_id is not None and role is not None:
                session.add(Membership(project_id=project_id, user_id=row.id, role=role))
        return user

    def start_runners(self) -> None:
        """An orchestrator and a worker, so triggered runs are planned and their stages run."""
        self.cluster.orchestrator({"secret_key": self.secret_key})
        self.cluster.worker(concurrency=2, env={"secret_key": self.secret_key, "log_flush_s": "0.2"})

    def logs(self) -> str:
        return f"--- api\n{self.api.output()[-4000:]}\n{self.cluster.logs()}"


@pytest.fixture
async def oauth_provider() -> AsyncIterator[Provider]:
    """The tests' local OAuth provider (`tests/integration/api/oauth_provider.py`), served in the
    test's event loop: it answers while selenium drives the browser from a thread."""
    async with running_provider() as provider:
        yield provider


@pytest.fixture
async def live_comet(cluster: Cluster, tmp_path: Path, oauth_provider: Provider) -> AsyncIterator[LiveComet]:
    """`comet api` on a free port over the cluster's database and topics, with GitHub login
    configured against the local OAuth provider (the sign-in page shows its button)."""
    port = _free_port()
    github = {k: v for k, v in oauth_provider.settings().items() if k.startswith("oauth_github_")}
    secret_key = secrets.token_urlsafe(48)
    env = process_env(
        cluster.common,
        jwt_secret=secrets.token_urlsafe(48),
        secret_key=secret_key,
        api_port=port,
        db_pool_size=5,
        rate_limits_enabled="false",
        **github,
    )
    api = CometProcess(["api"], env, tmp_path / "api.log").start()
    live = LiveComet(f"http://127.0.0.1:{port}", cluster, api, secret_key)
    try:
        await _until_healthy(live)
        yield live
    finally:
        await asyncio.to_thread(api.stop)


async def _until_healthy(live: LiveComet) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            assert live.api.running, f"comet api exited:\n{live.api.output()[-4000:]}"
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"comet api did not answer /healthz within 60 s:\n{live.api.output()[-4000:]}")


def wait(driver: Chrome, timeout_s: float = WAIT_S) -> WebDriverWait[Chrome]:
    """Polls a condition; an element the page replaced while it was being read (live pages
    rebuild their rows) is one more try, not a failure (seen in CI)."""
    return WebDriverWait(
        driver, timeout_s, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )


def sign_in(driver: Chrome, base_url: str, user: User) -> None:
    driver.get(f"{base_url}/ui/")
    email = wait(driver).until(lambda d: d.find_element(By.ID, "email"))
    email.send_keys(user.email)
    driver.find_element(By.ID, "password").send_keys(user.password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver).until(lambda d: d.find_element(By.ID, "who").is_displayed())


def console_errors(driver: Chrome) -> list[str]:
    """What the page logged as errors (CSP violations, script errors, failed loads)."""
    # selenium leaves get_log untyped: what it returns is a list of {level, message, …} dicts.
    get_log = cast(Callable[[str], list[dict[str, Any]]], driver.get_log)
    entries = get_log("browser")
    return [str(e["message"]) for e in entries if e.get("level") == "SEVERE"]
