"""The WSGI target: importing the service does nothing; `create_app()` reads the environment.

Both run in a fresh interpreter: the import check needs one, and the WSGI factory configures
logging for the whole process, which would take pytest's log capture away.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ONLY = """
import sys, threading
import service.app, service.errors, service.event_store, service.models
import service.routes, service.runner, service.users, service.wsgi
sys.stdout.write(f"{threading.active_count()}\\n")
"""

WSGI_APP = """
import sys, orjson
import service.wsgi
from service.app import close_app
app = service.wsgi.create_app()
try:
    client = app.test_client()
    get = client.get("/users/someone")
    post = client.post("/users", json={"username": "someone", "fullName": "Some One"})
    sys.stdout.write(orjson.dumps({
        "name": app.name,
        "get": [get.status_code, get.json["error"]["code"], get.headers.get("Retry-After")],
        "post": [post.status_code, post.json["error"]["code"], post.headers.get("Retry-After")],
    }).decode())
finally:
    close_app(app)
"""


def run(script: str, env: dict[str, str], tmp_path: Path) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "ESDB_"))}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**base, "USERSVC_CONFIG": str(tmp_path / "absent.toml"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Also nothing raised at exit, where the WSGI factory closes its pool and channel again.
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_importing_the_service_reads_no_settings_and_starts_nothing(tmp_path: Path) -> None:
    # Settings read at import would fail on this value; a pool or client would start threads.
    out = run(IMPORT_ONLY, {"ESDB_CONNECTION_STRING": "not-a-url"}, tmp_path)
    assert out.strip() == "1"


def test_the_wsgi_factory_builds_the_app_from_the_environment(tmp_path: Path) -> None:
    # Nothing listens on port 1: the app still starts, and answers 503 until the backends are up.
    env = {
        "ESDB_CONNECTION_STRING": "esdb://127.0.0.1:1?tls=false",
        "ESDB_TIMEOUT": "1",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
        "LOG_LEVEL": "ERROR",
    }
    result: dict[str, Any] = orjson.loads(run(WSGI_APP, env, tmp_path))
    assert result["name"] == "usersvc"
    assert result["get"][:2] == [503, "database_unavailable"] and result["get"][2]
    # An append that failed may have reached a server: the answer says so, whatever the cause.
    assert result["post"][:2] == [503, "append_outcome_unknown"] and result["post"][2]
