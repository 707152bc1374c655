"""How a `usersvc` command fails: one line on stderr and an exit code a script can rely on.

A command raises `Refused` (exit 2) when its input or its surroundings rule it out, and it has
changed nothing: a bad argument or setting, a database it cannot reach, a folder that is not
there, a damaged or hostile file found out while it is read. It raises `Failed` (exit 1) when it
stopped partway for another reason (a source that went away, a database error): the message says
what that left. `Stopped` (exit 128 + N, as a shell reports a process that signal N ended: 130
for SIGINT, 143 for SIGTERM) is a stop asked for from outside; the offline tools turn SIGTERM into
the same clean stop as Ctrl-C (`repro.interrupts`). `usersvc_cli.main` logs the message as the
one line and returns the code. Third-party errors are translated where a command meets them
(`usersvc_cli.database` for PostgreSQL), each once.
"""

from __future__ import annotations

REFUSED = 2
FAILED = 1
SIGNALLED = 128  # plus the signal's number


class CommandError(Exception):
    """A command ends with this message as its one line and `exit_code` as its status."""

    exit_code = FAILED


class Refused(CommandError):
    """Bad input or a precondition not met; nothing was changed."""

    exit_code = REFUSED


class Failed(CommandError):
    """The command stopped partway."""

    exit_code = FAILED


class Stopped(CommandError):
    """The command was stopped partway by signal `signum` (SIGINT, SIGTERM)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = SIGNALLED + signum


def one_line(exc: BaseException) -> str:
    """The error's message on one line. PostgreSQL's own message when the server sent one
    (without the LINE/caret and CONTEXT lines), else libpq's lines joined with '; '."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    if isinstance(primary, str) and primary:
        return primary
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
