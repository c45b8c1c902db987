"""Git access: the orchestrator resolves refs and reads `.comet.yml`; workers check out commits.

Every repository is kept as one bare mirror per URL in a cache directory, guarded by a file lock
so several processes can share the cache. Git always runs as an argv list (never through a shell)
with `--` or `--end-of-options` before anything that came from outside, without terminal prompts
and without the system git config. Names that reach git are validated first (`validate_ref`,
`validate_sha`, `validate_path`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FULL_SHA_LENGTHS = (40, 64)  # SHA-1 and SHA-256 object names
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_MAX_REF_LEN = 1024
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_STDERR_LINES = 5
# Held while looking at a mirror; polled so that a cancelled task never leaves a lock behind.
_LOCK_POLL_S = 0.05


class GitError(ValueError):
    """A bad ref, sha or path, or something git could not find. Not retriable: the input is wrong."""

    retriable = False


class GitCommandError(GitError):
    """A git command failed or timed out (network, remote down, disk). Retriable."""

    retriable = True

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def validate_ref(ref: str) -> str:
    """Return `ref` if it is a valid full ref (`refs/heads/x`) or short name (`x`, `v1.2`); else GitError.

    The rules of `git check-ref-format`, plus: no leading `-` (it would read as an option).
    """
    if not ref:
        raise GitError("ref is empty")
    if len(ref) > _MAX_REF_LEN:
        raise GitError(f"ref is longer than {_MAX_REF_LEN} characters")
    bad = _REF_FORBIDDEN.search(ref)
    if bad:
        raise GitError(f"ref {ref!r} contains the forbidden character {bad.group()!r}")
    checks = (
        (ref.startswith("-"), "starts with '-'"),
        (ref.startswith("/"), "starts with '/'"),
        (ref.endswith("/"), "ends with '/'"),
        (ref.endswith("."), "ends with '.'"),
        ("//" in ref, "contains '//'"),
        (".." in ref, "contains '..'"),
        ("@{" in ref, "contains '@{'"),
        (ref == "@", "is '@'"),
        (any(part.startswith(".") for part in ref.split("/")), "has a component starting with '.'"),
        (any(part.endswith(".lock") for part in ref.split("/")), "has a component ending with '.lock'"),
    )
    for failed, reason in checks:
        if failed:
            raise GitError(f"ref {ref!r} {reason}")
    return ref


def validate_sha(sha: str) -> str:
    """Return the object name in lower case if it is 4 to 64 hex digits, else raise GitError."""
    if not _SHA.match(sha):
        raise GitError(f"{sha!r} is not a commit sha (4 to 64 hex digits)")
    return sha.lower()


def validate_path(path: str) -> str:
    """A relative path inside the repository: no leading '/', no empty, '.' or '..' components."""
    parts = path.split("/")
    if not path or "\x00" in path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise GitError(f"{path!r} is not a plain relative path inside the repository")
    return path


def redact_url(url: str) -> str:
    """The URL without user:password@, for messages and logs."""
    return _USERINFO.sub("***@", url)


_PRESENT_MAX = 100_000


def _borrowing_repository(dest: Path, mirror: Path, sha: str) -> None:
    """The `.git` of a checkout at `dest` that borrows every object from `mirror`, HEAD at `sha`."""
    git = dest / ".git"
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info"):
        (git / sub).mkdir(parents=True, exist_ok=True)
    (git / "objects" / "info" / "alternates").write_text(f"{mirror / 'objects'}\n")
    (git / "HEAD").write_text(f"{sha}\n")
    origin = str(mirror).replace("\\", "\\\\").replace('"', '\\"')
    (git / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = true\n"
        f'[remote "origin"]\n\turl = "{origin}"\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
    )


class MirrorCache:
    """Bare mirrors under `root/<sha256(url)[:16]>.git`, shared by every process that uses `root`."""

    def __init__(self, root: Path, *, command_timeout_s: float = 600.0) -> None:
        self.root = root
        self._timeout = command_timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        # Commits seen in a mirror: a mirror only gains objects, so a stage on a known commit
        # starts no `cat-file` (bounded: cleared when it grows past _PRESENT_MAX).
        self._present: set[tuple[Path, str]] = set()

    def _remember(self, mirror: Path, sha: str) -> None:
        if len(self._present) >= _PRESENT_MAX:
            self._present.clear()
        self._present.add((mirror, sha))

    def mirror_path(self, repo_url: str) -> Path:
        return self.root / f"{_key(repo_url)}.git"

    async def ensure(self, repo_url: str, want: str | None = None) -> Path:
        """The mirror of `repo_url`, cloned if missing; fetched if `want` is absent or None (refresh)."""
        _check_url(repo_url)
        mirror = self.mirror_path(repo_url)
        if want is not None:
            want = validate_sha(want)
            if (mirror, want) in self._present or await self._has_commit(mirror, want):
                self._remember(mirror, want)
                return mirror
        async with self._locked(repo_url):
            if not mirror.exists():
                await self._clone(repo_url, mirror)
            elif want is None or not await self._has_commit(mirror, want):
                # Re-checked under the lock: another process may have fetched it meanwhile.
                await self._fetch(mirror)
            if want is not None and not await self._has_commit(mirror, want):
                if len(want) in _FULL_SHA_LENGTHS:
                    # A commit no ref points at (force-pushed away, a PR merge): hosts serve it by id.
                    with contextlib.suppress(GitCommandError):
                        await self._git("-C", str(mirror), "fetch", "--quiet", "origin", want)
                if not await self._has_commit(mirror, want):
                    raise GitError(f"commit {want} not found in {redact_url(repo_url)}")
        return mirror

    async def resolve(self, repo_url: str, ref: str, *, refresh: bool = True) -> str:
        """The full commit sha `ref` names: `refs/heads/x`, `refs/tags/v1`, a branch or tag name, or a sha.

        A full-length sha already in the mirror is answered without the network. Otherwise the
        mirror is fetched first when `refresh` (a branch moves: a stale answer would be wrong), or
        only when the ref is unknown when not.
        """
        validate_ref(ref)
        mirror = self.mirror_path(repo_url)
        if len(ref) in _FULL_SHA_LENGTHS and _SHA.match(ref):
            await self.ensure(repo_url, ref)  # raises if the commit is nowhere to be found
            sha = await self._rev_parse(mirror, ref)
            if sha is None:
                raise GitError(f"{ref} in {redact_url(repo_url)} is not a commit")
            return sha
        if refresh:
            await self.ensure(repo_url)
        else:
            await self._ensure_cloned(repo_url)
            sha = await self._rev_parse(mirror, ref)
            if sha is not None:
                return sha
            await self.ensure(repo_url)
        sha = await self._rev_parse(mirror, ref)
        if sha is None:
            raise GitError(f"ref {ref} not found in {redact_url(repo_url)}")
        return sha

    async def read_file(
        self, repo_url: str, sha: str, path: str, *, max_bytes: int = 1024 * 1024
    ) -> bytes | None:
        """The content of `path` at commit `sha`, or None if there is no such file.

        GitError when it is not a regular file (a directory, symlink, submodule) or exceeds `max_bytes`.
        """
        sha = validate_sha(sha)
        validate_path(path)
        mirror = await self.ensure(repo_url, sha)
        listing = await self._git(
            "--literal-pathspecs", "-C", str(mirror), "ls-tree", "-z", "-l", "--full-tree", sha, "--", path
        )
        for entry in filter(None, listing.split(b"\x00")):
            meta, _, name = entry.partition(b"\t")
            if name.decode("utf-8", "surrogateescape") != path:
                continue
            mode, kind, oid, size = meta.split()
            if kind != b"blob" or mode == b"120000":
                raise GitError(f"{path} at {sha} is not a regular file")
            if int(size) > max_bytes:
                raise GitError(f"{path} at {sha} is larger than {max_bytes} bytes")
            return await self._git("-C", str(mirror), "cat-file", "blob", oid.decode())
        return None

    async def list_files(self, repo_url: str, sha: str) -> tuple[str, ...]:
        """Every file path at commit `sha` (for `split.files`), in git's order."""
        sha = validate_sha(sha)
        mirror = await self.ensure(repo_url, sha)
        out = await self._git("-C", str(mirror), "ls-tree", "-r", "-z", "--name-only", "--full-tree", sha)
        return tuple(p.decode("utf-8", "surrogateescape") for p in out.split(b"\x00") if p)

    async def changed_paths(self, repo_url: str, before: str, after: str) -> tuple[str, ...]:
        """Files that differ between commits `before` and `after` (for `paths:` filters when a
        webhook payload did not list them)."""
        before, after = validate_sha(before), validate_sha(after)
        mirror = await self.ensure(repo_url, after)
        if not await self._has_commit(mirror, before):
            await self.ensure(repo_url, before)
        out = await self._git(
            "-C", str(mirror), "diff", "--name-only", "-z", "--no-renames", before, after, "--"
        )
        return tuple(p.decode("utf-8", "surrogateescape") for p in out.split(b"\x00") if p)

    async def checkout(self, repo_url: str, sha: str, dest: Path) -> None:
        """A working tree of commit `sha` (detached HEAD) at `dest`, which must not exist or be empty.

        One git process: the repository is written here (what `clone --shared` would make: objects
        borrowed from the mirror through `alternates`, HEAD detached at the commit, `origin` the
        mirror), then `read-tree -u --reset` fills the index and the working tree. A clone and a
        checkout cost about four times as much, and this is on every stage's path.
        """
        sha = validate_sha(sha)
        mirror = await self.ensure(repo_url, sha)
        await asyncio.to_thread(_borrowing_repository, dest, mirror, sha)
        await self._git("-C", str(dest), "read-tree", "-u", "--reset", sha)

    async def _ensure_cloned(self, repo_url: str) -> None:
        _check_url(repo_url)
        mirror = self.mirror_path(repo_url)
        if mirror.exists():
            return
        async with self._locked(repo_url):
            if not mirror.exists():
                await self._clone(repo_url, mirror)

    async def _clone(self, repo_url: str, mirror: Path) -> None:
        # Cloned aside and renamed into place, so a mirror that exists is always complete.
        tmp = self.root / f".tmp-{mirror.stem}-{uuid.uuid4().hex}"
        try:
            await self._git("clone", "--mirror", "--quiet", "--", repo_url, str(tmp))
            tmp.rename(mirror)
        finally:
            if tmp.exists():
                await asyncio.to_thread(shutil.rmtree, tmp, True)

    async def _fetch(self, mirror: Path) -> None:
        args = ("-C", str(mirror), "-c", "gc.autoDetach=false", "fetch", "--prune", "--quiet", "origin")
        try:
            await self._git(*args)
        except GitCommandError as exc:
            if ".lock': File exists" not in exc.stderr:
                raise
            # We hold the cache lock, so a ref lock file can only be left by a git killed mid-fetch.
            _remove_stale_ref_locks(mirror)
            await self._git(*args)

    async def _has_commit(self, mirror: Path, sha: str) -> bool:
        try:  # also False when the mirror does not exist yet
            await self._git("-C", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}")
        except GitCommandError:
            return False
        return True

    async def _rev_parse(self, mirror: Path, ref: str) -> str | None:
        try:
            out = await self._git(
                "-C", str(mirror), "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
            )
        except GitCommandError:
            return None
        return out.decode().strip() or None

    @contextlib.asynccontextmanager
    async def _locked(self, repo_url: str) -> AsyncIterator[None]:
        key = _key(repo_url)
        async with self._locks.setdefault(key, asyncio.Lock()):
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while not _try_flock(fd):
                    await asyncio.sleep(_LOCK_POLL_S)
                await asyncio.to_thread(_remove_tmp_clones, self.root, key)
                yield
            finally:
                os.close(fd)  # releases the flock

    async def _git(self, *args: str) -> bytes:
        return await run_git(*args, timeout_s=self._timeout)


