"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or options, reported without a traceback."""


def root_cause(error: BaseException) -> BaseException:
    """The exception a Ray task raised, behind Ray's wrappers (`cause`) and Ray Data's (`__cause__`)."""
    seen = {id(error)}
    while True:
        inner = getattr(error, "cause", None) or error.__cause__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def error_line(error: BaseException) -> str:
    """The error behind Ray's wrappers in one line: its type and the first line of its message."""
    cause = root_cause(error)
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def user_error(error: BaseException) -> UserError | None:
    """The UserError behind `error`, also when a Ray task raised it."""
    cause = root_cause(error)
    return cause if isinstance(cause, UserError) else None
