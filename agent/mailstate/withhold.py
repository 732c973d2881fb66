"""Errors about documents that hold passwords never quote what they found.

A password typed into the wrong place (the address column of ``postfix-accounts.cf``, a key of
a passwords document, a value with a YAML tag) would otherwise reach a log line, an Event and
``/status``. Whatever the source's ``secret`` flag says, errors and warnings of such documents
keep their file, line and message but lose every quoted value, and a field is named only when
it is a well-formed address (optionally with ``.password`` / ``.hash``).
"""

from __future__ import annotations

import re
from dataclasses import replace

from agent.errors import LocatedError
from agent.mailstate.syntax import ADDRESS_RE

WITHHELD = "(value withheld)"
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_SAFE_FIELD = re.compile(rf"(?:{ADDRESS_RE.pattern})(?:\.(?:password|hash))?|apiVersion|")


def withhold(errors: list[LocatedError]) -> list[LocatedError]:
    return [_withhold(e) for e in errors]


def _withhold(error: LocatedError) -> LocatedError:
    field = error.field if _SAFE_FIELD.fullmatch(error.field.lower()) else WITHHELD
    return replace(error, field=field, message=_QUOTED.sub(WITHHELD, error.message))
