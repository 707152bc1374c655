"""What `usersvc diff` prints: each difference of `repro.diff` as a line of text or a JSON
object, and the summary."""

from __future__ import annotations

from typing import Any

from repro.diff import COMPARED, Difference, Row, Side, Summary

# The columns that hold the row's content; the others say which event produced it.
CONTENT = ("createdAt", "fullName", "revision")


def difference_line(difference: Difference) -> str:
    a, b = difference.a, difference.b
    match difference.kind:
        case "only-a":
            assert a is not None
            return f"only in A: {a.username}: {_content(a)}; {_origin(a)}"
        case "only-b":
            assert b is not None
            return f"only in B: {b.username}: {_content(b)}; {_origin(b)}"
        case "differs":
            assert a is not None and b is not None
            changed = [
                f"{column} {_show(a.value(column))} | {_show(b.value(column))}"
                for column in difference.columns
                if column in CONTENT
            ]
            what = "; ".join(changed) if changed else "same content, produced by other events"
            return (
                f"differs:   {difference.username}: {what} (A | B);"
                f" A: {_origin(a)}, B: {_origin(b)}"
            )


def difference_json(difference: Difference) -> dict[str, Any]:
    return {
        "kind": difference.kind,
        "username": difference.username,
        "columns": list(difference.columns),
        "a": _row_json(difference.a),
        "b": _row_json(difference.b),
    }


def summary_lines(a: Side, b: Side, summary: Summary) -> list[str]:
    lines = [
        f"A: {a.label}; {_checkpoints(summary.checkpoints_a)}",
        f"B: {b.label}; {_checkpoints(summary.checkpoints_b)}",
    ]
    if summary.checkpoints_a != summary.checkpoints_b:
        lines.append(
            "note: the checkpoints differ: the read models may reflect different moments of history"
        )
    if summary.differ:
        lines.append(
            f"the read models differ: {summary.only_a} only in A, {summary.only_b} only in B,"
            f" {summary.differing} differing, {summary.equal} equal"
        )
    else:
        lines.append(f"the read models are equal: {summary.equal} rows")
    return lines


def summary_json(a: Side, b: Side, summary: Summary) -> dict[str, Any]:
    return {
        "kind": "summary",
        "equal": not summary.differ,
        "onlyA": summary.only_a,
        "onlyB": summary.only_b,
        "differing": summary.differing,
        "same": summary.equal,
        "a": {"where": a.label, "checkpoints": summary.checkpoints_a},
        "b": {"where": b.label, "checkpoints": summary.checkpoints_b},
    }


def _content(row: Row) -> str:
    return ", ".join(f"{column} {_show(row.value(column))}" for column in CONTENT)


def _origin(row: Row) -> str:
    return f"event {row.event_id} at position {row.commit_position}"


def _checkpoints(checkpoints: dict[str, int]) -> str:
    if not checkpoints:
        return "no checkpoint"
    return ", ".join(f"checkpoint {name} at {position}" for name, position in checkpoints.items())


def _row_json(row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "username": row.username,
        **{column: _plain(row.value(column)) for column in COMPARED},
    }


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int) else str(value)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
