"""`comet demo seed`: the demo `make run` sets up — an admin user, a local git repository whose
`.comet.yml` fans out to parallel stages (among them a real pytest suite with reports, coverage
and a flaky test, and a split suite) and fans in, and a project backed by it. Idempotent."""

from __future__ import annotations

import asyncio
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from api.auth.passwords import hash_password
from config.settings import ApiSettings
from db.crypto import SecretBox
from db.engine import make_engine, make_sessionmaker
from db.models import Membership, Project
from db.repositories import users
from db.repositories.projects import add_webhook_secret
from schemas.roles import Role

DEMO_EMAIL = "admin@comet.local"
DEMO_PROJECT = "demo"
DEMO_PROVIDER_REPO = "comet/demo"
DEMO_PIPELINE = """\
# The demo pipeline: one stage, then six in parallel (a matrix, a real pytest suite with a
# flaky test and coverage, a split end-to-end suite in two legs), then a fan-in.
name: demo
stages:
  checkout-info:
    run: |
      echo "run $COMET_RUN_ID of $COMET_PROJECT at $COMET_SHA"
      ls -la
  lint:
    needs: [checkout-info]
    run: |
      echo "linting..."; sleep 2; echo "lint ok"
  compat:
    needs: [checkout-info]
    matrix: {python: ["3.11", "3.12"]}
    run: |
      echo "compatibility checks for python $MATRIX_PYTHON"; sleep 2; echo "ok"
  tests:
    needs: [checkout-info]
    type: test
    retry: 1                              # test_flaky fails on attempt 1: flagged flaky
    run: @PYTHON@ -m pytest -q -p no:cacheprovider --junitxml=reports/junit.xml --cov=calc --cov-branch --cov-report=xml:coverage.xml tests/unit
    reports: {junit: "reports/*.xml", coverage: coverage.xml}
    coverage: {min: 60}
  e2e:
    needs: [checkout-info]
    type: test
    parallel: 2                           # e2e[1/2], e2e[2/2]
    split: {files: "tests/e2e/test_*.py", by: timings}
    run: @PYTHON@ -m pytest -q -p no:cacheprovider --junitxml=reports/junit.xml $(cat "$COMET_TEST_FILES")
    reports: {junit: "reports/*.xml"}
  build:
    needs: [checkout-info]
    run: |
      echo "building..."; sleep 2; echo "artifact built"
  package:
    needs: [lint, compat, tests, e2e, build]
    run: echo "all parallel stages done; packaging $COMET_REF"
"""
DEMO_FILES = {
    "README.md": "A demo repository for Comet.\n",
    "calc.py": """\
def add(a, b):
    return a + b


def divide(a, b):
    if b == 0:
        raise ZeroDivisionError("b must not be 0")
    return a / b


def unused(x):
    return x * 2
""",
    "tests/__init__.py": "",
    "tests/unit/__init__.py": "",
    "tests/unit/test_calc.py": """\
import os

import pytest

from calc import add, divide


def test_add():
    assert add(2, 3) == 5


def test_divide():
    assert divide(6, 3) == 2


def test_divide_by_zero():
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)


@pytest.mark.skip(reason="needs a GPU")
def test_gpu():
    pass


def test_flaky():
    # Fails on the stage's first attempt, passes on the retry: Comet flags it flaky.
    assert os.environ.get("COMET_ATTEMPT") != "1", "a timing-dependent failure"
""",
    "tests/e2e/__init__.py": "",
    **{
        f"tests/e2e/test_flow_{n}.py": f"import time\n\n\ndef test_flow_{n}():\n    time.sleep(0.{n})\n"
        for n in range(1, 7)
    },
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=demo@comet.local", "-c", "user.name=Comet Demo", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def ensure_repo(path: Path) -> None:
    """The demo repository at `path`, with the current demo pipeline and files committed (a repo
    seeded by an older Comet gets a new commit bringing it up to date)."""
    if not (path / ".git").exists():
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    # The test stages run this Comet's own Python (its venv has pytest and coverage).
    files = {".comet.yml": DEMO_PIPELINE.replace("@PYTHON@", shlex.quote(sys.executable)), **DEMO_FILES}
    for name, content in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    _git(path, "add", "-A")
    if _git(path, "status", "--porcelain"):
        _git(path, "commit", "-q", "-m", "Demo pipeline")


def read_credentials(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v.strip("'\"") for k, v in pairs}


async def _seed(
    settings: ApiSettings, repo: Path, password: str, *, need_secret: bool
) -> tuple[bool, str, str | None]:
    engine = make_engine(settings, application_name="comet-demo")
    try:
        async with make_sessionmaker(engine).begin() as session:
            user = await users.get_by_email(session, DEMO_EMAIL)
            created = user is None
            if user is None:
                user = await users.create_user(
                    session, email=DEMO_EMAIL, password_hash=hash_password(password), is_admin=True
                )
            project = (await session.scalars(select(Project).where(Project.name == DEMO_PROJECT))).first()
            secret = None
            if project is None:
                project = Project(
                    name=DEMO_PROJECT,
                    repo_url=f"file://{repo}",
                    provider="github",
                    provider_repo=DEMO_PROVIDER_REPO,
                    default_branch="main",
                    created_by=user.id,
                )
                session.add(project)
                await session.flush()
                session.add(Membership(project_id=project.id, user_id=user.id, role=Role.OWNER.value))
                need_secret = True
            if need_secret:
                box = SecretBox(settings.secret_key.get_secret_value())
                secret = await add_webhook_secret(session, box, project.id)
            return created, str(project.id), secret
    finally:
        await engine.dispose()


def seed(settings: ApiSettings, repo: Path, credentials: Path) -> str:
    """Create what is missing; returns a one-paragraph summary. Credentials persist in `credentials`."""
    ensure_repo(repo.resolve())
    known = read_credentials(credentials)
    password = known.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
    created, project_id, secret = asyncio.run(
        _seed(settings, repo.resolve(), password, need_secret="DEMO_WEBHOOK_SECRET" not in known)
    )
    if created or secret or not known:
        credentials.parent.mkdir(parents=True, exist_ok=True)
        credentials.write_text(
            f"DEMO_EMAIL={DEMO_EMAIL}\nDEMO_PASSWORD={password}\nDEMO_PROJECT_ID={project_id}\n"
            f"DEMO_REPO={repo.resolve()}\nDEMO_PROVIDER_REPO={DEMO_PROVIDER_REPO}\n"
            f"DEMO_WEBHOOK_SECRET={secret or known.get('DEMO_WEBHOOK_SECRET', '')}\n"
        )
        credentials.chmod(0o600)
    return f"demo ready: project {DEMO_PROJECT} ({project_id}) backed by {repo.resolve()}"
