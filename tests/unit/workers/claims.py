"""A claim as the worker holds it, for tests that need a running attempt but no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from db.repositories.attempts import Claim


def a_claim(*, pool: str = "default", repo_url: str = "file:///nowhere") -> Claim:
    return Claim(
        attempt_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        stage_id=uuid.uuid4(),
        stage="build",
        number=1,
        fencing_token=1,
        started_at=datetime.now(UTC),
        spec={},
        matrix={},
        pool=pool,
        ref="refs/heads/main",
        sha="0" * 40,
        variables={},
        trigger={},
        project_id=uuid.uuid4(),
        project="p",
        repo_url=repo_url,
        run_number=1,
    )
