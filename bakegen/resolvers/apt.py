"""Pin apt packages, and everything they pull in, from Debian or Ubuntu Packages indexes.

The indexes of the base image's release (the suite plus its -updates and
-security pockets) are read with python-debian; versions are compared with
``debian.debian_support.Version``. Each pin records the version, the sha256 and
the pool file name, per architecture. Resolving for another architecture reads
that architecture's index: nothing runs on it.

The lock is the whole closure: every package the stack asks for and every
package they depend on, down to libc6, except what a parent stack pins. The
image installs every one of them at its locked version (upgrading what the base
image has), so that the lock says what is in the image.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import lzma
import os
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debian.deb822 import Packages, PkgRelation, Release
from debian.debian_support import Version

from bakegen.errors import BakegenError, NetworkError, ResolutionError

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


@dataclass(frozen=True)
class Source:
    """One apt source line: ``deb [arch=.. signed-by=..] URL SUITE main``."""

    url: str
    suite: str
    arch: str | None = None  # restrict to one architecture (Ubuntu ports)
    snapshot: bool = False

    def line(self, keyring: str) -> str:
        opts = [f"arch={self.arch}"] if self.arch else []
        opts.append(f"signed-by={keyring}")
        if self.snapshot:
            opts.append("check-valid-until=no")
        return f"deb [{' '.join(opts)}] {self.url} {self.suite} main"


@dataclass(frozen=True)
class AptSpec:
    """Where a stack's apt packages come from."""

    distro: str
    suite: str
    snapshot: str | None = None
    mirror: str | None = None

    def sources(self, archs: Iterable[str]) -> list[Source]:
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


@dataclass(frozen=True)
class AptPin:
    name: str
    version: str
    arch: str  # the package's own architecture (amd64, or "all")
    sha256: str
    filename: str
    size: int


@dataclass
class AptRequest:
    stack: str
    spec: AptSpec
    archs: list[str]
    packages: list[str]  # "name" or "name=version"
    fixed: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # arch -> name -> version locked by parents
    preferred: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # arch -> name -> version of the previous lock


# --- indexes ------------------------------------------------------------------------

Fetch = Callable[[str], bytes]


def http_fetch(url: str, timeout: float = 60.0) -> bytes:
    cafile = os.environ.get("SSL_CERT_FILE")
    context = ssl.create_default_context(
        cafile=cafile if cafile and os.path.isfile(cafile) else None
    )
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

    def __init__(self, fetch: Fetch = http_fetch, cache_dir: Path | None = None):
        self.fetch = fetch
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
        release = Release(
            self.fetch(f"{source.url}/dists/{source.suite}/InRelease").decode("utf-8", "replace")
        )
        wanted = f"main/binary-{arch}/Packages.xz"
        entry = next((e for e in release.get("SHA256", []) if e["name"] == wanted), None)
        if entry is None:
            raise BakegenError(
                f"{source.url} {source.suite} has no {wanted}",
                hint=f"is {arch} built for this suite?",
            )
        cached = self.cache_dir / f"{entry['sha256']}.json"
        if cached.exists():
            return json.loads(cached.read_text())
        blob = self.fetch(f"{source.url}/dists/{source.suite}/{wanted}")
        if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise BakegenError(
                f"{source.url}/dists/{source.suite}/{wanted} does not match the hash in InRelease",
                hint="a mirror or proxy is serving a stale or altered file; retry",
            )
        text = lzma.decompress(blob).decode("utf-8", "replace")
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


# --- resolution -------------------------------------------------------------------------


