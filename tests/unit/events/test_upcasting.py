"""Schema evolution: the upcaster registry and the upcasters Comet ships, through `decode()`."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from events.envelope import Envelope, UndecodableEventError, decode, new_envelope
from events.upcasters.run_cancel_requested import add_source
from events.upcasting import UPCASTERS, UpcasterRegistry, UpcastError
from schemas.events import RunCancelRequested

RUN = "0195a3c4-0000-7000-8000-000000000001"
ACTOR = "0195a3c4-0000-7000-8000-0000000000aa"


def _v1_cancel(**payload: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "run.cancel_requested",
            "schema_version": 1,
            "occurred_at": "2026-11-01T10:00:00+00:00",
            "key": RUN,
            "correlation_id": "c",
            "payload": {"run_id": RUN, **payload},
        }
    )


def test_a_chain_of_upcasters_brings_a_payload_from_its_version_to_the_target() -> None:
    registry = UpcasterRegistry()
    registry.register("thing", from_version=1)(lambda p: {**p, "b": p["a"] * 2})
    registry.register("thing", from_version=2)(lambda p: {"c": p["b"] + 1})
    assert registry.upcast("thing", 1, 3, {"a": 1}) == {"c": 3}
    assert registry.upcast("thing", 2, 3, {"b": 5}) == {"c": 6}
    assert registry.upcast("thing", 3, 3, {"c": 0}) == {"c": 0}


def test_upcasting_leaves_the_input_payload_as_it_was() -> None:
    registry = UpcasterRegistry()

    def mutate(p: dict[str, Any]) -> dict[str, Any]:
        p["x"] = 1
        return p

    registry.register("thing", from_version=1)(mutate)
    original = {"a": 1}
    assert registry.upcast("thing", 1, 2, original) == {"a": 1, "x": 1}
    assert original == {"a": 1}


def test_a_gap_in_the_chain_is_an_upcast_error_naming_the_missing_step() -> None:
    registry = UpcasterRegistry()
    registry.register("thing", from_version=1)(lambda p: p)
    with pytest.raises(UpcastError, match="no upcaster for thing from schema_version 2 to 3"):
        registry.upcast("thing", 1, 3, {})


def test_an_upcaster_that_fails_is_an_upcast_error_naming_the_step() -> None:
    registry = UpcasterRegistry()
    registry.register("thing", from_version=1)(lambda p: {"b": p["missing"]})
    with pytest.raises(UpcastError, match="upcasting thing from schema_version 1 failed: KeyError"):
        registry.upcast("thing", 1, 2, {})


def test_registering_a_step_twice_or_from_version_zero_is_refused() -> None:
    registry = UpcasterRegistry()
    registry.register("thing", from_version=1)(lambda p: p)
    with pytest.raises(ValueError, match="already has an upcaster"):
        registry.register("thing", from_version=1)(lambda p: p)
    with pytest.raises(ValueError, match="start at 1"):
        registry.register("thing", from_version=0)


def test_a_v1_cancel_by_a_concurrency_group_is_upcast_with_that_source() -> None:
    payload = {"run_id": RUN, "reason": "cancelled by a newer run in concurrency group 'deploy' (#7)"}
    assert add_source(payload)["source"] == "concurrency_group"


@pytest.mark.parametrize(
    "payload",
    [
        {"run_id": RUN},
        {"run_id": RUN, "reason": "no longer needed"},
        {"run_id": RUN, "reason": "cancelled by a user", "actor_id": ACTOR},
        # A person who typed the orchestrator's wording is still a person.
        {"run_id": RUN, "reason": "cancelled by a newer run in concurrency group 'x'", "actor_id": ACTOR},
    ],
)
def test_any_other_v1_cancel_is_upcast_as_a_users(payload: dict[str, Any]) -> None:
    assert add_source(payload) == {**payload, "source": "user"}


def test_decode_hands_over_a_v1_cancel_in_todays_shape_and_version() -> None:
    envelope = decode(_v1_cancel(reason="cancelled by a newer run in concurrency group 'g' (#2)"))
    assert envelope.schema_version == RunCancelRequested.VERSION == 2
    typed = envelope.typed()
    assert isinstance(typed, RunCancelRequested)
    assert typed.source == "concurrency_group"
    assert str(typed.run_id) == RUN


def test_a_new_event_carries_its_payload_models_version() -> None:
    envelope = new_envelope(RunCancelRequested(run_id=uuid.UUID(RUN), source="user"), key=RUN)
    assert envelope.schema_version == 2
    assert decode(envelope.encode()) == envelope


def test_without_its_upcaster_a_v1_cancel_is_undecodable_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(UPCASTERS.steps, ("run.cancel_requested", 1))
    with pytest.raises(
        UndecodableEventError, match=r"no upcaster for run\.cancel_requested from schema_version 1"
    ):
        decode(_v1_cancel())


def test_a_schema_version_below_one_is_undecodable() -> None:
    raw = orjson.loads(_v1_cancel())
    raw["schema_version"] = 0
    with pytest.raises(UndecodableEventError, match="invalid envelope: schema_version"):
        decode(orjson.dumps(raw))


def test_a_version_newer_than_the_model_is_still_refused() -> None:
    raw = orjson.loads(_v1_cancel())
    raw["schema_version"] = 3
    raw["payload"]["source"] = "user"
    with pytest.raises(UndecodableEventError, match="newer than this process understands"):
        decode(orjson.dumps(raw))


def test_an_envelope_read_from_stored_json_without_decode_is_upcast_when_typed() -> None:
    stored = Envelope.model_validate(orjson.loads(_v1_cancel(reason="no longer needed")))
    assert stored.schema_version == 1
    typed = stored.typed()
    assert isinstance(typed, RunCancelRequested)
    assert typed.source == "user"
