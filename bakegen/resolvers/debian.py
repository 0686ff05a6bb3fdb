"""Debian and Ubuntu archives as apt reads them: the releases bakegen knows, a stack's sources
(suite, -updates and -security pockets, a snapshot or a mirror) and their signing keyrings, and
the Packages indexes, downloaded, checked against InRelease's SHA256 list and cached parsed.

:mod:`bakegen.resolvers.apt` resolves packages against these indexes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from debian.deb822 import Packages, PkgRelation, Release
from debian.debian_support import Version

from bakegen.errors import BakegenError, NetworkError, one_line
from bakegen.net import tls_context
from bakegen.resolvers.signed import verify

DEBIAN_SUITES = ("bullseye", "bookworm", "trixie", "forky", "sid", "unstable", "testing")
UBUNTU_SUITES = ("focal", "jammy", "noble", "oracular", "plucky", "questing")
KEYRINGS = {
    "debian": "/usr/share/keyrings/debian-archive-keyring.gpg",
    "ubuntu": "/usr/share/keyrings/ubuntu-archive-keyring.gpg",
}
_FIELDS = [
    "Package",
    "Version",
    "Architecture",
    "Depends",
    "Pre-Depends",
    "Provides",
    "Filename",
    "SHA256",
    "Size",
    "Priority",
    "Essential",
]


def distro_of(suite: str) -> str | None:
    return "debian" if suite in DEBIAN_SUITES else "ubuntu" if suite in UBUNTU_SUITES else None


# where a build mounts the keys of a stack's third-party repositories
KEYS_AT = "/tmp/bakegen/keys"


@dataclass(frozen=True)
class Repository:
    """A third-party apt repository (``[[apt.repositories]]``), its signing key pinned by
    fingerprint; the key file is in the folder of the stack that names it."""

    name: str
    url: str
    suite: str
    components: tuple[str, ...]
    fingerprint: str
    key: str  # the key file, relative to the project: stacks/<stack>/<file>.asc or .gpg
    key_sha256: str
    key_data: bytes = field(default=b"", compare=False, repr=False)  # read when locking

    @property
    def keyring(self) -> str:
        """The key file where the build mounts it (apt reads .asc armored, .gpg binary)."""
        return f"{KEYS_AT}/{self.name}{Path(self.key).suffix}"


@dataclass(frozen=True)
class Source:
    """One apt source line: ``deb [arch=.. signed-by=..] URL SUITE main``."""

    url: str
    suite: str
    arch: str | None = None  # restrict to one architecture (Ubuntu ports)
    snapshot: bool = False
    repository: Repository | None = None  # a third-party one: its components and key

    @property
    def components(self) -> tuple[str, ...]:
        return self.repository.components if self.repository else ("main",)

    def line(self, keyring: str) -> str:
        opts = [f"arch={self.arch}"] if self.arch else []
        opts.append(f"signed-by={self.repository.keyring if self.repository else keyring}")
        if self.snapshot:
            opts.append("check-valid-until=no")
        return f"deb [{' '.join(opts)}] {self.url} {self.suite} {' '.join(self.components)}"


@dataclass(frozen=True)
class AptSpec:
    """Where a stack's apt packages come from."""

    distro: str
    suite: str
    snapshot: str | None = None
    mirror: str | None = None
    repositories: tuple[Repository, ...] = ()

    def sources(self, archs: Iterable[str]) -> list[Source]:
        """The archive's sources, then the third-party repositories'."""
        return self._archive(archs) + [Source(r.url, r.suite, repository=r)
                                       for r in self.repositories]

    def _archive(self, archs: Iterable[str]) -> list[Source]:
        suite, snap = self.suite, self.snapshot
        pockets = [suite] if suite in ("sid", "unstable") else [suite, f"{suite}-updates"]
        out: list[Source] = []
        if self.distro == "debian":
            main = self.mirror or (
                f"http://snapshot.debian.org/archive/debian/{snap}"
                if snap
                else "http://deb.debian.org/debian"
            )
            out += [Source(main, p, snapshot=bool(snap)) for p in pockets]
            if suite not in ("sid", "unstable"):
                sec = (
                    f"http://snapshot.debian.org/archive/debian-security/{snap}"
                    if snap
                    else "http://deb.debian.org/debian-security"
                )
                out.append(Source(sec, f"{suite}-security", snapshot=bool(snap)))
            return out
        for arch in sorted(set(archs)):
            if arch in ("amd64", "i386"):
                url = self.mirror or (
                    f"https://snapshot.ubuntu.com/ubuntu/{snap}"
                    if snap
                    else "http://archive.ubuntu.com/ubuntu"
                )
            else:
                url = self.mirror or (
                    f"https://snapshot.ubuntu.com/ubuntu-ports/{snap}"
                    if snap
                    else "http://ports.ubuntu.com/ubuntu-ports"
                )
            out += [
                Source(url, p, arch=arch, snapshot=bool(snap))
                for p in pockets + [f"{suite}-security"]
            ]
        return out

    def sources_list(self, archs: Iterable[str]) -> str:
        return "".join(s.line(KEYRINGS[self.distro]) + "\n" for s in self.sources(archs))


