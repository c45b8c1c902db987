"""The results pages in headless Chromium, on a real API, orchestrator, worker and `comet
analytics`: a stage writes a JUnit report (one failing, one flaky, one passing test) and an lcov
report; two runs of main later a maintainer sees the failure first and the flaky test marked,
quarantines the failure and sees it marked, follows the coverage trend (a dot per run) and the
insights (the figures the REST API returns); a viewer sees the same results and no quarantine
button. Every page is also a screenshot (the `screens` fixture).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tests.integration.cluster import until
from tests.integration.conftest import make_repo
from tests.integration.helpers import add_project
from tests.integration.processes import CometProcess, process_env
from tests.integration.ui.conftest import WAIT_S, LiveComet, Screens, User, console_errors, sign_in

pytestmark = pytest.mark.integration

JUNIT = """<testsuite name="calc" tests="3">
  <testcase classname="tests.test_calc" name="test_passes" time="0.01"/>
  <testcase classname="tests.test_calc" name="test_fails" time="0.02">
    <failure message="assert 4 == 5">AssertionError: assert 4 == 5</failure>
  </testcase>
  <testcase classname="tests.test_calc" name="test_flaky" time="0.03"><flakyFailure message="once"/></testcase>
</testsuite>"""


def pipeline(counter: Path) -> str:
    """One test stage; the nth run covers n+1 of src/calc.py's 5 lines (40%, then 60%)."""
    junit = "\n".join(f"      {line}" for line in JUNIT.splitlines())
    return f"""
stages:
  unit:
    checkout: false
    type: test
    reports: {{junit: report.xml, coverage: cov.info}}
    run: |
      n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}
      printf 'SF:src/calc.py\\nDA:1,1\\nDA:2,1\\nDA:3,%s\\nDA:4,0\\nDA:5,0\\nend_of_record\\n' $((n - 1)) > cov.info
      cat > report.xml <<'XML'
{junit}
      XML
      echo "1 failed, 2 passed (1 flaky)"
      exit 1
"""


