"""JUnit XML as each framework writes it, the hostile kind, and the odd corners of the format."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from workers.reports.junit import CaseResult, JUnitError, parse_junit, summarise
from workers.reports.keys import case_key
from workers.reports.text import TextLimits

FIXTURES = Path(__file__).parents[3] / "fixtures" / "reports"
JUNIT = FIXTURES / "junit"
HOSTILE = FIXTURES / "hostile"


def parse_text(xml: str, *, root: Path | None = None, limits: TextLimits | None = None) -> list[CaseResult]:
    return parse_junit(io.BytesIO(xml.encode()), root=root, limits=limits)


def by_name(cases: list[CaseResult]) -> dict[str, CaseResult]:
    return {case.name: case for case in cases}


@pytest.mark.parametrize(
    ("fixture", "total", "passed", "failed", "errored", "skipped", "flaky"),
    [
        ("pytest.xml", 7, 3, 1, 1, 2, 0),
        ("jest-junit.xml", 5, 3, 1, 0, 1, 0),
        ("gotestsum.xml", 6, 3, 2, 0, 1, 0),
        ("go-junit-report.xml", 5, 2, 1, 1, 1, 0),
        ("surefire.xml", 6, 3, 1, 1, 1, 2),
        ("gradle.xml", 4, 2, 1, 0, 1, 1),
        ("phpunit.xml", 7, 3, 2, 1, 1, 0),
        ("rspec.xml", 4, 2, 1, 0, 1, 0),
        ("dotnet-junitxml.xml", 5, 2, 2, 0, 1, 0),
    ],
)
def test_every_framework_report_is_read_with_the_statuses_its_tool_wrote(
    fixture: str, total: int, passed: int, failed: int, errored: int, skipped: int, flaky: int
) -> None:
    summary = summarise(parse_junit(JUNIT / fixture))
    assert (
        summary.total,
        summary.passed,
        summary.failed,
        summary.errored,
        summary.skipped,
        summary.flaky,
    ) == (
        total,
        passed,
        failed,
        errored,
        skipped,
        flaky,
    )


def test_a_pytest_failure_carries_its_message_its_traceback_and_both_captured_streams() -> None:
    case = by_name(parse_junit(JUNIT / "pytest.xml"))["test_add_many[2-2-5]"]
    assert case.status == "failed"
    assert case.classname == "tests.test_calc"
    assert case.message is not None
    assert case.message.startswith("assert 4 == 5\n +  where 4 = add(2, 2)\n")
    assert "tests/test_calc.py:12: AssertionError" in case.message
    assert case.output is not None
    assert "computing 2 + 2" in case.output
    assert (
        case.output.index("computing") < case.output.index("--- stderr ---") < case.output.index("slow path")
    )
    assert case.duration_s == pytest.approx(0.002)


def test_pytest_setup_errors_are_errored_and_skips_and_xfails_are_skipped_with_their_reason() -> None:
    cases = by_name(parse_junit(JUNIT / "pytest.xml"))
    assert cases["test_query"].status == "errored"
    assert "ConnectionRefusedError" in (cases["test_query"].message or "")
    assert cases["test_kernel"].status == "skipped"
    assert (cases["test_kernel"].message or "").startswith("needs a GPU")
    assert cases["test_known_bug"].status == "skipped"
    assert cases["test_known_bug"].message == "rounding bug #12"


def test_surefire_flaky_failures_and_errors_pass_but_are_flagged_with_the_first_failure() -> None:
    cases = by_name(parse_junit(JUNIT / "surefire.xml"))
    atomic = cases["transferIsAtomic"]
    assert (atomic.status, atomic.flaky, atomic.reruns) == ("passed", True, 1)
    assert (atomic.message or "").startswith("expected: <100> but was: <90>")
    assert atomic.output == "attempt 2: ok"  # the successful run's own output, not the flaky one's
    assert atomic.duration_s == 1002.5  # "1,002.5": Surefire groups thousands
    timeout = cases["reconnectsAfterTimeout"]
    assert (timeout.status, timeout.flaky) == ("passed", True)
    assert "SocketTimeoutException" in (timeout.message or "")


def test_surefire_reruns_that_all_failed_keep_the_first_verdict_and_count_the_reruns() -> None:
    cases = by_name(parse_junit(JUNIT / "surefire.xml"))
    negative = cases["rejectsNegativeAmounts"]
    assert (negative.status, negative.flaky, negative.reruns) == ("failed", False, 2)
    assert negative.output == "first failure"
    export = cases["exportsCsv"]
    assert (export.status, export.flaky, export.reruns) == ("errored", False, 1)


def test_gradle_merged_reruns_with_the_trace_as_text_are_flaky_too() -> None:
    case = by_name(parse_junit(JUNIT / "gradle.xml"))["greetsTheWorld()"]
    assert (case.status, case.flaky) == ("passed", True)
    assert "GreeterTest.java:30" in (case.message or "")


def test_suite_level_output_is_not_attributed_to_any_case() -> None:
    cases = parse_junit(JUNIT / "gradle.xml") + parse_junit(JUNIT / "dotnet-junitxml.xml")
    assert all("Greeter initialised" not in (case.output or "") for case in cases)
    assert all("Test run started" not in (case.output or "") for case in cases)


def test_phpunit_nested_suites_give_each_case_its_file_made_relative_line_and_innermost_suite() -> None:
    cases = by_name(parse_junit(JUNIT / "phpunit.xml", root=Path("/home/runner/work/shop/shop")))
    total = cases['testTotal with data set "two items"']
    assert (total.status, total.file, total.line) == ("failed", "tests/CartTest.php", 31)
    assert total.suite == "Acme\\Tests\\CartTest::testTotal"
    assert total.classname == "Acme.Tests.CartTest"
    assert cases["testCheckout"].status == "errored"
    assert cases["testCoupon"].status == "skipped"


def test_cases_without_a_classname_are_named_by_their_file_or_else_their_suite() -> None:
    php = by_name(parse_junit(JUNIT / "phpunit.xml", root=Path("/home/runner/work/shop/shop")))
    assert php["cli-version.phpt"].classname == ""
    assert php["cli-version.phpt"].key == case_key("", "cli-version.phpt", "tests/cli-version.phpt")
    go = by_name(parse_junit(JUNIT / "gotestsum.xml"))
    assert go["TestMain"].classname == "github.com/acme/app/internal/badmain"


def test_the_file_moves_with_the_checkout_but_the_key_does_not() -> None:
    here = parse_junit(JUNIT / "phpunit.xml", root=Path("/home/runner/work/shop/shop"))
    xml = (
        (JUNIT / "phpunit.xml")
        .read_text()
        .replace("/home/runner/work/shop/shop", "/srv/ws/attempt-2/checkout")
    )
    there = parse_text(xml, root=Path("/srv/ws/attempt-2/checkout"))
    assert [case.key for case in here] == [case.key for case in there]
    assert [case.file for case in here] == [case.file for case in there]


def test_rspec_relative_files_lose_their_dot_slash_and_keep_captured_output() -> None:
    cases = by_name(parse_junit(JUNIT / "rspec.xml"))
    login = cases["Sessions POST /login signs the user in"]
    assert login.file == "spec/requests/sessions_spec.rb"
    assert login.output == 'Started POST "/login" for 127.0.0.1'
    assert cases["User sends a welcome email"].status == "skipped"


def test_dotnet_repeated_cases_are_all_kept_in_order_and_scientific_times_are_read() -> None:
    cases = parse_junit(JUNIT / "dotnet-junitxml.xml")
    repeated = [case for case in cases if case.name == "Multiply_ReturnsEight(1,2)"]
    assert [case.duration_s for case in repeated] == [0.002, 0.001]
    assert repeated[0].key == repeated[1].key
    assert cases[0].duration_s == pytest.approx(1e-7)
    assert (repeated[0].message or "").startswith("Expected: 8\n  But was:  2")
    assert "\r" not in (repeated[0].message or "")


def test_jest_failures_without_a_message_attribute_use_the_failure_text() -> None:
    cases = by_name(parse_junit(JUNIT / "jest-junit.xml", root=Path("/home/runner/work/web/web")))
    failure = cases["Calculator divide throws on zero"]
    assert (failure.message or "").startswith("Error: expect(received).toThrow()")
    assert cases["api client retries on 503"].file == "src/api.test.js"


def test_both_go_tools_give_the_same_test_the_same_key() -> None:
    gotestsum = {case.name: case.key for case in parse_junit(JUNIT / "gotestsum.xml")}
    go_junit_report = {case.name: case.key for case in parse_junit(JUNIT / "go-junit-report.xml")}
    for name in ("TestBalance", "TestTransfer", "TestTransfer/insufficient_funds", "TestSlowImport"):
        assert gotestsum[name] == go_junit_report[name]


@pytest.mark.parametrize(
    ("fixture", "words"),
    [
        ("billion-laughs.xml", "DTD"),
        ("external-entity.xml", "DTD"),
        ("external-dtd.xml", "http://127.0.0.1:9/junit.dtd"),
        ("parameter-entity.xml", "DTD"),
    ],
)
def test_hostile_reports_are_refused_with_a_reason_and_nothing_expanded(fixture: str, words: str) -> None:
    with pytest.raises(JUnitError) as caught:
        parse_junit(HOSTILE / fixture)
    assert caught.value.reason.startswith("refused:")
    assert words in caught.value.reason
    assert caught.value.cases == []


def test_a_dtd_on_disk_is_never_read_even_when_it_would_define_the_entity(tmp_path: Path) -> None:
    dtd = tmp_path / "junit.dtd"
    dtd.write_text('<!ENTITY secret "FROM-THE-DTD">')
    xml = f'<?xml version="1.0"?><!DOCTYPE testsuite SYSTEM "{dtd.as_uri()}"><testsuite><testcase name="&secret;"/></testsuite>'
    with pytest.raises(JUnitError) as caught:
        parse_text(xml)
    assert "FROM-THE-DTD" not in str(caught.value)


def test_an_entity_declared_without_a_doctype_wrapper_cannot_sneak_in() -> None:
    with pytest.raises(JUnitError, match="not well-formed"):
        parse_text('<testsuite><testcase name="&undeclared;"/></testsuite>')


def test_a_report_cut_short_keeps_the_cases_read_before_the_break() -> None:
    with pytest.raises(JUnitError) as caught:
        parse_junit(HOSTILE / "malformed.xml")
    assert "not well-formed XML" in caught.value.reason
    assert [case.name for case in caught.value.cases] == ["test_one", "test_two"]
    assert caught.value.cases[1].status == "failed"


def test_a_file_that_is_not_junit_is_refused_naming_its_root() -> None:
    with pytest.raises(JUnitError, match="root element is <coverage>"):
        parse_junit(FIXTURES / "coverage" / "cobertura-coveragepy.xml")


def test_an_empty_file_is_not_well_formed() -> None:
    with pytest.raises(JUnitError, match="not well-formed"):
        parse_text("")


def test_a_megabyte_test_name_is_truncated_with_a_marker_and_keys_stay_distinct() -> None:
    long = "t" * 1_048_576
    xml = f'<testsuite><testcase classname="c" name="{long}a"/><testcase classname="c" name="{long}b"/></testsuite>'
    first, second = parse_text(xml, limits=TextLimits(name=200))
    assert len(first.name) == 200
    assert first.name.endswith("…[truncated: 1,048,577 characters in all]")
    assert first.name == second.name
    assert first.key != second.key
    assert len(first.key) == 20


def test_captured_output_and_messages_are_capped() -> None:
    output = "x" * 100_000
    xml = (
        f'<testsuite><testcase name="t"><failure message="{"m" * 50_000}"/>'
        f"<system-out>{output}</system-out></testcase></testsuite>"
    )
    (case,) = parse_text(xml, limits=TextLimits(message=1_000, output=2_000))
    assert len(case.message or "") == 1_000
    assert len(case.output or "") == 2_000
    assert (case.output or "").endswith("…[truncated: 100,000 characters in all]")


@pytest.mark.parametrize(
    ("attribute", "seconds"),
    [("", 0.0), ('time=""', 0.0), ('time="1,234.5"', 1234.5), ('time="0,25"', 0.25), ('time="-3"', 0.0)],
)
def test_missing_empty_grouped_and_negative_times_are_read_leniently(attribute: str, seconds: float) -> None:
    (case,) = parse_text(f'<testsuite><testcase name="t" {attribute}/></testsuite>')
    assert case.duration_s == seconds


def test_namespaced_elements_and_a_skipped_status_attribute_are_understood() -> None:
    xml = (
        '<j:testsuites xmlns:j="urn:example"><j:testsuite name="s">'
        '<j:testcase name="a"><j:failure message="no"/></j:testcase>'
        '<j:testcase name="b" status="notrun"/></j:testsuite></j:testsuites>'
    )
    cases = by_name(parse_text(xml))
    assert cases["a"].status == "failed"
    assert cases["b"].status == "skipped"


def test_an_empty_report_has_no_cases_and_a_bare_case_under_the_root_counts() -> None:
    assert parse_text("<testsuites/>") == []
    (case,) = parse_text('<testsuites><testcase classname="c" name="n"/></testsuites>')
    assert (case.suite, case.status) == ("", "passed")


def test_an_error_before_a_failure_makes_the_case_errored_and_the_first_verdict_wins() -> None:
    xml = '<testsuite><testcase name="t"><error message="teardown"/><failure message="call"/></testcase></testsuite>'
    (case,) = parse_text(xml)
    assert (case.status, case.message) == ("errored", "teardown")


def test_a_classname_dotted_from_above_the_workspace_keeps_one_key_across_attempts() -> None:
    def case_in(attempt: str) -> str:
        root = Path(f"/srv/comet/.comet/workspaces/{attempt}/checkout")
        dotted = f".comet.workspaces.{attempt}.checkout.tests.unit.test_calc"
        (case,) = parse_junit(
            io.BytesIO(f'<testsuite><testcase classname="{dotted}" name="test_add"/></testsuite>'.encode()),
            root=root,
        )
        assert case.classname == "tests.unit.test_calc"
        return case.key

    assert case_in("attempt-1") == case_in("attempt-2")


def test_a_package_merely_named_like_the_checkout_directory_keeps_its_classname() -> None:
    (case,) = parse_junit(
        io.BytesIO(b'<testsuite><testcase classname="checkout.tests.test_cart" name="t"/></testsuite>'),
        root=Path("/w/attempt-1/checkout"),
    )
    assert case.classname == "checkout.tests.test_cart"
