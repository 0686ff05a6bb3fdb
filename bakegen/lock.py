"""The generic lock model: one manifest per stack, with one section per ecosystem.

``locks/<stack>/`` holds each ecosystem's own lock files (pip-compile's
``requirements.txt``, ``apt.lock``, npm's ``package-lock.json``, ...) and
``lock.json``, the manifest, in a versioned format: the fingerprint of the
inputs, the platforms, the epoch, and one section per ecosystem that the stack
uses. Each section and its files belong to the ecosystem's module
(:mod:`bakegen.ecosystems`); this module knows none of them by name.

Reading dispatches on the manifest's ``version``; an unknown or missing version
is an error that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bakegen import __version__
from bakegen.errors import BakegenError, Location, StaleError, one_line
from bakegen.files import GENERATED_MARKER, output_problem, sha256_text
from bakegen.paths import Unreadable, read_bounded

if TYPE_CHECKING:
    from bakegen.ecosystem import AnyEcosystem

LOCK_VERSION = 3
# What the fingerprint hashes has not changed since format 2: a new format reads an
# older lock and rewrites it without resolving anything again.
FINGERPRINT_VERSION = 2
MAX_EPOCH = 2**33  # about the year 2242
MANIFEST = "lock.json"


def arch_of(platform: str) -> str:
    """``linux/arm64`` -> ``arm64`` (the Docker TARGETARCH and the Debian architecture)."""
    return platform.split("/")[1]


@dataclass
class StackLock:
    stack: str
    fingerprint: str
    parent: str | None
    platforms: list[str]
    parts: dict[str, Any] = field(default_factory=dict)  # ecosystem name -> its lock (absent: unused)
    # When this content was resolved (kept while a re-lock gives the same content):
    # the image's SOURCE_DATE_EPOCH and "created" time, never the build's clock.
    source_date_epoch: int | None = None
    format_version: int = LOCK_VERSION  # the format it was read in; older ones are rewritten by bakegen lock
    # The fingerprint without the offline ecosystems (the stack's own files and steps): when only
    # they change, the rest of the lock is kept without resolving. Set only when they are used.
    resolved_fingerprint: str | None = None


# --- the files ---------------------------------------------------------------


def lock_files(lock: StackLock, ecosystems: Sequence[AnyEcosystem], command: str = "bakegen lock") -> dict[str, str]:
    """Every file of ``locks/<stack>/`` (relative to that folder), the manifest last."""
    files: dict[str, str] = {}
    for eco in ecosystems:
        part = lock.parts.get(eco.name)
        if part is not None:
            files.update(eco.files(lock, part, command))
    files[MANIFEST] = render_manifest(lock, files, ecosystems)
    return files


def render_manifest(lock: StackLock, files: dict[str, str], ecosystems: Sequence[AnyEcosystem]) -> str:
    doc: dict[str, Any] = {
        "_comment": f"{GENERATED_MARKER} lock. Do not edit; run 'bakegen lock' to update.",
        "version": LOCK_VERSION,
        "stack": lock.stack,
        "fingerprint": lock.fingerprint,
        **({"resolved_fingerprint": lock.resolved_fingerprint} if lock.resolved_fingerprint else {}),
        "parent": lock.parent,
        "generator": f"bakegen {__version__}",
        "source_date_epoch": lock.source_date_epoch,
        "platforms": list(lock.platforms),
    }
    for eco in ecosystems:
        part = lock.parts.get(eco.name)
        if part is not None:
            doc[eco.section] = eco.section_of(lock, part, files)
        elif eco.in_format_2:
            doc[eco.section] = None
    doc["checksum"] = manifest_checksum(doc)
    return json.dumps(doc, indent=2) + "\n"


def manifest_checksum(doc: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its checksum: an edited manifest is refused."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_lock(lock_dir: Path, ecosystems: Sequence[AnyEcosystem], root: Path | None = None) -> StackLock | None:
    """Read ``locks/<stack>/``; ``None`` when there is no lock yet.

    Raises :class:`StaleError` when the files are damaged, edited by hand or in
    an older format (run ``bakegen lock``), and :class:`BakegenError` for a
    format newer than this bakegen. The lock is data from the same pull request as
    the stack: every field is checked as strictly as bakegen writes it, in every
    format version, and every lock file must be what bakegen writes from the
    manifest (:func:`_check_files`).
    """
    root = root if root is not None else lock_dir.parent.parent
    rel = str(lock_dir.relative_to(root)) if lock_dir.is_relative_to(root) else str(lock_dir)
    manifest = lock_dir / MANIFEST
    shown = f"{rel}/{MANIFEST}"
    problem = output_problem(root, f"{rel}/{MANIFEST}") if lock_dir.is_relative_to(root) else None
    if problem:
        raise BakegenError(f"{rel}: {problem}", location=Location(shown), hint="locks/ must be real folders of the project; remove the link")
    if not os.path.lexists(manifest):
        return None
    doc = _load_manifest(manifest, shown)
    reader = _READERS.get(_version_of(doc, shown))
    if reader is None:
        raise BakegenError(
            f"lock format version {doc['version']} is not supported by bakegen {__version__} (supports {sorted(_READERS)})",
            location=Location(shown),
            hint="upgrade bakegen, or delete the lock folder and run bakegen lock",
        )
    try:
        lock = reader(doc, lock_dir, shown, ecosystems)
        _check_files(lock, lock_dir, shown, ecosystems)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise StaleError(f"damaged lock manifest ({one_line(repr(exc), 200)})", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    return lock


MAX_LOCK_FILE = 50_000_000  # bytes in one lock file


def _load_manifest(manifest: Path, shown: str) -> Any:
    try:
        return json.loads(read_bounded(manifest, MAX_LOCK_FILE).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise StaleError(f"unreadable lock manifest: {one_line(str(exc), 200)}", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    except Unreadable as exc:
        raise StaleError(f"cannot read the lock manifest: {exc.reason}", location=Location(shown), hint="run bakegen lock to rewrite it") from None


def _version_of(doc: Any, shown: str) -> int:
    version = doc.get("version") if isinstance(doc, dict) else None
    if version is None:
        raise StaleError("lock manifest has no 'version'", location=Location(shown), hint="run bakegen lock to rewrite it")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StaleError(f"lock manifest 'version' is {one_line(repr(version), 40)}, not a format number", location=Location(shown), hint="run bakegen lock to rewrite it")
    return version


def _read_v1(doc: dict[str, Any], lock_dir: Path, shown: str, ecosystems: Sequence[AnyEcosystem]) -> StackLock:
    raise StaleError("lock format version 1 predates base-image digests", location=Location(shown), hint="run bakegen lock to upgrade it to version 2")


def _lock_file_text(lock_dir: Path, name: str, shown: str) -> str:
    """A lock file's text: a regular file of the lock folder (no link), bounded, UTF-8."""
    path = lock_dir / name
    if not path.is_file() or path.is_symlink():
        raise StaleError(f"{name} is missing (or not a regular file)", location=Location(shown), hint="run bakegen lock")
    try:
        text = read_bounded(path, MAX_LOCK_FILE).decode("utf-8")
    except Unreadable as exc:
        raise StaleError(f"cannot read {lock_dir.name}/{name}: {exc.reason}", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    except UnicodeDecodeError:
        raise StaleError(f"{lock_dir.name}/{name} is not UTF-8 text: it was edited after locking", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    bad = re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]", text)
    if bad:  # bakegen writes lines split on \n only; the install scripts split on nothing else
        raise StaleError(f"{lock_dir.name}/{name} holds the control character {bad.group()!r}", location=Location(shown), hint="run bakegen lock to rewrite it")
    return text


def _file_reader(lock_dir: Path, shown: str, ecosystems: Sequence[AnyEcosystem]) -> Callable[[str, str], str]:
    """read_file(name, sha256): a lock file's text, refused when unknown, missing or edited."""
    patterns = [p for eco in ecosystems for p in eco.file_patterns]

    def read_file(name: str, sha256: str) -> str:
        if not isinstance(name, str) or not any(re.fullmatch(p, name) for p in patterns):
            raise StaleError(f"the manifest names an unknown lock file {one_line(repr(name), 80)}", location=Location(shown), hint="run bakegen lock to rewrite it")
        text = _lock_file_text(lock_dir, name, shown)
        if sha256_text(text) != sha256:
            raise StaleError(f"{lock_dir.name}/{name} was edited after locking", location=Location(shown), hint="run bakegen lock to re-resolve; do not edit locks by hand")
        return text

    return read_file


def _body(text: str) -> list[str]:
    """A lock file without its header (the comment lines it starts with: they name bakegen's version)."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return lines[start:]


def _check_files(lock: StackLock, lock_dir: Path, shown: str, ecosystems: Sequence[AnyEcosystem]) -> None:
    """Every lock file the Dockerfile mounts is exactly what bakegen writes from the lock as read (its
    header aside): an option line that bakegen's reader skips but pip obeys, a manifest that points the
    hash check at another file, or a line the reader does not keep, is refused."""
    for name, text in lock_files(lock, ecosystems).items():
        if name != MANIFEST and _body(_lock_file_text(lock_dir, name, shown)) != _body(text):
            raise StaleError(f"{lock_dir.name}/{name} is not what bakegen writes from {lock_dir.name}/{MANIFEST}", location=Location(shown),
                             hint="run bakegen lock to rewrite it; do not edit locks by hand")


def _read_v2(doc: dict[str, Any], lock_dir: Path, shown: str, ecosystems: Sequence[AnyEcosystem], version: int = 2) -> StackLock:
    """Format 2 had no checksum: it is checked as strictly as format 3 (migrating must not accept what check refuses)."""
    problem = _schema_problem(doc, ecosystems, version)
    if problem:
        raise StaleError(f"damaged lock manifest: {problem}", location=Location(shown), hint="run bakegen lock to rewrite it")
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


def _read_v3(doc: dict[str, Any], lock_dir: Path, shown: str, ecosystems: Sequence[AnyEcosystem]) -> StackLock:
    if doc.get("checksum") != manifest_checksum(doc):
        raise StaleError(f"{lock_dir.name}/{MANIFEST} was edited after locking (its checksum does not match)", location=Location(shown),
                         hint="run bakegen lock to rewrite it; do not edit locks by hand")
    return _read_v2(doc, lock_dir, shown, ecosystems, version=3)


NAME_PATTERN = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
# A resolver or tool as a lock names it ("uv 0.13.9", "npm 11.19.1", "python-debian 1.1.1"): it is written into lock files' headers.
TOOL_PATTERN = r"[a-z][a-z0-9._-]{0,31}(?: [A-Za-z0-9._+?-]{1,32})?"
DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"


def _schema_problem(doc: dict[str, Any], ecosystems: Sequence[AnyEcosystem], version: int = LOCK_VERSION) -> str | None:
    """The first field of a manifest that is not what bakegen writes, checked without jsonschema's import
    cost: what reaches a generated file must have its shape (schema/ holds the whole schema)."""
    allowed = set(manifest_schema(ecosystems)["properties"]) - ({"checksum", "resolved_fingerprint"} if version < 3 else set())
    extra = sorted(set(doc) - allowed)
    if extra:
        return f"unknown key {extra[0]!r}"
    platforms = doc.get("platforms")
    epoch = doc.get("source_date_epoch")
    checks: list[tuple[str, bool]] = [
        ("stack", matches(doc.get("stack"), NAME_PATTERN)),
        ("parent", doc.get("parent") is None or matches(doc.get("parent"), NAME_PATTERN)),
        ("fingerprint", matches(doc.get("fingerprint"), DIGEST_PATTERN)),
        ("resolved_fingerprint", doc.get("resolved_fingerprint") is None or matches(doc.get("resolved_fingerprint"), DIGEST_PATTERN)),
        ("platforms", isinstance(platforms, list) and bool(platforms) and len(set(platforms)) == len(platforms)
         and all(p in ("linux/amd64", "linux/arm64") for p in platforms)),
        ("source_date_epoch", epoch is None or (isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch <= MAX_EPOCH)),
    ]
    problem = next((f"{where}: not what bakegen writes" for where, ok in checks if not ok), None)
    for eco in ecosystems:
        section = doc.get(eco.section)
        if problem is None and section is None and eco.always_locked:
            problem = f"{eco.section}: missing (every lock has it)"
        if problem is None and section is not None:
            problem = eco.section_problem(section) if isinstance(section, dict) else f"{eco.section}: not what bakegen writes"
        if problem is None and section is None and eco.section in doc and not eco.in_format_2:  # absent, never null
            problem = f"{eco.section}: not what bakegen writes"
    return problem


def matches(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


_READERS = {1: _read_v1, 2: _read_v2, 3: _read_v3}


# --- JSON Schema of the manifest ------------------------------------------------------

SCHEMA_FILE = f"schema/lock-v{LOCK_VERSION}.schema.json"

SCHEMA_SHA: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SCHEMA_DIGEST: dict[str, Any] = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
SCHEMA_PLATFORM: dict[str, Any] = {"type": "string", "enum": ["linux/amd64", "linux/arm64"]}
SCHEMA_VERSIONS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_SCHEMA_STACK_NAME = "^[a-z0-9]+(?:[-_][a-z0-9]+)*$"


def schema_obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": sorted(props) if required is None else required, "properties": props}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def manifest_schema(ecosystems: Sequence[AnyEcosystem]) -> dict[str, Any]:
    """The JSON Schema of ``lock.json`` (this format version). schema/ holds it, and a test keeps it current."""
    top = {
        "_comment": {"type": "string"},
        "version": {"const": LOCK_VERSION},
        "stack": {"type": "string", "pattern": _SCHEMA_STACK_NAME},
        "fingerprint": SCHEMA_DIGEST,
        "resolved_fingerprint": SCHEMA_DIGEST,
        "parent": {"type": ["string", "null"], "pattern": _SCHEMA_STACK_NAME},
        "generator": {"type": "string"},
        "source_date_epoch": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_EPOCH},
        "checksum": SCHEMA_DIGEST,
        "platforms": {"type": "array", "items": SCHEMA_PLATFORM, "minItems": 1, "uniqueItems": True},
    }
    optional = ["_comment", "source_date_epoch", "resolved_fingerprint"]
    for eco in ecosystems:
        top[eco.section] = eco.section_schema() if eco.always_locked or not eco.in_format_2 else _nullable(eco.section_schema())
        if not eco.in_format_2:
            optional.append(eco.section)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bakegen.dev/schema/lock-v{LOCK_VERSION}.schema.json",
        "$comment": f"{GENERATED_MARKER} from bakegen/lock.py manifest_schema(). Do not edit; to update, run: make schema",
        "title": f"bakegen lock manifest, format version {LOCK_VERSION} (locks/<stack>/lock.json)",
        **schema_obj(top, [k for k in sorted(top) if k not in optional]),
    }


def render_schema(ecosystems: Sequence[AnyEcosystem]) -> str:
    return json.dumps(manifest_schema(ecosystems), indent=2) + "\n"


# --- fingerprint --------------------------------------------------------------


def fingerprint(projection: dict[str, Any]) -> str:
    """Hash a canonical projection of the inputs (not a model dump).

    Changing what goes into ``projection`` changes every fingerprint and so
    re-locks every stack: treat it as a breaking change.
    """
    blob = json.dumps({"lock_version": FINGERPRINT_VERSION, **projection}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
