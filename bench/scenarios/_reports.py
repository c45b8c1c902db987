"""Pure parts of the `test_reports` scenario: a pytest-like JUnit report of N cases, the rows of
a project's test history, and the shape of a query plan.

- `pytest_junit(n)`: what `pytest --junitxml` (xunit2, the default family) writes for a suite of
  `n` tests: one `<testsuite name="pytest">` on one line, dotted module classnames (some with a
  test class), parametrised names, `time` in seconds with three decimals; a few % of failures
  (an assertion message and pytest's traceback as the text, captured stdout and stderr), a
  fraction of errors (a fixture failing on setup), some skips (`pytest.skip` with a location
  and a reason) and xfails. Deterministic for a seed; the counts are exact.
- `history_tests(n)` / `history_records(...)`: the `test_cases` rows a run of those tests leaves
  (columns `HISTORY_COLUMNS`, in the order `copy_records_to_table` takes them): most tests pass
  every time, a few are flaky, a few are always skipped, failures carry a message and output.
- `plan_shape(plan)`: an `EXPLAIN (FORMAT JSON)` plan as one line, `Limit ← Index Only Scan
  Backward on ix_test_cases_history`, children in brackets.
"""

# ruff: noqa: S311 - seeded pseudo-random test data, never a secret

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from db.repositories.test_results import CASE_COLUMNS
from workers.reports.keys import case_key

_PACKAGES = ("api", "cli", "core", "db", "events", "orchestrator", "schemas", "workers")
_SUBJECTS = (
    "user",
    "project",
    "run",
    "stage",
    "token",
    "webhook",
    "schedule",
    "report",
    "cursor",
    "secret",
    "queue",
    "lease",
)
_VERBS = ("create", "update", "delete", "list", "parse", "reject", "retry", "cancel", "resolve", "encode")
_CASES = ("empty", "unicode", "too_long", "missing", "duplicate", "concurrent", "expired", "nested")
_OUT_RULE = "-" * 33
_SKIP_REASONS = ("needs a GPU", "requires docker", "slow: set RUN_SLOW=1", "only on Windows")


@dataclass(frozen=True, slots=True)
class TestIdentity:
    """One test as pytest names it, and its Comet key."""

    __test__ = False  # not a pytest class

    classname: str
    name: str
    module_path: str  # tests/<package>/test_<subject>.py: where a traceback points

    @property
    def key(self) -> str:
        return case_key(self.classname, self.name)


@dataclass(frozen=True, slots=True)
class JUnitFile:
    """A generated report and what it holds."""

    xml: bytes
    passed: int
    failed: int
    errored: int
    skipped: int

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errored + self.skipped


def pytest_tests(count: int, *, seed: int = 9) -> list[TestIdentity]:
    """`count` distinct tests: ~25 per module, some in a test class, some parametrised."""
    if count < 0:
        raise ValueError("a negative number of tests")
    rng = random.Random(seed)
    tests: list[TestIdentity] = []
    module = 0
    while len(tests) < count:
        package = _PACKAGES[module % len(_PACKAGES)]
        subject = f"{_SUBJECTS[module // len(_PACKAGES) % len(_SUBJECTS)]}{module // 96 or ''}"
        path = f"tests/{package}/test_{subject}.py"
        dotted = path[: -len(".py")].replace("/", ".")
        in_module = min(rng.randint(10, 40), count - len(tests))
        klass = f".Test{subject.title().replace('_', '')}" if module % 3 == 0 else ""
        seen: set[str] = set()
        while len(seen) < in_module:
            base = f"test_{rng.choice(_VERBS)}_{subject}_{rng.choice(_CASES)}"
            name = f"{base}[{rng.choice(_CASES)}-{rng.randint(0, 99)}]" if rng.random() < 0.35 else base
            if name in seen:
                name = f"{name}_{len(seen)}"
            seen.add(name)
            tests.append(TestIdentity(f"{dotted}{klass}", name, path))
        module += 1
    return tests


