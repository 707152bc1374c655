"""What `usersvc bisect` asks of a read model: is its state wrong?

A check is an SQL query that returns rows when the state is wrong (`SqlCheck`), or a Python
function that takes the psycopg connection and returns True when the state is wrong
(`FunctionCheck`). It runs on the bisect's own connection, inside its transaction, with the
`search_path` set to the throwaway schema (so `"user"` and `checkpoint` name its tables), in a
savepoint that is always rolled back: a check can read anything and change nothing, and a check
that fails with an SQL error leaves the bisect's transaction usable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from repro.loading import load_object

# Rows of a check kept for the report (the count is always exact).
KEPT_ROWS = 20


class CheckError(RuntimeError):
    """The check could not say: it raised, or returned something that is not an answer."""


@dataclass(frozen=True, slots=True)
class Verdict:
    wrong: bool
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()  # the first KEPT_ROWS
    count: int = 0  # rows returned (an SQL check)

    def lines(self) -> list[str]:
        """The verdict for a person: 'right' or 'wrong', then the rows, if any."""
        if not self.columns:
            return ["wrong (the check returned True)" if self.wrong else "right"]
        if not self.count:
            return ["right: no rows"]
        head = [f"wrong: {self.count} row{'s' if self.count != 1 else ''}"]
        table = [" | ".join(self.columns)]
        table += [" | ".join(_cell(value) for value in row) for row in self.rows]
        if self.count > len(self.rows):
            table.append(f"... and {self.count - len(self.rows)} more")
        return head + ["  " + line for line in table]


@dataclass(frozen=True, slots=True)
class SqlCheck:
    query: str

    def describe(self) -> str:
        return f"{self.query} (SQL: wrong when it returns rows)"

    def run(self, conn: psycopg.Connection[Any]) -> Verdict:
        with conn.cursor() as cur:
            cur.execute(self.query.encode())
            if cur.description is None:
                raise CheckError("the check's SQL returns no result (it must be a query)")
            columns = tuple(column.name for column in cur.description)
            rows = cur.fetchmany(KEPT_ROWS)
            count = len(rows) + sum(1 for _ in cur)
        return Verdict(bool(count), columns, tuple(tuple(row) for row in rows), count)


@dataclass(frozen=True, slots=True)
class FunctionCheck:
    function: Callable[[psycopg.Connection[Any]], object]
    name: str

    def describe(self) -> str:
        return f"{self.name} (a function: wrong when it returns True)"

    def run(self, conn: psycopg.Connection[Any]) -> Verdict:
        answer = self.function(conn)
        if not isinstance(answer, bool):
            raise CheckError(
                f"{self.name} returned {type(answer).__name__}, not a bool (True when wrong)"
            )
        return Verdict(answer)


Check = SqlCheck | FunctionCheck


def load_check(spec: str) -> FunctionCheck:
    """The function `module:function` (see `repro.loading`), as a check."""
    function = load_object(spec)
    if not callable(function):
        raise CheckError(f"{spec} is not a function")
    return FunctionCheck(function, spec)


def verdict(conn: psycopg.Connection[Any], check: Check, where: str) -> Verdict:
    """Run `check` on the state `conn` sees now, in a savepoint rolled back afterwards. Raises
    `CheckError` naming `where` (e.g. 'after position 1234') when it cannot say."""
    try:
        with conn.transaction(force_rollback=True):
            return check.run(conn)
    except CheckError as exc:
        raise CheckError(f"the check failed to run {where}: {exc}") from None
    except psycopg.Error as exc:
        message = getattr(exc.diag, "message_primary", None) or str(exc)
        raise CheckError(f"the check failed to run {where}: {message}") from None
    except Exception as exc:
        raise CheckError(f"the check raised {type(exc).__name__} {where}: {exc}") from None


def _cell(value: Any) -> str:
    return "NULL" if value is None else str(value)
