from datetime import UTC, datetime

import orjson
import pytest

from usersvc.events import (
    MalformedEvent,
    UserCreated,
    decode_user_created,
    encode_user_created,
    stream_name,
    username_from_stream,
)


def test_encoding_keeps_the_original_wire_shape() -> None:
    event = UserCreated("donald-le", "Donald Le", datetime(2024, 5, 1, 12, 30, 1, 234567, UTC))
    body = orjson.loads(encode_user_created(event))
    assert body == {
        "username": "donald-le",
        "fullName": "Donald Le",
        "openedAt": "2024-05-01T12:30:01.234Z",
    }


def test_decode_round_trips_at_millisecond_precision() -> None:
    event = UserCreated("a.b_c-1", "Ünïcode Name", datetime(2024, 1, 2, 3, 4, 5, 6000, UTC))
    assert decode_user_created(encode_user_created(event)) == event


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"fullName": "x", "openedAt": "2024-01-01T00:00:00Z"}',
        b'{"username": "has space", "fullName": "x", "openedAt": "2024-01-01T00:00:00Z"}',
        b'{"username": "newline\\n", "fullName": "x", "openedAt": "2024-01-01T00:00:00Z"}',
        b'{"username": "a", "fullName": "", "openedAt": "2024-01-01T00:00:00Z"}',
        b'{"username": "a", "fullName": "x"}',
        b'{"username": "a", "fullName": "x", "openedAt": "yesterday"}',
        b'{"username": "a", "fullName": "x", "openedAt": "2024-01-01T00:00:00"}',
    ],
)
def test_decode_rejects_malformed_payloads(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_user_created(data)


def test_stream_names_round_trip() -> None:
    assert stream_name("bob") == "user-bob"
    assert username_from_stream("user-bob") == "bob"
    assert username_from_stream("order-1") is None
