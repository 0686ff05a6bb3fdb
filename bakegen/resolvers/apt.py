"""Pin apt packages, and everything they pull in, from Debian or Ubuntu Packages indexes.

The indexes of the base image's release (the suite plus its -updates and
-security pockets) are read with python-debian (:mod:`bakegen.resolvers.debian`);
versions are compared with ``debian.debian_support.Version``. Each pin records the
version, the sha256 and the pool file name, per architecture. Resolving for another
architecture reads that architecture's index: nothing runs on it.

The lock is the whole closure: every package the stack asks for and every
package they depend on, down to libc6, except what a parent stack pins. The
image installs every one of them at its locked version (upgrading what the base
image has), so that the lock says what is in the image.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

from debian.deb822 import PkgRelation

from bakegen.errors import ResolutionError
from bakegen.resolvers.debian import AptSpec, ArchiveReader, Index, lockable, satisfies


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


def _pin(request: AptRequest, arch: str, name: str, entry: dict[str, str]) -> AptPin:
    """An index's entry as a pin, each field checked as a lock line holds it."""
    fields = (name, entry.get("Version", ""), entry.get("SHA256", ""), entry.get("Filename", ""))
    problem = lockable(*fields)
    if problem is not None or not entry.get("Size", "").isdigit():
        raise ResolutionError(
            f"{request.stack}: apt package {name} on {arch} cannot be locked: its index gives "
            f"{problem or 'Size ' + repr(entry.get('Size'))}",
            hint="the archive or a repository serves an index entry bakegen does not read (a "
            "sha256 and a pool file are needed); drop the package or the repository")
    return AptPin(name, fields[1], entry.get("Architecture", ""), fields[2], fields[3],
                  int(entry["Size"]))


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
        return [_pin(request, arch, name, e) for name, e in sorted(chosen.items())]

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
