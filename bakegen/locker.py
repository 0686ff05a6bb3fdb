"""The lock step: stacks in, locks out (as data; the CLI writes them).

Stacks are locked parents first. A child is resolved with the union of its
parents' locks as constraints, so it can never move a parent's pin; its lock
lists only what its parents lack. A stack whose inputs (fingerprint) have not
changed since it was locked is not resolved again, unless ``upgrade`` is set.
A root stack's base image is pinned by digest; a plain lock keeps the digest it
has, ``upgrade`` asks the registry again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from bakegen.errors import NetworkError, ResolutionError, StaleError
from bakegen.lock import AptEntry, AptLock, Pin, PythonLock, StackLock, arch_of, fingerprint, lock_files, read_lock, requirements_file
from bakegen.resolvers.apt import AptRequest, AptResolver, AptSpec, distro_of
from bakegen.resolvers.image import ImageLock, ImageRef, ImageResolver
from bakegen.resolvers.npm import NpmLock, NpmResolver
from bakegen.resolvers.python import DEFAULT_INDEX, PythonRequest, PythonResolver
from bakegen.stack import StackGraph, canonical_requirements

log = logging.getLogger("bakegen")
LOCK_DIR = "locks"
# Docker platform -> uv's --python-platform (glibc 2.28: every current Debian/Ubuntu base)
PYTHON_PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_28", "linux/arm64": "aarch64-manylinux_2_28"}


class ImageLookup(Protocol):
    def resolve(self, ref: str, platforms: list[str]) -> ImageLock: ...


class AptLookup(Protocol):
    name: str

    def resolve(self, request: AptRequest) -> dict: ...


class NpmLookup(Protocol):
    def resolve(self, stack: str, specs: list[str], allow_scripts: bool = False, node: str = "apt") -> NpmLock: ...


@dataclass
class Resolvers:
    """One domain call per ecosystem: Python, base image, apt."""

    python: PythonResolver
    image: ImageLookup = field(default_factory=ImageResolver)
    apt: AptLookup = field(default_factory=AptResolver)
    npm: NpmLookup = field(default_factory=NpmResolver)


@dataclass
class LockOutcome:
    stack: str
    lock: StackLock
    changed: bool  # resolved now (True) or kept because its inputs did not change
    warnings: list[str] = field(default_factory=list)


def _pins_digest(by_platform: dict[str, list[Pin]]) -> str:
    text = "".join(
        f"{platform} {p.key}=={p.version} {' '.join(p.hashes)}\n"
        for platform, pins in sorted(by_platform.items())
        for p in sorted(pins, key=lambda p: p.key)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def stack_fingerprint(graph: StackGraph, name: str, parent_lock: StackLock | None) -> str:
    """Fingerprint of everything that decides a stack's lock (see :func:`bakegen.lock.fingerprint`)."""
    stack = graph.stacks[name]
    root = graph.root_of(name)
    projection = {
        "platforms": graph.platforms(name),
        "python": {"version": graph.python_version(name), "requirements": canonical_requirements(stack)},
        "base_image": stack.base,
        "apt": None
        if not (stack.apt_packages or stack.apt_build)
        else {
            "source": [root.apt_suite, root.apt_snapshot, root.apt_mirror],
            "packages": sorted(stack.apt_packages),
            "build": sorted(stack.apt_build),
        },
        "npm": None
        if not stack.npm_packages
        else {"packages": sorted(stack.npm_packages), "allow_scripts": stack.npm_allow_scripts, "node": stack.npm_node},
        "parent": None
        if parent_lock is None
        else {
            "name": parent_lock.stack,
            "fingerprint": parent_lock.fingerprint,
            "python_pins": _pins_digest(parent_lock.python.by_platform),
            "apt_pins": hashlib.sha256(repr(sorted(parent_lock.apt.entries, key=repr)).encode()).hexdigest() if parent_lock.apt else None,
        },
    }
    return fingerprint(projection)