# What a lock line holds, as an index may give it: a package name, a Debian version, a pool file
# (Debian's pool/..., or dists/<suite>/pool/... as Docker's repository has it; no . or ..)
NAME = r"[a-z0-9][a-z0-9+.-]+"
VERSION = r"[A-Za-z0-9.+~:-]+"
_PART = r"(?!\.\.?/)[A-Za-z0-9._+~%-]+"
FILENAME = rf"(?:dists/{_PART}/)?pool/(?:{_PART}/)*{_PART}\.deb"

def lockable(name: str, version: str, sha256: str, filename: str) -> str | None:
    """The first field of an index's entry that no lock line could hold (None: all can)."""
    checks = (("Package", name, NAME), ("Version", version, VERSION),
              ("SHA256", sha256, r"[0-9a-f]{64}"), ("Filename", filename, FILENAME))
    bad = next(((f, v) for f, v, pattern in checks if not re.fullmatch(pattern, v)), None)
    if bad is None and not debian_version(version):
        bad = ("Version", version)
    return None if bad is None else f"{bad[0]} {one_line(repr(bad[1]), 80)}"

def debian_version(text: str) -> bool:
    try:
        Version(text)
    except ValueError:
        return False
    return True


# --- indexes ------------------------------------------------------------------------

Fetch = Callable[[str], bytes]


