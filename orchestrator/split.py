"""Timing-based test splitting for `parallel: N` stages with `split: {files: GLOB, by: timings}`.

Pure: the caller globs the checkout and loads the per-file durations recorded from earlier
reports; this module only decides. The rule:

- every file is in exactly one leg (duplicates in the input count once); there are always N
  legs, some possibly empty when there are fewer files than legs;
- with durations for at least one of the files, each file weighs its recorded duration (files
  without one, or with a negative or non-finite one, weigh the median of the known durations of
  the files being split), and files go heaviest first (ties by name) onto the leg with the least
  load so far (ties: fewer files, then the lower index) — the classic longest-processing-time
  rule, never worse than 4/3 of the best possible longest leg;
- with no history at all, files are dealt by name in turn (legs differ by at most one file);
- the same input always gives the same split, and each leg lists its files sorted by name.

Leg names: a `parallel: N` stage `e2e` becomes `e2e[1/N]` … `e2e[N/N]` (`leg_names`); each leg
gets `COMET_NODE_INDEX` (1…N), `COMET_NODE_TOTAL` (N) and, with `split`, `COMET_TEST_FILES`
naming a file that lists its files one per line (written by the worker).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_LEGS = 256


@dataclass(frozen=True, slots=True)
class Leg:
    index: int  # 1-based, as COMET_NODE_INDEX
    total: int  # N, as COMET_NODE_TOTAL
    files: tuple[str, ...]  # sorted by name
    expected_s: float  # the summed weights: recorded durations, or medians for files without one


def leg_names(stage: str, total: int) -> list[str]:
    """`stage[1/N]` … `stage[N/N]`; ValueError unless 1 ≤ N ≤ MAX_LEGS."""
    _check_total(total)
    return [f"{stage}[{index}/{total}]" for index in range(1, total + 1)]


def split_files(files: Sequence[str], durations: Mapping[str, float], total: int) -> list[Leg]:
    """The N legs for these files, balanced by `durations` (seconds per file) as described above."""
    _check_total(total)
    names = sorted(set(files))
    known = {name: durations[name] for name in names if name in durations and _usable(durations[name])}
    if not known:
        dealt: list[list[str]] = [[] for _ in range(total)]
        for position, name in enumerate(names):
            dealt[position % total].append(name)
        return [Leg(index + 1, total, tuple(leg), 0.0) for index, leg in enumerate(dealt)]
    median = statistics.median(known.values())
    weights = {name: known.get(name, median) for name in names}
    loads = [0.0] * total
    legs: list[list[str]] = [[] for _ in range(total)]
    for name in sorted(names, key=lambda name: (-weights[name], name)):
        lightest = min(range(total), key=lambda index: (loads[index], len(legs[index]), index))
        legs[lightest].append(name)
        loads[lightest] += weights[name]
    return [
        Leg(index + 1, total, tuple(sorted(leg)), round(loads[index], 6)) for index, leg in enumerate(legs)
    ]


def _usable(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds >= 0


def _check_total(total: int) -> None:
    if not 1 <= total <= MAX_LEGS:
        raise ValueError(f"parallel must be between 1 and {MAX_LEGS}, not {total}")


def durations_by_file(
    recorded: Iterable[tuple[str | None, str, float]], files: Sequence[str]
) -> dict[str, float]:
    """Seconds per test file, from recorded `(file, classname, seconds)` rows (one per test case,
    already averaged over the attempts that ran it), for the `files` being split.

    A row counts for its `file` when that is one of the files; otherwise for the file its
    classname names, read as a dotted path: the file's module (`tests/e2e/test_a.py` is
    `tests.e2e.test_a`) or a class inside it (`tests.e2e.test_a.TestX`), or — for Java-like
    source trees — a module path it ends (`com.example.FooTest` for
    `src/test/java/com/example/FooTest.java`) when exactly one file does. Rows that match no file
    are ignored.
    """
    modules: dict[str, str] = {}
    endings: dict[str, str | None] = {}
    for name in files:
        dotted = (
            name.rsplit(".", 1)[0].replace("/", ".")
            if "." in name.rsplit("/", 1)[-1]
            else name.replace("/", ".")
        )
        modules[dotted] = name
        parts = dotted.split(".")
        for start in range(1, len(parts)):
            ending = ".".join(parts[start:])
            endings[ending] = name if ending not in endings else None  # ambiguous: no match
    wanted = set(files)
    seconds: dict[str, float] = {}
    for file, classname, spent in recorded:
        target = file if file in wanted else _file_of(classname, modules, endings)
        if target is not None and _usable(spent):
            seconds[target] = seconds.get(target, 0.0) + spent
    return seconds


def _file_of(classname: str, modules: Mapping[str, str], endings: Mapping[str, str | None]) -> str | None:
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):  # the module itself, then the module holding the class
        prefix = ".".join(parts[:end])
        if prefix in modules:
            return modules[prefix]
    for end in range(len(parts), 0, -1):
        found = endings.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None
