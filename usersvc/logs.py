"""Logging set-up, called once by each process's composition root.

Each line names the process it comes from (`service`, `worker`, `migrate`, ...): the composition
root names its process with `name_process`, and the format shows that name, so the lines of the
processes `usersvc dev` runs side by side can be told apart.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys

from usersvc.logformat import JsonFormatter, TextFormatter

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def name_process(name: str) -> None:
    """Name this process in its log lines (`%(processName)s`, otherwise `MainProcess`). The name
    is kept by processes forked from this one, such as gunicorn's workers."""
    multiprocessing.current_process().name = name


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Python's warnings become log lines too (in the same format), not bare stderr text.
    logging.captureWarnings(True)
    # grpc and urllib3 are chatty at INFO.
    for noisy in ("urllib3", "grpc", "testcontainers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def formatter(log_format: str = "text") -> logging.Formatter:
    """The formatter of the `LOG_FORMAT` setting: `text` (FORMAT) or `json` (one object a line,
    see `usersvc.logformat`); both redact passwords and tokens from every line."""
    return JsonFormatter() if log_format == "json" else TextFormatter(FORMAT)