# Git runs in plain `subprocess.Popen`, waited on in this pool: under uvloop an asyncio subprocess
# start costs 5-10 ms of event-loop time, Popen about 1 ms, and a stage starts three git commands.
_GIT_WAITERS = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="git")


async def run_git(*args: str, timeout_s: float = 600.0, cwd: Path | None = None) -> bytes:
    """Run `git ARGS`, return its stdout; GitCommandError with the last lines of stderr on failure."""
    proc = subprocess.Popen(  # noqa: ASYNC220 - deliberate, see _GIT_WAITERS
        ["git", *args],
        cwd=cwd,
        env=_git_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Its own group, so a timeout also stops the ssh or remote helper git started.
        start_new_session=True,
    )
    loop = asyncio.get_running_loop()
    try:
        out, err = await loop.run_in_executor(_GIT_WAITERS, proc.communicate, None, timeout_s)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        # Collect it (and close its pipes) off the loop, also when we are being cancelled.
        await asyncio.shield(loop.run_in_executor(_GIT_WAITERS, proc.communicate))
        if isinstance(exc, subprocess.TimeoutExpired):
            raise GitCommandError(f"git {_describe(args)} timed out after {timeout_s} s") from None
        raise
    if proc.returncode != 0:
        stderr = redact_url(err.decode("utf-8", "replace"))
        raise GitCommandError(
            f"git {_describe(args)} failed (exit {proc.returncode}): {_gist(stderr)}", stderr
        )
    return out


