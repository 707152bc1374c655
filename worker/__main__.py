"""`python -m worker`: the worker process on its own (the same as `usersvc worker`)."""

from __future__ import annotations

import sys

from usersvc.logs import configure_logging
from usersvc.settings import SettingsError, load_settings
from worker.runner import run


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
