"""Catch-up subscriptions: confirmation, catch-up, checkpoints, caught-up, then live events.

`$all` is read by position from the store's ordered list, so the hand-over from catch-up to live
is seamless: the subscription simply waits for a record past the position it has reached, and no
event can be skipped or sent twice, also when a scavenge removes records meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
from esdbclient.protos.Grpc import streams_pb2

from esdb_emulator.model import MAX_REVISION, Store, StreamDeleted
from esdb_emulator.rpc import wire

CHUNK = 1024
LIVE_POLL = 0.5  # seconds between checks that the client is still there while idle
ReadResp = streams_pb2.ReadResp


def _confirmation() -> bytes:
    reply: bytes = ReadResp(
        confirmation=ReadResp.SubscriptionConfirmation(subscription_id=str(uuid.uuid4()))
    ).SerializeToString()
    return reply


def _checkpoint(position: int) -> bytes:
    reply: bytes = ReadResp(
        checkpoint=ReadResp.Checkpoint(commit_position=position, prepare_position=position)
    ).SerializeToString()
    return reply


_CAUGHT_UP = ReadResp(caught_up=ReadResp.CaughtUp()).SerializeToString()


def subscribe_to_all(
    store: Store, options: Any, as_string: bool, context: grpc.ServicerContext
) -> Iterator[bytes]:
    matches = wire.compile_filter(options)
    kind = options.all.WhichOneof("all_option")
    if kind == "position":
        start_position = options.all.position.commit_position
    elif kind == "end":
        start_position = store.last_position()
    else:
        start_position = 0
    cursor = start_position + 1  # exclusive
    interval = 0
    if matches is not None:
        window = options.filter.max if options.filter.WhichOneof("window") == "max" else 32
        interval = max(1, window) * max(1, options.filter.checkpointIntervalMultiplier)
    yield _confirmation()

    considered = 0
    last_checkpoint = start_position
    last_considered = start_position
    caught_up = False
    while context.is_active():
        chunk = store.all_from(cursor, CHUNK)
        if not chunk:
            if not caught_up:
                if interval and last_considered > last_checkpoint:
                    last_checkpoint = last_considered
                    yield _checkpoint(last_checkpoint)
                caught_up = True
                yield _CAUGHT_UP
            store.wait_for(cursor, LIVE_POLL)
            continue
        cursor = chunk[-1].position + 1
        for record in chunk:
            if not store.visible_in_all(record):
                continue
            considered += 1
            last_considered = record.position
            if matches is None or matches(record):
                yield wire.event_response(record, as_string)
            if interval and considered % interval == 0 and record.position > last_checkpoint:
                last_checkpoint = record.position
                yield _checkpoint(last_checkpoint)


def subscribe_to_stream(
    store: Store, options: Any, as_string: bool, context: grpc.ServicerContext
) -> Iterator[bytes]:
    stream_options = options.stream
    name = stream_options.stream_identifier.stream_name.decode()
    kind = stream_options.WhichOneof("revision_option")
    if kind == "revision":
        revision = stream_options.revision + 1  # exclusive
    elif kind == "end":
        revision = store.stream_end(name)
    else:
        revision = 0
    yield _confirmation()
    caught_up = False
    while context.is_active():
        seen = store.last_position()
        chunk = store.stream_records(name, revision, CHUNK)
        if not chunk:
            if not caught_up:
                caught_up = True
                yield _CAUGHT_UP
            store.wait_for(seen + 1, LIVE_POLL)
            continue
        for record in chunk:
            yield wire.event_response(record, as_string)
            if record.revision == MAX_REVISION:
                raise StreamDeleted(name)
            revision = record.revision + 1
