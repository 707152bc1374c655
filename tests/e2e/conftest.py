"""End-to-end fixtures: the real service under gunicorn and the real worker, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.processes import System, free_port, stop_process, wait_for_http
from tests.fixtures.tokens import AUDIENCE, ISSUER, Signer, make_signer


def usersvc(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "usersvc_cli.main", *args], env={**os.environ, **env}
    )


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """The key the `system`'s service trusts: it signs the tests' bearer tokens."""
    return make_signer(tmp_path_factory.mktemp("auth"))


@pytest.fixture
def system(
    esdb_url: str, pg_url: str, schema: str, unique: str, signer: Signer
) -> Iterator[System]:
    port = free_port()
    worker_name = f"e2e-{unique}"
    env = {
        "ESDB_CONNECTION_STRING": esdb_url,
        "DATABASE_URL": pg_url,
        "DATABASE_SCHEMA": schema,
        "HTTP_PORT": str(port),
        "WORKER_NAME": worker_name,
        "LOG_LEVEL": "WARNING",
        "AUTH_SIGNING_KEY_FILE": str(signer.key_file),
        "AUTH_ISSUER": ISSUER,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_JWKS_URL": "",
    }
    service = usersvc("serve", env=env)
    worker = usersvc("worker", env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base_url}/health", service)
        with httpx.Client(base_url=base_url, timeout=10.0) as http:
            yield System(base_url, pg_url, schema, worker_name, http)
        assert worker.poll() is None, "the worker died during the test"
    finally:
        codes = [stop_process(service), stop_process(worker)]
    assert codes == [0, 0], f"service and worker must stop cleanly on SIGTERM, got {codes}"
