"""The lock model (what was locked) and its on-disk formats.

``locks/<stack>/`` holds, for each stack:

* ``requirements.txt``: pip-compile's format with ``--hash`` lines, the Python
  packages this stack's image installs (a child lists only what its parents
  lack); ``pip install --require-hashes --no-deps -r`` reads it. A stack with
  several platforms has one more file per extra platform,
  ``requirements-<arch>.txt``;
* ``lock.json``: the manifest, in a versioned format: the fingerprint of the
  inputs, the tools, the base image digest, and every locked item.

Reading dispatches on the manifest's ``version``; an unknown or missing version
is an error that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from bakegen import __version__
from bakegen.errors import BakegenError, Location, StaleError, one_line
from bakegen.files import GENERATED_MARKER, sha256_text
from bakegen.resolvers.apt import AptSpec
from bakegen.resolvers.image import ImageLock
from bakegen.resolvers.npm import NpmLock

LOCK_VERSION = 3
# What the fingerprint hashes has not changed since format 2: a new format reads an
# older lock and rewrites it without resolving anything again.
FINGERPRINT_VERSION = 2
MAX_EPOCH = 2**33  # about the year 2242
REQUIREMENTS = "requirements.txt"
MANIFEST = "lock.json"
APT_LOCK = "apt.lock"
APT_SOURCES = "apt-sources.list"
APT_KINDS = ("req", "dep", "build", "build-dep")
PACKAGE_JSON = "package.json"
PACKAGE_LOCK = "package-lock.json"


def arch_of(platform: str) -> str:
    """``linux/arm64`` -> ``arm64`` (the Docker TARGETARCH and the Debian architecture)."""
    return platform.split("/")[1]


def requirements_file(platform: str, platforms: list[str]) -> str:
    """The Python lock file of ``platform``: the first platform's is ``requirements.txt``."""
    return REQUIREMENTS if platform == platforms[0] else f"requirements-{arch_of(platform)}.txt"


@dataclass(frozen=True)
class Pin:
    """One exactly pinned Python distribution with its allowed hashes."""

    name: str
    version: str
    hashes: tuple[str, ...] = ()
    via: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


@dataclass
class PythonLock:
    version: str
    resolver: str
    by_platform: dict[str, list[Pin]]  # in the stack's platform order; the first is the primary
    parents: list[str] = field(default_factory=list)

    @property
    def pins(self) -> list[Pin]:
        """The primary platform's pins."""
        return next(iter(self.by_platform.values()), [])

    def by_name(self, platform: str | None = None) -> dict[str, Pin]:
        pins = self.by_platform[platform] if platform else self.pins
        return {p.key: p for p in pins}


@dataclass(frozen=True)
class AptEntry:
    """One line of apt.lock: a package pinned for one architecture."""

    arch: str  # the platform's architecture (amd64, arm64)
    kind: str  # req: asked for by the stack; dep: pulled in; build / build-dep: builder stage only
    name: str
    version: str
    sha256: str
    filename: str


@dataclass
class AptLock:
    distro: str
    suite: str
    snapshot: str | None
    mirror: str | None
    entries: list[AptEntry]
    resolver: str = "python-debian"

    def sources(self, archs: list[str]) -> str:
        """The apt sources lines used to lock, and to install."""
        return AptSpec(self.distro, self.suite, self.snapshot, self.mirror).sources_list(archs)

    def packages(self, arch: str, kinds: tuple[str, ...] = ("req", "dep")) -> dict[str, str]:
        return {e.name: e.version for e in self.entries if e.arch == arch and e.kind in kinds}


@dataclass
class StackLock:
    stack: str
    fingerprint: str
    parent: str | None
    platforms: list[str]
    python: PythonLock
    image: ImageLock | None = None  # root stacks: the base image, pinned by digest
    apt: AptLock | None = None
    npm: NpmLock | None = None
    # When this content was resolved (kept while a re-lock gives the same content):
    # the image's SOURCE_DATE_EPOCH and "created" time, never the build's clock.
    source_date_epoch: int | None = None
    format_version: int = LOCK_VERSION  # the format it was read in; older ones are rewritten by bakegen lock

    @property
    def base_image(self) -> str | None:
        return self.image.ref if self.image else None


