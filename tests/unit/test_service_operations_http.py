"""Operating the service, with in-memory fakes: probes, /metrics, X-Min-Position, form bodies,
key order, the OpenAPI document and the docs page."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.errors import DatabaseUnavailable, EventStoreUnavailable
from service.models import ChangeUser, CreateUser
from service.users import Checkpoint, User
from tests.fixtures.service_app import FakeService, fake_service
from tests.fixtures.service_fakes import FakeUsers, MemoryStore
from usersvc.settings import Settings

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def svc(tmp_path: Path) -> FakeService:
    return fake_service(tmp_path)


def samples(client: FlaskClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric `name` in `/metrics`, by their sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


# Probes


def test_livez_answers_while_every_dependency_is_down(svc: FakeService) -> None:
    svc.store.fail = svc.store.head_fail = EventStoreUnavailable("down")
    svc.users.fail = DatabaseUnavailable("down")
    response = svc.client.get("/livez")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


@pytest.mark.parametrize("path", ["/readyz", "/health"])
def test_readiness_follows_the_dependencies(svc: FakeService, path: str) -> None:
    svc.users.fail = DatabaseUnavailable("down")
    response = svc.client.get(path)
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["problems"] == ["database_unavailable"]


@pytest.mark.parametrize("path", ["/readyz", "/health"])
def test_readiness_is_200_when_the_projection_has_caught_up(svc: FakeService, path: str) -> None:
    svc.store.head = 10
    svc.users.saved = Checkpoint(10, datetime.now(UTC))
    response = svc.client.get(path)
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["checks"]["projection"]["status"] == "caught_up"


# Metrics


def test_requests_are_counted_by_method_route_template_and_status(svc: FakeService) -> None:
    svc.create("ann")
    svc.users.rows["ann"] = User(1, "ann", datetime.now(UTC), "Ann", 0)
    svc.client.get("/users/ann")
    svc.client.get("/users/bob")
    svc.client.get("/users/bob")
    counts = samples(svc.client, "usersvc_http_requests_total")
    route = "/users/<username>"
    assert counts[(("method", "GET"), ("route", route), ("status", "404"))] == 2
    assert counts[(("method", "GET"), ("route", route), ("status", "200"))] == 1
    assert counts[(("method", "POST"), ("route", "/users"), ("status", "201"))] == 1


def test_a_path_no_route_matches_is_one_label_whatever_the_path(svc: FakeService) -> None:
    for path in ("/a", "/b/c", "/users/x/y/z"):
        svc.client.get(path)
    counts = samples(svc.client, "usersvc_http_requests_total")
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 3


def test_latency_is_a_histogram_of_each_request(svc: FakeService) -> None:
    svc.client.get("/livez")
    svc.client.get("/livez")
    counts = samples(svc.client, "usersvc_http_request_duration_seconds_count")
    assert counts[(("method", "GET"), ("route", "/livez"), ("status", "200"))] == 2


def test_appends_are_timed_by_outcome(svc: FakeService) -> None:
    svc.create("ann")
    svc.create("bob")
    counts = samples(svc.client, "usersvc_eventstore_append_duration_seconds_count")
    assert counts[(("outcome", "ok"),)] == 2


def test_an_append_that_failed_is_counted_as_unavailable(svc: FakeService) -> None:
    original = svc.store.append

    def down(*args: Any) -> int:
        raise EventStoreUnavailable("down")

    svc.store.append = down  # type: ignore[method-assign]
    svc.client.post("/users", json={"username": "carl", "fullName": "Carl"})
    svc.store.append = original  # type: ignore[method-assign]
    counts = samples(svc.client, "usersvc_eventstore_appends_total")
    assert counts[(("outcome", "unavailable"),)] == 1


def test_metrics_can_be_switched_off() -> None:
    app = create_app(
        Settings(metrics_enabled=False), event_store=MemoryStore(), users=FakeUsers(), verifier=None
    )
    assert app.test_client().get("/metrics").status_code == 404


# Read your writes (the waiting itself is tested across processes in tests/e2e)


def test_a_read_at_a_position_already_applied_answers_at_once(svc: FakeService) -> None:
    svc.users.rows["ann"] = User(1, "ann", datetime.now(UTC), "Ann", 0)
    svc.users.saved = Checkpoint(500, datetime.now(UTC))
    response = svc.client.get("/users/ann", headers={"X-Min-Position": "500"})
    assert response.status_code == 200
    waits = samples(svc.client, "usersvc_read_wait_seconds_count")
    assert waits[(("outcome", "fresh"),)] == 1


def test_a_read_beyond_the_checkpoint_is_503_projection_behind() -> None:
    users = FakeUsers(saved=Checkpoint(499, datetime.now(UTC)))
    app = create_app(
        Settings(min_position_wait=0), event_store=MemoryStore(head=600), users=users, verifier=None
    )
    response = app.test_client().get("/users/ann", headers={"X-Min-Position": "500"})
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["error"]["code"] == "projection_behind"
    assert response.json["error"]["details"] == [{"minPosition": 500, "checkpoint": 499}]
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Checkpoint-Position"] == "499"


def test_a_position_no_write_has_reached_is_422_at_once(svc: FakeService) -> None:
    svc.store.head = 1200
    response = svc.client.get("/users/ann", headers={"X-Min-Position": "1201"})
    assert response.status_code == 422
    assert svc.error(response)["message"] == (
        "no write has reached commit position 1201 yet (the newest is 1200)"
    )


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "9" * 20, "\uff11\uff12"])
def test_a_min_position_that_is_no_position_is_422(svc: FakeService, value: str) -> None:
    response = svc.client.get("/users/ann", headers={"X-Min-Position": value})
    assert response.status_code == 422
    assert svc.error(response)["details"] == [
        {"field": "X-Min-Position", "message": "a whole number ≥ 0 that a write answered with"}
    ]


# Faithful details


def test_get_answers_the_keys_in_the_original_order(svc: FakeService) -> None:
    svc.users.rows["ann"] = User(3, "ann", datetime(2024, 1, 2, tzinfo=UTC), "Ann Lee", 0)
    raw = svc.client.get("/users/ann").get_data(as_text=True)
    assert raw.startswith('{"id":3,"username":"ann","createdAt":"2024-01-02T00:00:00.000Z"')
    assert list(orjson.loads(raw)) == ["id", "username", "createdAt", "fullName"]


def test_a_form_encoded_post_registers_the_user(svc: FakeService) -> None:
    response = svc.client.post(
        "/users", data="username=ann&fullName=Ann+Lee%20%C3%A9", content_type=FORM
    )
    assert response.status_code == 201
    assert response.json == {"username": "ann", "commitPosition": 1001, "streamRevision": 0}
    (stream, _, event), *_ = svc.store.appended
    assert stream == "user-ann"
    assert orjson.loads(event.data)["fullName"] == "Ann Lee é"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"username=ann", 422, "validation_failed"),
        (b"username=ann&fullName=A&fullName=B", 422, "validation_failed"),
        (b"username=ann&fullName=A&admin=1", 422, "validation_failed"),
        (b"username=a%20b&fullName=A", 422, "validation_failed"),
        (b"username=ann&fullName=%FF", 400, "invalid_form"),
        (b"username=ann&fullName=\xff", 400, "invalid_form"),
        (b"&".join(b"f%d=1" % i for i in range(30)), 400, "invalid_form"),
    ],
    ids=[
        "missing field",
        "field twice",
        "unknown field",
        "bad username",
        "percent-encoded non-UTF-8",
        "raw non-UTF-8",
        "too many fields",
    ],
)
def test_a_bad_form_is_refused_and_writes_nothing(
    svc: FakeService, body: bytes, status: int, code: str
) -> None:
    response = svc.client.post("/users", data=body, content_type=FORM)
    assert response.status_code == status
    assert svc.error(response)["code"] == code
    assert svc.store.appended == []


def test_a_form_is_not_taken_where_json_is_the_only_form(svc: FakeService) -> None:
    response = svc.client.patch(
        "/users/ann",
        data="fullName=B",
        content_type=FORM,
        headers=svc.as_user("ann", **{"If-Match": '"0"'}),
    )
    assert response.status_code == 415


# The OpenAPI document and the docs page


def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = orjson.loads(response.get_data())
    return document


def test_the_document_is_openapi_3_1(svc: FakeService) -> None:
    assert spec(svc.client)["openapi"] == "3.1.0"


def operations_of(app: Flask) -> set[tuple[str, str]]:
    """Every method and path the app routes, in OpenAPI's spelling, but the docs page's own."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/docs", "/static")):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in {"HEAD", "OPTIONS"}:
                found.add((method.lower(), path))
    return found