def _assertion(rng: random.Random, test: TestIdentity) -> tuple[str, str]:
    """(message, traceback) of a failed assert, as pytest writes them."""
    got, want = rng.randint(0, 500), rng.randint(501, 999)
    line = rng.randint(12, 400)
    message = f"assert {got} == {want}\n +  where {got} = len(result.items)"
    body = "\n".join(
        [
            "client = <starlette.testclient.TestClient object at 0x7f3a2c1d9e50>",
            f"payload = {{'name': 'bench-{got}', 'limit': {want}}}",
            "",
            f"    def {test.name.split('[')[0]}(client, payload):",
            '        response = client.post("/api/v1/items", json=payload)',
            "        result = response.json()",
            ">       assert len(result.items) == payload['limit']",
            f"E       assert {got} == {want}",
            f"E        +  where {got} = len(result.items)",
            "",
            f"{test.module_path}:{line}: AssertionError",
        ]
    )
    return message, body


def _captured(rng: random.Random, test: TestIdentity) -> tuple[str, str]:
    out = "\n".join(
        [f"{_OUT_RULE} Captured Out {_OUT_RULE}"]
        + [f"step {i}: {test.name} -> {rng.randint(0, 10**6)}" for i in range(rng.randint(3, 12))]
    )
    err = "\n".join(
        [f"{_OUT_RULE} Captured Err {_OUT_RULE}", f"WARNING retrying after {rng.randint(1, 9)} ms"]
    )
    return out + "\n", err + "\n"


def pytest_junit(
    count: int,
    *,
    seed: int = 9,
    failed_share: float = 0.03,
    errored_share: float = 0.005,
    skipped_share: float = 0.05,
) -> JUnitFile:
    """The report pytest writes for `count` tests (see the module docstring)."""
    rng = random.Random(seed)
    tests = pytest_tests(count, seed=seed)
    failed = round(count * failed_share)
    errored = round(count * errored_share)
    skipped = round(count * skipped_share)
    if failed + errored + skipped > count:
        raise ValueError("the shares add up to more than every test")
    order = rng.sample(range(count), failed + errored + skipped)
    status = dict.fromkeys(order[:failed], "failed")
    status.update(dict.fromkeys(order[failed : failed + errored], "errored"))
    status.update(dict.fromkeys(order[failed + errored :], "skipped"))
    parts: list[str] = []
    total_time = 0.0
    for index, test in enumerate(tests):
        seconds = round(min(rng.expovariate(1 / 0.02), 30.0), 3)
        total_time += seconds
        head = f'<testcase classname={quoteattr(test.classname)} name={quoteattr(test.name)} time="{seconds:.3f}"'
        verdict = status.get(index)
        if verdict is None:
            parts.append(head + " />")
            continue
        children: list[str] = []
        if verdict == "failed":
            message, body = _assertion(rng, test)
            children.append(f"<failure message={quoteattr(message)}>{escape(body)}</failure>")
        elif verdict == "errored":
            message = 'failed on setup with "ConnectionRefusedError: [Errno 111] Connection refused"'
            body = (
                "@pytest.fixture\n    def db():\n"
                '>       return connect("postgresql://localhost:5432/app")\n'
                "E       ConnectionRefusedError: [Errno 111] Connection refused\n\n"
                f"{test.module_path}:8: ConnectionRefusedError"
            )
            children.append(f"<error message={quoteattr(message)}>{escape(body)}</error>")
        elif rng.random() < 0.2:
            children.append(f'<skipped type="pytest.xfail" message="known bug #{rng.randint(1, 999)}" />')
        else:
            reason = rng.choice(_SKIP_REASONS)
            where = f"/home/runner/work/app/app/{test.module_path}:{rng.randint(5, 300)}: {reason}"
            children.append(
                f'<skipped type="pytest.skip" message={quoteattr(reason)}>{escape(where)}</skipped>'
            )
        if verdict in ("failed", "errored"):
            out, err = _captured(rng, test)
            children.append(f"<system-out>{escape(out)}</system-out><system-err>{escape(err)}</system-err>")
        parts.append(head + ">" + "".join(children) + "</testcase>")
    suite = (
        f'<testsuite name="pytest" errors="{errored}" failures="{failed}" skipped="{skipped}" '
        f'tests="{count}" time="{total_time:.3f}" timestamp="2026-03-02T10:15:31.123456+00:00" '
        'hostname="runner-1">'
    )
    xml = (
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        + suite
        + "".join(parts)
        + "</testsuite></testsuites>"
    )
    return JUnitFile(
        xml.encode(),
        passed=count - failed - errored - skipped,
        failed=failed,
        errored=errored,
        skipped=skipped,
    )


