"""Checkers for the values of a stack file: each returns the value or raises :class:`Invalid`.

Every value that can reach a Dockerfile, a shell line, HCL or YAML is checked
here, with a full match (``re.fullmatch``: a trailing newline is not accepted)
and with no control character in any string, before it is quoted for its
context by the renderers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from bakegen.errors import did_you_mean

MAX_TEXT = 4096  # characters in one string
MAX_ITEMS = 1000  # items in one array or table

Checker = Callable[[Any], Any]


class Invalid(Exception):
    def __init__(self, message: str, hint: str | None = None, value: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.value = value  # the offending list item, to point at its own line


def type_name(value: Any) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a float",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def shown(value: str, limit: int = 60) -> str:
    """``value`` for an error message: quoted, escaped, and cut when long."""
    text = repr(value[:limit])
    return text + ("..." if len(value) > limit else "")


def _control(value: str) -> str | None:
    """The first control, format or line-separator character of ``value`` (tab allowed), or None."""
    for ch in value:
        if ch != "\t" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return ch
    return None


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(
            f"expected a string, got {type_name(value)}", "put the value in double quotes"
        )
    return value


def text(value: Any) -> str:
    """One line of text: no newline, NUL or other control character; at most MAX_TEXT characters."""
    value = string(value)
    bad = _control(value)
    if bad is not None:
        raise Invalid(
            f"{shown(value)} holds the control character {bad!r}",
            "write it on one line, without control characters",
            value,
        )
    if len(value) > MAX_TEXT:
        raise Invalid(f"{shown(value)} is longer than {MAX_TEXT} characters", "shorten it", value)
    return value


def matching(pattern: str, what: str, example: str) -> Checker:
    """A string that matches ``pattern`` as a whole."""
    regex = re.compile(pattern)

    def check(value: Any) -> str:
        value = string(value)
        if len(value) > MAX_TEXT or not regex.fullmatch(value):
            raise Invalid(
                f"invalid {what} {shown(value)}", f"use something like {example!r}", value
            )
        return value

    return check


def _ranged(
    lo: float, hi: float, kinds: tuple[type[int] | type[float], ...], what: str, hint: str
) -> Checker:
    """A number of one of ``kinds`` (never a bool) from lo to hi."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise Invalid(f"expected {what}, got {type_name(value)}", hint)
        if not lo <= value <= hi:
            raise Invalid(f"{value} is out of range {lo}..{hi}")
        return value

    return check


def int_in(lo: int, hi: int) -> Checker:
    return _ranged(lo, hi, (int,), "an integer", "write a whole number without quotes")


def number(lo: float, hi: float) -> Checker:
    return _ranged(lo, hi, (int, float), "a number", "write a number without quotes, e.g. 2 or 0.5")


# http(s), a host, an optional port and path: no user:password@, no query, no space or quote
# In the form uv and npm write it back (a lock compares it as text): a lower-case host, no default
# port, no "." or ".." segment.
SOURCE_URL = re.compile(r"(?:http://[a-z0-9][a-z0-9.-]{0,252}(?::(?!80\b)[0-9]{1,5})?"
                        r"|https://[a-z0-9][a-z0-9.-]{0,252}(?::(?!443\b)[0-9]{1,5})?)"
                        r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9._~%+-]+)*/?")


def source_url(value: Any) -> str:
    """A package index's or registry's URL: never with a login in it."""
    value = string(value)
    if not SOURCE_URL.fullmatch(value):
        raise Invalid(f"{shown(value)} is not an index URL (http(s)://host[:port]/path: a "
                      "lower-case host, no user:password@, no default port, no . or ..)",
                      "logins go in a netrc or npmrc file (README: \"Package sources and "
                      "credentials\")", value)
    return value.rstrip("/")


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(
            f"expected true or false, got {type_name(value)}", "write true or false, without quotes"
        )
    return value


def one_of(*choices: str) -> Checker:
    def check(value: Any) -> str:
        value = string(value)
        if value not in choices:
            raise Invalid(
                f"expected one of {', '.join(choices)}, got {shown(value)}",
                did_you_mean(value, choices),
                value,
            )
        return value

    return check


def list_of(item: Checker, *, non_empty: bool = False) -> Checker:
    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Invalid(
                f"expected an array, got {type_name(value)}", 'write a list such as ["a", "b"]'
            )
        if non_empty and not value:
            raise Invalid("must not be empty")
        if len(value) > MAX_ITEMS:
            raise Invalid(f"has {len(value)} items, more than {MAX_ITEMS}")
        return tuple(item(v) for v in value)

    return check


def table_of(key: Checker, val: Checker) -> Checker:
    def check(value: Any) -> tuple[tuple[str, Any], ...]:
        if not isinstance(value, dict):
            raise Invalid(
                f"expected a table, got {type_name(value)}",
                'write it as a [table] of key = "value" lines',
            )
        if len(value) > MAX_ITEMS:
            raise Invalid(f"has {len(value)} keys, more than {MAX_ITEMS}")
        return tuple((key(k), val(v)) for k, v in value.items())

    return check


def record(fields: dict[str, Checker], required: tuple[str, ...] = ()) -> Checker:
    """A table with known keys (an item of an array of tables, [[steps]]): each key checked, unknown
    keys refused."""

    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Invalid(
                f"expected a table, got {type_name(value)}",
                f"write each item as a table with {', '.join(sorted(fields))}",
            )
        for key in value:
            if key not in fields:
                raise Invalid(
                    f"unknown key {shown(str(key))}",
                    did_you_mean(str(key), fields) or f"valid keys: {', '.join(sorted(fields))}",
                )
        for key in required:
            if key not in value:
                raise Invalid(f"missing '{key}'", f"each item needs {', '.join(required)}")
        out = {}
        for key, item in value.items():
            try:
                out[key] = fields[key](item)
            except Invalid as exc:
                raise Invalid(f"{key}: {exc.message}", exc.hint, exc.value) from None
        return out

    return check
