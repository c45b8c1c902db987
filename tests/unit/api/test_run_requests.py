"""What a run trigger accepts: refs git would take (short branch names normalised), commit shas,
and environment-style variables; everything else is refused with the reason."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from schemas.api.projects import ProjectCreate
from schemas.api.runs import MAX_VARIABLE_BYTES, RunCreate, check_variables, normalise_ref


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("main", "refs/heads/main"),
        ("feature/login-page", "refs/heads/feature/login-page"),
        ("release-1.2", "refs/heads/release-1.2"),
        ("refs/heads/main", "refs/heads/main"),
        ("refs/tags/v1.0.0", "refs/tags/v1.0.0"),
    ],
)
def test_good_refs_are_accepted_and_short_names_become_branches(given: str, expected: str) -> None:
    assert normalise_ref(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("-main", "'-'"),
        ("--upload-pack=evil", "'-'"),
        ("main..other", "'..'"),
        ("has space", "spaces"),
        ("tab\there", "control"),
        ("nul\x00", "control"),
        ("main~1", "'~'"),
        ("main^", "'^'"),
        ("a:b", "':'"),
        ("what?", "'?'"),
        ("glob*", "'*'"),
        ("[x", "'['"),
        ("back\\slash", "'\\\\'"),
        ("refs/remotes/origin/main", "refs/heads"),
        ("refs/heads/", "'/'"),
        ("refs/heads", "refs/heads"),
        ("ends/", "'/'"),
        ("x.lock", ".lock"),
        ("a/.hidden", "'.'"),
        ("a@{1}", "'@{'"),
        ("x" * 256, "255"),
    ],
)
def test_bad_refs_are_refused_with_the_reason(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason.strip("'"))):
        normalise_ref(given)


@pytest.mark.parametrize("sha", ["abc1234", "A" * 40, "0123456789abcdef" * 4])
def test_shas_of_7_to_64_hex_digits_are_accepted_in_lower_case(sha: str) -> None:
    assert RunCreate(ref="main", sha=sha).sha == sha.lower()


@pytest.mark.parametrize("sha", ["abc123", "g" * 40, "a" * 65, "abc1234 "])
def test_other_shas_are_refused(sha: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RunCreate(ref="main", sha=sha)
    assert caught.value.errors()[0]["loc"] == ("sha",)


def test_variables_like_environment_names_are_accepted() -> None:
    ok = {"A": "1", "_private": "", "name_2": "x" * MAX_VARIABLE_BYTES}
    assert check_variables(ok) == ok


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"1ABC": "x"}, "must match"),
        ({"with-dash": "x"}, "must match"),
        ({"": "x"}, "must match"),
        ({"COMET_RUN_ID": "x"}, "reserved"),
        ({"comet_sneaky": "x"}, "reserved"),
        ({"BIG": "é" * (MAX_VARIABLE_BYTES // 2 + 1)}, "longer than"),
        ({"NUL": "a\x00b"}, "NUL"),
        ({f"V{i}": "x" for i in range(101)}, "at most 100"),
    ],
)
def test_bad_variables_are_refused_naming_the_variable(variables: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_variables(variables)


def test_variable_values_must_be_strings() -> None:
    with pytest.raises(ValidationError):
        RunCreate.model_validate({"ref": "main", "variables": {"A": 1}})


def test_unknown_trigger_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        RunCreate.model_validate({"ref": "main", "branch": "main"})


def test_hosted_projects_must_name_their_provider_repository() -> None:
    with pytest.raises(ValidationError) as caught:
        ProjectCreate(name="demo", repo_url="https://github.com/acme/demo.git", provider="github")
    assert caught.value.errors()[0]["loc"] == ("provider_repo",)
    local = ProjectCreate(name="demo", repo_url="/srv/git/demo")
    assert local.provider == "local"
    assert local.provider_repo is None


@pytest.mark.parametrize("url", ["-oProxyCommand=evil", "ftp://x/y", "relative/path", "https://x/ y"])
def test_repository_urls_git_could_misread_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        ProjectCreate(name="demo", repo_url=url)
