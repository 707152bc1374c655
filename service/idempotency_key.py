"""The key that makes a `POST /users` safe to send again: `Idempotency-Key` (the IETF draft "The
Idempotency-Key HTTP Header Field"), or else a client-chosen `X-Request-ID`, as before.

The draft's form is a structured-field string, `Idempotency-Key: "8e03978e-..."`; the bare form
many clients send, `Idempotency-Key: 8e03978e-...`, is taken too. A key is printable ASCII, at most
`MAX_LENGTH` characters; anything else is `400 invalid_idempotency_key`, never cut short (two keys
cut to the same prefix would be taken for one request). What the key does: `service.retries`.
"""

from __future__ import annotations

import re

from flask import request

from service import request_id
from service.errors import InvalidIdempotencyKey

HEADER = "Idempotency-Key"
MAX_LENGTH = 200
# An sf-string (RFC 8941 §3.3.3): printable ASCII in quotes, `\"` and `\\` escaped.
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_BARE = re.compile(r"[\x21-\x7e]+")


def current() -> str | None:
    """The request's idempotency key, or None (the request is not idempotent)."""
    value = request.headers.get(HEADER)
    if value is None:
        return request_id.current() if request_id.from_client() else None
    return parse(value)


def parse(value: str) -> str:
    """The key an `Idempotency-Key` header carries; `InvalidIdempotencyKey` when it is none."""
    text = value.strip(" \t")
    quoted = _QUOTED.fullmatch(text)
    if quoted is not None:
        key = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif _BARE.fullmatch(text) and not text.startswith('"'):
        key = text
    else:
        raise InvalidIdempotencyKey(
            f'{HEADER} must be a string of printable ASCII, e.g. {HEADER}: "a-uuid-or-other-key"'
        )
    if not key or len(key) > MAX_LENGTH:
        raise InvalidIdempotencyKey(f"{HEADER} must hold 1 to {MAX_LENGTH} characters")
    return key
