"""The deployment files use each probe for its purpose, and log one JSON object a line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data["services"]


def healthcheck_urls(text: str) -> list[str]:
    return re.findall(r"http://127\.0\.0\.1:\d+/[a-z]+", text)


def test_the_image_health_check_asks_liveness_not_readiness() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (healthcheck,) = [block for block in dockerfile.split("\n\n") if "HEALTHCHECK" in block] or [
        dockerfile[dockerfile.index("HEALTHCHECK") :]
    ]
    assert healthcheck_urls(healthcheck) == ["http://127.0.0.1:5000/livez"]


def test_the_worker_health_check_asks_liveness_on_its_metrics_port(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    port = worker["environment"]["WORKER_METRICS_PORT"]
    assert healthcheck_urls(" ".join(worker["healthcheck"]["test"])) == [
        f"http://127.0.0.1:{port}/livez"
    ]


@pytest.mark.parametrize("name", ["migrate", "service", "worker"])
def test_app_services_log_json(services: dict[str, Any], name: str) -> None:
    assert services[name]["environment"]["LOG_FORMAT"] == "json"
