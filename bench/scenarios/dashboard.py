"""dashboard: first paint, a 200-stage run page ready, a 50,000-line log rendered (headless Chromium)

One platform (api, orchestrator, one worker `--concurrency 4`) on a fresh database and namespace
runs two pipelines to their end: 200 stages of `true` without checkout (20 independent chains of
10, so 10 columns of 20 in the graph) and one stage printing 50,000 lines. Then Debian's headless
Chromium (bench/browser.py, the browser tests' options), with the bench admin's session, loads
each page afresh (a full navigation from a static file of the same origin) several times. Times
are the browser's own, since navigation start:

- first paint: the Paint Timing API (`performance.getEntriesByType('paint')`, `first-paint`) of the
  200-stage run page;
- run page ready: the page's `comet:run-ready` mark, set the frame after all 200 stage nodes are in
  the DOM (the graph's `data-ready` holds how many);
- log rendered: the log page's `comet:log-complete` mark, set the frame after the stream's `end`
  event, once the last line is in the DOM (checked).

The reference is the first paint of a static file served by the same API (`/ui/app.css`, shown as
text), reached the same way: what any page costs this browser on this machine before Comet's code
runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from bench.platform import ADMIN_EMAIL, Platform, bench_platform, describe_problems
from bench.scenarios import BenchContext
from bench.scenarios._runs import wait_finished
from bench.stats import Aim, Figure, summarize

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

STAGES, WIDTH = 200, 20
LOG_LINES = 50_000
FULL_LOADS, QUICK_LOADS = 10, 3
WAIT_S = 60.0
FIRST_PAINT_AIM_MS = 1000.0
RUN_READY_AIM_MS = 2000.0
LOG_AIM_MS = 3000.0

_PAINTS = "return Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))"
_MARK = (
    "const m = performance.getEntriesByName(arguments[0], 'mark'); return m.length ? m[0].startTime : null"
)


def wide_pipeline(stages: int = STAGES, width: int = WIDTH) -> str:
    """`width` independent chains: stage i needs stage i - width, so the graph has stages / width
    columns of `width` nodes; every stage runs `true` without a checkout."""
    lines = ["name: wide", "stages:"]
    for i in range(stages):
        needs = f", needs: [s{i - width:03d}]" if i >= width else ""
        lines.append(f'  s{i:03d}: {{run: "true", checkout: false{needs}}}')
    return "\n".join(lines) + "\n"


def log_pipeline(lines: int = LOG_LINES) -> str:
    return f"name: log\nstages:\n  log: {{run: \"seq -f 'log line %.0f' 1 {lines}\", checkout: false}}\n"


def last_line(lines: int = LOG_LINES) -> str:
    return f"log line {lines}"


@dataclass(frozen=True, slots=True)
class Loads:
    """Per page load, in ms since navigation start."""

    reference_paint: list[float]
    first_paint: list[float]
    first_contentful_paint: list[float]
    run_ready: list[float]
    log_rendered: list[float]
    nodes: int
    log_nodes: int


def figures(loads: Loads) -> list[Figure]:
    """The printed figures: p50 of each series, relative to the static file's first paint."""
    reference = Figure("raw first paint of a static file p50", summarize(loads.reference_paint).p50, "ms")
    return [
        reference,
        Figure("dashboard first paint p50", summarize(loads.first_paint).p50, "ms")
        .relative_to(reference)
        .aiming(Aim.at_most(FIRST_PAINT_AIM_MS)),
        Figure(f"{STAGES}-stage run page ready p50", summarize(loads.run_ready).p50, "ms")
        .relative_to(reference)
        .aiming(Aim.at_most(RUN_READY_AIM_MS)),
        Figure(f"{LOG_LINES:,}-line log rendered p50", summarize(loads.log_rendered).p50, "ms")
        .relative_to(reference)
        .aiming(Aim.at_most(LOG_AIM_MS)),
    ]


def notes(loads: Loads) -> list[str]:
    fcp = summarize(loads.first_contentful_paint)
    return [
        f"{len(loads.run_ready)} fresh loads of each page; run page ready max "
        f"{max(loads.run_ready):.0f} ms, log rendered max {max(loads.log_rendered):.0f} ms",
        f"first contentful paint p50 {fcp.p50:.0f} ms; {loads.nodes} stage nodes rendered; "
        f"the log's <pre> held {loads.log_nodes} child nodes",
    ]


