"""The dashboard scenario's pure parts: the generated pipelines and the printed figures."""

from __future__ import annotations

from bench.report import Section, render
from bench.scenarios.dashboard import (
    LOG_LINES,
    STAGES,
    Loads,
    figures,
    last_line,
    log_pipeline,
    notes,
    wide_pipeline,
)
from orchestrator.planner import plan
from schemas.pipeline import parse_definition

LOADS = Loads(
    reference_paint=[100.0, 120.0, 140.0],
    first_paint=[60.0, 70.0, 400.0],
    first_contentful_paint=[65.0, 75.0, 405.0],
    run_ready=[200.0, 250.0, 2500.0],
    log_rendered=[800.0, 900.0, 1000.0],
    nodes=200,
    log_nodes=12,
)


def test_the_wide_pipeline_plans_200_stages_in_10_columns_of_20_without_checkout() -> None:
    definition = parse_definition(wide_pipeline())
    assert len(plan(definition)) == STAGES
    needs = {name: list(spec.needs) for name, spec in definition.stages.items()}
    assert [needs["s000"], needs["s019"], needs["s020"], needs["s199"]] == [[], [], ["s000"], ["s179"]]
    assert all(spec.checkout is False for spec in definition.stages.values())


def test_the_log_pipeline_prints_the_line_the_browser_waits_for_last() -> None:
    definition = parse_definition(log_pipeline())
    assert list(definition.stages) == ["log"]
    assert f"1 {LOG_LINES}" in str(definition.stages["log"].run)
    assert last_line() == "log line 50000"


def test_each_figure_is_the_p50_beside_the_static_file_paint_and_its_aim() -> None:
    printed = render([Section("dashboard", figures(LOADS))])
    lines = printed.splitlines()[1:]
    assert lines[0].split() == ["raw", "first", "paint", "of", "a", "static", "file", "p50", "120", "ms"]
    assert "dashboard first paint p50" in lines[1]
    assert "70.0 ms" in lines[1]
    assert "x 0.58 of raw first paint of a static file p50" in lines[1]
    assert lines[1].endswith("aim ≤ 1,000 ms: met")
    assert "200-stage run page ready p50" in lines[2]
    assert lines[2].endswith("aim ≤ 2,000 ms: met")
    assert "50,000-line log rendered p50" in lines[3]
    assert "900 ms" in lines[3]
    assert "x 7.5 of raw" in lines[3]


def test_a_slow_page_misses_its_aim() -> None:
    slow = Loads([100.0], [1500.0], [1500.0], [2500.0], [4000.0], 200, 1)
    verdicts = [f.aim.met_by(f.value) for f in figures(slow) if f.aim is not None]
    assert verdicts == [False, False, False]


def test_the_notes_say_how_many_loads_and_what_was_rendered() -> None:
    assert notes(LOADS) == [
        "3 fresh loads of each page; run page ready max 2500 ms, log rendered max 1000 ms",
        "first contentful paint p50 75 ms; 200 stage nodes rendered; the log's <pre> held 12 child nodes",
    ]
