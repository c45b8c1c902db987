"""Commit status requests as each host documents them, and the description they carry."""

from __future__ import annotations

import pytest

from orchestrator.commit_status import (
    MAX_DESCRIPTION,
    auth_headers,
    backoff_s,
    describe,
    describe_tests,
    status_request,
)
from schemas.api.tests import ResultSummary
from schemas.states import RunStatus

SHA = "7638417db6d59f3c431d3e1f261cc637155684cd"


def test_github_gets_a_statuses_post_with_its_state_words() -> None:
    r = status_request(
        "github",
        api_url=None,
        repo="octo/hello",
        sha=SHA,
        status=RunStatus.FAILED,
        context="comet/ci",
        target_url="http://c/runs/1",
        description="Failed: stage x failed",
    )
    assert r.url == f"https://api.github.com/repos/octo/hello/statuses/{SHA}"
    assert r.json == {
        "state": "failure",
        "target_url": "http://c/runs/1",
        "description": "Failed: stage x failed",
        "context": "comet/ci",
    }


def test_gitlab_gets_the_project_path_url_encoded_and_the_state_as_parameters() -> None:
    r = status_request(
        "gitlab",
        api_url="https://git.example.com/api/v4/",
        repo="group/sub/app",
        sha=SHA,
        status=RunStatus.RUNNING,
        context="comet/ci",
        target_url="u",
        description="d",
    )
    assert r.url == f"https://git.example.com/api/v4/projects/group%2Fsub%2Fapp/statuses/{SHA}"
    assert r.params["state"] == "running"
    assert r.json is None


def test_bitbucket_gets_a_build_status_keyed_by_context() -> None:
    r = status_request(
        "bitbucket",
        api_url=None,
        repo="acme/widgets",
        sha=SHA,
        status=RunStatus.CANCELLED,
        context="comet/ci",
        target_url="u",
        description="d",
    )
    assert r.url == f"https://api.bitbucket.org/2.0/repositories/acme/widgets/commit/{SHA}/statuses/build"
    assert r.json is not None
    assert (r.json["key"], r.json["state"]) == ("comet/ci", "STOPPED")


@pytest.mark.parametrize(
    ("provider", "header"),
    [("github", "Authorization"), ("bitbucket", "Authorization"), ("gitlab", "PRIVATE-TOKEN")],
)
def test_each_host_gets_the_token_in_its_own_header(provider: str, header: str) -> None:
    assert header in auth_headers(provider, "t")


def test_descriptions_are_cut_to_what_hosts_accept() -> None:
    r = status_request(
        "github",
        api_url=None,
        repo="o/r",
        sha=SHA,
        status=RunStatus.FAILED,
        context="c",
        target_url="u",
        description="x" * 500,
    )
    assert r.json is not None
    assert len(r.json["description"]) == 140


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_s(30) == 300


def test_an_unknown_provider_gets_no_request() -> None:
    with pytest.raises(KeyError):
        status_request(
            "local",
            api_url=None,
            repo="r",
            sha=SHA,
            status=RunStatus.FAILED,
            context="c",
            target_url="u",
            description="d",
        )


def _summary(**counts: int) -> ResultSummary:
    return ResultSummary(**counts)


@pytest.mark.parametrize(
    ("counts", "text"),
    [
        (
            {"total": 1204, "passed": 1198, "failed": 3, "flaky": 1, "quarantined": 2, "skipped": 3},
            "3 failed, 1 flaky, 2 quarantined of 1,204 tests",
        ),
        ({"total": 10, "passed": 8, "failed": 1, "errored": 1}, "1 failed, 1 errored of 10 tests"),
        ({"total": 1, "failed": 1}, "1 failed of 1 test"),
        ({"total": 1204, "passed": 1204}, "all 1,204 tests passed"),
        ({"total": 1, "passed": 1}, "1 test passed"),
        ({"total": 12, "passed": 10, "skipped": 2}, "10 passed, 2 skipped of 12 tests"),
        ({"total": 3, "passed": 3, "flaky": 1}, "1 flaky of 3 tests"),
        ({"total": 0}, None),
    ],
)
def test_the_test_summary_in_a_few_words(counts: dict[str, int], text: str | None) -> None:
    assert describe_tests(_summary(**counts)) == text


def test_no_summary_no_words() -> None:
    assert describe_tests(None) is None


def test_a_description_says_the_state_why_and_the_tests() -> None:
    tests = _summary(total=1204, passed=1200, failed=3, quarantined=1)
    assert describe(RunStatus.RUNNING) == "Running"
    assert (
        describe(RunStatus.SUCCEEDED, None, _summary(total=5, passed=5)) == "Succeeded — all 5 tests passed"
    )
    assert describe(RunStatus.FAILED, "stage 'unit' failed (exit code 1)", tests) == (
        "Failed: stage 'unit' failed (exit code 1) — 3 failed, 1 quarantined of 1,204 tests"
    )
    assert describe(RunStatus.FAILED, "stage 'unit' failed") == "Failed: stage 'unit' failed"
    assert describe(RunStatus.CANCELLED, None, _summary(total=0)) == "Cancelled"


def test_a_long_reason_is_shortened_so_the_test_summary_survives() -> None:
    tests = _summary(total=1204, failed=3, flaky=1, quarantined=2)
    text = describe(RunStatus.FAILED, "x " * 200, tests)
    assert len(text) == MAX_DESCRIPTION
    assert text.startswith("Failed: x x")
    assert text.endswith("… — 3 failed, 1 flaky, 2 quarantined of 1,204 tests")
    assert len(describe(RunStatus.FAILED, "y" * 500)) == MAX_DESCRIPTION
