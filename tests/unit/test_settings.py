from pathlib import Path

import pytest

from usersvc.settings import SettingsError, load_settings


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("USERSVC_CONFIG", str(path))
    for key in ("ESDB_CONNECTION_STRING", "DATABASE_URL", "DATABASE_SCHEMA", "HTTP_PORT"):
        monkeypatch.delenv(key, raising=False)
    return path


def test_defaults_match_the_original(config_file: Path) -> None:
    settings = load_settings()
    assert settings.esdb_connection_string == "esdb://localhost:2113?tls=false"
    assert settings.database_schema == "eventsourcing"
    assert settings.http_port == 5000


def test_environment_overrides_the_file(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_file.write_text('database_schema = "from_file"\nhttp_port = 6000\n')
    monkeypatch.setenv("DATABASE_SCHEMA", "from_env")
    settings = load_settings()
    assert settings.database_schema == "from_env"
    assert settings.http_port == 6000


def test_original_variable_names_keep_working(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESDB_CONNECTION_STRING", "esdb://es:2113?tls=false")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/app")
    settings = load_settings()
    assert settings.esdb_connection_string == "esdb://es:2113?tls=false"
    assert settings.require_database_url() == "postgresql://u:secret@db/app"
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HTTP_PORT", "not-a-port"),
        ("DATABASE_SCHEMA", "Drop Table"),
        ("ESDB_CONNECTION_STRING", "http://x"),
        ("DB_STATEMENT_TIMEOUT", "0"),
        ("DB_CONNECT_TIMEOUT", "0"),
        ("ESDB_CONCURRENCY", "0"),
        ("CREATE_RETRY_WINDOW", "-1"),
    ],
)
def test_a_bad_value_names_the_key(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=key.lower()):
        load_settings()


def test_missing_database_url_is_named(config_file: Path) -> None:
    with pytest.raises(SettingsError, match="database_url"):
        load_settings().require_database_url()


def test_eventstoredb_call_slots_are_half_the_threads_unless_set(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(http_threads=8).esdb_call_slots == 4
    assert load_settings(http_threads=1).esdb_call_slots == 1
    monkeypatch.setenv("ESDB_CONCURRENCY", "")
    assert load_settings(http_threads=6).esdb_call_slots == 3
    monkeypatch.setenv("ESDB_CONCURRENCY", "7")
    assert load_settings(http_threads=6).esdb_call_slots == 7
