"""Hardened XML reading for reports, and `ReportError`, the one error of `workers.reports`.

Reports are written by whatever ran in the stage, so they are hostile input. The parser is
defusedxml's (decision 0013) on the standard library's expat, streamed with `iterparse`:

- no DTD at all by default: `<!DOCTYPE …>` is refused before anything in it is looked at, which
  also refuses every entity trick ("billion laughs", external entities, parameter entities);
- an entity declaration or an external reference is refused even where a DOCTYPE is allowed;
- the only DOCTYPEs ever allowed are those a caller names by system id and that have no
  internal subset (Cobertura writers declare `coverage-04.dtd`): the DTD is never fetched or
  read; a reference to an entity it might have defined is refused in text, and dropped by
  expat from an attribute value (expat does not report those), never expanded either way.

Every refusal and every syntax error becomes a `ReportError` whose reason says what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser
from defusedxml.ElementTree import iterparse as defused_iterparse

Source = Path | IO[bytes]
Event = tuple[str, Element]


class ReportError(Exception):
    """A report that cannot be read, with the reason shown on the stage. Not retriable: the same
    file fails the same way."""

    retriable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Parser(DefusedXMLParser):
    def __init__(self, allowed_doctypes: frozenset[str]) -> None:
        super().__init__(target=TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True)
        self._allowed_doctypes = allowed_doctypes
        # With an (unread) external DTD declared, expat skips undefined entities silently.
        self.parser.SkippedEntityHandler = self._skipped_entity

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        if sysid in self._allowed_doctypes and not has_internal_subset:
            return  # declared, never fetched: expat reads no external DTD without a handler
        super().defused_start_doctype_decl(name, sysid, pubid, has_internal_subset)

    def _skipped_entity(self, name: str, is_parameter_entity: bool) -> None:
        raise ReportError(
            f"refused: the report uses the entity {name!r}, which only its DTD could define; "
            "DTDs are never read in reports"
        )


def iter_events(source: Source, *, allowed_doctypes: frozenset[str] = frozenset()) -> Iterator[Event]:
    """("start" | "end", element) pairs of the document, streamed; ReportError when the document
    is refused or not well-formed (events already yielded stay valid)."""
    parser = _Parser(allowed_doctypes)
    try:
        yield from defused_iterparse(source, events=("start", "end"), parser=parser)
    except DTDForbidden as exc:
        where = f" {exc.sysid!r}" if exc.sysid else ""
        raise ReportError(
            f"refused: the report declares a DTD (<!DOCTYPE {exc.name}{where}>); "
            "DTDs and entities are never read or expanded in reports"
        ) from None
    except EntitiesForbidden as exc:
        raise ReportError(
            f"refused: the report declares the entity {exc.name!r}; entities are never expanded "
            "(entity expansion is how 'billion laughs' and external-entity attacks work)"
        ) from None
    except ExternalReferenceForbidden as exc:
        raise ReportError(
            f"refused: the report refers to the external resource {exc.sysid!r}; it was not read"
        ) from None
    except ParseError as exc:
        raise ReportError(f"not well-formed XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # e.g. an encoding expat does not know
        raise ReportError(f"unreadable XML: {exc}") from None
    except OSError as exc:
        raise ReportError(f"cannot read the file: {exc.strerror or exc}") from None


def local_name(tag: str) -> str:
    """`testcase` for `testcase` and for `{some-namespace}testcase`."""
    return tag.rpartition("}")[2]
