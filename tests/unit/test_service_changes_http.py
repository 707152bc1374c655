"""PATCH and DELETE over HTTP against in-memory fakes: statuses, codes, headers, what is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from service.errors import EventStoreUnavailable
from tests.fixtures.service_app import FakeService, fake_service


@pytest.fixture
def svc(tmp_path: Path) -> FakeService:
    service = fake_service(tmp_path)
    service.create("ann")
    return service


def patch(svc: FakeService, body: Any = None, *, if_match: str | None = '"0"', **kw: Any) -> Any:
    headers = svc.as_user("ann")
    if if_match is not None:
        headers["If-Match"] = if_match
    if body is not None and "data" not in kw:
        kw["json"] = body
    return svc.client.patch("/users/ann", headers=headers, **kw)


def delete(svc: FakeService, if_match: str | None = '"0"', user: str = "ann") -> Any:
    headers = svc.as_user(user)
    if if_match is not None:
        headers["If-Match"] = if_match
    return svc.client.delete(f"/users/{user}", headers=headers)


def names(svc: FakeService) -> list[str]:
    return [orjson.loads(e.data).get("fullName", "-") for e in svc.store.streams["user-ann"]]


def test_patch_answers_the_new_state_its_etag_and_commit_position(svc: FakeService) -> None:
    response = patch(svc, {"fullName": "Ann B"})
    assert response.status_code == 200
    assert list(response.json) == ["username", "createdAt", "fullName"]
    assert response.json["fullName"] == "Ann B"
    assert response.headers["ETag"] == '"1"'
    position = svc.store.streams["user-ann"][1].commit_position
    assert response.headers["X-Commit-Position"] == str(position)
    assert names(svc) == ["Ann Lee", "Ann B"]


@pytest.mark.parametrize(
    "content_type",
    ["application/merge-patch+json", "application/json; charset=utf-8"],
)
def test_patch_takes_merge_patch_and_json(svc: FakeService, content_type: str) -> None:
    response = patch(svc, data=b'{"fullName": "Ann M"}', content_type=content_type)
    assert response.status_code == 200
    assert names(svc) == ["Ann Lee", "Ann M"]


@pytest.mark.parametrize("body", [{"fullName": "Ann Lee"}, {}], ids=["same name", "empty patch"])
def test_a_patch_that_changes_nothing_appends_nothing_and_is_200(
    svc: FakeService, body: dict[str, Any]
) -> None:
    response = patch(svc, body)
    assert response.status_code == 200
    assert response.headers["ETag"] == '"0"'
    assert response.headers["X-Commit-Position"] == "1001"
    assert len(svc.store.appended) == 1


def test_patch_without_if_match_is_428_and_reads_nothing(svc: FakeService) -> None:
    reads = svc.store.reads
    response = patch(svc, {"fullName": "X"}, if_match=None)
    assert response.status_code == 428
    assert svc.error(response)["code"] == "precondition_required"
    assert svc.store.reads == reads


def test_patch_with_if_match_star_is_428_a_change_names_its_revision(svc: FakeService) -> None:
    response = patch(svc, {"fullName": "X"}, if_match="*")
    assert response.status_code == 428
    assert svc.error(response)["code"] == "precondition_required"
    assert len(svc.store.appended) == 1


@pytest.mark.parametrize("if_match", ['"5"', 'W/"0"', "0", '"00"', "garbage", '"1", "2"'], ids=repr)
def test_patch_with_a_stale_or_unusable_if_match_is_412_with_the_current_etag(
    svc: FakeService, if_match: str
) -> None:
    response = patch(svc, {"fullName": "X"}, if_match=if_match)
    assert response.status_code == 412
    assert svc.error(response)["code"] == "precondition_failed"
    assert response.headers["ETag"] == '"0"'
    assert len(svc.store.appended) == 1


def test_patch_with_a_list_naming_the_current_revision_succeeds(svc: FakeService) -> None:
    assert patch(svc, {"fullName": "X"}, if_match='"7", "0"').status_code == 200


INVALID: list[tuple[str, Any, set[str]]] = [
    ("null name", {"fullName": None}, {"fullName"}),
    ("blank name", {"fullName": "  "}, {"fullName"}),
    ("101 characters", {"fullName": "f" * 101}, {"fullName"}),
    ("control character", {"fullName": "a\nb"}, {"fullName"}),
    ("a number", {"fullName": 7}, {"fullName"}),
    ("username", {"username": "bob"}, {"username"}),
    ("read-only createdAt", {"createdAt": "2024-01-01T00:00:00Z"}, {"createdAt"}),
    ("array body", ["x"], {""}),
]


@pytest.mark.parametrize(("case", "body", "fields"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_patch_is_422_naming_the_field_and_reads_nothing(
    svc: FakeService, case: str, body: Any, fields: set[str]
) -> None:
    reads = svc.store.reads
    response = patch(svc, body)
    assert response.status_code == 422
    error = svc.error(response)
    assert error["code"] == "validation_failed"
    assert {d["field"] for d in error["details"]} == fields
    assert svc.store.reads == reads


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"{", "content_type": "application/json"}, 400, "invalid_json"),
        ({"data": b"{}", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": b"{}"}, 415, "unsupported_media_type"),
    ],
    ids=["bad JSON", "text/plain", "no content type"],
)
def test_patch_body_framing_errors(
    svc: FakeService, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = patch(svc, **kwargs)
    assert response.status_code == status
    assert svc.error(response)["code"] == code


@pytest.mark.parametrize("user", ["nobody", "not.here-1"])
def test_patch_and_delete_of_an_unknown_user_are_404(svc: FakeService, user: str) -> None:
    headers = svc.as_user(user, **{"If-Match": '"0"'})
    response = svc.client.patch(f"/users/{user}", json={"fullName": "X"}, headers=headers)
    assert response.status_code == 404
    assert svc.error(response)["code"] == "user_not_found"
    assert delete(svc, user=user).status_code == 404


def test_an_impossible_username_is_404_without_a_read(svc: FakeService) -> None:
    reads = svc.store.reads
    admin = svc.signer.bearer("root", admin=True)
    response = svc.client.patch(
        "/users/zo%C3%AB", json={"fullName": "X"}, headers={**admin, "If-Match": '"0"'}
    )
    assert response.status_code == 404
    assert svc.store.reads == reads


def test_patch_with_the_event_store_down_is_503(svc: FakeService) -> None:
    svc.store.fail = EventStoreUnavailable("down")
    response = patch(svc, {"fullName": "X"})
    assert response.status_code == 503
    assert svc.error(response)["code"] == "event_store_unavailable"
    assert response.headers["Retry-After"]


def test_delete_is_204_without_a_body_and_forgets_the_earlier_events(svc: FakeService) -> None:
    patch(svc, {"fullName": "Ann B"})
    response = delete(svc, '"1"')
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    deletion = svc.store.streams["user-ann"][2]
    assert response.headers["X-Commit-Position"] == str(deletion.commit_position)
    assert orjson.loads(deletion.data).keys() == {"username", "deletedAt"}
    assert svc.store.truncated["user-ann"] == 2


def test_delete_takes_if_match_star(svc: FakeService) -> None:
    assert delete(svc, "*").status_code == 204


def test_delete_without_if_match_is_428_and_with_a_stale_one_412(svc: FakeService) -> None:
    assert delete(svc, None).status_code == 428
    stale = delete(svc, '"3"')
    assert stale.status_code == 412
    assert stale.headers["ETag"] == '"0"'
    assert len(svc.store.appended) == 1


def test_a_half_done_delete_is_503_and_repeating_it_finishes_it_then_404(
    svc: FakeService,
) -> None:
    svc.store.truncate_fail = EventStoreUnavailable("metadata write failed")
    half = delete(svc)
    assert half.status_code == 503
    assert svc.error(half)["code"] == "event_store_unavailable"
    svc.store.truncate_fail = None
    assert delete(svc).status_code == 204
    assert svc.store.truncated["user-ann"] == 1
    assert delete(svc).status_code == 404
    assert len(svc.store.appended) == 2
