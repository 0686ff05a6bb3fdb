"""What a Python resolver is given and gives back: a :class:`PythonRequest` in, hashed pins
(:class:`Pin`) out, the :class:`PythonResolver` interface between them, and the reader of
pip-compile's format (a resolver's output, or a lock file read back strictly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bakegen.errors import BakegenError, Location, StaleError

DEFAULT_INDEX = "https://pypi.org/simple"
DEFAULT_PLATFORM = "x86_64-manylinux_2_28"


@dataclass(frozen=True)
class Pin:
    """One exactly pinned Python distribution with its allowed hashes."""

    name: str
    version: str
    hashes: tuple[str, ...] = ()
    via: tuple[str, ...] = ()
    index: str = ""  # the index it came from, when the stack has indexes of its own ("# from URL")

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH_RE = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def parse_requirements(text: str, source: str = "requirements.txt",
                       strict: bool = False) -> list[Pin]:
    """Parse pip-compile / uv output: ``name==ver \\`` + ``--hash`` lines + ``# via`` comments.

    ``strict`` (a lock file from the repository): an option line (``--extra-index-url``, ``-r``),
    which pip obeys, is refused instead of skipped, and every pin has a valid version and at least
    one hash.
    """
    pins: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    in_via = False
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if not raw[:1].isspace() and not line.startswith("#"):
            if line.startswith("-"):  # --index-url and other options
                if strict:
                    raise StaleError(f"an option line in a lock file: {line[:80]}",
                                     location=Location(source, lineno),
                                     hint="bakegen writes none; run bakegen lock")
                cur, in_via = None, False
                continue
            cur = _pin_start(line, source, lineno, StaleError if strict else BakegenError)
            pins.append(cur)
            in_via = False
            continue
        if cur is None:
            continue
        if line.startswith("--hash"):
            cur["hashes"].extend(_HASH_RE.findall(line))
        elif line.startswith("# from "):
            cur["index"] = _index_of(line[len("# from "):].strip(), source, lineno)
            in_via = False
        elif line.startswith("# via"):
            rest = line[len("# via"):].strip()
            cur["via"].append(rest) if rest else None
            in_via = not rest
        elif line.startswith("#") and in_via:
            cur["via"].append(line.lstrip("#").strip())
    out = [Pin(p["name"], p["version"], tuple(sorted(set(p["hashes"]))), tuple(p["via"]),
               p.get("index", "")) for p in pins]
    if strict:
        _check_pins(out, source)
    return out


def _index_of(url: str, source: str, lineno: int) -> str:
    """An index URL as a lock may hold it: checked as a stack's (no credential)."""
    from bakegen.schema import SOURCE_URL

    if not SOURCE_URL.fullmatch(url):
        raise StaleError(f"'# from' names no index URL: {url[:80]!r}",
                         location=Location(source, lineno),
                         hint="an index URL holds no user:password@; run bakegen lock")
    return url.rstrip("/")


def _pin_start(line: str, source: str, lineno: int, error: type[BakegenError]) -> dict[str, Any]:
    m = _PIN_RE.match(line)
    if not m:
        raise error(f"cannot read requirement line: {line}", location=Location(source, lineno),
                    hint="the lock is not in pip-compile format; run bakegen lock")
    return {"name": canonicalize_name(m.group(1)), "version": m.group(2),
            "hashes": _HASH_RE.findall(line), "via": []}


def _check_pins(pins: list[Pin], source: str) -> None:
    for pin in pins:
        try:
            Version(pin.version)
        except InvalidVersion:
            raise StaleError(f"{pin.key}: {pin.version[:40]!r} is not a version",
                             location=Location(source), hint="run bakegen lock") from None
        if not pin.hashes:
            raise StaleError(f"{pin.key}=={pin.version} has no hash", location=Location(source),
                             hint="every locked package is hash-checked; run bakegen lock")


@dataclass
class PythonRequest:
    """What to resolve: the requirement sets of a stack chain, constrained by locked parents."""

    stack: str
    python_version: str
    platform: str = DEFAULT_PLATFORM
    # (label, requirement strings), e.g. ("stacks/base.toml", ["jupyterlab>=4"])
    inputs: list[tuple[str, list[str]]] = field(default_factory=list)
    # (label, pins), e.g. ("locks/base/requirements.txt", [...])
    constraints: list[tuple[str, list[Pin]]] = field(default_factory=list)
    index_url: str = DEFAULT_INDEX
    # Pins from the previous lock: kept unless a newer one is needed (pip-compile's existing output
    # file).
    preferences: list[Pin] = field(default_factory=list)
    # --upgrade-package specs among the preferences: "name" or "name==version"
    upgrade: list[str] = field(default_factory=list)
    # Wheels only (default): an sdist would be compiled in the build, for hours under emulation.
    allow_sdists: bool = False
    # The image platform, for messages ("linux/arm64")
    target: str = "linux/amd64"
    # The cool-down: no distribution uploaded after this time (RFC 3339, UTC)
    exclude_newer: str | None = None
    # The stack's own indexes (bakegen.python_indexes.Indexes); None: index_url alone
    indexes: Any = None


class PythonResolver(Protocol):
    name: str

    def version(self) -> str: ...

    def resolve(self, request: PythonRequest) -> list[Pin]: ...
