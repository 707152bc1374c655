"""A user's whole life over real HTTP, with every part real: gunicorn, the worker, EventStoreDB
over gRPC, PostgreSQL, and bearer tokens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from esdbclient import EventStoreDBClient

from tests.fixtures.processes import System
from tests.fixtures.tokens import Signer, forged, unsigned
from tests.fixtures.waiting import wait_for_checkpoint
from usersvc.events import stream_name


@pytest.fixture
def esdb(esdb_url: str) -> Iterator[EventStoreDBClient]:
    client = EventStoreDBClient(esdb_url)
    yield client
    client.close()


def caught_up(system: System, response: httpx.Response) -> None:
    """Wait until the worker has applied the write `response` answered."""
    position = int(response.headers["X-Commit-Position"])
    wait_for_checkpoint(system.pg_url, system.schema, system.worker_name, position, timeout=20)


def error_code(response: httpx.Response) -> str:
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    body = response.json()
    assert list(body) == ["error"]
    code: str = body["error"]["code"]
    return code


def moment_between(earlier: str, later: str) -> str:
    """An ISO-8601 time strictly between two `recordedAt` values (milliseconds apart at least
    two)."""
    start, end = datetime.fromisoformat(earlier), datetime.fromisoformat(later)
    assert (end - start).total_seconds() >= 0.002, (earlier, later)
    return (start + (end - start) / 2).isoformat()


def test_a_users_whole_life_over_http(
    system: System, signer: Signer, esdb: EventStoreDBClient, unique: str
) -> None:
    http, username = system.http, f"life-{unique}"
    own = signer.bearer(username)
    admin = signer.bearer(f"ops-{unique}", admin=True)

    created = http.post("/users", json={"username": username, "fullName": "Ann Lee"})
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"0"'
    assert created.json()["commitPosition"] == int(created.headers["X-Commit-Position"])
    caught_up(system, created)
    read = http.get(f"/users/{username}")
    assert (read.status_code, read.headers["ETag"]) == (200, '"0"')
    assert list(read.json()) == ["id", "username", "createdAt", "fullName"]

    names = ["Ann Lee"]
    for revision, name in enumerate(["Ann Berg", "Ann Carr"]):
        changed = http.patch(
            f"/users/{username}",
            json={"fullName": name},
            headers={**own, "If-Match": f'"{revision}"'},
        )
        assert changed.status_code == 200, changed.text
        assert changed.headers["ETag"] == f'"{revision + 1}"'
        assert changed.json()["fullName"] == name
        names.append(name)
    caught_up(system, changed)
    now = http.get(f"/users/{username}")
    assert (now.json()["fullName"], now.headers["ETag"]) == ("Ann Carr", '"2"')
    assert http.get(f"/users/{username}", headers={"If-None-Match": '"2"'}).status_code == 304

    history = http.get(f"/users/{username}/events", headers=own)
    assert history.status_code == 200
    events = history.json()["events"]
    assert [e["revision"] for e in events] == [0, 1, 2]
    assert [e["data"]["fullName"] for e in events] == names
    assert history.json()["next"] is None

    for revision, name in enumerate(names):
        at = http.get(f"/users/{username}", params={"atRevision": revision}, headers=own)
        assert (at.json()["fullName"], at.headers["ETag"]) == (name, f'"{revision}"')
    between = moment_between(events[0]["recordedAt"], events[1]["recordedAt"])
    as_of = http.get(f"/users/{username}", params={"asOf": between}, headers=admin)
    assert (as_of.json()["fullName"], as_of.headers["ETag"]) == ("Ann Lee", '"0"')
    before = http.get(f"/users/{username}", params={"asOf": "2000-01-01T00:00:00Z"}, headers=own)
    assert (before.status_code, error_code(before)) == (404, "user_not_found")

    deleted = http.delete(f"/users/{username}", headers={**own, "If-Match": '"2"'})
    assert deleted.status_code == 204
    caught_up(system, deleted)
    gone = [
        http.get(f"/users/{username}"),
        http.get(f"/users/{username}/events", headers=own),
        http.get(f"/users/{username}", params={"atRevision": 1}, headers=own),
        http.get(f"/users/{username}", params={"asOf": between}, headers=own),
        http.patch(
            f"/users/{username}", json={"fullName": "X"}, headers={**own, "If-Match": '"2"'}
        ),
        http.delete(f"/users/{username}", headers={**own, "If-Match": "*"}),
    ]
    assert [(r.status_code, error_code(r)) for r in gone] == [(404, "user_not_found")] * 6
    readable = esdb.get_stream(stream_name(username))
    assert [e.type for e in readable] == ["user-deleted"]
    assert b"Ann" not in readable[0].data

    again = http.post("/users", json={"username": username, "fullName": "Ann Again"})
    assert again.status_code == 201, again.text
    assert (again.json()["streamRevision"], again.headers["ETag"]) == (4, '"4"')
    caught_up(system, again)
    reborn = http.get(f"/users/{username}")
    assert (reborn.json()["fullName"], reborn.headers["ETag"]) == ("Ann Again", '"4"')
    new_life = http.get(f"/users/{username}/events", headers=own).json()["events"]
    assert [(e["type"], e["revision"]) for e in new_life] == [("user-created", 4)]


def test_twenty_clients_changing_one_user_at_once_one_wins_the_rest_are_412(
    system: System, signer: Signer, esdb: EventStoreDBClient, unique: str
) -> None:
    username = f"race-{unique}"
    assert (
        system.http.post("/users", json={"username": username, "fullName": "Start"}).status_code
        == 201
    )
    clients = 20
    ready = threading.Barrier(clients)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def change(n: int) -> None:
        with httpx.Client(base_url=system.base_url, timeout=30.0) as http:
            ready.wait()
            response = http.patch(
                f"/users/{username}",
                json={"fullName": f"Client {n}"},
                headers={**signer.bearer(username), "If-Match": '"0"'},
            )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=change, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [412] * (clients - 1)
    assert {r.headers["ETag"] for r in answers} == {'"1"'}
    assert {error_code(r) for r in answers if r.status_code == 412} == {"precondition_failed"}
    events = esdb.get_stream(stream_name(username))
    assert [e.type for e in events] == ["user-created", "user-full-name-changed"]
    (winner,) = [r for r in answers if r.status_code == 200]
    assert winner.json()["fullName"].encode() in events[1].data


def bad_tokens(signer: Signer, username: str) -> list[tuple[str, dict[str, str], int, str]]:
    expired = signer.token(username, now=datetime.now(UTC) - timedelta(hours=2))
    return [
        ("no token", {}, 401, "unauthenticated"),
        (
            "forged signature",
            {"Authorization": f"Bearer {forged(username)}"},
            401,
            "unauthenticated",
        ),
        ("expired", {"Authorization": f"Bearer {expired}"}, 401, "unauthenticated"),
        (
            "wrong audience",
            {"Authorization": f"Bearer {signer.token(username, audience='other')}"},
            401,
            "unauthenticated",
        ),
        ("alg none", {"Authorization": f"Bearer {unsigned(username)}"}, 401, "unauthenticated"),
        ("another user's", signer.bearer(f"{username}-other"), 403, "forbidden"),
    ]


def test_refused_tokens_are_json_errors_and_write_nothing_own_and_admin_tokens_work(
    system: System, signer: Signer, esdb: EventStoreDBClient, unique: str
) -> None:
    http, username = system.http, f"auth-{unique}"
    assert http.post("/users", json={"username": username, "fullName": "A"}).status_code == 201
    user = f"/users/{username}"
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("PATCH", user, {"json": {"fullName": "Hacked"}, "headers": {"If-Match": '"0"'}}),
        ("DELETE", user, {"headers": {"If-Match": "*"}}),
        ("GET", f"{user}/events", {}),
        ("GET", user, {"params": {"atRevision": 0}}),
    ]
    for case, headers, status, code in bad_tokens(signer, username):
        for method, url, kwargs in requests:
            sent = {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}
            response = http.request(method, url, **sent)
            assert response.status_code == status, (case, method, response.text)
            assert error_code(response) == code, case
            assert response.headers["WWW-Authenticate"].startswith("Bearer "), case
    assert [e.type for e in esdb.get_stream(stream_name(username))] == ["user-created"]

    own = http.patch(
        f"/users/{username}",
        json={"fullName": "Own"},
        headers={**signer.bearer(username), "If-Match": '"0"'},
    )
    assert own.status_code == 200
    admin = http.patch(
        f"/users/{username}",
        json={"fullName": "Admin"},
        headers={**signer.bearer("ops", admin=True), "If-Match": '"1"'},
    )
    assert admin.status_code == 200
    assert [e.type for e in esdb.get_stream(stream_name(username))] == [
        "user-created",
        "user-full-name-changed",
        "user-full-name-changed",
    ]