def test_the_document_has_every_route_of_the_app_and_nothing_else(svc: FakeService) -> None:
    documented = {
        (method, path) for path, item in spec(svc.client)["paths"].items() for method in item
    }
    assert documented == operations_of(svc.app)


def test_request_bodies_are_the_models_the_routes_validate_with(svc: FakeService) -> None:
    document = spec(svc.client)
    schemas = document["components"]["schemas"]
    create = document["paths"]["/users"]["post"]["requestBody"]["content"]
    assert set(create) == {"application/json", FORM}
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/CreateUser"}
    assert schemas["CreateUser"] == CreateUser.model_json_schema()
    assert schemas["ChangeUser"]["properties"]["fullName"]["type"] == "string"
    assert set(schemas["ChangeUser"]["properties"]) == set(
        ChangeUser.model_json_schema()["properties"]
    )


def test_the_user_answer_lists_the_keys_in_the_original_order(svc: FakeService) -> None:
    user = spec(svc.client)["components"]["schemas"]["User"]
    assert list(user["properties"]) == ["id", "username", "createdAt", "fullName"]


def test_the_docs_page_loads_nothing_from_elsewhere(svc: FakeService) -> None:
    response = svc.client.get("/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert all(source.startswith("/docs/") for source in sources)
    for source in sources:
        with svc.client.get(source) as served:
            assert served.status_code == 200, source


def test_only_the_pages_files_are_served(svc: FakeService) -> None:
    assert svc.client.get("/docs/index.html").status_code == 404
    assert svc.client.get("/docs/..%2Fswagger-ui.css").status_code == 404
