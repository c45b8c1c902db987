"""The dashboard end to end in headless Chromium, on a real API, orchestrator and worker: sign in,
see the project, trigger a run, watch its stage graph turn green live, follow a stage's log live
with its ANSI colours, cancel a second run mid-stage and retry it; a viewer signs in with GitHub
(the local OAuth provider) and gets no trigger, cancel or retry button. Every page is also a screenshot, under the
test's tmp path and, when COMET_HOME is set, in `$COMET_HOME/screenshots/<test name>/`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from api.middleware import UI_CSP
from tests.integration.api.oauth_provider import Account, Provider
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project
from tests.integration.ui.conftest import LiveComet, Screens, User, console_errors, sign_in, wait

pytestmark = pytest.mark.integration

# lint prints a coloured line, then keeps running a while: the log page must show the line live.
PIPELINE = r"""
name: ui
stages:
  lint:
    run: |
      printf '\033[32mUI-GREEN-LINE\033[0m plain after\n'
      sleep 6
      echo lint-done
  unit:
    needs: [lint]
    matrix: {python: ["3.11", "3.12"]}
    run: echo "unit on $MATRIX_PYTHON"
  package:
    needs: [unit]
    run: echo package
"""
STAGES = ("lint", "unit[python=3.11]", "unit[python=3.12]", "package")


def _stage(driver: Chrome, name: str) -> str | None:
    nodes = driver.find_elements(By.CSS_SELECTOR, f'a.stage[data-stage="{name}"]')
    return nodes[0].get_attribute("data-status") if nodes else None


def _owner_flow(driver: Chrome, base_url: str, owner: User, project_name: str, screens: Screens) -> None:
    sign_in(driver, base_url, owner)
    link = wait(driver).until(lambda d: d.find_element(By.LINK_TEXT, project_name))
    screens.take(driver, "1-projects")
    link.click()

    trigger = wait(driver).until(lambda d: d.find_element(By.ID, "trigger-run"))
    assert driver.find_element(By.ID, "role").text == "Your role: owner"
    screens.take(driver, "2-project")
    trigger.click()

    # The run page: the graph by depth of needs, the matrix legs in one group, lint running live.
    wait(driver).until(lambda d: _stage(d, "lint") == "running")
    assert "#/runs/" in driver.current_url
    columns = driver.find_elements(By.CSS_SELECTOR, ".graph .column")
    assert [len(c.find_elements(By.CSS_SELECTOR, "a.stage")) for c in columns] == [1, 2, 1]
    legs = driver.find_elements(By.CSS_SELECTOR, '.group[data-group="unit"] a.stage')
    assert [leg.get_attribute("data-stage") for leg in legs] == ["unit[python=3.11]", "unit[python=3.12]"]
    edges = {e.get_attribute("data-edge") for e in driver.find_elements(By.CSS_SELECTOR, "svg.edges path")}
    assert edges == {"lint>unit", "unit>package"}
    assert _stage(driver, "package") in {"pending", "queued"}
    screens.take(driver, "3-run-running")

    # The stage's log, live: the coloured line arrives while lint still runs.
    driver.find_element(By.CSS_SELECTOR, 'a.stage[data-stage="lint"]').click()
    green = wait(driver).until(
        lambda d: d.find_element(
            By.XPATH, '//pre[@id="log"]/span[@class="line"]/span[contains(., "UI-GREEN-LINE")]'
        )
    )
    assert green.get_attribute("class") == "ansi-fg-2"
    assert green.value_of_css_property("color") == "rgba(126, 231, 135, 1)"
    assert driver.find_element(By.ID, "log-state").get_attribute("data-state") == "streaming"
    assert "\x1b" not in driver.find_element(By.ID, "log").text
    screens.take(driver, "4-log-streaming")
    wait(driver).until(lambda d: d.find_element(By.ID, "log-state").get_attribute("data-state") == "ended")
    assert "lint-done" in driver.find_element(By.ID, "log").text
    assert "succeeded" in driver.find_element(By.ID, "log-state").text
    screens.take(driver, "5-log-ended")

    # Search: the matching line is found and picked, and its own address opens on it.
    driver.find_element(By.ID, "log-search").send_keys("lint-DONE\n")
    wait(driver).until(lambda d: d.find_element(By.ID, "log-found").text == "1 of 1 matching lines")
    picked = driver.find_element(By.CSS_SELECTOR, "#log .line.picked")
    assert "lint-done" in picked.text
    number = picked.get_attribute("data-n")
    assert driver.current_url.endswith(f"/stages/lint?line={number}")
    driver.find_element(By.ID, "log-only").click()
    visible = [line for line in driver.find_elements(By.CSS_SELECTOR, "#log .line") if line.is_displayed()]
    assert [line.get_attribute("data-n") for line in visible] == [number]
    screens.take(driver, "5b-log-search")
    driver.refresh()  # the line's own address, opened afresh
    wait(driver).until(lambda d: d.find_element(By.ID, "log-state").get_attribute("data-state") == "ended")
    reopened = wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "#log .line.picked"))
    assert reopened.get_attribute("data-n") == number
    assert "lint-done" in reopened.text

    # Back on the graph, every stage turns green without a reload.
    driver.find_element(By.ID, "run-link").click()
    wait(driver).until(lambda d: all(_stage(d, s) == "succeeded" for s in STAGES))
    wait(driver).until(
        lambda d: d.find_element(By.ID, "run-summary").get_attribute("data-status") == "succeeded"
    )
    screens.take(driver, "6-run-succeeded")

    driver.find_element(By.ID, "project-link").click()
    row = wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "#runs tbody tr"))
    assert row.get_attribute("data-status") == "succeeded"
    screens.take(driver, "7-project-runs")

    # A second run, cancelled while lint sleeps; then retried from the page.
    driver.find_element(By.ID, "trigger-run").click()
    wait(driver).until(lambda d: _stage(d, "lint") == "running")
    assert driver.find_elements(By.ID, "retry-run") == []
    wait(driver).until(lambda d: d.find_element(By.ID, "cancel-run")).click()
    wait(driver).until(
        lambda d: d.find_element(By.ID, "run-summary").get_attribute("data-status") == "cancelled"
    )
    assert _stage(driver, "lint") == "cancelled"
    assert driver.find_elements(By.ID, "cancel-run") == []
    screens.take(driver, "8-run-cancelled")
    wait(driver).until(lambda d: d.find_element(By.ID, "retry-run")).click()
    wait(driver).until(
        lambda d: d.find_element(By.ID, "run-summary").get_attribute("data-status") in {"queued", "running"}
    )
    wait(driver).until(lambda d: d.find_element(By.ID, "cancel-run"))
    assert driver.find_element(By.ID, "run-action-error").text == ""
    screens.take(driver, "9-run-retried")
    assert console_errors(driver) == []


@pytest.mark.timeout(180)
async def test_an_owner_triggers_a_run_and_watches_its_graph_and_log_live(
    live_comet: LiveComet, browser: Chrome, screens: Screens, tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": PIPELINE})
    name = "ui-demo"
    project = await add_project(live_comet.cluster.sessions, str(repo), name=name)
    owner = await live_comet.add_user(project, "owner")
    live_comet.start_runners()
    try:
        await asyncio.to_thread(_owner_flow, browser, live_comet.base_url, owner, name, screens)
    except Exception as exc:
        screens.take(browser, "failure")
        raise AssertionError(f"{exc}\n{live_comet.logs()}") from exc
    assert len(screens.taken) >= 9


def _viewer_flow(driver: Chrome, base_url: str, project_name: str, screens: Screens) -> None:
    # Signing in with GitHub: the button, the provider's consent, the API's callback, and back to
    # the sign-in page with a one-time code the page trades for the session and takes out of the URL.
    driver.get(f"{base_url}/ui/")
    button = wait(driver).until(lambda d: d.find_element(By.LINK_TEXT, "Sign in with GitHub"))
    assert button.get_attribute("href") == f"{base_url}/api/v1/auth/oauth/github/authorize?return_to=ui"
    screens.take(driver, "viewer-sign-in")
    button.click()
    wait(driver).until(lambda d: d.find_element(By.ID, "who").is_displayed())
    assert "code=" not in driver.current_url
    wait(driver).until(lambda d: d.find_element(By.LINK_TEXT, project_name)).click()
    wait(driver).until(lambda d: d.find_element(By.ID, "role").text == "Your role: viewer")
    wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "#runs tbody tr"))
    assert driver.find_elements(By.ID, "trigger-run") == []
    assert driver.find_elements(By.CSS_SELECTOR, "main form") == []
    screens.take(driver, "viewer-project")
    # The run is waiting (no runners here): a developer could cancel it, a viewer sees no button.
    driver.find_element(By.CSS_SELECTOR, "#runs tbody tr a").click()
    wait(driver).until(lambda d: d.find_element(By.ID, "run-actions").get_attribute("data-role") == "viewer")
    assert driver.find_element(By.ID, "run-summary").get_attribute("data-status") == "requested"
    assert driver.find_elements(By.CSS_SELECTOR, "#run-actions button") == []
    screens.take(driver, "viewer-run")
    assert console_errors(driver) == []


@pytest.mark.timeout(180)
async def test_a_viewer_signs_in_with_github_and_sees_the_runs_but_no_trigger_cancel_or_retry_button(
    live_comet: LiveComet, browser: Chrome, screens: Screens, tmp_path: Path, oauth_provider: Provider
) -> None:
    name = "ui-viewer"
    project = await add_project(live_comet.cluster.sessions, str(tmp_path / "no-repo"), name=name)
    owner = await live_comet.add_user(project, "owner")
    viewer = await live_comet.add_user(project, "viewer")
    async with httpx.AsyncClient(base_url=live_comet.base_url, timeout=10) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": owner.email, "password": owner.password}
        )
        token = login.json()["access_token"]
        made = await client.post(
            f"/api/v1/projects/{project}/runs",
            json={"ref": "main"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert made.status_code == 202, made.text
    oauth_provider.signed_in["github"] = Account(4242, "viewer-gh", "Viewer", [(viewer.email, True, True)])
    try:
        await asyncio.to_thread(_viewer_flow, browser, live_comet.base_url, name, screens)
    except Exception as exc:
        screens.take(browser, "failure")
        raise AssertionError(f"{exc}\n{live_comet.logs()}") from exc


async def test_the_dashboard_is_served_with_its_strict_policy_and_nothing_from_another_host(
    live_comet: LiveComet,
) -> None:
    async with httpx.AsyncClient(base_url=live_comet.base_url, timeout=10) as client:
        moved = await client.get("/ui")
        page = await client.get("/ui/")
        script = await client.get("/ui/js/app.js")
    assert moved.status_code in {307, 308}
    assert moved.headers["location"].endswith("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == UI_CSP
    assert "script-src 'self';" in UI_CSP
    assert "connect-src 'self'" in UI_CSP
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "http://" not in page.text
    assert "https://" not in page.text
