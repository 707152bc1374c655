"""Salvage: copy every whole frame of a damaged data directory into a new one, never touching the
damaged one, and say what was kept and what was not.

What is kept keeps its position, revision, id and time, one frame per frame as it was written.
Left out are the damaged bytes (`Skipped`) and, in a stream that lost a revision in them, the
revisions before the gap (`LeftOut`): a stream's revisions must follow one another, and keeping
the ones after the gap keeps its last revision, so a later append never reuses a revision a
client was told of, and a deletion, the last thing that happened to a user, stays.

Positions are never reused: the new log ends with an epoch record (hidden from `$all`) above the
last whole frame and above the source's reserved position (`wal.py`), so new events go above
every position the damaged log may ever have acknowledged, including those in the damage.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from esdb_emulator.model.frames import Damage, scan
from esdb_emulator.model.records import (
    EPOCH_STREAM,
    MAX_REVISION,
    Record,
    epoch_event,
    new_records,
    ticks_now,
)
from esdb_emulator.model.wal import (
    FILE_NAME,
    LOCK_NAME,
    DataDirectoryInUse,
    LogDamaged,
    WriteAheadLog,
    read_reservation,
    sync_directory,
)


class SalvageRefused(OSError):
    """Nothing was salvaged, and nothing written: the source holds no log, is in use, or the
    target is not a new directory."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """Damaged bytes `offset` to `end` of the source log: before a whole frame, or its torn
    tail."""

    offset: int
    end: int
    torn: bool
    after_position: int  # the last position of the whole frame before them (0: none)


@dataclass(frozen=True, slots=True)
class LeftOut:
    """Whole records of `stream` left out: its revisions `first` to `last` before a gap."""

    stream: str
    first: int
    last: int
    count: int


@dataclass
class SalvageReport:
    frames: int = 0  # whole frames kept
    events: int = 0  # records kept
    skipped: list[Skipped] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    reserved: int | None = None  # the source's reserved position (None: none, or unreadable)
    reservation_damaged: bool = False
    next_after: int = 0  # new events get positions above this one


def salvage(source: Path, target: Path) -> SalvageReport:
    """Copy what is whole of the log in `source` into a new data directory `target`."""
    log_file = source / FILE_NAME
    if not log_file.is_file():
        raise SalvageRefused(f"{source} holds no emulator data (no {FILE_NAME})")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SalvageRefused(f"{target} is not empty; salvage writes only into a new directory")
    if target.resolve().is_relative_to(source.resolve()):
        raise SalvageRefused(f"{target} is inside {source}, which salvage never changes")
    report = SalvageReport()
    with _not_in_use(source):
        content = log_file.read_bytes()
        try:
            report.reserved = read_reservation(source)
        except LogDamaged:
            report.reservation_damaged = True
    frames: list[list[Record]] = []
    last = 0
    for item in scan(content):
        if isinstance(item, Damage):
            report.skipped.append(Skipped(item.offset, item.end, item.torn, last))
        else:
            frames.append(item.records)
            last = item.records[-1].position
    report.left_out = _close_gaps(frames)
    report.frames = len(frames)
    report.events = sum(len(records) for records in frames)
    report.next_after = max(last, report.reserved or 0)
    _write(target, frames, report)
    return report


def _close_gaps(frames: list[list[Record]]) -> list[LeftOut]:
    """Drop, in place, every stream's records before its last gap in revisions."""
    runs: dict[str, list[Record]] = {}  # the stream's records since its last gap
    dropped: dict[str, list[Record]] = {}
    for records in frames:
        for record in records:
            if record.revision == MAX_REVISION:  # a tombstone follows no revision
                continue
            run = runs.setdefault(record.stream, [])
            if run and record.revision != run[-1].revision + 1:
                dropped.setdefault(record.stream, []).extend(run)
                run.clear()
            run.append(record)
    if not dropped:
        return []
    gone = {id(record) for records in dropped.values() for record in records}
    for index, records in enumerate(frames):
        frames[index] = [record for record in records if id(record) not in gone]
    frames[:] = [records for records in frames if records]
    return [
        LeftOut(stream, records[0].revision, records[-1].revision, len(records))
        for stream, records in dropped.items()
    ]


def _write(target: Path, frames: list[list[Record]], report: SalvageReport) -> None:
    epoch_revision = 0
    for records in frames:
        for record in records:
            if record.stream == EPOCH_STREAM:
                epoch_revision = record.revision + 1
    reason = f"salvaged, {len(report.skipped)} damaged byte ranges skipped"
    epoch = new_records(
        EPOCH_STREAM, epoch_revision, [epoch_event(reason)], report.next_after, ticks_now()
    )
    wal = WriteAheadLog(target)
    try:
        list(wal.replay())
        for records in frames:
            wal.write(records)
        wal.write(epoch)
        wal.sync()
    finally:
        wal.close()
    sync_directory(target)


@contextmanager
def _not_in_use(directory: Path) -> Iterator[None]:
    """While reading `directory`, keep an emulator from opening it (a shared lock, taken without
    writing anything); refuse when one holds it."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirectoryInUse(
                f"{directory} is in use by an emulator or scavenge; stop it first"
            ) from None
        yield
    finally:
        os.close(fd)
