"""The generic lock model: one manifest per stack, with one section per ecosystem.

``locks/<stack>/`` holds each ecosystem's own lock files (pip-compile's
``requirements.txt``, ``apt.lock``, npm's ``package-lock.json``, ...) and
``lock.json``, the manifest, in a versioned format: the fingerprint of the
inputs, the platforms, the epoch, and one section per ecosystem that the stack
uses. Each section and its files belong to the ecosystem's module
(:mod:`bakegen.ecosystems`); this module knows none of them by name.

The model writes them (:func:`lock_files`), hashes them (:func:`fingerprint`,
:func:`manifest_checksum`) and describes the manifest (:func:`manifest_schema`);
reading them back, checked, is :mod:`bakegen.lockfile`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bakegen import __version__
from bakegen.files import GENERATED_MARKER

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
    parts: dict[str, Any] = field(
        default_factory=dict
    )  # ecosystem name -> its lock (absent: unused)
    # When this content was resolved (kept while a re-lock gives the same content):
    # the image's SOURCE_DATE_EPOCH and "created" time, never the build's clock.
    source_date_epoch: int | None = None
    format_version: int = (
        LOCK_VERSION  # the format it was read in; older ones are rewritten by bakegen lock
    )
    # The fingerprint without the offline ecosystems (the stack's own files and steps): when only
    # they change, the rest of the lock is kept without resolving. Set only when they are used.
    resolved_fingerprint: str | None = None


# --- the files ---------------------------------------------------------------


def lock_files(
    lock: StackLock, ecosystems: Sequence[AnyEcosystem], command: str = "bakegen lock"
) -> dict[str, str]:
    """Every file of ``locks/<stack>/`` (relative to that folder), the manifest last."""
    files: dict[str, str] = {}
    for eco in ecosystems:
        part = lock.parts.get(eco.name)
        if part is not None:
            files.update(eco.files(lock, part, command))
    files[MANIFEST] = render_manifest(lock, files, ecosystems)
    return files


def render_manifest(
    lock: StackLock, files: dict[str, str], ecosystems: Sequence[AnyEcosystem]
) -> str:
    doc: dict[str, Any] = {
        "_comment": f"{GENERATED_MARKER} lock. Do not edit; run 'bakegen lock' to update.",
        "version": LOCK_VERSION,
        "stack": lock.stack,
        "fingerprint": lock.fingerprint,
        **(
            {"resolved_fingerprint": lock.resolved_fingerprint} if lock.resolved_fingerprint else {}
        ),
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
    """sha256 of the manifest's canonical JSON without its checksum: an edited manifest is
    refused."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return (
        "sha256:"
        + hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    )


MAX_LOCK_FILE = 50_000_000  # bytes in one lock file


NAME_PATTERN = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
# A resolver or tool as a lock names it ("uv 0.13.9", "npm 11.19.1", "python-debian 1.1.1"): it is
# written into lock files' headers.
TOOL_PATTERN = r"[a-z][a-z0-9._-]{0,31}(?: [A-Za-z0-9._+?-]{1,32})?"
DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"


def matches(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


# --- JSON Schema of the manifest ------------------------------------------------------

SCHEMA_FILE = f"schema/lock-v{LOCK_VERSION}.schema.json"

SCHEMA_SHA: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SCHEMA_DIGEST: dict[str, Any] = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
SCHEMA_PLATFORM: dict[str, Any] = {"type": "string", "enum": ["linux/amd64", "linux/arm64"]}
SCHEMA_VERSIONS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_SCHEMA_STACK_NAME = "^[a-z0-9]+(?:[-_][a-z0-9]+)*$"


def schema_obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(props) if required is None else required,
        "properties": props,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def manifest_schema(ecosystems: Sequence[AnyEcosystem]) -> dict[str, Any]:
    """The JSON Schema of ``lock.json`` (this format version). schema/ holds it, and a test keeps it
    current."""
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
        "platforms": {
            "type": "array",
            "items": SCHEMA_PLATFORM,
            "minItems": 1,
            "uniqueItems": True,
        },
    }
    optional = ["_comment", "source_date_epoch", "resolved_fingerprint"]
    for eco in ecosystems:
        top[eco.section] = (
            eco.section_schema()
            if eco.always_locked or not eco.in_format_2
            else _nullable(eco.section_schema())
        )
        if not eco.in_format_2:
            optional.append(eco.section)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bakegen.dev/schema/lock-v{LOCK_VERSION}.schema.json",
        "$comment": f"{GENERATED_MARKER} from bakegen/lock.py manifest_schema(). Do not edit; to "
        "update, run: make schema",
        "title": f"bakegen lock manifest, format version {LOCK_VERSION} (locks/<stack>/lock.json)",
        **schema_obj(top, [k for k in sorted(top) if k not in optional]),
    }


def render_schema(ecosystems: Sequence[AnyEcosystem]) -> str:
    return json.dumps(manifest_schema(ecosystems), indent=2) + "\n"


def lock_identity(lock: StackLock, ecosystems: Sequence[AnyEcosystem]) -> str:
    """sha256 of what the lock pins (every ecosystem's entries: name, platform, version, hashes),
    its fingerprint and its epoch: an image's ``io.bakegen.lock`` annotation. The fingerprint alone
    names the stack's inputs, which a re-lock (an upgrade) keeps."""
    entries = sorted(
        (e.ecosystem, e.name, e.platform, e.version, list(e.hashes), e.group)
        for eco in ecosystems
        if lock.parts.get(eco.name) is not None
        for e in eco.entries(lock, lock.parts[eco.name])
    )
    doc = {"fingerprint": lock.fingerprint, "epoch": lock.source_date_epoch, "entries": entries}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def chain_epoch(locks: Mapping[str, StackLock], name: str) -> int | None:
    """An image's date: the newest lock date of its chain (the stack and the parents its locks
    name); None when no lock of the chain has one."""
    epochs: list[int | None] = []
    stack: str | None = name
    while stack is not None and stack in locks:
        epochs.append(locks[stack].source_date_epoch)
        stack = locks[stack].parent
    return max((e for e in epochs if e is not None), default=None)


def content_tag(epoch: int, fingerprint: str) -> str:
    """An image's tag that names one lock: ``<YYYYMMDD>-<first 12 of the fingerprint>``."""
    return f"{datetime.fromtimestamp(epoch, UTC):%Y%m%d}-{fingerprint.split(':')[1][:12]}"


# --- fingerprint --------------------------------------------------------------


def fingerprint(projection: dict[str, Any]) -> str:
    """Hash a canonical projection of the inputs (not a model dump).

    Changing what goes into ``projection`` changes every fingerprint and so
    re-locks every stack: treat it as a breaking change.
    """
    blob = json.dumps(
        {"lock_version": FINGERPRINT_VERSION, **projection}, sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