# --- requirements.txt (pip-compile format) ----------------------------------

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HASH_RE = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


def parse_requirements(text: str, source: str = "requirements.txt") -> list[Pin]:
    """Parse pip-compile / uv output: ``name==ver \\`` + ``--hash`` lines + ``# via`` comments."""
    pins: list[Pin] = []
    cur: dict[str, Any] | None = None
    in_via = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if not raw[:1].isspace() and not line.startswith("#"):
            if line.startswith("-"):  # --index-url and other options
                cur, in_via = None, False
                continue
            m = _PIN_RE.match(line)
            if not m:
                raise BakegenError(f"cannot read requirement line: {line}", location=Location(source, lineno), hint="the lock is not in pip-compile format; run bakegen lock")
            cur = {"name": canonicalize_name(m.group(1)), "version": m.group(2), "hashes": [], "via": []}
            pins.append(cur)  # type: ignore[arg-type]
            in_via = False
            cur["hashes"].extend(_HASH_RE.findall(line))
            continue
        if cur is None:
            continue
        if line.startswith("--hash"):
            cur["hashes"].extend(_HASH_RE.findall(line))
        elif line.startswith("# via"):
            rest = line[len("# via"):].strip()
            if rest:
                cur["via"].append(rest)
                in_via = False
            else:
                in_via = True
        elif line.startswith("#") and in_via:
            cur["via"].append(line.lstrip("#").strip())
    return [Pin(p["name"], p["version"], tuple(sorted(set(p["hashes"]))), tuple(p["via"])) for p in pins]  # type: ignore[index]


def render_requirements(lock: StackLock, platform: str | None = None, command: str = "bakegen lock") -> str:
    """Render pip-compile's format. Deterministic: pins sorted by name, hashes sorted."""
    py = lock.python
    platform = platform or lock.platforms[0]
    lines = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}', Python {py.version} on {platform}.",
        f"# Resolved with {py.resolver}. Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
    ]
    if py.parents:
        lines.append("# Installed on top of (never moves their pins):")
        lines.extend(f"#    locks/{p}/{REQUIREMENTS}" for p in py.parents)
        lines.append("#")
    for pin in sorted(py.by_platform[platform], key=lambda p: p.key):
        if pin.hashes:
            lines.append(f"{pin.key}=={pin.version} \\")
            for i, h in enumerate(pin.hashes):
                lines.append(f"    --hash={h}" + (" \\" if i < len(pin.hashes) - 1 else ""))
        else:
            lines.append(f"{pin.key}=={pin.version}")
        if len(pin.via) == 1:
            lines.append(f"    # via {pin.via[0]}")
        elif pin.via:
            lines.append("    # via")
            lines.extend(f"    #   {v}" for v in pin.via)
    return "\n".join(lines) + "\n"


# --- apt.lock -------------------------------------------------------------------


def render_apt(lock: StackLock, command: str = "bakegen lock") -> tuple[str, str]:
    """apt.lock and apt-sources.list. Sorted by arch, kind, name."""
    apt = lock.apt
    assert apt is not None
    where = f"{apt.distro} {apt.suite}" + (f" at snapshot {apt.snapshot}" if apt.snapshot else "")
    head = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}': apt packages from {where} ({APT_SOURCES}).",
        "# Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
        "# kind: req = listed in the stack, dep = pulled in by one; build, build-dep = builder stage only.",
        "# Installed with 'pkg=version'; the build fails if apt would install anything else, or a",
        "# downloaded .deb does not match its sha256.",
        "#",
        "# arch kind package version sha256 file",
    ]
    order = {k: i for i, k in enumerate(APT_KINDS)}
    rows = sorted(apt.entries, key=lambda e: (e.arch, order[e.kind], e.name))
    text = "\n".join(head + [f"{e.arch} {e.kind} {e.name} {e.version} sha256:{e.sha256} {e.filename}" for e in rows]) + "\n"
    sources = f"# {GENERATED_MARKER} {__version__}: the apt sources of stack '{lock.stack}' ({where}). Do not edit.\n" + apt.sources([arch_of(p) for p in lock.platforms])
    return text, sources


