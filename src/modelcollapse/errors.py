"""Errors a user can act on: raised before any work, reported without a traceback."""

from __future__ import annotations


class SpecError(ValueError):
    """An invalid experiment spec; ``problems`` lists one message per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid experiment spec:\n  " + "\n  ".join(problems))


class DataError(SpecError):
    """A data source that cannot be used as specified (missing file, wrong shape, too small)."""

    def __init__(self, message: str) -> None:
        super().__init__([message])
