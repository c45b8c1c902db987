"""Commit status requests as each host documents them."""

from __future__ import annotations

import pytest

from orchestrator.commit_status import auth_headers, backoff_s, status_request
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
