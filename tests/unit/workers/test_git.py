"""Git access on real repositories in tmp_path: ref checks, the mirror cache, resolve, read_file, checkout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.git import (
    GitCommandError,
    GitError,
    MirrorCache,
    redact_url,
    run_git,
    validate_path,
    validate_ref,
    validate_sha,
)

IDENTITY = ("-c", "user.email=dev@example.com", "-c", "user.name=Dev", "-c", "commit.gpgsign=false")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *IDENTITY, *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class Origin:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = path.as_uri()  # file://...
        subprocess.run(["git", "init", "--quiet", "-b", "main", str(path)], check=True)
        self.first = commit(path, {".comet.yml": "name: one\n", "src/app.py": "print(1)\n"}, "first")
        git(path, "tag", "-a", "v1", "-m", "release one")
        self.second = commit(path, {".comet.yml": "name: two\n", "README": "hi\n"}, "second")


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path / "origin")


@pytest.fixture
def cache(tmp_path: Path) -> MirrorCache:
    return MirrorCache(tmp_path / "cache")


@pytest.mark.parametrize(
    "ref", ["main", "refs/heads/main", "refs/tags/v1.2.3", "release/2024-01", "feature/a_b-c", "HEAD", "a.b"]
)
def test_well_formed_refs_are_accepted(ref: str) -> None:
    assert validate_ref(ref) == ref


def test_ref_starting_with_dash_is_refused() -> None:
    with pytest.raises(GitError, match="starts with '-'"):
        validate_ref("--upload-pack=touch")


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("", "empty"),
        ("/main", "starts with '/'"),
        ("main/", "ends with '/'"),
        ("main.", "ends with '.'"),
        ("a//b", "contains '//'"),
        ("a..b", "contains '..'"),
        ("main@{1}", "contains '@{'"),
        ("@", "is '@'"),
        ("refs/heads/.hidden", "component starting with '.'"),
        ("refs/heads/x.lock", "component ending with '.lock'"),
        ("x.lock/y", "component ending with '.lock'"),
        ("a b", "forbidden character"),
        ("a\tb", "forbidden character"),
        ("a\x7fb", "forbidden character"),
        ("a~1", "forbidden character"),
        ("a^", "forbidden character"),
        ("a:b", "forbidden character"),
        ("a?", "forbidden character"),
        ("a*", "forbidden character"),
        ("a[b", "forbidden character"),
        ("a\\b", "forbidden character"),
        ("x" * 1025, "longer than"),
    ],
)
def test_malformed_refs_are_refused_with_the_reason(ref: str, reason: str) -> None:
    with pytest.raises(GitError, match=reason.replace("[", r"\[").replace("*", r"\*").replace("?", r"\?")):
        validate_ref(ref)


def test_sha_is_normalised_to_lower_case() -> None:
    assert validate_sha("ABCDEF12") == "abcdef12"
    assert validate_sha("a" * 64) == "a" * 64


@pytest.mark.parametrize("sha", ["abc", "a" * 65, "xyz123", "-abcdef", "abcd^", ""])
def test_non_hex_or_badly_sized_shas_are_refused(sha: str) -> None:
    with pytest.raises(GitError):
        validate_sha(sha)


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/", "a\x00b"])
def test_paths_leaving_or_bending_the_repository_are_refused(path: str) -> None:
    with pytest.raises(GitError):
        validate_path(path)


def test_credentials_are_removed_from_urls() -> None:
    assert redact_url("https://bot:s3cr3t@git.example.com/a/b.git") == "https://***@git.example.com/a/b.git"
    assert redact_url("/srv/repo.git") == "/srv/repo.git"


async def test_resolve_gives_the_full_sha_of_branches_tags_and_shas(
    origin: Origin, cache: MirrorCache
) -> None:
    assert await cache.resolve(origin.url, "main") == origin.second
    assert await cache.resolve(origin.url, "refs/heads/main") == origin.second
    # An annotated tag is peeled to its commit.
    assert await cache.resolve(origin.url, "v1") == origin.first
    assert await cache.resolve(origin.url, "refs/tags/v1") == origin.first
    assert await cache.resolve(origin.url, origin.first) == origin.first
    assert await cache.resolve(origin.url, origin.first[:10]) == origin.first


async def test_resolve_sees_a_branch_that_moved_after_the_mirror_was_made(
    origin: Origin, cache: MirrorCache
) -> None:
    assert await cache.resolve(origin.url, "main") == origin.second
    third = commit(origin.path, {"c": "3\n"}, "third")
    assert await cache.resolve(origin.url, "main") == third


async def test_resolve_without_refresh_fetches_only_for_unknown_refs(
    origin: Origin, cache: MirrorCache
) -> None:
    await cache.ensure(origin.url)
    git(origin.path, "branch", "feature")
    third = commit(origin.path, {"c": "3\n"}, "third")
    assert await cache.resolve(origin.url, "main", refresh=False) == origin.second  # known: as mirrored
    assert await cache.resolve(origin.url, "feature", refresh=False) == origin.second  # unknown: fetched
    assert await cache.resolve(origin.url, "main", refresh=False) == third


async def test_unknown_ref_is_reported_with_the_repository(origin: Origin, cache: MirrorCache) -> None:
    with pytest.raises(GitError, match=f"ref nope not found in {origin.url}") as caught:
        await cache.resolve(origin.url, "nope")
    assert not caught.value.retriable


async def test_read_file_returns_the_content_at_that_commit(origin: Origin, cache: MirrorCache) -> None:
    assert await cache.read_file(origin.url, origin.first, ".comet.yml") == b"name: one\n"
    assert await cache.read_file(origin.url, origin.second, ".comet.yml") == b"name: two\n"
    assert await cache.read_file(origin.url, origin.first, "src/app.py") == b"print(1)\n"


async def test_read_file_of_a_missing_file_is_none(origin: Origin, cache: MirrorCache) -> None:
    assert await cache.read_file(origin.url, origin.first, "README") is None
    assert await cache.read_file(origin.url, origin.first, "src/missing.py") is None
    assert await cache.read_file(origin.url, origin.first, "*.yml") is None


async def test_read_file_of_a_directory_or_an_oversized_file_is_an_error(
    origin: Origin, cache: MirrorCache
) -> None:
    with pytest.raises(GitError, match="not a regular file"):
        await cache.read_file(origin.url, origin.first, "src")
    with pytest.raises(GitError, match="larger than 4 bytes"):
        await cache.read_file(origin.url, origin.first, ".comet.yml", max_bytes=4)


async def test_read_file_refuses_a_path_outside_the_repository(origin: Origin, cache: MirrorCache) -> None:
    with pytest.raises(GitError, match="plain relative path"):
        await cache.read_file(origin.url, origin.first, "../origin/.comet.yml")


async def test_checkout_from_file_url_gives_the_commit_tree(
    origin: Origin, cache: MirrorCache, tmp_path: Path
) -> None:
    dest = tmp_path / "work"
    await cache.checkout(origin.url, origin.first, dest)
    assert sorted(p.name for p in dest.iterdir() if p.name != ".git") == [".comet.yml", "src"]
    assert (dest / ".comet.yml").read_text() == "name: one\n"
    assert git(dest, "rev-parse", "HEAD") == origin.first
    assert git(dest, "status", "--porcelain") == ""


async def test_checkout_from_a_local_path_into_an_empty_directory(
    origin: Origin, cache: MirrorCache, tmp_path: Path
) -> None:
    dest = tmp_path / "work"
    dest.mkdir()
    await cache.checkout(str(origin.path), origin.second, dest)
    assert (dest / "README").read_text() == "hi\n"
    assert git(dest, "rev-parse", "HEAD") == origin.second
    # A real repository a stage can ask about: history through the borrowed objects, a clean tree.
    assert git(dest, "log", "--format=%H") == f"{origin.second}\n{origin.first}"
    assert git(dest, "status", "--porcelain") == ""
    assert git(dest, "config", "remote.origin.url") == str(cache.mirror_path(str(origin.path)))


async def test_commit_pushed_after_the_mirror_was_made_is_fetched_on_demand(
    origin: Origin, cache: MirrorCache, tmp_path: Path
) -> None:
    await cache.ensure(origin.url)
    third = commit(origin.path, {"new.txt": "new\n"}, "third")
    await cache.checkout(origin.url, third, tmp_path / "work")
    assert (tmp_path / "work" / "new.txt").read_text() == "new\n"


async def test_unknown_commit_is_an_error_naming_it(origin: Origin, cache: MirrorCache) -> None:
    with pytest.raises(GitError, match=f"commit {'0' * 40} not found"):
        await cache.checkout(origin.url, "0" * 40, Path("/nonexistent/never-created"))


async def test_unreachable_repository_fails_with_gits_own_message(tmp_path: Path, cache: MirrorCache) -> None:
    with pytest.raises(GitCommandError, match="does not exist") as caught:
        await cache.ensure(str(tmp_path / "no-such-repo"))
    assert caught.value.retriable
    assert list(cache.root.glob(".tmp-*")) == []


async def test_credentials_in_the_url_never_appear_in_errors(cache: MirrorCache) -> None:
    with pytest.raises(GitCommandError) as caught:
        await cache.ensure("https://bot:s3cr3t-token@127.0.0.1:1/repo.git")
    assert "s3cr3t-token" not in str(caught.value)
    assert "s3cr3t-token" not in caught.value.stderr


async def test_command_running_transport_is_refused(tmp_path: Path, cache: MirrorCache) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(GitCommandError):
        await cache.ensure(f"ext::sh -c touch% {marker}")
    assert not marker.exists()


async def test_url_that_looks_like_an_option_is_refused(cache: MirrorCache) -> None:
    with pytest.raises(GitError, match="not a repository URL"):
        await cache.ensure("--upload-pack=touch /tmp/pwned")


async def test_stale_ref_lock_left_by_a_killed_fetch_is_cleared(origin: Origin, cache: MirrorCache) -> None:
    mirror = await cache.ensure(origin.url)
    (mirror / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (mirror / "refs" / "heads" / "main.lock").write_text("")
    third = commit(origin.path, {"c": "3\n"}, "third")
    assert await cache.resolve(origin.url, "main") == third


async def test_concurrent_tasks_share_one_mirror(origin: Origin, cache: MirrorCache) -> None:
    paths = await asyncio.gather(*(cache.ensure(origin.url, origin.second) for _ in range(5)))
    assert len(set(paths)) == 1
    assert git(paths[0], "rev-parse", "main") == origin.second
    assert [p.name for p in cache.root.glob("*.git")] == [paths[0].name]


async def test_concurrent_processes_share_one_mirror(origin: Origin, tmp_path: Path) -> None:
    program = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from workers.git import MirrorCache
        cache = MirrorCache(Path(sys.argv[1]))
        print(asyncio.run(cache.resolve(sys.argv[2], "main")))
        """
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            program,
            str(tmp_path / "cache"),
            origin.url,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[3],
        )
        for _ in range(4)
    ]
    outputs = [(await proc.communicate())[0].decode().strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert outputs == [origin.second] * 4
    assert len(list((tmp_path / "cache").glob("*.git"))) == 1


async def test_git_command_over_its_time_limit_is_stopped() -> None:
    # A shell alias stands in for a hung network fetch.
    with pytest.raises(GitCommandError, match=r"timed out after 0\.2 s"):
        await run_git("-c", "alias.hang=!sleep 30", "hang", timeout_s=0.2)


async def test_changed_paths_lists_the_files_between_two_commits(tmp_path: Path) -> None:
    repo = tmp_path / "changes"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    run = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=T"]
    (repo / "a.txt").write_text("a")
    subprocess.run([*run, "add", "-A"], check=True)
    subprocess.run([*run, "commit", "-qm", "one"], check=True)
    before = subprocess.run(
        [*run, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (repo / "src").mkdir()
    (repo / "src" / "b.py").write_text("b")
    (repo / "a.txt").write_text("changed")
    subprocess.run([*run, "add", "-A"], check=True)
    subprocess.run([*run, "commit", "-qm", "two"], check=True)
    after = subprocess.run(
        [*run, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()

    paths = await MirrorCache(tmp_path / "cache").changed_paths(str(repo), before, after)

    assert sorted(paths) == ["a.txt", "src/b.py"]
