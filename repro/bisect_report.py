"""What `usersvc bisect` prints: the outcome of `repro.bisect` as lines for a person."""

from __future__ import annotations

import base64
from dataclasses import fields
from typing import Any

import orjson

from repro.bisect import (
    Cost,
    FailsAtStart,
    Found,
    NeverFails,
    Outcome,
    RuleBroken,
    RuleHeld,
    RuleUnchecked,
)
from usersvc.events import MalformedEvent, decode_event
from usersvc.records import StoredEvent

RULE = "once the check fails, it keeps failing"


def report(outcome: Outcome) -> list[str]:
    match outcome:
        case Found():
            return _found(outcome)
        case NeverFails(last, halted, cost):
            if halted is not None:
                lines = [
                    "bisect: the check never failed before the projection halted:",
                    f"  {halted}",
                    "  (the live worker stops at the same event; the check held up to the event"
                    " before it)",
                ]
            else:
                lines = [
                    "bisect: the check never failed: it held after every batch of the range and"
                    f" at its end (position {cost.last_position}); no event is to blame"
                ]
            return [*lines, "check at the last state:", *_indent(last.lines()), _cost(cost)]
        case FailsAtStart(verdict, position, cost):
            where = (
                "on the empty read model, before the first event"
                if position is None
                else f"already at --from-position {position}"
            )
            return [
                f"bisect: the check fails {where}: no event of the range is to blame (the check"
                " does not depend on these events, or the cause lies earlier)",
                "check:",
                *_indent(verdict.lines()),
                _cost(cost),
            ]


def _found(found: Found) -> list[str]:
    culprit = found.culprit
    event = culprit.event
    first = " (the first event of the range)" if culprit.number == 1 else ""
    previous = (
        "the empty read model"
        if culprit.previous_position is None
        else f"the state after position {culprit.previous_position}"
    )
    lines = [
        f"bisect: the check first fails after event {culprit.number:,} of the range{first}:",
        *_indent(event_lines(event)),
        f"check before it ({previous}):",
        *_indent(culprit.before.lines()),
        "check after it:",
        *_indent(culprit.after.lines()),
        f"the user's row before it: {_row(culprit.row_before)}",
        f"the user's row after it:  {_row(culprit.row_after)}",
        _rule(found),
    ]
    if found.unstable:
        lines.append(
            "warning: the check gave another answer for the same events applied in other"
            " batches: the projection (or the check) depends on how events are batched, so"
            " this event may not be the cause"
        )
    if found.halted is not None:
        lines.append(f"later in the range the projection halts: {found.halted}")
    lines.append(_cost(found.cost))
    return lines


def event_lines(event: StoredEvent) -> list[str]:
    return [
        f"position:  {event.commit_position}",
        f"stream:    {event.stream}",
        f"type:      {event.type}",
        f"revision:  {event.revision}",
        f"event id:  {event.event_id}",
        f"recorded:  {event.recorded_at.isoformat()}",
        f"data:      {decoded(event)}",
        f"metadata:  {_raw(event.metadata)}",
    ]


def decoded(event: StoredEvent) -> str:
    """The data as the projection sees it: decoded by the contract's one decoder."""
    try:
        value = decode_event(event.type, event.data, event.metadata)
    except MalformedEvent as exc:
        return f"malformed, the projection cannot apply it ({exc}); raw: {_raw(event.data)}"
    if value is None:
        return f"not a user event, the projection skips it; raw: {_raw(event.data)}"
    body = {f.name: getattr(value, f.name) for f in fields(value)}
    return f"{type(value).__name__} {orjson.dumps(body).decode()}"


def _rule(found: Found) -> str:
    end = "the end of the range" if found.halted is None else "the last state the projection built"
    match found.rule:
        case RuleHeld(0, until):
            return f"rule ({RULE}): held: the check still fails at {end} (position {until})"
        case RuleHeld(checked, until):
            return (
                f"rule ({RULE}): held: the check failed at each of the {checked} batch"
                f" boundaries after it, the last being {end} (position {until})"
            )
        case RuleBroken(position, _):
            return (
                f"rule ({RULE}): NOT TRUE for this history: the check passes again after"
                f" position {position}; the event above is where it first failed, not"
                " necessarily the cause of a later failure"
            )
        case RuleUnchecked():
            return f"rule ({RULE}): not checked (--stop-early): the rest of the range was not read"


def _cost(cost: Cost) -> str:
    prefix = (
        f" after {cost.prefix_events:,} events up to --from-position applied unchecked"
        if cost.prefix_events
        else ""
    )
    return (
        f"cost: {cost.events:,} events in {cost.batches:,} batches{prefix}, {cost.checks:,}"
        f" checks, {cost.probes} probes re-applying {cost.reapplied:,} events,"
        f" {cost.seconds:.1f} s"
    )


def _row(row: dict[str, Any] | None) -> str:
    return "none" if row is None else orjson.dumps(row, default=str).decode()


def _raw(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]
