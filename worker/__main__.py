"""`python -m worker`: another name for `usersvc worker`, which composes the worker process."""

from __future__ import annotations

import sys

from usersvc_cli.main import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