_APT_LINE = re.compile(
    r"(?P<arch>amd64|arm64) (?P<kind>req|dep|build|build-dep) (?P<name>[a-z0-9][a-z0-9+.-]+) (?P<version>[A-Za-z0-9.+~:-]+) "
    r"sha256:(?P<sha256>[0-9a-f]{64}) (?P<file>pool/[A-Za-z0-9._+~%/-]+\.deb)"
)


def parse_apt(text: str, source: str = APT_LOCK) -> list[AptEntry]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _APT_LINE.fullmatch(line)
        if m is None:
            raise StaleError(f"cannot read apt lock line: {one_line(line, 200)}", location=Location(source, lineno), hint="run bakegen lock")
        out.append(AptEntry(m["arch"], m["kind"], m["name"], m["version"], m["sha256"], m["file"]))
    return out


# --- manifest ---------------------------------------------------------------


def lock_files(lock: StackLock) -> dict[str, str]:
    """Every file of ``locks/<stack>/`` (relative to that folder), the manifest last."""
    files = {requirements_file(p, lock.platforms): render_requirements(lock, p) for p in lock.platforms}
    if lock.apt is not None:
        files[APT_LOCK], files[APT_SOURCES] = render_apt(lock)
    if lock.npm is not None:
        files[PACKAGE_JSON], files[PACKAGE_LOCK] = lock.npm.package_json, lock.npm.package_lock
    files[MANIFEST] = render_manifest(lock, files)
    return files


def render_manifest(lock: StackLock, files: dict[str, str]) -> str:
    doc: dict[str, Any] = {
        "_comment": f"{GENERATED_MARKER} lock. Do not edit; run 'bakegen lock' to update.",
        "version": LOCK_VERSION,
        "stack": lock.stack,
        "fingerprint": lock.fingerprint,
        "parent": lock.parent,
        "generator": f"bakegen {__version__}",
        "source_date_epoch": lock.source_date_epoch,
        "platforms": list(lock.platforms),
        "base": _base_section(lock),
        "python": _python_section(lock, files),
        "apt": _apt_section(lock, files),
        "npm": _npm_section(lock, files),
    }
    doc["checksum"] = manifest_checksum(doc)
    return json.dumps(doc, indent=2) + "\n"


def _base_section(lock: StackLock) -> dict[str, Any] | None:
    if lock.image is None:
        return None
    image = lock.image
    return {"ref": image.ref, "digest": image.digest, "media_type": image.media_type, "platforms": dict(sorted(image.platforms.items())), "user": image.user}


def _python_section(lock: StackLock, files: dict[str, str]) -> dict[str, Any]:
    py = lock.python
    return {
        "version": py.version,
        "resolver": py.resolver,
        "parents": py.parents,
        "files": {
            p: {"file": requirements_file(p, lock.platforms), "sha256": sha256_text(files[requirements_file(p, lock.platforms)])}
            for p in lock.platforms
        },
        "packages": {p: {pin.key: pin.version for pin in sorted(pins, key=lambda x: x.key)} for p, pins in py.by_platform.items()},
    }


def _apt_section(lock: StackLock, files: dict[str, str]) -> dict[str, Any] | None:
    apt = lock.apt
    if apt is None:
        return None
    return {
        "distro": apt.distro,
        "suite": apt.suite,
        "snapshot": apt.snapshot,
        "mirror": apt.mirror,
        "resolver": apt.resolver,
        "file": APT_LOCK,
        "sha256": sha256_text(files[APT_LOCK]),
        "sources_file": APT_SOURCES,
        "sources_sha256": sha256_text(files[APT_SOURCES]),
        "packages": {arch_of(p): _apt_summary(apt, arch_of(p)) for p in lock.platforms},
    }


def _npm_section(lock: StackLock, files: dict[str, str]) -> dict[str, Any] | None:
    npm = lock.npm
    if npm is None:
        return None
    return {
        "tool": npm.tool,
        "node": npm.node,
        "allow_scripts": npm.allow_scripts,
        "file": PACKAGE_LOCK,
        "sha256": sha256_text(files[PACKAGE_LOCK]),
        "package_file": PACKAGE_JSON,
        "package_sha256": sha256_text(files[PACKAGE_JSON]),
        "packages": npm.packages(),
    }


