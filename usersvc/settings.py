"""Typed settings for every process.

Precedence, highest first: values passed to the constructor, environment variables (upper-case
names, e.g. `DATABASE_URL`), the TOML file named by `USERSVC_CONFIG` (default `./config.toml`),
then the defaults below. A bad value stops start-up with a message naming the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "USERSVC_CONFIG"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Signature algorithms a token may use: public-key ones only (no `none`, no shared secret that a
# public key could be mistaken for).
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class SettingsError(RuntimeError):
    """Start-up configuration is invalid; the message names each bad key."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, frozen=True)

    esdb_connection_string: str = "esdb://localhost:2113?tls=false"
    database_url: SecretStr | None = None
    database_schema: str = "eventsourcing"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=5000, ge=0, le=65535)
    # Seconds the service waits for EventStoreDB before answering 503.
    esdb_timeout: float = Field(default=5.0, gt=0)
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    # PostgreSQL, for the service's reads: seconds to wait for a free connection of the pool,
    # to open a connection, and for a query (the server's statement_timeout; a server that does
    # not answer at all is cut off half a second later).
    db_pool_timeout: float = Field(default=2.0, gt=0)
    db_connect_timeout: int = Field(default=2, ge=1)
    db_statement_timeout: float = Field(default=2.0, gt=0)
    # EventStoreDB calls of requests in flight at once in one service process (default: half of
    # HTTP_THREADS), and seconds a request waits for one to end before it answers 503 (not at all
    # once every call in flight has run over a second): a hung EventStoreDB holds at most this
    # many threads, the others keep serving reads.
    esdb_concurrency: int | None = Field(default=None, ge=1)
    esdb_queue_wait: float = Field(default=2.0, ge=0)
    # Seconds after a `POST /users` during which the same body sent again without an
    # idempotency key is recognised as a retry (201 again) rather than refused (409); 0: never.
    create_retry_window: float = Field(default=300.0, ge=0)
    # gunicorn: worker processes (default: one per core, at least 2) and threads in each.
    http_workers: int | None = Field(default=None, ge=1)
    http_threads: int = Field(default=8, ge=1)
    # /health calls the projection stalled when it is behind and idle for this many seconds,
    # and not before the service process has been up for HEALTH_STARTUP_GRACE seconds.
    health_stall_seconds: float = Field(default=30.0, gt=0)
    health_startup_grace: float = Field(default=30.0, ge=0)

    worker_name: str = "usersvc-read-model"
    worker_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # Seconds the worker waits to fill a batch once it has at least one event.
    worker_batch_wait: float = Field(default=0.005, ge=0)
    worker_backoff_initial: float = Field(default=0.2, gt=0)
    worker_backoff_max: float = Field(default=10.0, gt=0)
    # Poison events (see worker/parking.py): an event the projection cannot apply is tried this
    # many times (with backoff) and then parked with the rest of its stream; above
    # `worker_max_parked_streams` parked streams the worker halts instead. 0 turns parking off
    # (the worker halts at the first such event).
    worker_park_after_attempts: int = Field(default=3, ge=0, le=100)
    worker_max_parked_streams: int = Field(default=100, ge=1)

    log_level: str = "INFO"
    # `text` (one line for people) or `json` (one JSON object a line, for log collectors).
    log_format: Literal["text", "json"] = "text"
    # gunicorn's access log: one line per request, in `log_format` (off by default: a line a
    # request is what ingress proxies usually keep already).
    access_log: bool = False

    # Prometheus metrics: the service at `GET /metrics`; the worker on its own port (None: off).
    metrics_enabled: bool = True
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Seconds at most a read with `X-Min-Position` waits for the worker (then 503).
    min_position_wait: float = Field(default=5.0, ge=0, le=60)

    # Bearer tokens (JWT) for PATCH, DELETE, history and time travel; see `service.auth`. One key
    # source: the identity provider's JWKS URL (production), or a PEM private key file whose
    # public half verifies tokens and with which `usersvc token` signs them (development;
    # `usersvc dev` makes one). Neither: those endpoints answer 500 auth_not_configured.
    auth_jwks_url: str | None = None
    auth_signing_key_file: Path | None = None
    # Algorithms accepted from the JWKS; a key file's type fixes its own. Never none or HS*.
    auth_algorithms: str = "RS256,ES256"
    auth_issuer: str = Field(default="usersvc", min_length=1)
    auth_audience: str = Field(default="usersvc", min_length=1)
    # Seconds of clock difference tolerated on `exp` (and `nbf`, `iat`).
    auth_leeway: float = Field(default=30.0, ge=0, le=300)

    @field_validator("database_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, '_')")
        return value

    @field_validator("esdb_connection_string")
    @classmethod
    def _esdb_scheme(cls, value: str) -> str:
        if not value.startswith(("esdb://", "esdb+discover://")):
            raise ValueError("must start with esdb:// or esdb+discover://")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "auth_jwks_url",
        "auth_signing_key_file",
        "worker_metrics_port",
        "esdb_concurrency",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("auth_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        refused = [alg for alg in names if alg not in ASYMMETRIC_ALGORITHMS]
        if refused or not names:
            raise ValueError(
                f"must be a comma-separated list of {', '.join(ASYMMETRIC_ALGORITHMS)}"
                + (f" (not {', '.join(refused)})" if refused else "")
            )
        return ",".join(names)

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.auth_jwks_url is not None and self.auth_signing_key_file is not None:
            raise ValueError("auth_jwks_url and auth_signing_key_file: set one of them, not both")
        return self

    @property
    def esdb_call_slots(self) -> int:
        """EventStoreDB calls in flight at once per service process (`esdb_concurrency`)."""
        return self.esdb_concurrency or max(1, self.http_threads // 2)

    @property
    def auth_algorithm_names(self) -> tuple[str, ...]:
        return tuple(self.auth_algorithms.split(","))

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise SettingsError("database_url: not set (DATABASE_URL or config.toml)")
        return self.database_url.get_secret_value()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(CONFIG_ENV, "config.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_path))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise `SettingsError` naming every bad key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}" for err in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
