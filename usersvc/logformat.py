"""The two formats of every log line, `text` and `json`, and what both do to each line.

- `JsonFormatter`: one JSON object a line: `time` (UTC, milliseconds), `level`, `process` (the
  name the composition root gave its process), `pid`, `logger`, `message`, the fields bound to
  the current context (`request_id` while the service handles a request), the `extra=` fields of
  the call, and `exception` with the traceback when there is one.
- `TextFormatter`: the usual one-line format for people.

Both redact secrets from every line, whatever put them there (a message, an argument, an
exception from a library): the password of any `scheme://user:password@host` URL, `password=...`
in a libpq connection string, the piece of a connection string libpq quotes when it cannot parse
it, and bearer tokens.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

import orjson

REDACTED = "***"
_URL_PASSWORD = re.compile(r"(?P<user>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*):[^\s'\"]*@")
_KEY_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd)\s*[=:]\s*)(?:'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s'\",;]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# libpq quotes the piece of a connection string it could not parse, which may be the password.
_LIBPQ_PIECE = re.compile(
    r'(?P<what>percent-encoded (?:token|value): |missing "=" after )"[^"]*"', re.IGNORECASE
)

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_context: ContextVar[dict[str, Any] | None] = ContextVar("usersvc_log_context", default=None)


def redact(text: str) -> str:
    """`text` with every password and bearer token it holds replaced by `***`."""
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\g<user>:{REDACTED}@", text)
    if "=" in text or ":" in text:
        text = _KEY_PASSWORD.sub(rf"\g<key>{REDACTED}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\g<scheme>{REDACTED}", text)
    if "percent-encoded" in text or "missing" in text:
        text = _LIBPQ_PIECE.sub(rf'\g<what>"{REDACTED}"', text)
    return text


def bind(**fields: Any) -> Token[dict[str, Any] | None]:
    """Add `fields` to every JSON line logged in this context until `unbind` (request ids)."""
    return _context.set({**(_context.get() or {}), **fields})


def unbind(token: Token[dict[str, Any] | None]) -> None:
    try:
        _context.reset(token)
    except ValueError:  # a token of another context: leave that context alone
        _context.set(None)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def context_fields() -> dict[str, Any]:
    return dict(_context.get() or {})


class TextFormatter(logging.Formatter):
    """`logging.Formatter` whose lines are redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's docstring); redacted like the text lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "process": record.processName,
            "pid": record.process,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        context = _context.get()
        if context:
            entry.update(context)
        fields = record.__dict__
        for key in fields.keys() - _STANDARD:
            if not key.startswith("_"):
                value = fields[key]
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=_text).decode()


def _text(value: object) -> str:
    return redact(str(value))


# The second of the last line, formatted once for all the lines in it.
_second: list[Any] = [None, ""]


def _utc(created: float) -> str:
    whole = int(created)
    if whole != _second[0]:
        _second[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second[0] = whole
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"
