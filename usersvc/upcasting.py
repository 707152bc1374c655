"""Upcasters: pure functions that turn an event's data of version N into version N + 1.

An event's version is the `schemaVersion` of its metadata (absent means 1). When a type's data
changes shape, its version in `usersvc.events.SCHEMA_VERSIONS` goes up by one and an upcaster
from the previous version is registered here; reading then brings every stored version up to
date, one step at a time, so history is never rewritten. `Upcasters.check` refuses gaps (a
version with no way up) and duplicates; it runs when the registry is built, at import of the
contract, so a deploy with a broken chain fails at start, not on the first old event.

Today every type is at version 1 and the registry is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Body = dict[str, Any]
Upcaster = Callable[[Body], Body]


class UpcastError(ValueError):
    """An event's data could not be brought to the current version."""


class RegistryError(RuntimeError):
    """The upcasters of a type have a gap or a duplicate."""


class Upcasters:
    """Upcasters keyed by (type, from version), each to from version + 1."""

    def __init__(self, steps: Iterable[tuple[str, int, Upcaster]] = ()) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        for type_, version, step in steps:
            if (type_, version) in self._steps:
                raise RegistryError(f"two upcasters for {type_} v{version}")
            self._steps[(type_, version)] = step

    def check(self, current: Mapping[str, int]) -> None:
        """Every version below a type's current one has an upcaster, and none other exists."""
        for type_, version in self._steps:
            if type_ not in current or not 1 <= version < current[type_]:
                raise RegistryError(
                    f"upcaster for {type_} v{version} has no place: the type is at "
                    f"v{current.get(type_)}"
                )
        for type_, latest in current.items():
            for version in range(1, latest):
                if (type_, version) not in self._steps:
                    raise RegistryError(f"no upcaster from {type_} v{version} to v{version + 1}")

    def upcast(self, type_: str, version: int, target: int, body: Body) -> Body:
        for step in range(version, target):
            try:
                body = self._steps[(type_, step)](body)
            except KeyError as exc:
                raise UpcastError(f"{type_} v{step} lacks {exc} to become v{step + 1}") from None
        return body


UPCASTERS = Upcasters()