def _parent_env(graph: StackGraph, name: str, locks: dict[str, StackLock], platform: str) -> dict[str, Pin]:
    """The Python pins the parents of ``name`` install on ``platform``."""
    env: dict[str, Pin] = {}
    for anc in graph.ancestors(name):
        env.update({p.key: p for p in locks[anc.name].python.by_platform.get(platform, [])})
    return env


def lock_stacks(
    graph: StackGraph,
    resolvers: Resolvers | PythonResolver,
    *,
    names: list[str] | None = None,
    index_url: str = DEFAULT_INDEX,
    upgrade: bool = False,
) -> list[LockOutcome]:
    """Lock ``names`` (and their parents); resolve only stacks whose fingerprint changed (all with ``upgrade``)."""
    if not isinstance(resolvers, Resolvers):
        resolvers = Resolvers(python=resolvers)
    locks: dict[str, StackLock] = {}
    outcomes: list[LockOutcome] = []
    resolver_version: str | None = None
    for name in graph.select(names):
        stack = graph.stacks[name]
        parent = graph.parent(name)
        fp = stack_fingerprint(graph, name, locks[parent.name] if parent else None)
        try:
            existing = read_lock(graph.root / LOCK_DIR / name, graph.root)
        except StaleError:
            existing = None  # damaged, edited or an older format: resolve again
        if existing is not None and existing.fingerprint == fp and not upgrade:
            locks[name] = existing
            outcomes.append(LockOutcome(name, existing, changed=False))
            continue
        outcome = LockOutcome(name, None, changed=True)  # type: ignore[arg-type]
        platforms = graph.platforms(name)
        image = _lock_image(stack.base, platforms, existing, resolvers.image, upgrade, outcome.warnings) if stack.base else None
        for warning in outcome.warnings:
            log.warning("warning: %s: %s", name, warning)
        by_platform: dict[str, list[Pin]] = {}
        chain = graph.ancestors(name) + [stack]
        for platform in platforms:
            if not stack.python_packages:
                by_platform[platform] = []  # nothing new to install on top of the parent
                continue
            resolver_version = resolver_version or resolvers.python.version()
            request = PythonRequest(
                stack=name,
                python_version=graph.python_version(name),
                platform=PYTHON_PLATFORMS[platform],
                inputs=[(f"stacks/{s.name}.toml", list(s.python_packages)) for s in chain if s.python_packages],
                constraints=[
                    (f"{LOCK_DIR}/{a.name}/{requirements_file(platform, platforms)}", locks[a.name].python.by_platform[platform])
                    for a in chain[:-1]
                    if locks[a.name].python.by_platform.get(platform)
                ],
                index_url=index_url,
            )
            by_platform[platform] = _delta(name, resolvers.python.resolve(request), _parent_env(graph, name, locks, platform))
        apt = _lock_apt(graph, name, locks, resolvers.apt) if (stack.apt_packages or stack.apt_build) else None
        npm = resolvers.npm.resolve(name, list(stack.npm_packages), stack.npm_allow_scripts, stack.npm_node) if stack.npm_packages else None
        outcome.lock = StackLock(
            stack=name,
            fingerprint=fp,
            parent=parent.name if parent else None,
            platforms=platforms,
            python=PythonLock(
                version=graph.python_version(name),
                resolver=resolver_version or (existing.python.resolver if existing else "none"),
                by_platform=by_platform,
                parents=[a.name for a in chain[:-1]],
            ),
            image=image,
            apt=apt,
            npm=npm,
        )
        locks[name] = outcome.lock
        outcomes.append(outcome)
    return outcomes


def _lock_image(ref: str, platforms: list[str], existing: StackLock | None, images: ImageLookup, upgrade: bool, warnings: list[str]) -> ImageLock:
    """Pin ``ref`` by digest; keep the digest already locked unless upgrading."""
    old = existing.image if existing else None
    if old is not None and old.ref == ref and not upgrade and set(platforms) <= set(old.platforms):
        return old
    pinned = ImageRef.parse(ref).digest
    try:
        return images.resolve(ref, platforms)
    except NetworkError as exc:
        if pinned is None:
            raise
        # The stack pins the digest itself: that digest is the lock. Without the
        # registry we cannot list its per-platform manifests; say so.
        warnings.append(f"{exc.message}; kept {ref.split('@')[0]}@{pinned} as written, without per-platform digests")
        return ImageLock(ref=ref, digest=pinned, media_type="unknown", platforms={})


