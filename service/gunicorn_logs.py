"""gunicorn's own log lines (its error log and its access log) in the process's log format.

`GunicornLogger` hands both of gunicorn's loggers to the root logger's handler, which
`usersvc.logs.configure_logging` set up with the `LOG_FORMAT` formatter: so gunicorn's lines are
text or JSON like every other line, name their process, and are redacted the same way. Its access
line is built from a few fields instead of gunicorn's full set of Apache atoms (which costs more
than the request it describes); in JSON each field is its own key.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger


class GunicornLogger(Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # Access lines are INFO: LOG_LEVEL=WARNING silences them like every other INFO line.
        self.access_log.setLevel(max(logging.INFO, self.loglevel))
        if not logging.getLogger().handlers:
            return  # nothing configured this process's logging: keep gunicorn's own handlers
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        if not self.access_log_enabled or not self.access_log.isEnabledFor(logging.INFO):
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        method = environ.get("REQUEST_METHOD", "-")
        path = environ.get("RAW_URI") or environ.get("PATH_INFO", "-")
        milliseconds = request_time.total_seconds() * 1000
        remote = environ.get("REMOTE_ADDR", "-")
        # A record made here rather than through `info()`: logging's look-up of the caller's
        # frame would cost more than the rest of the line.
        record = self.access_log.makeRecord(
            self.access_log.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %s %s %.2f ms",
            (remote, method, path, status, milliseconds),
            None,
            extra={
                "request_id": _header(resp.headers, "x-request-id"),
                "remote_addr": remote,
                "method": method,
                "path": path,
                "status": int(status),
                "duration_ms": round(milliseconds, 3),
                "bytes": getattr(resp, "sent", None),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            },
        )
        self.access_log.handle(record)


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return str(value)
    return None
