"""The printed report: values, ratios and aims in aligned columns."""

from __future__ import annotations

from bench.report import Section, format_aim, format_ratio, format_value, render
from bench.stats import Aim, Figure

REF = Figure("raw Kafka RTT p50", 2.0, "ms")


def test_values_get_about_three_significant_digits_and_thousands_separators() -> None:
    assert [format_value(v) for v in (0.123, 4.5, 12.34, 1234.5)] == ["0.12", "4.50", "12.3", "1,234"]


def test_an_aim_reads_as_its_bound_and_whether_the_figure_meets_it() -> None:
    assert format_aim(Figure("p50", 8.0, "ms").aiming(Aim.at_most(10))) == "aim ≤ 10.0 ms: met"
    assert format_aim(Figure("p50", 12.0, "ms").aiming(Aim.at_most(10))) == "aim ≤ 10.0 ms: MISSED"
    assert format_aim(Figure("rate", 1200.0, "/s").aiming(Aim.at_least(1000))) == "aim ≥ 1,000 /s: met"


def test_a_figure_without_an_aim_has_no_aim_text() -> None:
    assert format_aim(Figure("p50", 8.0, "ms")) == ""


def test_a_unitless_aim_has_no_dangling_space() -> None:
    assert format_aim(Figure("ratio", 0.5, "").aiming(Aim.below(1))) == "aim < 1.00: met"


def test_render_prints_the_ratio_and_the_aim_of_each_figure_with_aims_aligned() -> None:
    figures = [
        Figure("short p50", 4.0, "ms").relative_to(REF).aiming(Aim.at_most(10)),
        Figure("a much longer p99", 40.0, "ms").relative_to(Figure("raw Postgres commit p50", 0.5, "ms")),
        Figure("memory", 250.0, "MB").aiming(Aim.below(300)),
    ]
    lines = render([Section("title", figures, notes=("a note",))]).splitlines()
    assert lines[0] == "title"
    assert lines[1] == "  (a note)"
    assert "x 2.0 of raw Kafka RTT p50" in lines[2]
    assert lines[2].endswith("aim ≤ 10.0 ms: met")
    assert lines[3].endswith("x 80.0 of raw Postgres commit p50")
    assert lines[4].endswith("aim < 300 MB: met")
    assert lines[2].index("aim") == lines[4].index("aim")


def test_small_ratios_keep_two_significant_digits_and_large_ones_one_decimal() -> None:
    def ratio(value: float) -> str:
        return format_ratio(Figure("x", value, "/s").relative_to(Figure("ref", 1.0, "/s")))

    assert ratio(0.0075) == "x 0.0075 of ref"
    assert ratio(0.74) == "x 0.74 of ref"
    assert ratio(16.63) == "x 16.6 of ref"
    assert ratio(12345.0) == "x 12,345.0 of ref"


def test_tiny_ratios_are_never_printed_in_scientific_notation() -> None:
    figure = Figure("x", 0.00001, "/s").relative_to(Figure("ref", 1.0, "/s"))
    assert format_ratio(figure) == "x 0.000010 of ref"
