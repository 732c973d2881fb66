"""Located errors: every problem in user input names its file, line and field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocatedError:
    """One problem in one document, printed as ``FILE:LINE: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = self.field or "(document)"
        return f"{where}: {field}: {self.message}"


class InvalidDocument(Exception):
    """A document was rejected whole; ``errors`` lists every problem found."""

    def __init__(self, errors: list[LocatedError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class CannotStart(Exception):
    """The agent cannot start serving (e.g. its port is taken): one line for the person."""
