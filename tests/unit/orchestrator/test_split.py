"""Timing-based test splitting: balance, completeness, determinism, and the no-history case."""

from __future__ import annotations

import random

import pytest

from orchestrator.split import Leg, durations_by_file, leg_names, split_files

# 40 files with skewed recorded durations: a few slow end-to-end files, a long tail of fast ones.
SKEWED = {f"tests/e2e/test_{n:02d}.py": round(0.5 + 120 * (0.8**n), 3) for n in range(40)}


def all_files(legs: list[Leg]) -> list[str]:
    return [name for leg in legs for name in leg.files]


def test_skewed_durations_split_into_four_legs_within_twenty_percent_of_the_ideal() -> None:
    legs = split_files(list(SKEWED), SKEWED, 4)
    ideal = sum(SKEWED.values()) / 4
    longest = max(sum(SKEWED[name] for name in leg.files) for leg in legs)
    assert max(SKEWED.values()) < ideal  # the fixture allows a balanced split at all
    assert longest <= 1.2 * ideal
    assert max(leg.expected_s for leg in legs) == pytest.approx(longest)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 40, 64])
def test_every_file_lands_in_exactly_one_leg(total: int) -> None:
    files = list(SKEWED)
    legs = split_files(files, SKEWED, total)
    assert len(legs) == total
    assert sorted(all_files(legs)) == sorted(files)
    assert [leg.index for leg in legs] == list(range(1, total + 1))
    assert all(leg.total == total for leg in legs)


def test_without_history_legs_differ_by_at_most_one_file() -> None:
    files = [f"tests/test_{n}.py" for n in range(23)]
    legs = split_files(files, {}, 4)
    sizes = [len(leg.files) for leg in legs]
    assert max(sizes) - min(sizes) <= 1
    assert sorted(all_files(legs)) == sorted(files)
    assert all(leg.expected_s == 0.0 for leg in legs)


def test_history_of_files_no_longer_present_counts_as_no_history() -> None:
    legs = split_files(["a.py", "b.py", "c.py"], {"gone.py": 100.0}, 2)
    assert [len(leg.files) for leg in legs] == [2, 1]


def test_files_without_history_weigh_the_median_of_the_known_ones() -> None:
    durations = {"a.py": 1.0, "b.py": 2.0, "c.py": 30.0}  # median 2, mean 11
    legs = split_files(["a.py", "b.py", "c.py", "new.py"], durations, 3)
    assert sorted(leg.expected_s for leg in legs) == [2.0, 3.0, 30.0]
    assert {"new.py"} in [set(leg.files) for leg in legs]


def test_more_legs_than_files_leaves_some_legs_empty_but_valid() -> None:
    legs = split_files(["a.py", "b.py"], {"a.py": 1.0, "b.py": 2.0}, 5)
    assert len(legs) == 5
    assert sorted(all_files(legs)) == ["a.py", "b.py"]
    assert sum(1 for leg in legs if not leg.files) == 3
    assert split_files([], {}, 3) == [Leg(1, 3, (), 0.0), Leg(2, 3, (), 0.0), Leg(3, 3, (), 0.0)]


def test_the_same_input_in_any_order_gives_the_same_split() -> None:
    files = list(SKEWED)
    first = split_files(files, SKEWED, 4)
    shuffled = files[:]
    random.Random(7).shuffle(shuffled)  # noqa: S311 - an order, not a secret
    assert split_files(shuffled, dict(reversed(list(SKEWED.items()))), 4) == first
    assert split_files(files + files[:5], SKEWED, 4) == first  # duplicates count once
    assert all(list(leg.files) == sorted(leg.files) for leg in first)


def test_equal_durations_spread_evenly_even_when_all_are_zero() -> None:
    files = [f"t{n}.py" for n in range(8)]
    legs = split_files(files, dict.fromkeys(files, 0.0), 4)
    assert [len(leg.files) for leg in legs] == [2, 2, 2, 2]


def test_unusable_recorded_durations_are_treated_as_missing() -> None:
    durations = {"a.py": 5.0, "b.py": float("nan"), "c.py": -1.0, "d.py": float("inf")}
    legs = split_files(list(durations), durations, 2)
    assert sum(leg.expected_s for leg in legs) == pytest.approx(20.0)


def test_a_parallel_stage_has_legs_named_by_index_and_total() -> None:
    assert leg_names("e2e", 3) == ["e2e[1/3]", "e2e[2/3]", "e2e[3/3]"]


@pytest.mark.parametrize("total", [0, -1, 257])
def test_a_leg_count_out_of_range_is_refused(total: int) -> None:
    with pytest.raises(ValueError, match="parallel must be between 1 and 256"):
        split_files(["a.py"], {}, total)
    with pytest.raises(ValueError, match="parallel must be between 1 and 256"):
        leg_names("e2e", total)


def test_recorded_durations_are_summed_per_file_by_file_attribute_module_or_class() -> None:
    files = ["tests/e2e/test_a.py", "tests/e2e/test_b.py", "src/test/java/com/example/FooTest.java"]
    recorded = [
        ("tests/e2e/test_a.py", "tests.e2e.test_a", 1.5),  # the report names the file
        (None, "tests.e2e.test_a", 0.5),  # pytest's xunit2: only the module
        (None, "tests.e2e.test_b.TestLogin", 2.0),  # a class inside the module
        (None, "com.example.FooTest", 4.0),  # Java: the path under the source root
        (None, "tests.elsewhere.test_c", 9.0),  # no such file in the split: ignored
        ("tests/e2e/test_b.py", "x", float("nan")),  # unusable
    ]
    assert durations_by_file(recorded, files) == {
        "tests/e2e/test_a.py": 2.0,
        "tests/e2e/test_b.py": 2.0,
        "src/test/java/com/example/FooTest.java": 4.0,
    }


def test_a_class_name_two_files_could_end_with_matches_neither() -> None:
    files = ["a/tests/test_x.py", "b/tests/test_x.py"]
    assert durations_by_file([(None, "tests.test_x", 3.0)], files) == {}
