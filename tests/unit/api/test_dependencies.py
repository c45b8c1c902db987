"""The API's endpoints and dependencies all run on the event loop: FastAPI hands a plain `def` one
to a worker thread on every request, a hop that cost a quarter of a webhook's CPU."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.app import create_app
from config.settings import ApiSettings


def _calls(dependant: Dependant) -> Iterator[object]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _runs_on_the_loop(call: object) -> bool:
    # A function, or an instance whose __call__ is the coroutine function (RateLimited, …).
    method = type(call).__dict__.get("__call__") if not inspect.isfunction(call) else None
    return any(inspect.iscoroutinefunction(c) or inspect.isasyncgenfunction(c) for c in (call, method))


def test_no_endpoint_or_dependency_is_sent_to_a_thread() -> None:
    app = create_app(
        ApiSettings(
            jwt_secret="j" * 64,
            secret_key="k" * 64,
            database_url="postgresql+asyncpg://nobody:nothing@127.0.0.1:1/none",
            kafka_bootstrap_servers="127.0.0.1:1",
        )
    )
    contexts = [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]
    assert len(contexts) > 50
    threaded = {
        f"{context.path_format}: {getattr(call, '__qualname__', repr(call))}"
        for context in contexts
        for call in _calls(context.dependant)
        if not _runs_on_the_loop(call)
    }
    assert threaded == set()
