"""Whether a stage whose needs have all finished should run: its `if:` expression, evaluated
with the run's ref, event and variables and the status of its needs (default: `success()`)."""

from __future__ import annotations

from orchestrator.model import RunState, StageState
from schemas.expressions import DEFAULT_CONDITION, ExpressionContext, ExpressionError, parse_expression
from schemas.states import FailureKind, StageStatus


def _effective_status(stage: StageState) -> str:
    # A need that may fail counts as succeeded for its dependents; a need skipped because its own
    # needs failed counts as failed, so `failure()` fires further down the graph (as in GitHub).
    if stage.status is StageStatus.FAILED and stage.allow_failure:
        return StageStatus.SUCCEEDED.value
    if stage.status is StageStatus.SKIPPED and stage.failure_kind == FailureKind.NEEDS_FAILED:
        return StageStatus.FAILED.value
    return stage.status.value


def expression_context(state: RunState, needs: dict[str, StageState]) -> ExpressionContext:
    ref = state.ref
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    tag = ref.removeprefix("refs/tags/") if ref.startswith("refs/tags/") else None
    return ExpressionContext(
        ref=ref,
        branch=branch or "",
        tag=tag or "",
        event=str(state.trigger.get("event") or state.trigger.get("kind") or ""),
        sha=state.sha or "",
        variables=state.variables,
        needs={name: _effective_status(s) for name, s in needs.items()},
        cancelled=state.cancel_requested_at is not None,
    )


def stage_should_run(stage: StageState, needs: dict[str, StageState], state: RunState) -> tuple[bool, str]:
    """(run it?, why not) for a stage whose needs are all terminal."""
    source = stage.spec.get("if") or DEFAULT_CONDITION
    try:
        result = parse_expression(source).evaluate(expression_context(state, needs))
    except ExpressionError as exc:
        return False, f"if: {exc}"
    if result:
        return True, ""
    if source == DEFAULT_CONDITION:
        failed = sorted(n for n, s in needs.items() if _effective_status(s) != StageStatus.SUCCEEDED.value)
        return False, f"skipped because {', '.join(failed)} did not succeed"
    return False, f"skipped: if: {source} was false"
