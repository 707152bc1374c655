"""gunicorn's own log lines (its error log and its access log) in the process's log format.

`GunicornLogger` hands both of gunicorn's loggers to the root logger's handler, which
`usersvc.logs.configure_logging` set up with the `LOG_FORMAT` formatter: so gunicorn's lines are
text or JSON like every other line, name their process, and are redacted the same way. The HTTP
front (`service.front`) writes the access lines, one a request, to gunicorn's access logger through
`access_line`: a few fields instead of gunicorn's full set of Apache atoms; in JSON each field is
its own key.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger

# The loggers uvicorn writes its own lines to (its access log is off: `access_line` writes them).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")


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

    def follow_gunicorn(self) -> None:
        """uvicorn's loggers write where gunicorn's error log does, at its level (uvicorn's
        worker gives them the error log's handlers and stops their propagation, which loses
        every line once `setup` handed those to the root logger)."""
        for name in UVICORN_LOGGERS:
            log = logging.getLogger(name)
            log.handlers = list(self.error_log.handlers)
            log.setLevel(self.error_log.level)
            log.propagate = self.error_log.propagate
            log.addFilter(_plain)


def _plain(record: logging.LogRecord) -> bool:
    """Drops the copy with terminal colours uvicorn adds to some of its lines."""
    record.__dict__.pop("color_message", None)
    return True


def access_line(
    log: logging.Logger,
    *,
    remote: str,
    method: str,
    path: str,
    status: int,
    seconds: float,
    request_id: str | None,
    size: int,
    user_agent: str,
) -> None:
    """One access line at INFO, when `log` is enabled for it."""
    if not log.isEnabledFor(logging.INFO):
        return
    milliseconds = seconds * 1000
    # A record made here rather than through `info()`: logging's look-up of the caller's
    # frame would cost more than the rest of the line.
    record = log.makeRecord(
        log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s %s %.2f ms",
        (remote, method, path, status, milliseconds),
        None,
        extra={
            "request_id": request_id,
            "remote_addr": remote,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(milliseconds, 3),
            "bytes": size,
            "user_agent": user_agent or None,
        },
    )
    log.handle(record)