def _gist(stderr: str) -> str:
    # git follows its error lines with advice ("Another git process seems to be running..."):
    # the error lines are what says what went wrong.
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return "\n".join((errors or lines)[-_STDERR_LINES:])


def _git_env() -> dict[str, str]:
    # Variables that point git at another repository or config must not leak in from our caller.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GIT_") or name in ("GIT_SSH", "GIT_SSH_COMMAND")
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        # Never `ext::` (runs a command) or other exotic transports, whatever the URL says.
        GIT_ALLOW_PROTOCOL="file:git:http:https:ssh",
        # Stable English messages: some are matched below.
        LC_ALL="C",
    )
    return env


def _describe(args: tuple[str, ...]) -> str:
    # The subcommand only: the arguments may carry a URL with credentials.
    words = iter(args)
    for arg in words:
        if arg in ("-C", "-c"):
            next(words, None)
        elif not arg.startswith("-"):
            return arg
    return ""


def _key(repo_url: str) -> str:
    return hashlib.sha256(repo_url.encode()).hexdigest()[:16]


def _check_url(repo_url: str) -> None:
    if not repo_url or repo_url.startswith("-") or any(c in repo_url for c in "\x00\n\r"):
        raise GitError(f"{redact_url(repo_url)!r} is not a repository URL")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _remove_tmp_clones(root: Path, key: str) -> None:
    # Left by a process that died mid-clone; only the lock holder may judge them dead.
    for leftover in root.glob(f".tmp-{key}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _remove_stale_ref_locks(mirror: Path) -> None:
    for name in ("packed-refs.lock", "HEAD.lock", "config.lock", "shallow.lock", "FETCH_HEAD.lock"):
        (mirror / name).unlink(missing_ok=True)
    for lock in (mirror / "refs").rglob("*.lock"):
        lock.unlink(missing_ok=True)
