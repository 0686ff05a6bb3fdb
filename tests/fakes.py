"""Test doubles behind the resolver interface, backed by tests/fake-index.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bakegen.errors import ResolutionError
from bakegen.files import write_set
from bakegen.locker import LockOutcome, Resolvers, lock_stacks, outcome_files
from bakegen.project import load_stacks
from bakegen.resolvers.image import ImageLock
from bakegen.resolvers.pins import Pin, PythonRequest

INDEX = json.loads((Path(__file__).parent / "fake-index.json").read_text())


class FakeResolver:
    """Picks the newest version allowed by the requirements and constraints (no backtracking)."""

    name = "fake"

    def __init__(self, index: dict | None = None):
        self.index = {canonicalize_name(k): v for k, v in (index or INDEX).items() if not k.startswith("_")}
        self.calls: list[PythonRequest] = []  # the stacks' own packages
        self.tool_calls: list[PythonRequest] = []  # bakegen's build tools (uv)

    def version(self) -> str:
        return "fake 1.0"

    def resolve(self, request: PythonRequest) -> list[Pin]:
        (self.tool_calls if request.inputs[:1] and request.inputs[0][0] == "bakegen's build tools" else self.calls).append(request)
        constraints = {p.key: p.version for _, pins in request.constraints for p in pins}
        upgrades = dict((spec.partition("==")[0], spec.partition("==")[2] or None) for spec in request.upgrade)
        preferred = {p.key: p.version for p in request.preferences if p.key not in upgrades}
        preferred.update({n: v for n, v in upgrades.items() if v})
        chosen: dict[str, str] = {}
        via: dict[str, list[str]] = {}
        todo = [(Requirement(r), f"-r {label}") for label, reqs in request.inputs for r in reqs]
        while todo:
            req, parent = todo.pop(0)
            name = canonicalize_name(req.name)
            via.setdefault(name, []).append(parent)
            if name in chosen:
                if chosen[name] not in req.specifier:
                    raise ResolutionError(f"{request.stack}: cannot resolve Python packages: {name}=={chosen[name]} conflicts with {req}")
                continue
            versions = sorted((Version(v) for v in self.index.get(name, {})), reverse=True)
            ok = [v for v in versions if str(v) in req.specifier and (name not in constraints or str(v) == constraints[name])]
            ok = [v for v in ok if str(v) == preferred.get(name)] or ok  # keep the previous pin when it fits
            if not ok:
                raise ResolutionError(f"{request.stack}: cannot resolve Python packages: no version of {name} matches {req.specifier or 'any'}")
            chosen[name] = str(ok[0])
            todo.extend((Requirement(r), name) for r in self.index[name][str(ok[0])])
        return [
            Pin(n, v, ("sha256:" + hashlib.sha256(f"{n}-{v}".encode()).hexdigest(),), tuple(sorted(set(via[n]))))
            for n, v in sorted(chosen.items())
        ]


class FakeImages:
    """A registry in a dict: ref -> digest. Counts lookups."""

    def __init__(self, digests: dict[str, str] | None = None):
        self.digests = dict(digests or {})
        self.calls: list[str] = []

    def resolve(self, ref: str, platforms: list[str]) -> ImageLock:
        self.calls.append(ref)
        digest = self.digests.get(ref) or "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        return ImageLock(ref, digest, "application/vnd.oci.image.index.v1+json", {p: "sha256:" + hashlib.sha256((digest + p).encode()).hexdigest() for p in platforms})


class FakeApt:
    """An apt archive in a dict: name -> versions (newest last), no dependencies. Honours preferred pins."""

    name = "fake-apt 1.0"

    def __init__(self, versions: dict[str, list[str]]):
        self.versions = versions

    def resolve(self, request):
        from bakegen.resolvers.apt import AptPin

        out = {}
        for arch in request.archs:
            pins = []
            for item in request.packages:
                name, _, want = item.partition("=")
                if name not in self.versions:
                    raise ResolutionError(f"{request.stack}: cannot resolve apt packages on {arch}: nothing provides {name}")
                version = want or request.preferred.get(arch, {}).get(name) or self.versions[name][-1]
                pins.append(AptPin(name, version, arch, hashlib.sha256(f"{name}{version}".encode()).hexdigest(), f"pool/{name}_{version}_{arch}.deb", 1))
            out[arch] = pins
        return out


def lock_project(root: Path, *, command: str = "test", images: dict[str, str] | None = None, **kwargs: Any) -> list[LockOutcome]:
    """Lock every stack of ``root`` and write the locks: the fake Python resolver and base images unless
    ``python=``/``image=`` (or ``images``) say otherwise; other resolvers (``apt=``, ``npm=``) and lock_stacks'
    own options (``names``, ``upgrade``) as given."""
    options = {key: kwargs.pop(key) for key in ("names", "upgrade") if key in kwargs}
    resolvers = Resolvers(**{"python": FakeResolver(), "image": FakeImages(images or {}), **kwargs})
    outcomes = lock_stacks(load_stacks(root), resolvers, **options)
    write_set(root, outcome_files(outcomes), command=command)
    return outcomes
