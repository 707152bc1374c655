"""Stopping an offline tool from outside: SIGINT (Ctrl-C) and SIGTERM alike.

Python turns SIGINT into `KeyboardInterrupt`, and on it libraries clean up (psycopg cancels the
statement that runs, a transaction rolls back, a partial file is removed); SIGTERM, by default,
ends the process on the spot. Inside `stopped_by_signals()` both raise `Interrupted`, a
`KeyboardInterrupt` that says which signal it was, so a tool stopped by a service manager, a CI
runner's timeout or `kill` ends as after Ctrl-C: cleaned up, with one message. `Hold` keeps them
off a step that must not be cut in two (a commit); the one that arrived is left for the caller.
Installed by the command line (`usersvc_cli`), for the commands that do not handle signals
themselves; without it, nothing here changes how the process reacts to a signal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by signal `signum`; the message says what that left."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message or f"interrupted by {signal_name(signum)}")
        self.signum = signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Hold:
    """Between `hold()` and `release()` a stop request is not raised but kept in `signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def hold(self) -> None:
        _holds.append(self)

    def release(self) -> None:
        if self in _holds:
            _holds.remove(self)


# The holds in force, innermost last (only the main thread runs signal handlers).
_holds: list[Hold] = []


def _handle(signum: int, frame: FrameType | None) -> None:
    if _holds:
        hold = _holds[-1]
        hold.signum = hold.signum or signum
        return
    raise Interrupted(signum)


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise `Interrupted` in the main thread (a signal the process
    ignores, as a shell makes a background job ignore SIGINT, stays ignored). Elsewhere than
    in the main thread nothing changes: only it can handle signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signum: signal.getsignal(signum)
        for signum in SIGNALS
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    for signum in previous:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
