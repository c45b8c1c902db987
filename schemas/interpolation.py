"""`${{ name }}` placeholders in `.comet.yml` text fields such as `concurrency.group`.

The names are those of the expression language: `ref`, `branch`, `tag`, `event`, `sha` and
`variables.NAME`. Interpolation only ever produces a string for Comet itself (a concurrency group
key, say); it is never used to build a shell command, where values travel as environment instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_OPEN, _CLOSE = "${{", "}}"
_SIMPLE_NAMES = frozenset({"ref", "branch", "tag", "event", "sha"})
_VARIABLE = re.compile(r"variables\.[A-Za-z_][A-Za-z0-9_]*")


def is_known_name(name: str) -> bool:
    """Whether `name` may appear in a placeholder."""
    return name in _SIMPLE_NAMES or _VARIABLE.fullmatch(name) is not None


def placeholder_names(template: str) -> list[str]:
    """The names in `template`'s placeholders, in order; ValueError on an unclosed `${{`."""
    return [name for _, _, name in _placeholders(template)]


def check_template(template: str) -> str:
    """`template` itself, or ValueError naming an unclosed `${{` or an unknown name."""
    for name in placeholder_names(template):
        if not is_known_name(name):
            raise ValueError(
                f"unknown name {name!r} in ${{{{ }}}} (known: ref, branch, tag, event, sha, variables.NAME)"
            )
    return template


def interpolate(template: str, context: Mapping[str, str]) -> str:
    """`template` with each `${{ name }}` replaced by `context[name]`.

    `context` is keyed by the full name (`"ref"`, `"variables.TARGET"`). A variable missing from
    it is "" (as in `if:` expressions); any other missing name, and an unclosed `${{`, raise
    ValueError.
    """
    out: list[str] = []
    pos = 0
    for start, end, name in _placeholders(template):
        out.append(template[pos:start])
        if name in context:
            out.append(context[name])
        elif not _VARIABLE.fullmatch(name):
            raise ValueError(f"unknown name {name!r} in ${{{{ }}}} at column {start + 1}")
        pos = end
    out.append(template[pos:])
    return "".join(out)


def build_context(
    *, ref: str, branch: str, tag: str, event: str, sha: str, variables: Mapping[str, str]
) -> dict[str, str]:
    """The context for `interpolate` from a run's ref, event, commit and variables."""
    context = {"ref": ref, "branch": branch, "tag": tag, "event": event, "sha": sha}
    context.update({f"variables.{name}": value for name, value in variables.items()})
    return context


def _placeholders(template: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each placeholder; end is just past its `}}`."""
    found: list[tuple[int, int, str]] = []
    pos = template.find(_OPEN)
    while pos >= 0:
        close = template.find(_CLOSE, pos + len(_OPEN))
        if close < 0:
            raise ValueError(f"unclosed ${{{{ at column {pos + 1}")
        end = close + len(_CLOSE)
        found.append((pos, end, template[pos + len(_OPEN) : close].strip()))
        pos = template.find(_OPEN, end)
    return found
