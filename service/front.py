"""The HTTP front of `usersvc serve`: whole requests read asynchronously, then handed to threads.

gunicorn runs `FrontWorker` processes (uvicorn's worker for gunicorn, with h11 parsing HTTP/1.1 on
an asyncio loop). A connection costs a thread only once its request is complete: `Front` reads the
body on the loop, up to the body limit, before the Flask app runs in one of the worker's threads,
which hands back the whole response for the loop to write. So clients that send their request
slowly (or never finish it), or read their response slowly, hold a socket, not a thread, and
cannot starve the others. A request's head and its body each have `REQUEST_TIMEOUT`
seconds to arrive.

What the client gets wrong before Flask sees the request is answered here, in the service's JSON
error shape (`{"error": {"code", "message"}}`) with a stable code (the `Refusal`s below), and the
connection is closed: never a server's plain-text page, nor text quoting the request.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
import orjson
from a2wsgi.wsgi import build_environ
from flask import Flask
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.gunicorn_logs import access_line

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The request line and headers together, at most (h11's default).
MAX_HEAD_BYTES = 16 * 1024
# Seconds a request's head, and then its body, may take to arrive once begun.
REQUEST_TIMEOUT = 20.0
# After a body is refused as too large, how much more of it is read (and dropped) so that the
# client, still sending, reads the answer instead of a reset connection.
DRAIN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message}})

    def response(self) -> bytes:
        """The whole HTTP/1.1 response, which closes the connection."""
        body = self.body()
        head = (
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode("latin-1") + body


MALFORMED = Refusal(400, "malformed_request", "the request is not valid HTTP/1.1")
HEAD_TOO_LARGE = Refusal(431, "headers_too_large", "the request line and headers are too large")
TIMED_OUT = Refusal(408, "request_timeout", "the request did not arrive in time")
INTERNAL = Refusal(500, "internal_error", "internal error; it has been logged")
STOPPING = Refusal(503, "shutting_down", "the server is stopping; send the request again")


def too_large(limit: int) -> Refusal:
    return Refusal(413, "payload_too_large", f"the request body is larger than {limit} bytes")


class Front:
    """The ASGI application gunicorn's workers serve: reads each request whole on the event loop,
    then calls `app` (WSGI) in one of `threads` threads, which returns the whole response; logs
    one access line a request to `access_log` when given.

    One hop to a thread and back per request: a2wsgi's own middleware streams the body and the
    response between the loop and the thread, message by message, which cost 35 to 50% more CPU
    per request here (and buys nothing when both are whole). Its `build_environ` makes the
    environ; responses are small, but for the API document's assets (1.5 MB)."""

    def __init__(
        self,
        app: Flask,
        *,
        threads: int,
        body_limit: int,
        access_log: logging.Logger | None,
    ) -> None:
        self.app = app
        self.body_limit = body_limit
        self.access_log = access_log
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="wsgi")

    def close(self) -> None:
        self._threads.shutdown(wait=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan events, no WebSockets (both are switched off in `FrontWorker`)
        started = time.monotonic()
        answered: dict[str, Any] = {"status": 0, "bytes": 0, "request_id": None}

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        answered["request_id"] = value.decode("latin-1")
            else:
                answered["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self._serve(scope, receive, answer)
        except Exception:
            # Flask answers every error itself: this is a fault of the front, not of a request.
            log.exception("the front failed to serve a request")
            if not answered["status"]:
                await _refuse(answer, INTERNAL)
        if self.access_log is not None and answered["status"]:
            access_line(
                self.access_log,
                remote=scope["client"][0] if scope.get("client") else "-",
                method=scope["method"],
                path=_path(scope),
                status=answered["status"],
                seconds=time.monotonic() - started,
                request_id=answered["request_id"],
                size=answered["bytes"],
                user_agent=_text(dict(scope["headers"]).get(b"user-agent")),
            )

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = _head_refusal(scope)
        if refusal is not None:
            await _refuse(send, refusal)
            return
        body = await self._body(scope, receive, send)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        status, headers, content = await loop.run_in_executor(
            self._threads, self._call, _environ(scope, body)
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when the client left or was answered here."""
        declared = _content_length(scope)
        if declared is not None and declared > self.body_limit:
            await _refuse(send, too_large(self.body_limit))
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    more = message.get("more_body", False)
                    if size > self.body_limit:
                        await _drain(receive, more, DRAIN_BYTES)
                        await _refuse(send, too_large(self.body_limit))
                        return None
                    chunks.append(chunk)
                    if not more:
                        return b"".join(chunks)
        except TimeoutError:
            await _refuse(send, TIMED_OUT)
            return None
        except asyncio.CancelledError:
            # The worker is stopping and its graceful time is up: the client is told so, and
            # the request ends here rather than as a traceback in the log.
            await _refuse(send, STOPPING)
            return None

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Run the WSGI app (in a thread): its status, headers and whole body."""
        started: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            started.append((status, headers))
            return written.append

        result = self.app(environ, start_response)
        try:
            content = b"".join([*written, *result])
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started[-1]
        encoded = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        return int(status.split(" ", 1)[0]), encoded, content


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ of a whole request: its body of known length, however it was framed
    (a WSGI app reads no body of unknown length)."""
    framing = (b"content-length", b"transfer-encoding")
    headers = [(name, value) for name, value in scope["headers"] if name not in framing]
    if len(headers) < len(scope["headers"]):
        headers.append((b"content-length", str(len(body)).encode()))
    whole = {**scope, "headers": headers}
    environ = dict(build_environ(whole, io.BytesIO(body)))  # type: ignore[arg-type]
    environ["wsgi.errors"] = sys.stderr
    return environ


def _head_refusal(scope: Scope) -> Refusal | None:
    """h11 bounds a head only while it is incomplete: one read can bring a larger whole one.
    A body framed both by length and by chunks is how requests are smuggled past proxies."""
    headers = scope["headers"]
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    size += sum(len(name) + len(value) + 4 for name, value in headers)
    if size > MAX_HEAD_BYTES:
        return HEAD_TOO_LARGE
    names = {name for name, _ in headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return MALFORMED
    return None


async def _drain(receive: Receive, more: bool, limit: int) -> None:
    read = 0
    while more and read < limit:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        read += len(message.get("body", b""))
        more = message.get("more_body", False)


async def _refuse(send: Send, refusal: Refusal) -> None:
    body = refusal.body()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses such a request before it gets here
    return None


def _path(scope: Scope) -> str:
    path = _text(scope.get("raw_path")) or scope["path"]
    query = _text(scope.get("query_string"))
    return f"{path}?{query}" if query else path


def _text(value: bytes | None) -> str:
    return value.decode("latin-1") if value else ""


class _Connection(h11.Connection):
    """h11's connection, remembering why it refused the client's bytes (h11 tells whether the
    head was too large through the error's status hint)."""

    refused: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.refused = exc
            raise


class FrontProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with JSON refusals and a deadline for each request's head:
    `REQUEST_TIMEOUT` from the connection's start, or from the first bytes of a request on a
    kept-alive connection (idle ones are uvicorn's: it closes them after gunicorn's `keepalive`).
    A request begun and not whole at the deadline is answered 408; a connection that never sent
    a byte is closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size or MAX_HEAD_BYTES
        self.conn = _Connection(h11.SERVER, limit)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_cycle: object = None
        self._head_begun = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:  # bytes of a next request
            self._head_begun = True
            if self._head_deadline is None:
                self._arm_head_deadline()
        super().data_received(data)
        if self.cycle is not cycle:
            self._disarm_head_deadline()  # its head is whole

    def send_400_response(self, msg: str) -> None:
        refused = self.conn.refused if isinstance(self.conn, _Connection) else None
        hint = refused.error_status_hint if refused is not None else 400
        self._close_with(HEAD_TOO_LARGE if hint == 431 else MALFORMED)

    def _arm_head_deadline(self) -> None:
        self._head_cycle = self.cycle
        self._head_deadline = self.loop.call_later(REQUEST_TIMEOUT, self._head_deadline_passed)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.cycle is not self._head_cycle or self.transport.is_closing():
            return
        if self._head_begun:
            self._close_with(TIMED_OUT)
        else:
            self.transport.close()

    def _close_with(self, refusal: Refusal) -> None:
        """Answer `refusal` unless a response is already under way, and close."""
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(refusal.response())
        self.transport.close()
