"""`comet demo seed`: the demo `make run` sets up — an admin user, a local git repository whose
`.comet.yml` fans out to parallel stages and fans in, and a project backed by it. Idempotent."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
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
# The demo pipeline: one stage, three in parallel, then a fan-in.
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
  unit:
    needs: [checkout-info]
    matrix: {python: ["3.11", "3.12"]}
    run: |
      echo "unit tests on python $MATRIX_PYTHON"; sleep 2; echo "42 passed"
  build:
    needs: [checkout-info]
    run: |
      echo "building..."; sleep 2; echo "artifact built"
  package:
    needs: [lint, unit, build]
    run: echo "all parallel stages done; packaging $COMET_REF"
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=demo@comet.local", "-c", "user.name=Comet Demo", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def ensure_repo(path: Path) -> None:
    if (path / ".git").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / ".comet.yml").write_text(DEMO_PIPELINE)
    (path / "README.md").write_text("A demo repository for Comet.\n")
    _git(path, "add", "-A")
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
