"""Reads of one stream and of `$all` (counted reads; subscriptions are in `subscriptions`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from esdbclient.protos.Grpc import streams_pb2

from esdb_emulator.model import Store, StreamNotFound
from esdb_emulator.rpc import wire

CHUNK = 1024


def read_stream(store: Store, options: Any, backwards: bool, as_string: bool) -> Iterator[bytes]:
    stream_options = options.stream
    name = stream_options.stream_identifier.stream_name.decode()
    kind = stream_options.WhichOneof("revision_option")
    revision = stream_options.revision if kind == "revision" else None
    try:
        records = store.read_stream(name, revision, backwards, options.count)
    except StreamNotFound:
        yield streams_pb2.ReadResp(
            stream_not_found=streams_pb2.ReadResp.StreamNotFound(
                stream_identifier=stream_options.stream_identifier
            )
        ).SerializeToString()
        return
    for record in records:
        yield wire.event_response(record, as_string)


def read_all(store: Store, options: Any, backwards: bool, as_string: bool) -> Iterator[bytes]:
    """`$all` walked by position, so that a scavenge between two chunks moves nothing."""
    kind = options.all.WhichOneof("all_option")
    matches = wire.compile_filter(options)
    remaining = options.count
    if backwards:
        before = options.all.position.commit_position if kind == "position" else None
        while remaining > 0:
            chunk = store.all_before(before, CHUNK)
            if not chunk:
                return
            for record in reversed(chunk):
                if store.visible_in_all(record) and (matches is None or matches(record)):
                    yield wire.event_response(record, as_string)
                    remaining -= 1
                    if remaining == 0:
                        return
            before = chunk[0].position
        return
    if kind == "position":
        cursor = options.all.position.commit_position
    else:
        cursor = store.last_position() + 1 if kind == "end" else 0
    while remaining > 0:
        chunk = store.all_from(cursor, CHUNK)
        if not chunk:
            return
        cursor = chunk[-1].position + 1
        for record in chunk:
            if store.visible_in_all(record) and (matches is None or matches(record)):
                yield wire.event_response(record, as_string)
                remaining -= 1
                if remaining == 0:
                    return
