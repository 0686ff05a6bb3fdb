"""Reading ``locks/<stack>/`` back: the manifest and every lock file, checked as strictly as bakegen
writes them.

Reading dispatches on the manifest's ``version``; an unknown or missing version is an error that
says what to do. The lock is data from the same pull request as the stack: every field is checked
against what bakegen writes, in every format version, and every lock file must be what bakegen
writes from the manifest. The reader is given the ecosystems (:mod:`bakegen.project` passes the
registry's); each reads its own section.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bakegen import __version__
from bakegen.errors import BakegenError, Location, StaleError, one_line
from bakegen.files import output_problem, sha256_text
from bakegen.lock import (
    DIGEST_PATTERN,
    LOCK_VERSION,
    MANIFEST,
    MAX_EPOCH,
    MAX_LOCK_FILE,
    NAME_PATTERN,
    StackLock,
    lock_files,
    manifest_checksum,
    manifest_schema,
    matches,
)
from bakegen.paths import Unreadable, read_bounded

if TYPE_CHECKING:
    from bakegen.ecosystem import AnyEcosystem  # noqa: F401 (a string annotation below)


REWRITE = "run bakegen lock to rewrite it"
BY_HAND = "run bakegen lock to rewrite it; do not edit locks by hand"
Ecosystems = Sequence["AnyEcosystem"]


def _stale(message: str, shown: str, hint: str = REWRITE) -> StaleError:
    return StaleError(message, location=Location(shown), hint=hint)


def read_lock(lock_dir: Path, ecosystems: Ecosystems, root: Path | None = None) -> StackLock | None:
    """Read ``locks/<stack>/``; ``None`` when there is no lock yet.

    Raises :class:`StaleError` when the files are damaged, edited by hand or in
    an older format (run ``bakegen lock``), and :class:`BakegenError` for a
    format newer than this bakegen. The lock is data from the same pull request as
    the stack: every field is checked as strictly as bakegen writes it, in every
    format version, and every lock file must be what bakegen writes from the
    manifest (:func:`_check_files`).
    """
    root = root if root is not None else lock_dir.parent.parent
    inside = lock_dir.is_relative_to(root)
    rel = str(lock_dir.relative_to(root)) if inside else str(lock_dir)
    manifest = lock_dir / MANIFEST
    shown = f"{rel}/{MANIFEST}"
    problem = output_problem(root, f"{rel}/{MANIFEST}") if inside else None
    if problem:
        hint = "locks/ must be real folders of the project; remove the link"
        raise BakegenError(f"{rel}: {problem}", location=Location(shown), hint=hint)
    if not os.path.lexists(manifest):
        return None
    doc = _load_manifest(manifest, shown)
    reader = _READERS.get(_version_of(doc, shown))
    if reader is None:
        raise BakegenError(
            f"lock format version {doc['version']} is not supported by bakegen {__version__} "
            f"(supports {sorted(_READERS)})",
            location=Location(shown),
            hint="upgrade bakegen, or delete the lock folder and run bakegen lock",
        )
    try:
        lock = reader(doc, lock_dir, shown, ecosystems)
        _check_files(lock, lock_dir, shown, ecosystems)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise _stale(f"damaged lock manifest ({one_line(repr(exc), 200)})", shown) from None
    return lock


def _load_manifest(manifest: Path, shown: str) -> Any:
    try:
        return json.loads(read_bounded(manifest, MAX_LOCK_FILE).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _stale(f"unreadable lock manifest: {one_line(str(exc), 200)}", shown) from None
    except Unreadable as exc:
        raise _stale(f"cannot read the lock manifest: {exc.reason}", shown) from None


def _version_of(doc: Any, shown: str) -> int:
    version = doc.get("version") if isinstance(doc, dict) else None
    if version is None:
        raise _stale("lock manifest has no 'version'", shown)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        shape = one_line(repr(version), 40)
        raise _stale(f"lock manifest 'version' is {shape}, not a format number", shown)
    return version


def _read_v1(doc: dict[str, Any], lock_dir: Path, shown: str, ecosystems: Ecosystems) -> StackLock:
    message = "lock format version 1 predates base-image digests"
    raise _stale(message, shown, "run bakegen lock to upgrade it to version 2")


def _lock_file_text(lock_dir: Path, name: str, shown: str) -> str:
    """A lock file's text: a regular file of the lock folder (no link), bounded, UTF-8."""
    path = lock_dir / name
    if not path.is_file() or path.is_symlink():
        raise _stale(f"{name} is missing (or not a regular file)", shown, "run bakegen lock")
    try:
        text = read_bounded(path, MAX_LOCK_FILE).decode("utf-8")
    except Unreadable as exc:
        raise _stale(f"cannot read {lock_dir.name}/{name}: {exc.reason}", shown) from None
    except UnicodeDecodeError:
        message = f"{lock_dir.name}/{name} is not UTF-8 text: it was edited after locking"
        raise _stale(message, shown) from None
    bad = re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]", text)
    if bad:  # bakegen writes lines split on \n only; the install scripts split on nothing else
        raise _stale(f"{lock_dir.name}/{name} holds the control character {bad.group()!r}", shown)
    return text


