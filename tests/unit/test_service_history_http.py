"""History, time travel and the ETag of GET over HTTP against in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.users import User
from tests.fixtures.service_app import FakeService, fake_service

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def svc(tmp_path: Path) -> FakeService:
    """`ann` created at T0 (revision 0), renamed at T0+1 min (1) and T0+2 min (2)."""
    service = fake_service(tmp_path)
    times = iter(T0 + timedelta(minutes=n) for n in range(100))
    service.store.clock = lambda: next(times)
    service.create("ann")
    for revision, name in enumerate(["Ann B", "Ann C"]):
        response = service.client.patch(
            "/users/ann",
            json={"fullName": name},
            headers=service.as_user("ann", **{"If-Match": f'"{revision}"'}),
        )
        assert response.status_code == 200
    return service


def get(svc: FakeService, path: str, **headers: str) -> Any:
    return svc.client.get(path, headers=svc.as_user("ann", **headers))


def test_history_lists_the_events_in_order_with_upcast_data(svc: FakeService) -> None:
    response = get(svc, "/users/ann/events")
    assert response.status_code == 200
    body = response.json
    assert list(body) == ["events", "next"]
    assert body["next"] is None
    events = body["events"]
    assert [e["type"] for e in events] == [
        "user-created",
        "user-full-name-changed",
        "user-full-name-changed",
    ]
    assert [e["revision"] for e in events] == [0, 1, 2]
    assert list(events[0]) == [
        "type",
        "revision",
        "commitPosition",
        "recordedAt",
        "schemaVersion",
        "data",
    ]
    assert events[1]["recordedAt"] == "2024-05-01T12:01:00.000Z"
    assert events[1]["schemaVersion"] == 1
    assert events[1]["data"]["fullName"] == "Ann B"
    assert events[2]["commitPosition"] == svc.store.streams["user-ann"][2].commit_position


def test_history_pages_with_from_revision_limit_and_a_next_link(svc: FakeService) -> None:
    first = get(svc, "/users/ann/events?limit=2").json
    assert [e["revision"] for e in first["events"]] == [0, 1]
    assert first["next"] == "/users/ann/events?fromRevision=2&limit=2"
    second = get(svc, first["next"]).json
    assert [e["revision"] for e in second["events"]] == [2]
    assert second["next"] is None
    assert get(svc, "/users/ann/events?fromRevision=9").json == {"events": [], "next": None}


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "limit=abc", "fromRevision=-1", "fromRevision=1.5", "limit=%201"],
)
def test_history_with_a_bad_parameter_is_422_naming_it(svc: FakeService, query: str) -> None:
    response = get(svc, f"/users/ann/events?{query}")
    assert response.status_code == 422
    error = svc.error(response)
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [query.split("=", maxsplit=1)[0]]


@pytest.mark.parametrize(
    ("query", "name", "tag"),
    [
        ("atRevision=0", "Ann Lee", '"0"'),
        ("atRevision=1", "Ann B", '"1"'),
        ("atRevision=2", "Ann C", '"2"'),
        ("asOf=2024-05-01T12:00:30Z", "Ann Lee", '"0"'),
        ("asOf=2024-05-01T12:01:00Z", "Ann B", '"1"'),
        ("asOf=2024-05-01T14:01:30%2B02:00", "Ann B", '"1"'),
        # An unencoded `+` arrives as a space; the offset is still understood.
        ("asOf=2024-05-01T14:01:30+02:00", "Ann B", '"1"'),
        ("asOf=2030-01-01T00:00:00Z", "Ann C", '"2"'),
    ],
)
def test_time_travel_folds_the_stream_up_to_the_point(
    svc: FakeService, query: str, name: str, tag: str
) -> None:
    opened_at = get(svc, "/users/ann/events").json["events"][0]["data"]["openedAt"]
    response = get(svc, f"/users/ann?{query}")
    assert response.status_code == 200, response.data
    assert response.json == {"username": "ann", "createdAt": opened_at, "fullName": name}
    assert list(response.json) == ["username", "createdAt", "fullName"]
    assert response.headers["ETag"] == tag


def test_as_of_an_events_recorded_at_includes_that_event(tmp_path: Path) -> None:
    service = fake_service(tmp_path)
    service.store.clock = lambda: T0.replace(microsecond=123456)
    service.create("ann")
    recorded_at = get(service, "/users/ann/events").json["events"][0]["recordedAt"]
    assert recorded_at == "2024-05-01T12:00:00.123Z"
    assert get(service, f"/users/ann?asOf={recorded_at}").status_code == 200
    assert get(service, "/users/ann?asOf=2024-05-01T12:00:00.122Z").status_code == 404


def test_time_travel_before_the_user_existed_is_404(svc: FakeService) -> None:
    response = get(svc, "/users/ann?asOf=2024-05-01T11:59:59Z")
    assert response.status_code == 404
    assert svc.error(response)["code"] == "user_not_found"


def test_time_travel_past_the_last_revision_is_404_revision_not_found(svc: FakeService) -> None:
    response = get(svc, "/users/ann?atRevision=3")
    assert response.status_code == 404
    assert svc.error(response)["code"] == "revision_not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("atRevision=x", "atRevision"),
        ("atRevision=-1", "atRevision"),
        ("atRevision=", "atRevision"),
        ("asOf=2024-05-01T12:00:00", "asOf"),
        ("asOf=yesterday", "asOf"),
        ("asOf=", "asOf"),
        ("atRevision=1&asOf=2024-05-01T12:00:00Z", "asOf"),
    ],
)
def test_time_travel_with_a_bad_parameter_is_422(svc: FakeService, query: str, field: str) -> None:
    response = get(svc, f"/users/ann?{query}")
    assert response.status_code == 422
    error = svc.error(response)
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [field]


def test_time_travel_answers_304_to_its_own_etag(svc: FakeService) -> None:
    response = get(svc, "/users/ann?atRevision=1", **{"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.headers["ETag"] == '"1"'


def test_after_a_deletion_history_and_time_travel_are_404(svc: FakeService) -> None:
    deleted = svc.client.delete("/users/ann", headers=svc.as_user("ann", **{"If-Match": "*"}))
    assert deleted.status_code == 204
    for path in [
        "/users/ann/events",
        "/users/ann?atRevision=1",
        "/users/ann?asOf=2030-01-01T00:00:00Z",
    ]:
        response = get(svc, path)
        assert response.status_code == 404, path
        assert svc.error(response)["code"] == "user_not_found"


def test_after_registering_again_only_the_new_life_is_shown(svc: FakeService) -> None:
    svc.client.delete("/users/ann", headers=svc.as_user("ann", **{"If-Match": "*"}))
    again = svc.client.post("/users", json={"username": "ann", "fullName": "New Ann"})
    assert again.status_code == 201
    assert again.json["streamRevision"] == 4
    events = get(svc, "/users/ann/events").json["events"]
    assert [(e["type"], e["revision"]) for e in events] == [("user-created", 4)]
    assert get(svc, "/users/ann?atRevision=2").status_code == 404
    assert get(svc, "/users/ann?atRevision=4").json["fullName"] == "New Ann"


def test_get_carries_the_read_models_revision_as_etag_and_answers_304(svc: FakeService) -> None:
    svc.users.rows["bob"] = User(3, "bob", T0, "Bob", 7)
    response = svc.client.get("/users/bob")
    assert response.headers["ETag"] == '"7"'
    for header in ['"7"', 'W/"7"', '"1", "7"', "*"]:
        cached = svc.client.get("/users/bob", headers={"If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.data == b""
        assert cached.headers["ETag"] == '"7"'
    assert svc.client.get("/users/bob", headers={"If-None-Match": '"6"'}).status_code == 200
