"""How a `usersvc` command fails: one line on stderr and an exit code a script can rely on.

A command raises `Refused` (exit 2) when its input or its surroundings rule it out before it has
changed anything: a bad argument or setting, a database it cannot reach, a folder that is not
there. It raises `Failed` (exit 1) when it stopped partway. `usersvc_cli.main` logs the message
as the one line and returns the code. Third-party errors are translated where a command meets them
(`usersvc_cli.database` for PostgreSQL), each once.
"""

from __future__ import annotations

REFUSED = 2
FAILED = 1


class CommandError(Exception):
    """A command ends with this message as its one line and `exit_code` as its status."""

    exit_code = FAILED


class Refused(CommandError):
    """Bad input or a precondition not met; nothing was changed."""

    exit_code = REFUSED


class Failed(CommandError):
    """The command stopped partway."""

    exit_code = FAILED


def one_line(exc: BaseException) -> str:
    """The error's message on one line. PostgreSQL's own message when the server sent one
    (without the LINE/caret and CONTEXT lines), else libpq's lines joined with '; '."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    if isinstance(primary, str) and primary:
        return primary
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
