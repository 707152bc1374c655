"""LOG_FORMAT: one JSON object a line with the fields that matter, and no secret in any line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from usersvc import logformat
from usersvc.logs import FORMAT, formatter
from usersvc.settings import SettingsError, load_settings

SECRET = "S3cr3t-Pa55"


def record(message: str, *args: object, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"connect to postgresql://app:{SECRET}@db:5432/users failed")
        except RuntimeError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("service.users", logging.WARNING, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


def as_json(line: str) -> dict[str, Any]:
    assert "\n" not in line
    entry: dict[str, Any] = orjson.loads(line)
    return entry


def test_a_json_line_names_time_level_process_logger_and_message() -> None:
    entry = as_json(formatter("json").format(record("user %s created", "ann")))
    assert list(entry)[:6] == ["time", "level", "process", "pid", "logger", "message"]
    assert entry["message"] == "user ann created"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "service.users"
    assert entry["time"].endswith("Z")


def test_extra_fields_become_keys_of_their_own() -> None:
    entry = as_json(formatter("json").format(record("caught up", checkpoint=1234, dependency="x")))
    assert (entry["checkpoint"], entry["dependency"]) == (1234, "x")


def test_the_bound_request_id_is_in_every_line_until_unbound() -> None:
    json_formatter = formatter("json")
    with logformat.bound(request_id="req-42"):
        inside = as_json(json_formatter.format(record("inside")))
    outside = as_json(json_formatter.format(record("outside")))
    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_an_exception_is_one_field_of_the_same_line() -> None:
    entry = as_json(formatter("json").format(record("failed", exc=True)))
    assert "Traceback" in entry["exception"]
    assert "RuntimeError" in entry["exception"]


def test_a_value_json_cannot_hold_is_written_as_text() -> None:
    entry = as_json(formatter("json").format(record("x", path=logformat)))
    assert entry["path"].startswith("<module 'usersvc.logformat'")


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize(
    "message",
    [
        f"cannot connect to postgresql://app:{SECRET}@db:5432/users",
        f"cannot connect to postgres://app:{SECRET}@db/users?sslmode=require",
        f"dsn: host=db user=app password={SECRET} dbname=users",
        f"dsn: host=db password='{SECRET}' dbname=users",
        f"headers: Authorization: Bearer {SECRET}",
        f"esdb://admin:{SECRET}@eventstore:2113?tls=true",
        f'invalid percent-encoded token: "{SECRET}%zz"',
        f'missing "=" after "{SECRET}" in connection info string',
    ],
    ids=[
        "postgresql url",
        "postgres url",
        "conninfo",
        "quoted conninfo",
        "bearer",
        "esdb url",
        "libpq percent-encoding error",
        "libpq conninfo error",
    ],
)
def test_no_line_holds_a_secret_whatever_carries_it(log_format: str, message: str) -> None:
    line = formatter(log_format).format(record(message))
    assert SECRET not in line
    assert logformat.REDACTED in line


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_in_arguments_extras_and_tracebacks_are_redacted(log_format: str) -> None:
    line = formatter(log_format).format(
        record(
            "url %s",
            f"postgresql://app:{SECRET}@db/users",
            exc=True,
            url=f"postgresql://app:{SECRET}@db/users",
        )
    )
    assert SECRET not in line


def test_redaction_keeps_the_user_and_host() -> None:
    assert (
        logformat.redact(f"postgresql://app:{SECRET}@db:5432/users")
        == "postgresql://app:***@db:5432/users"
    )


def test_a_password_with_an_at_sign_is_redacted_whole() -> None:
    assert logformat.redact("postgresql://app:p@ss@db/users") == "postgresql://app:***@db/users"


def test_lines_without_secrets_are_unchanged() -> None:
    text = "caught up at commit position 1234 (user ann@example.org, esdb://db:2113?tls=false)"
    assert logformat.redact(text) == text


def test_text_stays_the_one_line_format() -> None:
    made = record("hello")
    assert formatter("text").format(made) == logging.Formatter(FORMAT).format(made)


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERSVC_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("LOG_FORMAT", raising=False)


def test_log_format_is_text_by_default_and_json_on_request(
    no_config: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert load_settings().log_format == "json"


def test_an_unknown_log_format_stops_start_up_naming_the_key(no_config: None) -> None:
    with pytest.raises(SettingsError, match="log_format"):
        load_settings(log_format="xml")
