"""Errors a user can act on.

Every failure a user can cause or fix is a :class:`BakegenError`: it carries
where it happened (file, line, key), what went wrong and a hint. The CLI turns
it into ``error: ...`` and ``hint: ...`` lines and an exit code, in one place.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Location:
    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        out = self.path
        if self.line is not None:
            out += f":{self.line}"
            if self.column is not None:
                out += f":{self.column}"
        return out


class BakegenError(Exception):
    """A failure with a message, an optional location and a hint."""

    exit_code = 2

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def lines(self) -> list[str]:
        """``error: ...`` and ``hint: ...``, one line each, whatever the message holds."""
        where = f"{self.location}: " if self.location else ""
        out = [f"error: {one_line(where + self.message)}"]
        if self.hint:
            out.append(f"hint: {one_line(self.hint)}")
        return out


class StackError(BakegenError):
    """A stack file is invalid (exit 2)."""


@dataclass
class StackErrors(Exception):
    """Several invalid stacks, reported together."""

    errors: list[StackError] = field(default_factory=list)
    exit_code = 2


class ResolutionError(BakegenError):
    """A package set cannot be resolved (exit 1)."""

    exit_code = 1


class NetworkError(BakegenError):
    """An index or registry cannot be reached (exit 1)."""

    exit_code = 1


class StaleError(BakegenError):
    """A lock or generated file does not match its inputs (exit 1)."""

    exit_code = 1


class ToolError(BakegenError):
    """A tool bakegen needs is missing or broken (exit 1)."""

    exit_code = 1


class CommandError(BakegenError):
    """An external command failed; carries the command and its output."""

    exit_code = 1

    def __init__(self, cmd: list[str], returncode: int, output: str, *, hint: str | None = None):
        self.cmd = cmd
        self.returncode = returncode
        self.output = output
        last = [ln for ln in output.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        super().__init__(
            f"{cmd[0]} exited with {returncode}: {last[0].strip()}",
            hint=hint or f"command was: {shlex.join(cmd)}",
        )


def one_line(text: str, limit: int = 1000) -> str:
    """``text`` on one line: line breaks and other control characters shown escaped, at most
    ``limit`` characters."""
    out = "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)
    return out if len(out) <= limit else out[:limit] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """Return a ``did you mean 'x'?`` hint, as pypa/build's typo finder does."""
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None
