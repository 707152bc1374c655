"""Commands against the real EventStoreDB (gRPC) and PostgreSQL: races, half-done deletions,
truncation metadata, events this code cannot read (Flask's test client for HTTP)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from esdbclient import EventStoreDBClient, NewEvent, RecordedEvent
from flask import Flask
from flask.testing import FlaskClient

from esdb_emulator import EmbeddedServer
from service.app import close_app, create_app
from service.event_store import EventStore
from tests.fixtures.service_app import auth_settings
from tests.fixtures.tokens import Signer, make_signer
from usersvc.events import (
    FullNameChanged,
    UserDeleted,
    encode_event,
    encode_metadata,
    stream_name,
)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path)


@pytest.fixture
def esdb(esdb_url: str) -> Iterator[EventStoreDBClient]:
    client = EventStoreDBClient(esdb_url)
    yield client
    client.close()


@dataclass
class Private:
    """A service on an EventStoreDB of this test's own: for streams no worker of another test
    may read in `$all` (an event no code can project, a tombstone)."""

    client: FlaskClient
    esdb: EventStoreDBClient


@pytest.fixture
def private(tmp_path: Path, pg_url: str, schema: str, signer: Signer) -> Iterator[Private]:
    with EmbeddedServer(data_dir=tmp_path / "esdb") as server:
        settings = auth_settings(
            signer.key_file,
            esdb_connection_string=server.connection_string,
            database_url=pg_url,
            database_schema=schema,
            esdb_timeout=3.0,
        )
        application = create_app(settings)
        esdb = EventStoreDBClient(server.connection_string)
        try:
            yield Private(application.test_client(), esdb)
        finally:
            esdb.close()
            close_app(application)


class RacedStore(EventStore):
    """Right after the service reads a stream, someone else changes the user (once)."""

    def __init__(self, url: str, esdb: EventStoreDBClient) -> None:
        super().__init__(url, 3.0)
        self.esdb = esdb
        self.armed = False

    def read(self, stream: str) -> Sequence[RecordedEvent]:
        events = super().read(stream)
        if self.armed:
            self.armed = False
            username = stream.removeprefix("user-")
            change = FullNameChanged(username, "Someone Else", datetime.now(UTC))
            self.esdb.append_to_stream(
                stream,
                current_version=events[-1].stream_position,
                events=NewEvent(
                    type="user-full-name-changed",
                    data=encode_event(change),
                    metadata=encode_metadata(),
                ),
            )
        return events


@pytest.fixture
def raced(esdb_url: str, esdb: EventStoreDBClient) -> RacedStore:
    return RacedStore(esdb_url, esdb)


@pytest.fixture
def app(
    esdb_url: str, pg_url: str, schema: str, signer: Signer, raced: RacedStore
) -> Iterator[Flask]:
    settings = auth_settings(
        signer.key_file,
        esdb_connection_string=esdb_url,
        database_url=pg_url,
        database_schema=schema,
        esdb_timeout=3.0,
    )
    application = create_app(settings, event_store=raced)
    yield application
    close_app(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def create(client: FlaskClient, username: str, **headers: str) -> None:
    response = client.post(
        "/users", json={"username": username, "fullName": "Ann Lee"}, headers=headers
    )
    assert response.status_code == 201, response.data


def delete_behind_the_services_back(esdb: EventStoreDBClient, username: str, at: int) -> None:
    """A deletion whose truncation never happened (the service stopped between the two)."""
    esdb.append_to_stream(
        stream_name(username),
        current_version=at,
        events=NewEvent(
            type="user-deleted",
            data=encode_event(UserDeleted(username, datetime.now(UTC))),
            metadata=encode_metadata(),
        ),
    )


def test_a_change_racing_in_between_read_and_append_is_412_and_overwrites_nothing(
    client: FlaskClient, raced: RacedStore, esdb: EventStoreDBClient, signer: Signer, unique: str
) -> None:
    username = f"race-{unique}"
    create(client, username)
    raced.armed = True
    response = client.patch(
        f"/users/{username}",
        json={"fullName": "Mine"},
        headers={**signer.bearer(username), "If-Match": '"0"'},
    )
    assert response.status_code == 412
    assert response.headers["ETag"] == '"1"'
    assert response.json["error"]["code"] == "precondition_failed"  # type: ignore[index]
    names = [orjson.loads(e.data)["fullName"] for e in esdb.get_stream(stream_name(username))]
    assert names == ["Ann Lee", "Someone Else"]


def test_delete_finishes_a_half_done_deletion_then_answers_404(
    client: FlaskClient, esdb: EventStoreDBClient, signer: Signer, unique: str
) -> None:
    username = f"half-{unique}"
    create(client, username)
    delete_behind_the_services_back(esdb, username, at=0)
    stream = stream_name(username)
    assert [e.type for e in esdb.get_stream(stream)] == ["user-created", "user-deleted"]
    auth = signer.bearer(username)
    history = client.get(f"/users/{username}/events", headers=auth)
    assert history.status_code == 404

    finished = client.delete(f"/users/{username}", headers={**auth, "If-Match": '"0"'})
    assert finished.status_code == 204
    assert finished.headers["X-Commit-Position"] == str(esdb.get_stream(stream)[0].commit_position)
    assert esdb.get_stream_metadata(stream)[0] == {"$tb": 1}
    assert [e.type for e in esdb.get_stream(stream)] == ["user-deleted"]
    again = client.delete(f"/users/{username}", headers={**auth, "If-Match": "*"})
    assert again.status_code == 404


def test_registering_again_after_a_half_done_deletion_forgets_the_old_life_first(
    client: FlaskClient, esdb: EventStoreDBClient, unique: str
) -> None:
    username = f"reborn-{unique}"
    create(client, username)
    delete_behind_the_services_back(esdb, username, at=0)
    response = client.post("/users", json={"username": username, "fullName": "New"})
    assert response.status_code == 201
    assert response.json["streamRevision"] == 2  # type: ignore[index]
    stream = stream_name(username)
    assert esdb.get_stream_metadata(stream)[0] == {"$tb": 1}
    assert [e.type for e in esdb.get_stream(stream)] == ["user-deleted", "user-created"]


def test_delete_keeps_the_streams_other_metadata(
    client: FlaskClient, esdb: EventStoreDBClient, signer: Signer, unique: str
) -> None:
    username = f"meta-{unique}"
    create(client, username)
    stream = stream_name(username)
    esdb.set_stream_metadata(stream, metadata={"$maxAge": 31536000, "owner": "hr"})
    response = client.delete(
        f"/users/{username}", headers={**signer.bearer(username), "If-Match": "*"}
    )
    assert response.status_code == 204
    assert esdb.get_stream_metadata(stream)[0] == {"$maxAge": 31536000, "owner": "hr", "$tb": 1}


def test_a_retried_post_after_registering_again_is_recognised(
    client: FlaskClient, signer: Signer, unique: str
) -> None:
    username = f"retry-{unique}"
    create(client, username)
    client.delete(f"/users/{username}", headers={**signer.bearer(username), "If-Match": "*"})
    body = {"username": username, "fullName": "Again"}
    first = client.post("/users", json=body, headers={"X-Request-ID": f"r-{unique}"})
    retry = client.post("/users", json=body, headers={"X-Request-ID": f"r-{unique}"})
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json == first.json
    assert first.json["streamRevision"] == 2  # type: ignore[index]


def test_an_event_this_code_cannot_read_is_500_naming_it_and_nothing_is_written(
    private: Private, signer: Signer, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, esdb = private.client, private.esdb
    username = f"future-{unique}"
    create(client, username)
    stream = stream_name(username)
    change = FullNameChanged(username, "From The Future", datetime.now(UTC))
    esdb.append_to_stream(
        stream,
        current_version=0,
        events=NewEvent(
            type="user-full-name-changed",
            data=encode_event(change),
            metadata=encode_metadata(schema_version=99),
        ),
    )
    auth = signer.bearer(username)
    for response in [
        client.patch(
            f"/users/{username}", json={"fullName": "X"}, headers={**auth, "If-Match": '"1"'}
        ),
        client.get(f"/users/{username}/events", headers=auth),
    ]:
        assert response.status_code == 500
        error = response.json["error"]  # type: ignore[index]
        assert error["code"] == "event_unreadable"
        assert f"event 1 of {username!r}" in error["message"]
        # Why is the log's (the decoder's words about stored data), not the answer's.
        assert "schemaVersion" not in error["message"]
    assert "schemaVersion 99 is newer" in caplog.text
    assert len(esdb.get_stream(stream)) == 2


@pytest.fixture
def other_client(esdb_url: str, pg_url: str, schema: str, signer: Signer) -> Iterator[FlaskClient]:
    """A second service process: its own EventStore client and its own kept streams."""
    settings = auth_settings(
        signer.key_file,
        esdb_connection_string=esdb_url,
        database_url=pg_url,
        database_schema=schema,
        esdb_timeout=3.0,
    )
    application = create_app(settings)
    yield application.test_client()
    close_app(application)


def test_a_deletion_through_another_process_hides_what_this_one_had_folded(
    client: FlaskClient, other_client: FlaskClient, signer: Signer, unique: str
) -> None:
    username = f"two-{unique}"
    create(client, username)
    auth = signer.bearer(username)
    changed = client.patch(
        f"/users/{username}", json={"fullName": "Ann B"}, headers={**auth, "If-Match": '"0"'}
    )
    assert changed.status_code == 200
    assert client.get(f"/users/{username}/events", headers=auth).status_code == 200
    deleted = other_client.delete(f"/users/{username}", headers={**auth, "If-Match": '"1"'})
    assert deleted.status_code == 204
    for path in [f"/users/{username}/events", f"/users/{username}?atRevision=0"]:
        assert client.get(path, headers=auth).status_code == 404, path
    again = other_client.post("/users", json={"username": username, "fullName": "New"})
    assert again.status_code == 201
    history = client.get(f"/users/{username}/events", headers=auth).json
    assert [e["revision"] for e in history["events"]] == [3]  # type: ignore[index]


def test_a_stream_tombstoned_outside_usersvc_is_gone_for_a_process_that_had_it(
    private: Private, signer: Signer, unique: str
) -> None:
    client, esdb = private.client, private.esdb
    username = f"tomb-{unique}"
    create(client, username)
    auth = signer.bearer(username)
    assert client.get(f"/users/{username}/events", headers=auth).status_code == 200
    esdb.tombstone_stream(stream_name(username), current_version=0)
    response = client.patch(
        f"/users/{username}", json={"fullName": "X"}, headers={**auth, "If-Match": '"0"'}
    )
    assert response.status_code == 404
    assert client.get(f"/users/{username}/events", headers=auth).status_code == 404