def _until(driver: Chrome, check: Callable[[Chrome], Any], what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.wait import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(check)
    except TimeoutException:
        # selenium leaves get_log untyped: a list of {level, message, …} dicts.
        get_log = cast(Callable[[str], list[dict[str, Any]]], driver.get_log)
        console = [str(e.get("message")) for e in get_log("browser") if e.get("level") == "SEVERE"]
        shown = driver.execute_script("return document.body ? document.body.innerText.slice(0, 300) : ''")
        raise TimeoutError(
            f"the browser did not get {what} within {WAIT_S:.0f} s at {driver.current_url}; "
            f"the page shows {shown!r}; console errors: {console[:5]}"
        ) from None


_KEEP = "sessionStorage.setItem('comet.access_token', arguments[0]); sessionStorage.setItem('comet.refresh_token', arguments[1])"


def _fresh(driver: Chrome, base: str, fragment: str, tokens: list[str]) -> None:
    """A full navigation to the dashboard from a static file of the same origin, into whose session
    the bench admin's tokens are put first (as the sign-in page would)."""
    driver.get(f"{base}/ui/app.css")
    driver.execute_script(_KEEP, *tokens)
    driver.get(f"{base}/ui/{fragment}")


def _measure(base: str, tokens: list[str], wide: uuid.UUID, log: uuid.UUID, count: int) -> Loads:
    from bench.browser import INSTALL, missing, start_chrome

    absent = missing()
    if absent:
        raise RuntimeError(f"{', '.join(absent)} missing: `{INSTALL}`")
    driver = start_chrome()
    try:
        out = Loads([], [], [], [], [], 0, 0)
        for _ in range(count):
            # The same path as a dashboard load: from a document of the same origin.
            driver.get(f"{base}/ui/app.css")
            driver.get(f"{base}/ui/app.css?reference")
            paints = _until(driver, lambda d: d.execute_script(_PAINTS) or None, "a paint of app.css")
            out.reference_paint.append(float(paints.get("first-paint", paints.get("first-contentful-paint"))))

            _fresh(driver, base, f"#/runs/{wide}", tokens)
            ready = _until(driver, lambda d: d.execute_script(_MARK, "comet:run-ready"), "the run page ready")
            paints = driver.execute_script(_PAINTS)
            out.run_ready.append(float(ready))
            out.first_paint.append(float(paints["first-paint"]))
            out.first_contentful_paint.append(float(paints["first-contentful-paint"]))
            nodes = int(driver.execute_script("return document.querySelector('.graph').dataset.ready"))
            if nodes != STAGES:
                raise RuntimeError(f"the run page rendered {nodes} stage nodes, not {STAGES}")

            _fresh(driver, base, f"#/runs/{log}/stages/log", tokens)
            done = _until(driver, lambda d: d.execute_script(_MARK, "comet:log-complete"), "the log complete")
            out.log_rendered.append(float(done))
            tail = driver.execute_script("return document.getElementById('log').textContent.slice(-200)")
            if last_line() not in tail:
                raise RuntimeError(f"the log's last line is not rendered; its end reads {tail[-80:]!r}")
        log_nodes = int(driver.execute_script("return document.getElementById('log').childNodes.length"))
        return replace(out, nodes=STAGES, log_nodes=log_nodes)
    finally:
        driver.quit()


async def _finished_runs(p: Platform) -> tuple[uuid.UUID, uuid.UUID]:
    await p.start_api()
    p.start_orchestrator()
    p.start_worker(concurrency=4)
    wide, _ = await p.trigger("wide")
    log, _ = await p.trigger("log")
    await wait_finished(p, [wide, log], timeout_s=300.0, poll_s=0.1)
    statuses: Sequence[Any] = await p.fetch("SELECT status FROM runs WHERE id = ANY($1::uuid[])", [wide, log])
    if {r["status"] for r in statuses} != {"succeeded"}:
        raise RuntimeError(f"the bench runs did not succeed: {[r['status'] for r in statuses]}")
    return wide, log


async def run(ctx: BenchContext) -> list[Figure]:
    count = QUICK_LOADS if ctx.quick else FULL_LOADS
    pipelines = {"wide": wide_pipeline(), "log": log_pipeline()}
    async with bench_platform(ctx.settings, pipelines, progress=ctx.progress) as p:
        ctx.progress(f"dashboard: running a {STAGES}-stage run and a {LOG_LINES:,}-line log to their end")
        wide, log = await _finished_runs(p)
        assert p.api_url is not None
        ctx.progress(f"dashboard: {count} fresh loads of each page in headless Chromium")
        assert p.client is not None
        login = await p.client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": p.password})
        login.raise_for_status()
        tokens = [login.json()["access_token"], login.json()["refresh_token"]]
        loads = await asyncio.to_thread(_measure, p.api_url, tokens, wide, log, count)
        problems = p.problems()
    for line in (*notes(loads), *describe_problems(problems)):
        ctx.note(line)
    return figures(loads)