def http_fetch(url: str, timeout: float = 60.0) -> bytes:
    context = tls_context()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"User-Agent": "bakegen"}),
            timeout=timeout,
            context=context,
        ) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise BakegenError(
            f"{url}: HTTP {exc.code}",
            hint="check apt.suite and apt.mirror (and apt.snapshot, if set)",
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise NetworkError(
            f"cannot reach the apt archive {url}: {getattr(exc, 'reason', exc)}",
            hint="check the network or proxy, or set apt.mirror",
        ) from None


class Index:
    """The packages of one architecture, from several pockets: name -> versions, newest first."""

    def __init__(self, entries: list[dict[str, str]]):
        self.versions: dict[str, list[dict[str, str]]] = {}
        # virtual name -> (providing entry, provided version or None)
        self.providers: dict[str, list[tuple[dict[str, str], str | None]]] = {}
        for e in entries:
            self.versions.setdefault(e["Package"], []).append(e)
            if e.get("Provides"):
                for group in PkgRelation.parse_relations(e["Provides"]):
                    for rel in group:
                        version = rel.get("version")
                        provided = version[1] if version else None
                        self.providers.setdefault(rel["name"], []).append((e, provided))
        for lst in self.versions.values():
            lst.sort(key=lambda e: Version(e["Version"]), reverse=True)
        for plist in self.providers.values():
            plist.sort(key=lambda ep: (ep[0]["Package"], Version(ep[0]["Version"])))

    def provider(
        self,
        name: str,
        constraint: tuple[str, str] | None,
        among: Callable[[str], str | None] | None = None,
    ) -> dict[str, str] | None:
        """A package providing ``name`` that satisfies ``constraint`` (a versioned constraint needs
        a versioned Provides).

        With ``among``, only providers already chosen count: ``among(package)`` gives its chosen
        version."""
        for entry, provided in self.providers.get(name, []):
            if constraint is not None and (provided is None or not satisfies(provided, constraint)):
                continue
            if among is not None:
                have = among(entry["Package"])
                if have is None or have != entry["Version"]:
                    continue
            return entry
        return None

    def candidate(
        self, name: str, constraint: tuple[str, str] | None = None
    ) -> dict[str, str] | None:
        for e in self.versions.get(name, []):
            if satisfies(e["Version"], constraint):
                return e
        return None


def satisfies(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    op, want = constraint
    v, w = Version(version), Version(want)
    return {"<<": v < w, "<=": v <= w, "=": v == w, ">=": v >= w, ">>": v > w}[op]


class ArchiveReader:
    """Downloads Packages indexes, checks them against InRelease's SHA256 list, caches the parsed
    result."""

    def __init__(self, fetch: Fetch | None = None, cache_dir: Path | None = None):
        self.fetch = fetch or http_fetch  # looked up now: a test may replace http_fetch
        default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bakegen" / "apt"
        self.cache_dir = cache_dir or default

    def index(self, spec: AptSpec, arch: str) -> Index:
        entries: list[dict[str, str]] = []
        for source in spec.sources([arch]):
            if source.arch not in (None, arch):
                continue
            entries.extend(self._packages(source, arch))
        if not entries:
            raise BakegenError(
                f"no packages found for {spec.distro} {spec.suite} {arch}", hint="check apt.suite"
            )
        return Index(entries)

    def _packages(self, source: Source, arch: str) -> list[dict[str, str]]:
        """The Packages entries of ``source`` for ``arch``, in every component."""
        inrelease = self.fetch(f"{source.url}/dists/{source.suite}/InRelease")
        repo = source.repository
        if repo is not None:  # only what the pinned key signed is read
            inrelease = verify(inrelease, repo.key_data, repo.fingerprint,
                               f"apt repository '{repo.name}' ({repo.url} {repo.suite})", repo.key)
        release = Release(inrelease.decode("utf-8", "replace"))
        if repo is not None:
            _check_release(release, repo)
        entries: list[dict[str, str]] = []
        for component in source.components:
            entry = _indexed(release, f"{component}/binary-{arch}/Packages")
            if entry is None and repo is None:
                raise BakegenError(
                    f"{source.url} {source.suite} has no {component}/binary-{arch}/Packages.xz",
                    hint=f"is {arch} built for this suite?",
                )
            entries += self._entries(source, entry) if entry else []
        bad = next((e for e in entries if "Package" not in e
                    or not debian_version(e.get("Version", ""))), None) if repo else None
        if repo is not None and bad is not None:
            raise BakegenError(
                f"apt repository '{repo.name}': its index has a package without a Debian name "
                f"and version ({one_line(repr(bad.get('Package')), 60)} "
                f"{one_line(repr(bad.get('Version')), 60)})",
                hint="the repository serves an index apt cannot read; ask its vendor, or drop it")
        return entries

    def _entries(self, source: Source, entry: dict[str, str]) -> list[dict[str, str]]:
        """One Packages file, checked against InRelease's sha256, parsed (cached by that hash)."""
        cached = self.cache_dir / f"{entry['sha256']}.json"
        if cached.exists():
            return json.loads(cached.read_text())
        url = f"{source.url}/dists/{source.suite}/{entry['name']}"
        blob = self.fetch(url)
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise BakegenError(
                f"{url} does not match the hash in InRelease",
                hint="a mirror or proxy is serving a stale or altered file; retry",
            )
        text = _DECOMPRESS[Path(entry["name"]).suffix](blob).decode("utf-8", "replace")
        entries = [
            {k: v for k, v in p.items()}
            for p in Packages.iter_paragraphs(
                text.splitlines(True), fields=_FIELDS, use_apt_pkg=False
            )
        ]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(
            f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        )  # two locks may write it at once
        tmp.write_text(json.dumps(entries))
        tmp.replace(cached)
        return entries


def _check_release(release: Release, repo: Repository) -> None:
    """The signed Release is the stack's suite, and not past its Valid-Until: a server cannot
    replay another suite, or an old one, that the same key signed."""
    names = {release.get("Suite"), release.get("Codename")}
    if repo.suite not in names:
        raise BakegenError(
            f"apt repository '{repo.name}': {repo.url} serves the suite "
            f"{one_line(str(release.get('Codename') or release.get('Suite')), 60)}, not "
            f"{repo.suite}", hint="check apt.repositories' suite (Release's Suite or Codename)")
    until = release.get("Valid-Until")
    if until and _expired(until):
        raise BakegenError(
            f"apt repository '{repo.name}': its Release expired ({one_line(until, 60)})",
            hint="the repository serves an old, signed Release (a stale mirror or a replay)")


def _expired(when: str) -> bool:
    """Is a Release date (RFC 2822, UTC) past? An unreadable one counts as past."""
    try:
        stamp = parsedate_to_datetime(when)
    except (TypeError, ValueError):
        return True
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return stamp < datetime.now(UTC)


# a Packages file's compressions, the smallest first
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".xz": lzma.decompress, ".gz": gzip.decompress, "": lambda blob: blob,
}


def _indexed(release: Release, packages: str) -> dict[str, str] | None:
    """InRelease's SHA256 entry of a Packages file, in the first compression it lists."""
    listed = {e["name"]: e for e in release.get("SHA256", [])}
    return next((listed[packages + ext] for ext in _DECOMPRESS if packages + ext in listed), None)