class AptResolver:
    """Domain call: :meth:`resolve` apt package names to exact pins for each architecture."""

    def __init__(self, reader: ArchiveReader | None = None):
        self.reader = reader or ArchiveReader()
        try:
            self.name = f"python-debian {importlib.metadata.version('python-debian')}"
        except importlib.metadata.PackageNotFoundError:
            self.name = "python-debian"

    def resolve(self, request: AptRequest) -> dict[str, list[AptPin]]:
        return {
            arch: self._resolve_arch(request, arch, self.reader.index(request.spec, arch))
            for arch in request.archs
        }

    def _resolve_arch(self, request: AptRequest, arch: str, index: Index) -> list[AptPin]:
        fixed = request.fixed.get(arch, {})
        preferred = request.preferred.get(arch, {})
        chosen: dict[str, dict[str, str]] = {}
        todo: list[tuple[list[Any], str]] = []  # (an or-group of python-debian relations, why)
        for item in request.packages:
            name, _, version = item.partition("=")
            relation = {"name": name, "version": ("=", version) if version else None, "arch": None}
            todo.append(([relation], f"apt.packages '{item}'"))
        while todo:
            group, why = todo.pop(0)
            if any(self._installed(rel, chosen, fixed, index) for rel in group):
                continue
            pick = self._pick(group, index, fixed, preferred)
            if pick is None:
                raise self._unresolvable(request, arch, index, group, why)
            chosen[pick["Package"]] = pick
            for fld in ("Pre-Depends", "Depends"):
                if pick.get(fld):
                    todo += [
                        (dep, pick["Package"]) for dep in PkgRelation.parse_relations(pick[fld])
                    ]
        return [
            AptPin(
                name, e["Version"], e["Architecture"], e["SHA256"], e["Filename"], int(e["Size"])
            )
            for name, e in sorted(chosen.items())
        ]

    def _unresolvable(
        self, request: AptRequest, arch: str, index: Index, group: list[Any], why: str
    ) -> ResolutionError:
        """Nothing provides the or-group, or what would conflicts with a parent's (fixed) pin."""
        fixed, preferred = request.fixed.get(arch, {}), request.preferred.get(arch, {})
        wanted = " | ".join(_rel_text(r) for r in group)
        candidates = (
            c
            for r in group
            if r["name"] not in fixed
            for e in self._candidates(r["name"], r.get("version"), index, preferred)
            if (c := _clash(e, fixed))
        )
        clash = next(candidates, None)
        reason = (
            f"nothing provides {wanted} (needed by {why})"
            if clash is None
            else f"{wanted} (needed by {why}) needs {clash}"
        )
        return ResolutionError(
            f"{request.stack}: cannot resolve apt packages on {arch}: {reason}",
            hint=f"check the package names for {request.spec.distro} {request.spec.suite}; "
            "a child cannot move a parent's apt pin",
        )

    def _installed(
        self, rel: dict, chosen: dict[str, dict[str, str]], fixed: dict[str, str], index: Index
    ) -> bool:
        name = rel["name"]
        if name in fixed:
            return satisfies(fixed[name], rel.get("version"))
        if name in chosen and satisfies(chosen[name]["Version"], rel.get("version")):
            return True

        def version_of(package: str) -> str | None:
            if package in fixed:
                return fixed[package]
            return chosen[package]["Version"] if package in chosen else None

        return index.provider(name, rel.get("version"), among=version_of) is not None

    def _pick(
        self, group: list[dict], index: Index, fixed: dict[str, str], preferred: dict[str, str]
    ) -> dict[str, str] | None:
        """The first alternative that can be installed: the previous pin if it still fits, else the
        newest.

        A candidate whose own dependencies clash with a parent's pin (``fixed``) is
        passed over for an older or newer one that fits.
        """
        for rel in group:
            name = rel["name"]
            if name in fixed:
                continue  # a parent's pin that does not satisfy this: try the next alternative
            for e in self._candidates(name, rel.get("version"), index, preferred):
                if _clash(e, fixed) is None:
                    return e
        return None

    def _candidates(
        self, name: str, constraint: tuple[str, str] | None, index: Index, preferred: dict[str, str]
    ) -> list[dict[str, str]]:
        out = []
        if name in preferred:  # keep the previous pin while the archive has it and it fits
            kept = index.candidate(name, ("=", preferred[name]))
            if kept is not None and satisfies(kept["Version"], constraint):
                out.append(kept)
        out += [e for e in index.versions.get(name, []) if satisfies(e["Version"], constraint)]
        provider = index.provider(name, constraint)
        return out + ([provider] if provider is not None else [])


def _clash(entry: dict[str, str], fixed: dict[str, str]) -> str | None:
    """Why ``entry`` cannot go on top of the parents' pins (``fixed``): a dependency whose every
    alternative a parent pins at a version it rejects. None when it fits."""
    for fld in ("Pre-Depends", "Depends"):
        if not entry.get(fld):
            continue
        for group in PkgRelation.parse_relations(entry[fld]):
            if all(
                rel["name"] in fixed and not satisfies(fixed[rel["name"]], rel.get("version"))
                for rel in group
            ):
                pinned = ", ".join(f"{rel['name']} {fixed[rel['name']]}" for rel in group)
                return f"{' | '.join(_rel_text(r) for r in group)}, but a parent pins {pinned}"
    return None


def _rel_text(rel: Any) -> str:
    v = rel.get("version")
    return f"{rel['name']} ({v[0]} {v[1]})" if v else rel["name"]
