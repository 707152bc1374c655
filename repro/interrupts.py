"""Stopping an offline tool from outside: SIGINT (Ctrl-C) and SIGTERM alike.

Python turns SIGINT into `KeyboardInterrupt`, and on it libraries clean up (psycopg cancels the
statement that runs, a transaction rolls back, a partial file is removed); SIGTERM, by default,
ends the process on the spot. Inside `stopped_by_signals()` both raise `Interrupted`, a
`KeyboardInterrupt` that says which signal it was, so a tool stopped by a service manager, a CI
runner's timeout or `kill` ends as after Ctrl-C: cleaned up, with one message. `Hold` keeps them
off a step that must not be cut in two (a commit); the one that arrived is left for the caller.

One place must not be cut either: psycopg's protocol generators, between sending a statement and
reading its answer. Raised there, the exception ends the generator, and psycopg's own handling of
an interrupt (cancel the statement, read what is left of its answer) finds nothing to read: the
connection stays busy, and every rollback after it fails with "another command is already in
progress" (seen under load, a few times in a hundred). So a signal that lands in such a frame is
delivered again to the main thread a moment later, when psycopg waits on its socket and handles
it as it should.
Installed by the command line (`usersvc_cli`), for the commands that do not handle signals
themselves; without it, nothing here changes how the process reacts to a signal.
"""

from __future__ import annotations

import inspect
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long a signal that landed in a driver's protocol code waits before it is delivered again.
_AGAIN_AFTER = 0.02


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
    if _in_protocol_code(frame):
        main = threading.main_thread().ident
        assert main is not None
        again = threading.Timer(_AGAIN_AFTER, signal.pthread_kill, (main, signum))
        again.daemon = True
        again.start()
        return
    raise Interrupted(signum)


def _in_protocol_code(frame: FrameType | None) -> bool:
    """Whether the innermost frames, those of psycopg, include one of its generators (the code
    that talks to the server, driven by its `wait`)."""
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("psycopg"):
        if frame.f_code.co_flags & inspect.CO_GENERATOR:
            return True
        frame = frame.f_back
    return False


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
