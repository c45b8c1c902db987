"""Log in, trigger the demo project's pipeline, and follow the run to the end (used by scripts/demo.sh)."""

from __future__ import annotations

import sys
import time

import httpx


def main(base: str, email: str, password: str, project_id: str) -> int:
    with httpx.Client(base_url=f"{base}/api/v1", timeout=10) as client:
        login = client.post("/auth/login", json={"email": email, "password": password})
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        started = client.post(f"/projects/{project_id}/runs", json={"ref": "refs/heads/main"})
        started.raise_for_status()
        run_id = started.json()["run_id"]
        print(f"triggered run {run_id} ({started.status_code} {started.json()['status']})")
        while True:
            run = client.get(f"/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
        print(f"run {run['status']}" + (f": {run['failure_reason']}" if run.get("failure_reason") else ""))
        for stage in run["stages"]:
            print(
                f"  {stage['name']:<22} {stage['status']:<10} exit={stage['exit_code']!s:<4} "
                f"started={stage['started_at']}  finished={stage['finished_at']}"
            )
        tests = client.get(f"/runs/{run_id}/tests").json()["summary"]
        print(
            f"tests: {tests['total']} ({tests['passed']} passed, {tests['failed']} failed, "
            f"{tests['skipped']} skipped, {tests['flaky']} flaky, {tests['quarantined']} quarantined)"
        )
        flaky = client.get(f"/runs/{run_id}/tests/cases", params={"status": "passed"}).json()["data"]
        for case in (c for c in flaky if c["flaky"]):
            print(
                f"  flaky: {case['classname']}.{case['name']} (failed, then passed on attempt {case['attempt']})"
            )
        overall = client.get(f"/runs/{run_id}/coverage").json()["overall"]
        if overall:
            print(f"coverage: {overall['line_rate']} % of lines, {overall['branch_rate']} % of branches")
        print(f"logs: curl -H 'Authorization: Bearer …' {base}/api/v1/runs/{run_id}/stages/tests/logs")
        return 0 if run["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
