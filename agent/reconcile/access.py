"""An access file's lines as DMS's `restrict` commands match them, simulated fast enough for a
first sync of 10,000 restrictions (a plain scan per op cost seconds there).

- `restrict add X` refuses when X occurs anywhere in the file (``grep -F``). X holds one ``@``
  and no blank, so it can only occur inside a blank-free token holding an ``@``; in a token with
  exactly one ``@`` the two ``@`` line up: the token's local part ends with X's and its domain
  starts with X's. Tokens are indexed by domain, their local parts reversed and sorted, so the
  test is a prefix search (bisect). Tokens with several ``@`` are few and scanned.
- `restrict del X` removes every line that starts with X (``sed "/^X.*/d"``, case-sensitive):
  the raw lines are kept sorted for that prefix search.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from agent.dms.files import access_address


class AccessLines:
    def __init__(self, lines: Iterable[str] = ()) -> None:
        self._sorted: list[str] = []
        self._by_address: dict[str, list[str]] = {}  # lower-cased address -> its lines
        self._domains: list[str] = []  # token domains, sorted (a domain prefix is a bisect)
        self._locals: dict[str, list[str]] = {}  # token domain -> reversed local parts, sorted
        self._odd: list[str] = []  # tokens with several @
        for line in lines:
            self.add(line)

    def add(self, line: str) -> None:
        insort(self._sorted, line)
        self._by_address.setdefault(access_address(line), []).append(line)
        for token in line.split():
            if token.count("@") == 1:
                local, _, domain = token.partition("@")
                if domain not in self._locals:
                    insort(self._domains, domain)
                insort(self._locals.setdefault(domain, []), local[::-1])
            elif "@" in token:
                self._odd.append(token)

    def remove(self, line: str) -> None:
        del self._sorted[bisect_left(self._sorted, line)]
        self._by_address[access_address(line)].remove(line)
        for token in line.split():
            if token.count("@") == 1:
                local, _, domain = token.partition("@")
                locals_ = self._locals[domain]
                del locals_[bisect_left(locals_, local[::-1])]
            elif "@" in token:
                self._odd.remove(token)

    def holding(self, address: str) -> str | None:
        """A token of the file that holds ``address`` (as ``grep -F`` finds it), or None."""
        local, _, domain = address.partition("@")
        wanted = local[::-1]
        for token_domain in _starting_with(self._domains, domain):
            locals_ = self._locals[token_domain]
            i = bisect_left(locals_, wanted)
            if i < len(locals_) and locals_[i].startswith(wanted):
                return f"{locals_[i][::-1]}@{token_domain}"
        return next((t for t in self._odd if address in t), None)

    def starting_with(self, prefix: str) -> list[str]:
        """The lines `sed "/^PREFIX.*/d"` would remove."""
        return _starting_with(self._sorted, prefix)

    def of(self, address: str) -> list[str]:
        """The lines for ``address`` (any case): what the agent means to remove."""
        return list(self._by_address.get(address, ()))


def _starting_with(ordered: list[str], prefix: str) -> list[str]:
    i = bisect_left(ordered, prefix)
    out = []
    while i < len(ordered) and ordered[i].startswith(prefix):
        out.append(ordered[i])
        i += 1
    return out