def _lock_apt(graph: StackGraph, name: str, locks: dict[str, StackLock], resolver: AptLookup) -> AptLock:
    """Pin the stack's apt packages and their dependencies per architecture; parents' pins are fixed."""
    stack, root = graph.stacks[name], graph.root_of(name)
    assert root.apt_suite is not None
    distro = distro_of(root.apt_suite)
    assert distro is not None
    spec = AptSpec(distro, root.apt_suite, root.apt_snapshot, root.apt_mirror)
    archs = [arch_of(p) for p in graph.platforms(name)]
    fixed: dict[str, dict[str, str]] = {a: {} for a in archs}
    for anc in graph.ancestors(name):
        if locks[anc.name].apt is not None:
            for a in archs:
                fixed[a].update(locks[anc.name].apt.packages(a))  # type: ignore[union-attr]
    entries: list[AptEntry] = []
    for packages, kinds in ((stack.apt_packages, ("req", "dep")), (stack.apt_build, ("build", "build-dep"))):
        if not packages:
            continue
        names = {p.partition("=")[0] for p in packages}
        by_arch = resolver.resolve(AptRequest(stack=name, spec=spec, archs=archs, packages=list(packages), fixed=fixed))
        for arch, pins in by_arch.items():
            for pin in pins:
                if pin.name in fixed[arch]:
                    continue
                kind = kinds[0] if pin.name in names else kinds[1]
                entries.append(AptEntry(arch, kind, pin.name, pin.version, pin.sha256, pin.filename))
    return AptLock(spec.distro, spec.suite, spec.snapshot, spec.mirror, spec.sources_list(archs), entries, resolver=resolver.name)


def _delta(name: str, full: list[Pin], parent_env: dict[str, Pin]) -> list[Pin]:
    """What ``name`` installs on top of its parents; refuses any moved parent pin."""
    out = []
    for pin in full:
        have = parent_env.get(pin.key)
        if have is None:
            out.append(pin)
        elif have.version != pin.version:
            raise ResolutionError(
                f"{name}: the resolver moved {pin.key} from {have.version} (pinned by a parent) to {pin.version}",
                hint="a child stack cannot change a parent's pin; change the parent stack instead",
            )
    return out


def outcome_files(outcomes: list[LockOutcome]) -> dict[str, str]:
    """The files to write for the stacks that were resolved now."""
    return {
        f"{LOCK_DIR}/{o.stack}/{rel}": text
        for o in outcomes
        if o.changed
        for rel, text in lock_files(o.lock).items()
    }


def current_locks(graph: StackGraph) -> dict[str, StackLock]:
    """Read every stack's lock and check it matches its stack; raise :class:`StaleError` listing what is stale."""
    locks: dict[str, StackLock] = {}
    stale = []
    for name, reason in stale_locks(graph, locks):
        stale.append(f"{name} ({reason})")
    if stale:
        raise StaleError(f"locks are out of date: {', '.join(stale)}", hint="run bakegen lock")
    return locks


def stale_locks(graph: StackGraph, locks: dict[str, StackLock]) -> list[tuple[str, str]]:
    """(stack, reason) for each stack whose lock does not match it; fills ``locks`` with the good ones. No network."""
    stale: list[tuple[str, str]] = []
    for name in graph.order:
        parent = graph.parent(name)
        if parent and parent.name not in locks:
            stale.append((name, f"parent '{parent.name}' is not locked"))
            continue
        try:
            existing = read_lock(graph.root / LOCK_DIR / name, graph.root)
        except StaleError as exc:
            stale.append((name, exc.message))
            continue
        if existing is None:
            stale.append((name, "no lock"))
        elif existing.fingerprint != stack_fingerprint(graph, name, locks[parent.name] if parent else None):
            changed = f"stacks/{name}.toml" if parent is None else f"stacks/{name}.toml or its parent's lock"
            stale.append((name, f"{changed} changed since it was locked"))
        else:
            locks[name] = existing
    return stale