# -- a project's test history ------------------------------------------------------------------

HISTORY_COLUMNS = (*CASE_COLUMNS, "created_at")


@dataclass(frozen=True, slots=True)
class HistoryTest:
    """A test of the history, with how it behaves from run to run."""

    identity: TestIdentity
    key: str
    fail_rate: float  # per run
    always_skipped: bool
    mean_s: float


@dataclass(frozen=True, slots=True)
class HistoryRun:
    """The run, stage and attempt a run's cases belong to."""

    run_id: uuid.UUID
    stage_id: uuid.UUID
    attempt_id: uuid.UUID
    ref: str
    sha: str
    created_at: datetime


def history_tests(count: int, *, seed: int = 2000) -> list[HistoryTest]:
    """`count` tests: ~93 % stable (fail once in 2,000 runs), 4 % flaky (one in 10), 3 % always
    skipped."""
    rng = random.Random(seed)
    out: list[HistoryTest] = []
    for identity in pytest_tests(count, seed=seed):
        draw = rng.random()
        out.append(
            HistoryTest(
                identity=identity,
                key=identity.key,
                fail_rate=0.1 if draw < 0.04 else 0.0005,
                always_skipped=0.04 <= draw < 0.07,
                mean_s=rng.choice((0.002, 0.01, 0.05, 0.3)),
            )
        )
    return out


def history_records(
    tests: Sequence[HistoryTest], run: HistoryRun, project_id: uuid.UUID, *, stage: str, seed: int
) -> Iterator[tuple[Any, ...]]:
    """One row per test for `run` (in `HISTORY_COLUMNS` order), as the worker would have stored it."""
    rng = random.Random(seed)
    for test in tests:
        ident = test.identity
        message: str | None = None
        output: str | None = None
        flaky = False
        if test.always_skipped:
            status = "skipped"
            message = "requires docker"
        elif rng.random() < test.fail_rate:
            status = "failed"
            head, body = _assertion(rng, ident)
            message = f"{head}\n{body}"
            out, err = _captured(rng, ident)
            output = f"{out}\n--- stderr ---\n{err}"
            flaky = test.fail_rate > 0.01 and rng.random() < 0.5
        else:
            status = "passed"
        yield (
            run.attempt_id,
            project_id,
            run.run_id,
            run.stage_id,
            stage,
            1,
            run.ref,
            run.sha,
            test.key,
            ident.name,
            ident.classname,
            None,  # pytest's xunit2 writes no file
            None,
            "pytest",
            status,
            round(rng.expovariate(1 / test.mean_s), 3),
            message,
            output,
            flaky,
            False,
            run.created_at,
        )


# -- query plans ----------------------------------------------------------------------------------


def plan_shape(plan: Mapping[str, Any]) -> str:
    """A plan node (`EXPLAIN (FORMAT JSON)`'s `Plan`) and its children on one line."""
    text = str(plan.get("Node Type", "?"))
    direction = plan.get("Scan Direction")
    if direction == "Backward":
        text += " Backward"
    if plan.get("Index Name"):
        text += f" on {plan['Index Name']}"
    elif plan.get("Relation Name"):
        text += f" on {plan['Relation Name']}"
    children = [plan_shape(child) for child in plan.get("Plans", ())]
    if not children:
        return text
    if len(children) == 1:
        return f"{text} ← {children[0]}"
    return f"{text} ← [{'; '.join(children)}]"


def plan_nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every node of a plan, depth first."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)
