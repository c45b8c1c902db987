"""Why a pool's stages wait, in words, from its queue's figures."""

from __future__ import annotations

from db.repositories.fleet import QueueRow


def _queue(**figures: object) -> QueueRow:
    values: dict[str, object] = {
        "pool": "linux",
        "depth": 0,
        "running": 0,
        "workers": 0,
        "slots": 0,
        "busy": 0,
        "oldest_at": None,
        "oldest_wait_s": None,
        "oldest_stage": None,
    }
    values.update(figures)
    return QueueRow(**values)  # type: ignore[arg-type]


def test_a_pool_nobody_serves_says_so_and_how_to_serve_it() -> None:
    reason = _queue(depth=2, unschedulable=2).reason
    assert reason == "no live worker in pool linux: start one with `comet worker --pool linux`"


def test_stages_no_live_worker_has_the_labels_for_name_the_labels() -> None:
    reason = _queue(
        depth=3, workers=2, slots=8, unschedulable=1, stuck_labels={"gpu": "true", "arch": "arm64"}
    ).reason
    assert reason is not None
    assert reason.startswith("no live worker in pool linux has arch=arm64,gpu=true (1 waiting stage(s))")
    assert reason.endswith("`comet worker --pool linux --labels arch=arm64,gpu=true`")


def test_a_busy_pool_says_its_slots_are_busy_and_an_idle_one_says_nothing() -> None:
    assert _queue(depth=1, workers=1, slots=4, busy=4).reason == "all 4 slot(s) of pool linux are busy"
    assert _queue(depth=0, workers=1, slots=4).reason is None
    assert _queue(depth=1, workers=1, slots=4, busy=1).reason is None
