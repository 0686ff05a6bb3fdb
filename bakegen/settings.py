"""``bakegen.toml``: the project's own settings, beside ``stacks/`` (optional).

```toml
[lock]
min_age_days = 7          # bakegen lock resolves no release younger than this (a cool-down)

[[audit.ignore]]          # an accepted risk: bakegen audit reports it, and does not fail on it
id = "GHSA-xxxx-xxxx-xxxx"
reason = "not reachable: we never render untrusted templates"
```

A pull request can edit it, so it is read as strictly as a stack file: a regular file inside
the project, at most 64 KiB, every key known, every value checked with a full match; one
``error:`` line with the file, the line and the key otherwise.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bakegen.advisories import ADVISORY_ID
from bakegen.errors import BakegenError, Location, one_line
from bakegen.paths import Unreadable, outside, read_bounded
from bakegen.stack import find_line

SETTINGS_FILE = "bakegen.toml"
MAX_SETTINGS = 64 * 1024
MAX_MIN_AGE = 3650  # days
# GHSA-xxxx-xxxx-xxxx, PYSEC-2024-1, CVE-2024-1234, or npm's number
REASON = re.compile(r"[^\x00-\x1f\x7f]{1,500}")


@dataclass(frozen=True)
class Ignored:
    id: str
    reason: str


@dataclass(frozen=True)
class Settings:
    min_age_days: int | None = None
    ignored: tuple[Ignored, ...] = ()


def read_settings(root: Path) -> Settings:
    path = root / SETTINGS_FILE
    if not path.exists() and not path.is_symlink():
        return Settings()
    text = _read(root, path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _error(text, (), f"not TOML: {exc}", "fix the syntax") from None
    except RecursionError:
        raise _error(text, (), "nested too deeply", "a settings file is two tables deep") from None
    _only_keys(text, doc, (), {"lock", "audit"})
    lock, audit = _table(text, doc, "lock"), _table(text, doc, "audit")
    _only_keys(text, lock, ("lock",), {"min_age_days"})
    _only_keys(text, audit, ("audit",), {"ignore"})
    return Settings(_min_age(text, lock.get("min_age_days")),
                    _ignored(text, audit.get("ignore", [])))


def _read(root: Path, path: Path) -> str:
    if outside(root, path):
        raise BakegenError(f"{SETTINGS_FILE} resolves outside the project",
                           hint="make it a regular file in the project folder")
    try:
        return read_bounded(path, MAX_SETTINGS).decode("utf-8")
    except Unreadable as exc:
        raise BakegenError(f"{SETTINGS_FILE}: cannot read it ({exc.reason})",
                           hint=f"a regular file of at most {MAX_SETTINGS} bytes") from None
    except UnicodeDecodeError:
        raise BakegenError(f"{SETTINGS_FILE}: not UTF-8", hint="save it as UTF-8") from None


def _error(text: str, key: tuple[str, ...], message: str, hint: str) -> BakegenError:
    where = Location(SETTINGS_FILE, find_line(text, key) if key else None)
    shown = ".".join(key)
    return BakegenError(f"{shown + ': ' if shown else ''}{one_line(message, 300)}", location=where,
                        hint=hint)


def _only_keys(text: str, doc: dict[str, Any], at: tuple[str, ...], known: set[str]) -> None:
    for key in doc:
        if key not in known:
            raise _error(text, (*at, key), "unknown key",
                         f"{'.'.join(at) or 'the file'} takes: {', '.join(sorted(known))}")


def _table(text: str, doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise _error(text, (key,), "not a table", f"write [{key}]")
    return value


def _min_age(text: str, value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_MIN_AGE:
        raise _error(text, ("lock", "min_age_days"), f"{value!r} is not a number of days",
                     f"a whole number from 0 to {MAX_MIN_AGE}, e.g. min_age_days = 7")
    return value


def _ignored(text: str, entries: Any) -> tuple[Ignored, ...]:
    key = ("audit", "ignore")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _error(text, key, "not an array of tables",
                     "write [[audit.ignore]] with id and reason")
    out = []
    for entry in entries:
        _only_keys(text, entry, key, {"id", "reason"})
        ident, reason = entry.get("id"), entry.get("reason")
        if not isinstance(ident, str) or not ADVISORY_ID.fullmatch(ident):
            raise _error(text, (*key, "id"), f"{ident!r} is not an advisory id",
                         "for example id = \"GHSA-xxxx-xxxx-xxxx\" or \"PYSEC-2024-1\"")
        if not isinstance(reason, str) or not reason.strip().isprintable() or not REASON.fullmatch(
                reason.strip() or "\0"):
            raise _error(text, (*key, "reason"), "an accepted risk needs its reason",
                         "reason = \"...\": one line, at most 500 characters")
        out.append(Ignored(ident, reason.strip()))
    return tuple(out)