def manifest_checksum(doc: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its checksum: an edited manifest is refused."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _apt_summary(apt: AptLock, arch: str) -> dict[str, dict[str, str]]:
    out = {"runtime": apt.packages(arch, ("req", "dep"))}
    build = apt.packages(arch, ("build", "build-dep"))
    if build:
        out["build"] = build
    return out


def read_lock(lock_dir: Path, root: Path | None = None) -> StackLock | None:
    """Read ``locks/<stack>/``; ``None`` when there is no lock yet.

    Raises :class:`StaleError` when the files are damaged, edited by hand or in
    an older format (run ``bakegen lock``), and :class:`BakegenError` for a
    format newer than this bakegen.
    """
    manifest = lock_dir / MANIFEST
    shown = str(manifest.relative_to(root)) if root and manifest.is_relative_to(root) else str(manifest)
    if not manifest.exists():
        return None
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise StaleError(f"unreadable lock manifest: {one_line(str(exc), 200)}", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    except OSError as exc:
        raise StaleError(f"cannot read the lock manifest: {exc.strerror}", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if version is None:
        raise StaleError("lock manifest has no 'version'", location=Location(shown), hint="run bakegen lock to rewrite it")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StaleError(f"lock manifest 'version' is {one_line(repr(version), 40)}, not a format number", location=Location(shown), hint="run bakegen lock to rewrite it")
    reader = _READERS.get(version)
    if reader is None:
        raise BakegenError(
            f"lock format version {version} is not supported by bakegen {__version__} (supports {sorted(_READERS)})",
            location=Location(shown),
            hint="upgrade bakegen, or delete the lock folder and run bakegen lock",
        )
    try:
        return reader(doc, lock_dir, shown)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StaleError(f"damaged lock manifest ({one_line(repr(exc), 200)})", location=Location(shown), hint="run bakegen lock to rewrite it") from None


def _read_v1(doc: dict[str, Any], lock_dir: Path, shown: str) -> StackLock:
    raise StaleError("lock format version 1 predates base-image digests", location=Location(shown), hint="run bakegen lock to upgrade it to version 2")


def _read_file(lock_dir: Path, name: str, sha256: str, shown: str) -> str:
    path = lock_dir / name
    if name not in (REQUIREMENTS, APT_LOCK, APT_SOURCES, PACKAGE_JSON, PACKAGE_LOCK) and not re.fullmatch(r"requirements-[a-z0-9]+\.txt", name):
        raise StaleError(f"the manifest names an unknown lock file {one_line(repr(name), 80)}", location=Location(shown), hint="run bakegen lock to rewrite it")
    if not path.is_file():
        raise StaleError(f"{name} is missing", location=Location(shown), hint="run bakegen lock")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StaleError(f"{lock_dir.name}/{name} is not UTF-8 text: it was edited after locking", location=Location(shown), hint="run bakegen lock to rewrite it") from None
    if sha256_text(text) != sha256:
        raise StaleError(f"{lock_dir.name}/{name} was edited after locking", location=Location(shown), hint="run bakegen lock to re-resolve; do not edit locks by hand")
    return text


def _read_v2(doc: dict[str, Any], lock_dir: Path, shown: str, version: int = 2) -> StackLock:
    py = doc["python"]
    by_platform = {}
    for platform in doc["platforms"]:
        entry = py["files"][platform]
        text = _read_file(lock_dir, entry["file"], entry["sha256"], shown)
        by_platform[platform] = parse_requirements(text, str(lock_dir / entry["file"]))
    apt = None
    if doc.get("apt") is not None:
        a = doc["apt"]
        text = _read_file(lock_dir, a["file"], a["sha256"], shown)
        _read_file(lock_dir, a["sources_file"], a["sources_sha256"], shown)  # present and not edited
        apt = AptLock(
            distro=a["distro"], suite=a["suite"], snapshot=a.get("snapshot"), mirror=a.get("mirror"),
            entries=parse_apt(text, str(lock_dir / a["file"])), resolver=a.get("resolver", "python-debian"),
        )
    npm = None
    if doc.get("npm") is not None:
        n = doc["npm"]
        npm = NpmLock(
            package_json=_read_file(lock_dir, n["package_file"], n["package_sha256"], shown),
            package_lock=_read_file(lock_dir, n["file"], n["sha256"], shown),
            tool=n["tool"], allow_scripts=n["allow_scripts"], node=n["node"],
        )
    base = doc.get("base")
    image = None
    if base is not None:
        image = ImageLock(ref=base["ref"], digest=base["digest"], media_type=base["media_type"], platforms=dict(base["platforms"]), user=base.get("user"))
    return StackLock(
        stack=doc["stack"],
        fingerprint=doc["fingerprint"],
        parent=doc.get("parent"),
        platforms=list(doc["platforms"]),
        python=PythonLock(version=py["version"], resolver=py["resolver"], by_platform=by_platform, parents=list(py.get("parents", []))),
        image=image,
        apt=apt,
        npm=npm,
        source_date_epoch=doc.get("source_date_epoch"),
        format_version=version,
    )


def _read_v3(doc: dict[str, Any], lock_dir: Path, shown: str) -> StackLock:
    if doc.get("checksum") != manifest_checksum(doc):
        raise StaleError(f"{lock_dir.name}/{MANIFEST} was edited after locking (its checksum does not match)", location=Location(shown),
                         hint="run bakegen lock to rewrite it; do not edit locks by hand")
    problem = _schema_problem(doc)
    if problem:
        raise StaleError(f"damaged lock manifest: {problem}", location=Location(shown), hint="run bakegen lock to rewrite it")
    return _read_v2(doc, lock_dir, shown, version=3)


_NAME = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
_DIGEST = r"sha256:[0-9a-f]{64}"
_USER = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?"


def _schema_problem(doc: dict[str, Any]) -> str | None:
    """The first field of a (checksummed) manifest that is not what bakegen writes, checked without
    jsonschema's import cost: what reaches a generated file must have its shape (schema/ holds the whole schema)."""
    allowed = set(manifest_schema()["properties"])
    extra = sorted(set(doc) - allowed)
    if extra:
        return f"unknown key {extra[0]!r}"
    platforms = doc.get("platforms")
    base = doc.get("base") or {}
    checks: list[tuple[str, bool]] = [
        ("stack", _is(doc.get("stack"), _NAME)),
        ("parent", doc.get("parent") is None or _is(doc.get("parent"), _NAME)),
        ("fingerprint", _is(doc.get("fingerprint"), _DIGEST)),
        ("platforms", isinstance(platforms, list) and bool(platforms) and len(set(platforms)) == len(platforms)
         and all(p in ("linux/amd64", "linux/arm64") for p in platforms)),
        ("source_date_epoch", doc.get("source_date_epoch") is None or (isinstance(doc["source_date_epoch"], int)
         and not isinstance(doc["source_date_epoch"], bool) and 0 <= doc["source_date_epoch"] <= MAX_EPOCH)),
        ("base/ref", not base or (isinstance(base.get("ref"), str) and len(base["ref"]) <= 512)),
        ("base/digest", not base or _is(base.get("digest"), _DIGEST)),
        ("base/user", not base or base.get("user") is None or _is(base.get("user"), _USER)),
        ("base/platforms", not base or (isinstance(base.get("platforms"), dict) and all(_is(d, _DIGEST) for d in base["platforms"].values()))),
        ("python/version", _is((doc.get("python") or {}).get("version"), r"3\.[0-9]+")),
    ]
    return next((f"{where}: not what bakegen writes" for where, ok in checks if not ok), None)


def _is(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


_READERS = {1: _read_v1, 2: _read_v2, 3: _read_v3}


# --- JSON Schema of the manifest ------------------------------------------------------

SCHEMA_FILE = f"schema/lock-v{LOCK_VERSION}.schema.json"

_SCHEMA_SHA: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SCHEMA_DIGEST: dict[str, Any] = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
_SCHEMA_PLATFORM: dict[str, Any] = {"type": "string", "enum": ["linux/amd64", "linux/arm64"]}
_SCHEMA_VERSIONS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_SCHEMA_STACK_NAME = "^[a-z0-9]+(?:[-_][a-z0-9]+)*$"


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": sorted(props) if required is None else required, "properties": props}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of ``lock.json`` (this format version). schema/ holds it, and a test keeps it current."""
    top = {
        "_comment": {"type": "string"},
        "version": {"const": LOCK_VERSION},
        "stack": {"type": "string", "pattern": _SCHEMA_STACK_NAME},
        "fingerprint": _SCHEMA_DIGEST,
        "parent": {"type": ["string", "null"], "pattern": _SCHEMA_STACK_NAME},
        "generator": {"type": "string"},
        "source_date_epoch": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_EPOCH},
        "checksum": _SCHEMA_DIGEST,
        "platforms": {"type": "array", "items": _SCHEMA_PLATFORM, "minItems": 1, "uniqueItems": True},
        "base": _nullable(_base_schema()),
        "python": _python_schema(),
        "apt": _nullable(_apt_schema()),
        "npm": _nullable(_npm_schema()),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bakegen.dev/schema/lock-v{LOCK_VERSION}.schema.json",
        "$comment": f"{GENERATED_MARKER} from bakegen/lock.py manifest_schema(). Do not edit; to update, run: make schema",
        "title": f"bakegen lock manifest, format version {LOCK_VERSION} (locks/<stack>/lock.json)",
        **_obj(top, [k for k in sorted(top) if k not in ("_comment", "source_date_epoch")]),
    }


def _base_schema() -> dict[str, Any]:
    return _obj({
        "ref": {"type": "string", "maxLength": 512},
        "digest": _SCHEMA_DIGEST,
        "media_type": {"type": "string"},
        "platforms": {"type": "object", "propertyNames": _SCHEMA_PLATFORM, "additionalProperties": _SCHEMA_DIGEST},
        "user": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"},
    }, ["digest", "media_type", "platforms", "ref"])


def _python_schema() -> dict[str, Any]:
    return _obj({
        "version": {"type": "string", "pattern": "^3\\.[0-9]+$"},
        "resolver": {"type": "string"},
        "parents": {"type": "array", "items": {"type": "string"}},
        "files": {"type": "object", "propertyNames": _SCHEMA_PLATFORM, "additionalProperties": _obj({"file": {"type": "string"}, "sha256": _SCHEMA_SHA})},
        "packages": {"type": "object", "propertyNames": _SCHEMA_PLATFORM, "additionalProperties": _SCHEMA_VERSIONS},
    })


def _apt_schema() -> dict[str, Any]:
    return _obj({
        "distro": {"enum": ["debian", "ubuntu"]},
        "suite": {"type": "string"},
        "snapshot": {"type": ["string", "null"]},
        "mirror": {"type": ["string", "null"]},
        "resolver": {"type": "string"},
        "file": {"const": APT_LOCK},
        "sha256": _SCHEMA_SHA,
        "sources_file": {"const": APT_SOURCES},
        "sources_sha256": _SCHEMA_SHA,
        "packages": {"type": "object", "additionalProperties": _obj({"runtime": _SCHEMA_VERSIONS, "build": _SCHEMA_VERSIONS}, ["runtime"])},
    })


def _npm_schema() -> dict[str, Any]:
    return _obj({
        "tool": {"type": "string"},
        "node": {"enum": ["apt", "base"]},
        "allow_scripts": {"type": "boolean"},
        "file": {"const": PACKAGE_LOCK},
        "sha256": _SCHEMA_SHA,
        "package_file": {"const": PACKAGE_JSON},
        "package_sha256": _SCHEMA_SHA,
        "packages": _SCHEMA_VERSIONS,
    })


def render_schema() -> str:
    return json.dumps(manifest_schema(), indent=2) + "\n"


# --- fingerprint --------------------------------------------------------------


def fingerprint(projection: dict[str, Any]) -> str:
    """Hash a canonical projection of the inputs (not a model dump).

    Changing what goes into ``projection`` changes every fingerprint and so
    re-locks every stack: treat it as a breaking change.
    """
    blob = json.dumps({"lock_version": FINGERPRINT_VERSION, **projection}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
