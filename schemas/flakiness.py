"""When a test counts as flaky (pure): the flip rate of its results on a branch, and the rule
that lists a test among a project's flaky tests.

The rule, as `GET /projects/{id}/tests/flaky` documents it:

- **Flaky on one commit.** A case is marked `flaky` when it passed after failing on the same
  commit (an earlier attempt of its stage, another run of the same sha) or when its framework
  reran it (Surefire's `flakyFailure`); the failing case of such a pair is marked too. A test
  with such a case in the window is listed; `flaky_count` is the number of runs it happened in.
- **Flips on the default branch.** A test's result in a run of the default branch is `failed`
  when a case of it failed or errored in its stage's current attempt, `passed` when its cases
  passed (skipped-only runs are not results). Over its last `FLIP_RESULTS` results in the window,
  oldest first, the flip rate is the number of changes between consecutive results divided by
  `results - 1` (null with fewer than two results). A test with a flip rate above zero is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

FLIP_RESULTS = 50
"""How many of a test's latest results on the default branch its flip rate looks at."""


def flips(results: Sequence[bool]) -> int:
    """Changes between consecutive results (`True`: failed)."""
    return sum(1 for before, after in pairwise(results) if before != after)


def flip_rate(results: Sequence[bool]) -> float | None:
    """Changes between consecutive results / (results - 1), over the last `FLIP_RESULTS`
    results (oldest first, `True`: failed); None with fewer than two results."""
    recent = results[-FLIP_RESULTS:]
    if len(recent) < 2:
        return None
    return flips(recent) / (len(recent) - 1)


def last_flip_at(results: Sequence[bool], times: Sequence[datetime]) -> datetime | None:
    """When the latest change happened: the time of the first result after it."""
    recent, at = results[-FLIP_RESULTS:], times[-FLIP_RESULTS:]
    for i in range(len(recent) - 1, 0, -1):
        if recent[i] != recent[i - 1]:
            return at[i]
    return None


@dataclass(frozen=True, slots=True)
class Flakiness:
    """What the rule knows about one test."""

    flaky_count: int  # runs in the window with a case marked flaky
    last_flaky_case_at: datetime | None
    results: Sequence[bool]  # on the default branch in the window, oldest first; True: failed
    result_times: Sequence[datetime]

    @property
    def flip_rate(self) -> float | None:
        return flip_rate(self.results)

    @property
    def flips(self) -> int:
        return flips(self.results[-FLIP_RESULTS:])

    @property
    def runs_considered(self) -> int:
        return len(self.results[-FLIP_RESULTS:])

    @property
    def listed(self) -> bool:
        """Whether the test counts as flaky: a flaky case, or a flip rate above zero."""
        return self.flaky_count > 0 or (self.flip_rate or 0.0) > 0.0

    @property
    def last_flake_at(self) -> datetime | None:
        """The latest of its last flaky case and its last flip."""
        found = [t for t in (self.last_flaky_case_at, last_flip_at(self.results, self.result_times)) if t]
        return max(found, default=None)
