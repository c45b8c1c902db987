"""Environments, deployments and the worker fleet in headless Chromium, on a real API, orchestrator
and worker: a deploy to `production` needing two approvals waits; a viewer sees it and no Approve
button; the person who triggered the run sees none either (self-approval is refused at two); two
other maintainers approve through the page and the deployment turns succeeded live; the workers
page lists the worker and its pool's queue. Every page is a screenshot (see test_dashboard.py).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project
from tests.integration.ui.conftest import LiveComet, Screens, User, console_errors, sign_in, wait

pytestmark = pytest.mark.integration

API = "/api/v1"
PIPELINE = """
name: release
stages:
  build: {run: echo built, checkout: false}
  deploy:
    needs: [build]
    checkout: false
    environment: {name: production, url: "https://example.com"}
    run: echo "deploying $COMET_SHA"
"""


async def _login(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    response = await client.post(f"{API}/auth/login", json={"email": user.email, "password": user.password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _waiting_deployment(
    client: httpx.AsyncClient, project: uuid.UUID, headers: dict[str, str]
) -> dict[str, Any]:
    """The run's deployment once the orchestrator has it waiting for its two approvals."""
    async with asyncio.timeout(90):
        while True:
            response = await client.get(f"{API}/projects/{project}/deployments", headers=headers)
            assert response.status_code == 200, response.text
            found = response.json()["data"]
            if found and "waiting for 2 more approvals" in (found[0]["reason"] or ""):
                return dict(found[0])
            await asyncio.sleep(0.2)


def _row(driver: Chrome, deployment: str) -> WebElement:
    return wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-deployment="{deployment}"]')
    )


def _go(driver: Chrome, fragment: str) -> None:
    driver.execute_script("location.hash = arguments[0]", fragment)


def _switch_user(driver: Chrome, base_url: str, user: User) -> None:
    driver.find_element(By.ID, "sign-out").click()
    wait(driver).until(lambda d: d.find_element(By.ID, "email"))
    sign_in(driver, base_url, user)


def _approve(driver: Chrome, deployment: str, comment: str) -> None:
    row = _row(driver, deployment)
    row.find_element(By.CSS_SELECTOR, "input.comment").send_keys(comment)
    row.find_element(By.CSS_SELECTOR, "button.approve").click()


def _approvals(driver: Chrome, deployment: str) -> list[str]:
    return [li.text for li in _row(driver, deployment).find_elements(By.CSS_SELECTOR, "td.approvals li")]


def _flow(
    driver: Chrome,
    base_url: str,
    people: dict[str, User],
    project: uuid.UUID,
    name: str,
    deployment: str,
    screens: Screens,
) -> None:
    environment = f"#/projects/{project}/environments/production"

    # A viewer walks there from the project page: the waiting deployment, its rules, no buttons.
    sign_in(driver, base_url, people["viewer"])
    wait(driver).until(lambda d: d.find_element(By.LINK_TEXT, name)).click()
    wait(driver).until(lambda d: d.find_element(By.ID, "environments-link")).click()
    card = wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-environment="production"]'))
    assert "2 approvals by maintainers" in card.text
    assert "the triggerer may not approve" in card.text
    row = _row(driver, deployment)
    assert row.get_attribute("data-status") == "waiting"
    assert "waiting for 2 more approvals" in row.text
    assert row.find_element(By.CSS_SELECTOR, ".no-review").text == "reviews need maintainer or above"
    assert driver.find_elements(By.CSS_SELECTOR, "button.approve, button.reject, button.rollback") == []
    screens.take(driver, "1-environments-viewer")

    # The owner triggered the run: two approvals are required, so never by them.
    _switch_user(driver, base_url, people["owner"])
    _go(driver, environment)
    row = _row(driver, deployment)
    assert (
        row.find_element(By.CSS_SELECTOR, ".no-review").text == "you triggered it: someone else must approve"
    )
    assert driver.find_elements(By.CSS_SELECTOR, "button.approve") == []
    screens.take(driver, "2-environment-triggerer")

    # Two other maintainers approve through the page; each approval shows up live with its comment.
    _switch_user(driver, base_url, people["alice"])
    _go(driver, environment)
    _approve(driver, deployment, "looks good")
    wait(driver).until(lambda d: any("looks good" in a for a in _approvals(d, deployment)))
    assert _row(driver, deployment).find_element(By.CSS_SELECTOR, ".no-review").text == "you reviewed it"
    assert "1/2 approvals" in _row(driver, deployment).text
    screens.take(driver, "3-environment-one-approval")

    _switch_user(driver, base_url, people["bob"])
    _go(driver, environment)
    _approve(driver, deployment, "ship it")
    wait(driver).until(lambda d: _row(d, deployment).get_attribute("data-status") == "succeeded")
    current = wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "#environment .current"))
    assert current.get_attribute("data-deployment") == deployment
    approvals = _approvals(driver, deployment)
    assert len(approvals) == 2
    assert "looks good" in approvals[0]
    assert approvals[1].startswith("approved by you: “ship it”")
    screens.take(driver, "4-environment-deployed")

    # The fleet: the test's worker, its pool and slots, and the pool's queue.
    driver.find_element(By.LINK_TEXT, "Workers").click()
    worker = wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "#workers tbody tr"))
    assert worker.get_attribute("data-pool") == "default"
    assert worker.get_attribute("data-status") == "active"
    assert worker.find_element(By.CSS_SELECTOR, ".busy").text.endswith("/2")
    assert "s ago" in worker.find_element(By.CSS_SELECTOR, ".heartbeat").text
    wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, '#queues tr[data-pool="default"]'))
    screens.take(driver, "5-workers")
    assert console_errors(driver) == []


@pytest.mark.timeout(180)
async def test_two_other_maintainers_approve_a_guarded_deployment_in_the_page_and_it_deploys_live(
    live_comet: LiveComet, browser: Chrome, screens: Screens, tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": PIPELINE})
    name = "ui-deploys"
    project = await add_project(live_comet.cluster.sessions, str(repo), name=name)
    people = {
        "owner": await live_comet.add_user(project, "owner"),
        "alice": await live_comet.add_user(project, "maintainer"),
        "bob": await live_comet.add_user(project, "maintainer"),
        "viewer": await live_comet.add_user(project, "viewer"),
    }
    live_comet.start_runners()
    async with httpx.AsyncClient(base_url=live_comet.base_url, timeout=10) as client:
        owner = await _login(client, people["owner"])
        rules = {"required_approvals": 2, "allow_self_approval": False}
        put = await client.put(f"{API}/projects/{project}/environments/production", json=rules, headers=owner)
        assert put.status_code == 200, put.text
        made = await client.post(f"{API}/projects/{project}/runs", json={"ref": "main"}, headers=owner)
        assert made.status_code == 202, made.text
        deployment = await _waiting_deployment(client, project, owner)
    try:
        await asyncio.to_thread(
            _flow, browser, live_comet.base_url, people, project, name, deployment["id"], screens
        )
    except Exception as exc:
        screens.take(browser, "failure")
        raise AssertionError(f"{exc}\n{live_comet.logs()}") from exc
    assert len(screens.taken) >= 5