def _file_reader(lock_dir: Path, shown: str, ecosystems: Ecosystems) -> Callable[[str, str], str]:
    """read_file(name, sha256): a lock file's text, refused when unknown, missing or edited."""
    patterns = [p for eco in ecosystems for p in eco.file_patterns]

    def read_file(name: str, sha256: str) -> str:
        if not isinstance(name, str) or not any(re.fullmatch(p, name) for p in patterns):
            shape = one_line(repr(name), 80)
            raise _stale(f"the manifest names an unknown lock file {shape}", shown)
        text = _lock_file_text(lock_dir, name, shown)
        if sha256_text(text) != sha256:
            hint = "run bakegen lock to re-resolve; do not edit locks by hand"
            raise _stale(f"{lock_dir.name}/{name} was edited after locking", shown, hint)
        return text

    return read_file


def _body(text: str) -> list[str]:
    """A lock file without its header (the comment lines it starts with: they name bakegen's
    version)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return lines[start:]


def _check_files(lock: StackLock, lock_dir: Path, shown: str, ecosystems: Ecosystems) -> None:
    """Every lock file the Dockerfile mounts is exactly what bakegen writes from the lock as read
    (its header aside): an option line that bakegen's reader skips but pip obeys, a manifest that
    points the hash check at another file, or a line the reader does not keep, is refused."""
    for name, text in lock_files(lock, ecosystems).items():
        if name != MANIFEST and _body(_lock_file_text(lock_dir, name, shown)) != _body(text):
            folder = lock_dir.name
            message = f"{folder}/{name} is not what bakegen writes from {folder}/{MANIFEST}"
            raise _stale(message, shown, BY_HAND)


def _read_v2(
    doc: dict[str, Any], lock_dir: Path, shown: str, ecosystems: Ecosystems, version: int = 2
) -> StackLock:
    """Format 2 had no checksum: it is checked as strictly as format 3 (migrating must not accept
    what check refuses)."""
    problem = _schema_problem(doc, ecosystems, version)
    if problem:
        raise _stale(f"damaged lock manifest: {problem}", shown)
    read_file = _file_reader(lock_dir, shown, ecosystems)
    parts = {}
    for eco in ecosystems:
        section = doc.get(eco.section)
        if section is not None:
            parts[eco.name] = eco.read(section, read_file, doc, str(lock_dir))
    return StackLock(
        stack=doc["stack"],
        fingerprint=doc["fingerprint"],
        parent=doc.get("parent"),
        platforms=list(doc["platforms"]),
        parts=parts,
        source_date_epoch=doc.get("source_date_epoch"),
        format_version=version,
        resolved_fingerprint=doc.get("resolved_fingerprint"),
    )


def _read_v3(doc: dict[str, Any], lock_dir: Path, shown: str, ecosystems: Ecosystems) -> StackLock:
    if doc.get("checksum") != manifest_checksum(doc):
        message = f"{lock_dir.name}/{MANIFEST} was edited after locking "
        message += "(its checksum does not match)"
        raise _stale(message, shown, BY_HAND)
    return _read_v2(doc, lock_dir, shown, ecosystems, version=3)


def _schema_problem(
    doc: dict[str, Any], ecosystems: Ecosystems, version: int = LOCK_VERSION
) -> str | None:
    """The first field of a manifest that is not what bakegen writes, checked without jsonschema's
    import cost: what reaches a generated file must have its shape (schema/ holds the whole
    schema)."""
    newer = {"checksum", "resolved_fingerprint"} if version < 3 else set()
    extra = sorted(set(doc) - (set(manifest_schema(ecosystems)["properties"]) - newer))
    if extra:
        return f"unknown key {extra[0]!r}"
    checks = _top_level_checks(doc)
    problem = next((f"{where}: not what bakegen writes" for where, ok in checks if not ok), None)
    for eco in ecosystems:
        section = doc.get(eco.section)
        if problem is None and section is None and eco.always_locked:
            problem = f"{eco.section}: missing (every lock has it)"
        if problem is None and section is not None:
            wrong = f"{eco.section}: not what bakegen writes"
            problem = eco.section_problem(section) if isinstance(section, dict) else wrong
        if problem is None and section is None and eco.section in doc and not eco.in_format_2:
            problem = f"{eco.section}: not what bakegen writes"  # absent, never null
    return problem


def _top_level_checks(doc: dict[str, Any]) -> list[tuple[str, bool]]:
    """(key, whether it has the shape bakegen writes) for the manifest's own keys."""
    platforms, epoch = doc.get("platforms"), doc.get("source_date_epoch")
    resolved = doc.get("resolved_fingerprint")
    listed = platforms if isinstance(platforms, list) else []
    unique = bool(listed) and len(set(listed)) == len(listed)
    known = unique and all(p in ("linux/amd64", "linux/arm64") for p in listed)
    whole = isinstance(epoch, int) and not isinstance(epoch, bool)
    return [
        ("stack", matches(doc.get("stack"), NAME_PATTERN)),
        ("parent", doc.get("parent") is None or matches(doc.get("parent"), NAME_PATTERN)),
        ("fingerprint", matches(doc.get("fingerprint"), DIGEST_PATTERN)),
        ("resolved_fingerprint", resolved is None or matches(resolved, DIGEST_PATTERN)),
        ("platforms", known),
        ("source_date_epoch", epoch is None or (whole and 0 <= epoch <= MAX_EPOCH)),
    ]


_READERS = {1: _read_v1, 2: _read_v2, 3: _read_v3}
