"""Errors the repositories raise for conditions callers must handle (not database failures)."""

from __future__ import annotations


class RepositoryError(Exception):
    """Base of the repositories' own errors. None of them is worth retrying unchanged."""

    retriable = False


class AlreadyExistsError(RepositoryError):
    """A row with the same unique value (e-mail, project name, …) exists already."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class StateConflictError(RepositoryError):
    """The request does not fit the row's current state (e.g. cancelling a finished run)."""
