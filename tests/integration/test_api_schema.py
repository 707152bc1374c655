"""The API against its own OpenAPI document, with Schemathesis: generated requests (valid and
invalid, a bounded number per operation, the same every run) to the real app over real
EventStoreDB and PostgreSQL. Every answer must be one the document allows (status, headers,
content type, body), none a 5xx, and a refused request must write nothing to EventStoreDB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from esdbclient import EventStoreDBClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service import openapi
from service.app import close_app, create_app
from tests.fixtures.service_app import auth_settings
from tests.fixtures.tokens import Signer, make_signer

# Per operation and mode; `derandomize` makes every run send the same requests.
MAX_EXAMPLES = 25
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return make_signer(tmp_path_factory.mktemp("schema-auth"))


@pytest.fixture(scope="module")
def esdb(esdb_url: str) -> Iterator[EventStoreDBClient]:
    client = EventStoreDBClient(esdb_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def app_schema(esdb_url: str, pg_url: str, signer: Signer) -> Iterator[Any]:
    """The real app over real EventStoreDB and PostgreSQL, with the real worker projecting on a
    thread, so that readiness and reads at a commit position answer as in production."""
    from worker.migrator import migrate
    from worker.runner import run

    settings = auth_settings(
        signer.key_file,
        esdb_connection_string=esdb_url,
        database_url=pg_url,
        database_schema="t_schemathesis",
        worker_name="schemathesis",
        min_position_wait=2.0,
    )
    migrate(pg_url, settings.database_schema)
    stop = threading.Event()
    worker = threading.Thread(target=run, args=(settings,), kwargs={"stop": stop}, daemon=True)
    worker.start()
    app = create_app(settings)
    config = SchemathesisConfig.from_dict(
        # Unknown query parameters are ignored, as by the original service and most others.
        {"generation": {"allow-extra-parameters": False}}
    )
    try:
        yield schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)
    finally:
        close_app(app)
        stop.set()
        worker.join(timeout=30)


def not_a_server_fault(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx at all: with every dependency up and the worker projecting, none is expected."""
    if response.status_code >= 500:
        raise AssertionError(f"{case.method} {case.path} answered {response.status_code}")
    return None


_DOCUMENT = openapi.build(metrics=True)["paths"]
OPERATIONS = sorted(
    (operation["operationId"], mode)
    for item in _DOCUMENT.values()
    for operation in item.values()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # An operation that takes nothing cannot be sent anything invalid.
    if mode == GenerationMode.POSITIVE or "parameters" in operation or "requestBody" in operation
)


def head(esdb: EventStoreDBClient) -> int:
    """The last position of all of $all, system streams (stream metadata, `$tb`) included."""
    return int(esdb.get_commit_position(filter_exclude=()))


@pytest.mark.parametrize(("operation_id", "mode"), OPERATIONS)
def test_every_answer_is_one_the_document_allows(
    app_schema: Any, esdb: EventStoreDBClient, signer: Signer, operation_id: str, mode: str
) -> None:
    # Schemathesis' own pytest integration does not run under pytest 9; its strategies do.
    operation = app_schema.find_operation_by_id(operation_id)
    headers = {"Authorization": f"Bearer {signer.token('schemathesis', admin=True)}"}

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        before = head(esdb)
        response = case.call_and_validate(
            headers=headers, checks=CHECKS, additional_checks=[not_a_server_fault]
        )
        if response.status_code >= 400:
            assert head(esdb) == before, f"{case.method} {case.path} was refused but wrote"

    check()
