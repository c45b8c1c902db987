"""Schema evolution of event payloads: the registry of upcasters.

An upcaster turns the payload of one event type at version N into the payload at version N+1.
`decode()` (events/envelope.py) applies the chain from an event's `schema_version` up to its
payload model's `VERSION` *before* validating it, so every consumer (and the replay and rebuild
tooling, which decode through the same function) only ever sees today's shape. A payload model
that bumps its `VERSION` registers an upcaster from the previous version in a module of its own
under `events/upcasters/` (imported by that package), e.g.:

    @UPCASTERS.register("run.cancel_requested", from_version=1)
    def _add_source(payload: dict[str, Any]) -> dict[str, Any]: ...

An event older than its model with a gap in the chain is not decodable (a missing upcaster is
a deployment bug): it goes to the dead letters with the reason, and can be redriven once the
upcaster is deployed. See docs/decisions/0017-dead-letters-and-schema-evolution.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class UpcastError(Exception):
    """An event's payload could not be brought to today's version (no upcaster, or one failed)."""


class UpcasterRegistry:
    """Upcasters by (event type, version they read); each returns the next version's payload."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, *, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register `fn` as the upcaster of `event_type` from `from_version` to the next."""
        if from_version < 1:
            raise ValueError(f"schema versions start at 1, not {from_version}")

        def add(fn: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self.steps:
                raise ValueError(f"{event_type} already has an upcaster from version {from_version}")
            self.steps[key] = fn
            return fn

        return add

    def upcast(self, event_type: str, version: int, target: int, payload: Payload) -> Payload:
        """`payload` (of `event_type` at `version`) brought to `target`; the input is not changed.
        Any failure is an `UpcastError` naming the step."""
        current = dict(payload)
        while version < target:
            step = self.steps.get((event_type, version))
            if step is None:
                raise UpcastError(
                    f"no upcaster for {event_type} from schema_version {version} to {version + 1}"
                )
            try:
                current = step(current)
            except Exception as exc:
                raise UpcastError(
                    f"upcasting {event_type} from schema_version {version} failed: {exc!r}"
                ) from None
            if not isinstance(current, dict):
                raise UpcastError(f"the upcaster of {event_type} from version {version} returned no object")
            version += 1
        return current


UPCASTERS = UpcasterRegistry()
"""The registry `decode()` uses; `events/upcasters/` fills it when imported."""
