"""Entity tags and conditional requests (RFC 9110 §8.8.3, §13.1).

A user's entity tag is the stream revision of the last event of its state, as a strong tag:
`"<revision>"`. `If-Match` compares strongly (a weak tag `W/"3"` never matches), `If-None-Match`
weakly. A malformed header matches nothing: the client is told the current tag (412) rather than
guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# One entity tag in a comma-separated list: `*`, `"opaque"` or `W/"opaque"`.
_TAG = re.compile(r'\s*(\*|(W/)?"([^"]*)")\s*(?:,|$)')


def etag(revision: int) -> str:
    return f'"{revision}"'


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed `If-Match` or `If-None-Match`: `*`, and the strong and weak revisions named."""

    any: bool
    strong: frozenset[int]
    weak: frozenset[int]

    def matches_strongly(self, revision: int) -> bool:
        return self.any or revision in self.strong

    def matches_weakly(self, revision: int) -> bool:
        return self.any or revision in self.strong or revision in self.weak


NOTHING = Condition(any=False, strong=frozenset(), weak=frozenset())


def parse(header: str | None) -> Condition | None:
    """The condition in a header's value; None when the header is absent.

    A value that is not a list of entity tags is `NOTHING`: a condition no revision satisfies.
    """
    if header is None:
        return None
    text = header.strip()
    if not text:
        return NOTHING
    any_ = False
    strong: set[int] = set()
    weak: set[int] = set()
    position = 0
    while position < len(text):
        match = _TAG.match(text, position)
        if match is None or match.end() == position:
            return NOTHING
        position = match.end()
        if match.group(1) == "*":
            any_ = True
            continue
        value = match.group(3)
        if not (value.isascii() and value.isdigit()) or value != str(int(value)):
            continue  # a tag that is not one of ours matches nothing; the others still may
        (weak if match.group(2) else strong).add(int(value))
    return Condition(any_, frozenset(strong), frozenset(weak))
