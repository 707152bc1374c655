"""HTTP → EventStoreDB → worker → PostgreSQL → HTTP, with every part real."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tests.fixtures.processes import System
from tests.fixtures.waiting import wait_for_checkpoint


def _created(system: System, username: str, full_name: str) -> int:
    response = system.http.post("/users", json={"username": username, "fullName": full_name})
    assert response.status_code == 201, response.text
    assert response.headers["Location"].endswith(f"/users/{username}")
    body = response.json()
    assert body["username"] == username
    position: int = body["commitPosition"]
    assert position > 0
    return position


def _wait(system: System, position: int) -> None:
    wait_for_checkpoint(system.pg_url, system.schema, system.worker_name, position, timeout=20)


def test_the_original_quickstart_returns_the_four_fields(system: System, unique: str) -> None:
    username = f"donald-le-{unique}"
    _wait(system, _created(system, username, "Donald Le"))

    response = system.http.get(f"/users/{username}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "username", "createdAt", "fullName"}
    assert body["username"] == username
    assert body["fullName"] == "Donald Le"
    assert body["createdAt"].endswith(("Z", "+00:00"))


def test_a_second_post_for_a_username_is_409_and_leaves_one_row(
    system: System, unique: str
) -> None:
    username = f"dup-{unique}"
    first = _created(system, username, "First Owner")

    second = system.http.post("/users", json={"username": username, "fullName": "Impostor"})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "username_taken"

    # A later write by someone else proves the worker has passed any event the 409 could have made.
    _wait(system, max(first, _created(system, f"after-{unique}", "Later User")))
    with psycopg.connect(system.pg_url) as conn:
        rows = conn.execute(
            sql.SQL('SELECT "fullName" FROM {}."user" WHERE username = %s').format(
                sql.Identifier(system.schema)
            ),
            (username,),
        ).fetchall()
    assert rows == [("First Owner",)]
    assert system.http.get(f"/users/{username}").json()["fullName"] == "First Owner"


def test_an_unknown_user_is_a_json_404(system: System, unique: str) -> None:
    response = system.http.get(f"/users/nobody-{unique}")
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "user_not_found"


def test_health_reports_the_projection_caught_up(system: System, unique: str) -> None:
    position = _created(system, f"health-{unique}", "Health Check")
    _wait(system, position)
    response = system.http.get("/health")
    assert response.status_code == 200, response.text
    projection = response.json()["checks"]["projection"]
    assert projection["status"] == "caught_up"
    assert projection["checkpoint"] >= position