class Rest:
    """The REST calls the test makes itself, as one user."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def login(cls, client: httpx.AsyncClient, user: User) -> Rest:
        login = await client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
        assert login.status_code == 200, login.text
        return cls(client, login.json()["access_token"])

    async def get(self, path: str) -> Any:
        response = await self.client.get(f"/api/v1{path}", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def finished_run(self, project: uuid.UUID) -> str:
        made = await self.client.post(
            f"/api/v1/projects/{project}/runs", json={"ref": "main"}, headers=self.headers
        )
        assert made.status_code == 202, made.text
        run_id: str = made.json()["run_id"]

        async def ended() -> bool:
            return (await self.get(f"/runs/{run_id}"))["status"] in {"succeeded", "failed", "cancelled"}

        await until(ended, timeout_s=60, what=f"run {run_id} to end")
        return run_id


def wait(driver: Chrome) -> WebDriverWait[Chrome]:
    """The shared wait, also past a row the page has just re-rendered (a stale element)."""
    return WebDriverWait(
        driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )


def _rows(driver: Chrome) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#tests tbody tr")


def _maintainer_flow(
    driver: Chrome,
    base_url: str,
    user: User,
    project: uuid.UUID,
    run_id: str,
    insights: Any,
    screens: Screens,
) -> str:
    sign_in(driver, base_url, user)
    driver.get(f"{base_url}/ui/#/runs/{run_id}")
    wait(driver).until(lambda d: d.find_element(By.ID, "tests-link")).click()

    # Failures first, then flaky, then passed; flaky spelt out, the failure's message folded away.
    wait(driver).until(lambda d: len(_rows(d)) == 3)
    rows = _rows(driver)
    assert [r.get_attribute("data-status") for r in rows] == ["failed", "passed", "passed"]
    assert [r.find_element(By.CSS_SELECTOR, ".testname").text for r in rows] == [
        "test_fails",
        "test_flaky",
        "test_passes",
    ]
    assert rows[1].get_attribute("data-flaky") == "true"
    assert "flaky" in rows[1].find_element(By.CSS_SELECTOR, ".test-status").text
    assert "flaky" not in rows[0].find_element(By.CSS_SELECTOR, ".test-status").text
    message = rows[0].find_element(By.CSS_SELECTOR, "details.message pre")
    assert not message.is_displayed()
    rows[0].find_element(By.CSS_SELECTOR, "details.message summary").click()
    assert "assert 4 == 5" in message.text
    assert driver.find_element(By.ID, "tests-summary").text.startswith("3 tests: 1 failed, 1 flaky, 2 passed")
    assert "Line coverage 60%" in driver.find_element(By.ID, "run-coverage").text

    # The filter box narrows the rows.
    driver.find_element(By.ID, "test-filter").send_keys("flaky")
    wait(driver).until(lambda d: [r.is_displayed() for r in _rows(d)] == [False, True, False])
    assert driver.find_element(By.ID, "tests-shown").text == "Showing 1 of 3 tests"
    screens.take(driver, "1-tests-filtered")
    driver.find_element(By.ID, "test-filter").clear()
    driver.find_element(By.ID, "test-filter").send_keys(" ")
    wait(driver).until(lambda d: all(r.is_displayed() for r in _rows(d)))

    # Quarantine the failing test: the API answers, the row says so, the button turns to Release.
    _rows(driver)[0].find_element(By.CSS_SELECTOR, "button.quarantine").click()
    wait(driver).until(lambda d: _rows(d)[0].get_attribute("data-quarantined") == "true")
    failing = _rows(driver)[0]
    assert "quarantined" in failing.find_element(By.CSS_SELECTOR, ".test-status").text
    assert failing.find_element(By.CSS_SELECTOR, "button").text == "Release"
    assert "quarantined" in driver.find_element(By.ID, "tests-announce").text
    screens.take(driver, "2-tests-quarantined")
    # Release it and quarantine it again: both buttons call the API and update the row in place.
    failing.find_element(By.CSS_SELECTOR, "button.release").click()
    wait(driver).until(lambda d: _rows(d)[0].get_attribute("data-quarantined") == "false")
    assert "quarantined" not in _rows(driver)[0].find_element(By.CSS_SELECTOR, ".test-status").text
    assert "released" in driver.find_element(By.ID, "tests-announce").text
    _rows(driver)[0].find_element(By.CSS_SELECTOR, "button.quarantine").click()
    wait(driver).until(lambda d: _rows(d)[0].get_attribute("data-quarantined") == "true")
    failing = _rows(driver)[0]
    key = failing.get_attribute("data-key")
    assert key

    # The branch's coverage trend: one dot per run, oldest first, and the table of the same numbers.
    driver.find_element(By.ID, "coverage-trend-link").click()
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#coverage-chart circle.point")) == 2)
    dots = driver.find_elements(By.CSS_SELECTOR, "#coverage-chart circle.point")
    assert [float(d.get_attribute("data-value") or "nan") for d in dots] == [40.0, 60.0]
    assert float(dots[0].get_attribute("cy") or 0) > float(dots[1].get_attribute("cy") or 0)
    cells = driver.find_elements(By.CSS_SELECTOR, "#coverage-table tbody td.line-rate")
    assert [c.text for c in cells] == ["60%", "40%"]
    screens.take(driver, "3-coverage-trend")

    # Insights, from the project page: the figures GET /insights returned.
    driver.get(f"{base_url}/ui/#/projects/{project}")
    wait(driver).until(lambda d: d.find_element(By.ID, "insights-link")).click()
    wait(driver).until(lambda d: d.find_element(By.ID, "pipeline-runs"))
    _check_insights(driver, insights)
    screens.take(driver, "4-insights")
    Select(driver.find_element(By.ID, "insights-window")).select_by_value("1d")
    wait(driver).until(lambda d: "window=1d" in d.current_url)
    wait(driver).until(
        lambda d: d.find_element(By.ID, "pipeline-runs").text == str(insights["pipeline"]["runs"])
    )
    assert console_errors(driver) == []
    return key


def _check_insights(driver: Chrome, insights: Any) -> None:
    def value(element_id: str) -> float | None:
        raw = driver.find_element(By.ID, element_id).get_attribute("data-value")
        return float(raw) if raw else None

    dora, pipe = insights["dora"], insights["pipeline"]
    assert value("dora-deployments") == dora["deployments"]
    assert value("dora-frequency") == dora["deployment_frequency_per_day"]
    assert value("dora-lead-time") == dora["lead_time_p50_s"]
    assert value("dora-failure-rate") == dora["change_failure_rate"]
    assert value("pipeline-runs") == pipe["runs"]
    assert driver.find_element(By.ID, "pipeline-runs").text == "2"
    assert value("pipeline-success") == pipe["success_rate"] == 0.0
    assert driver.find_element(By.ID, "pipeline-success").text == "0%"
    assert value("pipeline-flaky") == pytest.approx(pipe["flaky_rate"])
    assert driver.find_element(By.ID, "pipeline-flaky").text == f"{round(pipe['flaky_rate'] * 100, 1):g}%"
    [stage] = pipe["stages"]
    row = driver.find_element(By.CSS_SELECTOR, '#stage-table tr[data-stage="unit"]')
    p50, p95 = (
        float(td.get_attribute("data-value") or "nan") for td in row.find_elements(By.CSS_SELECTOR, "td")[:2]
    )
    assert (p50, p95) == (stage["duration_p50_s"], stage["duration_p95_s"])
    bars = driver.find_elements(By.CSS_SELECTOR, "#stage-chart rect.bar")
    assert [b.get_attribute("data-series") for b in bars] == ["p50", "p95"]
    assert float(bars[0].get_attribute("width") or 0) <= float(bars[1].get_attribute("width") or 0)


def _viewer_flow(driver: Chrome, base_url: str, viewer: User, run_id: str, screens: Screens) -> None:
    driver.find_element(By.ID, "sign-out").click()
    wait(driver).until(lambda d: d.find_element(By.ID, "email"))
    sign_in(driver, base_url, viewer)
    driver.get(f"{base_url}/ui/#/runs/{run_id}/tests")
    wait(driver).until(
        lambda d: len(_rows(d)) == 3 and _rows(d)[0].get_attribute("data-quarantined") == "true"
    )
    assert "quarantined" in _rows(driver)[0].find_element(By.CSS_SELECTOR, ".test-status").text
    assert driver.find_elements(By.CSS_SELECTOR, "#tests button") == []
    assert "Quarantine" not in driver.find_element(By.CSS_SELECTOR, "#tests thead").text
    screens.take(driver, "5-viewer-tests")
    assert console_errors(driver) == []


@pytest.mark.timeout(180)
async def test_a_maintainer_quarantines_a_failure_from_the_results_and_follows_coverage_and_insights(
    live_comet: LiveComet, browser: Chrome, screens: Screens, tmp_path: Path
) -> None:
    repo, _ = make_repo(tmp_path / "repo", {".comet.yml": pipeline(tmp_path / "counter")})
    project = await add_project(live_comet.cluster.sessions, str(repo), name="ui-results")
    maintainer = await live_comet.add_user(project, "maintainer")
    viewer = await live_comet.add_user(project, "viewer")
    live_comet.start_runners()
    cluster = live_comet.cluster
    env = process_env(
        cluster.common, analytics_flush_interval="0.2", analytics_data_dir=str(cluster.root / "analytics")
    )
    cluster.procs.append(CometProcess(["analytics"], env, cluster.root / "analytics.log").start())
    try:
        async with httpx.AsyncClient(base_url=live_comet.base_url, timeout=10) as client:
            rest = await Rest.login(client, maintainer)
            await rest.finished_run(project)
            last = await rest.finished_run(project)

            async def counted() -> Any:
                found = await rest.get(f"/projects/{project}/insights?window=7d")
                return found if found["pipeline"]["runs"] == 2 and found["pipeline"]["stages"] else None

            insights = await until(counted, timeout_s=60, what="comet analytics to count both runs")
            key = await asyncio.to_thread(
                _maintainer_flow, browser, live_comet.base_url, maintainer, project, last, insights, screens
            )
            held = await rest.get(f"/projects/{project}/tests/quarantine")
            assert [q["key"] for q in held["data"]] == [key]
            assert [q["name"] for q in held["data"]] == ["test_fails"]
            await asyncio.to_thread(_viewer_flow, browser, live_comet.base_url, viewer, last, screens)
    except Exception as exc:
        screens.take(browser, "failure")
        raise AssertionError(f"{exc}\n{live_comet.logs()}") from exc
    assert len(screens.taken) >= 5
