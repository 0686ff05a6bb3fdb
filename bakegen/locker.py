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
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from packaging.utils import canonicalize_name

from bakegen.errors import BakegenError, NetworkError, ResolutionError, StaleError
from bakegen.files import orphans
from bakegen.lock import LOCK_VERSION, MANIFEST, AptEntry, AptLock, Pin, PythonLock, StackLock, arch_of, fingerprint, lock_files, read_lock, requirements_file
from bakegen.resolvers.apt import AptRequest, AptResolver, AptSpec, distro_of
from bakegen.resolvers.image import ImageLock, ImageRef, ImageResolver
from bakegen.resolvers.npm import NpmLock, NpmResolver
from bakegen.resolvers.python import DEFAULT_INDEX, PythonRequest, PythonResolver
from bakegen.stack import Stack, StackGraph, canonical_requirements

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
    def resolve(
        self, stack: str, specs: list[str], allow_scripts: bool = False, node: str = "apt",
        previous: NpmLock | None = None, upgrade: list[str] | None = None,
    ) -> NpmLock: ...


@dataclass(frozen=True)
class Upgrades:
    """What ``bakegen lock`` may move: everything, or the named packages (any ecosystem).

    A name is a Python distribution, an apt package, an npm package, or a base
    image (its reference without digest, e.g. ``python:3.13-slim``, or its
    name, ``python``). ``name==version`` asks for that version.
    """

    everything: bool = False
    packages: tuple[tuple[str, str | None], ...] = ()
    ecosystems: tuple[str, ...] = ()  # every pin of these ecosystems moves (--upgrade-ecosystem)

    @classmethod
    def parse(cls, everything: bool, specs: list[str], ecosystems: list[str] = ()) -> Upgrades:  # type: ignore[assignment]
        out = []
        for spec in specs:
            name, sep, version = spec.partition("==")
            if not name or (sep and not version):
                raise BakegenError(f"--upgrade-package {spec!r} is not NAME or NAME==VERSION", hint="for example --upgrade-package numpy or --upgrade-package tini==0.19.0-3+b8")
            out.append((name.strip(), version.strip() or None))
        return cls(everything, tuple(out), tuple(ecosystems))

    def _match(self, names: set[str], ecosystem: str) -> list[tuple[str, str | None]]:
        if ecosystem in self.ecosystems:
            return [(n, None) for n in sorted(names)]
        return [(n, v) for n, v in self.packages if n in names or canonicalize_name(n) in names]

    def python(self, lock: StackLock | None) -> list[tuple[str, str | None]]:
        keys = {p.key for pins in lock.python.by_platform.values() for p in pins} if lock else set()
        return [(canonicalize_name(n), v) for n, v in self._match(keys, "python")]

    def apt(self, lock: StackLock | None) -> list[tuple[str, str | None]]:
        return self._match({e.name for e in lock.apt.entries}, "apt") if lock and lock.apt else []

    def npm(self, lock: StackLock | None) -> list[tuple[str, str | None]]:
        names = {path.rsplit("node_modules/", 1)[-1] for path in lock.npm.packages()} if lock and lock.npm else set()
        return self._match(names, "npm")

    def image_names(self, ref: str | None) -> list[str]:
        """The upgrade names that name the image ``ref`` (as written, without tag, or its short name)."""
        if ref is None:
            return []
        bare = ref.split("@", 1)[0]
        forms = (bare, bare.rsplit(":", 1)[0], bare.rsplit("/", 1)[-1].split(":")[0])
        return [n for n, _ in self.packages if n in forms]

    def image(self, ref: str | None) -> bool:
        return "image" in self.ecosystems or bool(self.image_names(ref))

    def touches(self, lock: StackLock | None, stack: Stack) -> bool:
        return self.everything or bool(self.python(lock) or self.apt(lock) or self.npm(lock) or self.image(stack.base))


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
    migrated: bool = False  # kept, and rewritten from an older lock format


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
        "python": {"version": graph.python_version(name), "requirements": canonical_requirements(stack), **_python_options(graph, name)},
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


def _pip_projection(graph: StackGraph, name: str) -> dict[str, bool]:
    """A root stack that ships pip locks it (a key only when true: other stacks' fingerprints stay as they were)."""
    return {"pip": True} if graph.parent(name) is None and graph.python_pip(name) else {}


def _python_options(graph: StackGraph, name: str) -> dict[str, bool]:
    """The stack's Python settings that change what resolves; keys only when set, so old fingerprints hold."""
    return {**_pip_projection(graph, name), **({"sdists": True} if graph.stacks[name].python_sdists else {})}


def _python_inputs(graph: StackGraph, name: str) -> list[tuple[str, list[str]]]:
    chain = graph.ancestors(name) + [graph.stacks[name]]
    inputs = [(f"stacks/{s.name}.toml", list(s.python_packages)) for s in chain if s.python_packages]
    if _pip_projection(graph, name) and not any(canonicalize_name(r.name) == "pip" for r in graph.stacks[name].requirements()):
        inputs.append((f"stacks/{name}.toml [python] pip", ["pip"]))
    return inputs


def _parent_env(graph: StackGraph, name: str, locks: dict[str, StackLock], platform: str) -> dict[str, Pin]:
    """The Python pins the parents of ``name`` install on ``platform``."""
    env: dict[str, Pin] = {}
    for anc in graph.ancestors(name):
        env.update({p.key: p for p in locks[anc.name].python.by_platform.get(platform, [])})
    return env


@dataclass
class _Run:
    """What every stack of one ``bakegen lock`` shares."""

    graph: StackGraph
    resolvers: Resolvers
    upgrades: Upgrades
    index_url: str
    locks: dict[str, StackLock] = field(default_factory=dict)  # filled parents first
    _python_tool: str | None = None

    def python_tool(self) -> str:
        if self._python_tool is None:
            self._python_tool = self.resolvers.python.version()
        return self._python_tool


WORKERS = 4  # stacks, and ecosystems of one stack, resolved at once (they wait on the network and on resolvers)


def lock_stacks(
    graph: StackGraph,
    resolvers: Resolvers | PythonResolver,
    *,
    names: list[str] | None = None,
    index_url: str = DEFAULT_INDEX,
    upgrade: bool | Upgrades = False,
) -> list[LockOutcome]:
    """Lock ``names`` (and their parents).

    A stack is resolved again when its fingerprint changed or an upgrade touches
    it; every other pin is kept (the previous lock is the resolvers' preference).
    Children are locked against their parents' new locks. Stacks whose parents
    are locked are resolved at the same time, and so are the ecosystems of one
    stack.
    """
    if not isinstance(resolvers, Resolvers):
        resolvers = Resolvers(python=resolvers)
    upgrades = upgrade if isinstance(upgrade, Upgrades) else Upgrades(everything=bool(upgrade))
    selected = graph.select(names)
    _check_upgrade_names(graph, selected, upgrades)
    run = _Run(graph, resolvers, upgrades, index_url)
    outcomes: dict[str, LockOutcome] = {}
    for level in _levels(graph, selected):
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(level))) as pool:
            for outcome in pool.map(lambda name: _lock_one(run, name), level):
                outcomes[outcome.stack] = outcome
                run.locks[outcome.stack] = outcome.lock
    return [outcomes[name] for name in selected]


def _levels(graph: StackGraph, selected: list[str]) -> list[list[str]]:
    """``selected`` in groups that can be locked together: each after all of its parents."""
    depth = {name: len(graph.ancestors(name)) for name in selected}
    return [[n for n in selected if depth[n] == d] for d in sorted(set(depth.values()))]


def _lock_one(run: _Run, name: str) -> LockOutcome:
    graph, stack = run.graph, run.graph.stacks[name]
    parent = graph.parent(name)
    fp = stack_fingerprint(graph, name, run.locks[parent.name] if parent else None)
    existing = _existing(graph, name, fp)
    if existing is not None and existing.fingerprint == fp and not run.upgrades.touches(existing, stack):
        # a lock in an older format is rewritten in this one, resolving nothing
        old_format = existing.format_version < LOCK_VERSION
        return LockOutcome(name, existing, changed=old_format, migrated=old_format)
    outcome = LockOutcome(name, None, changed=True)  # type: ignore[arg-type]
    outcome.lock = _resolve(run, name, fp, existing, outcome.warnings)
    return outcome


def _existing(graph: StackGraph, name: str, fp: str) -> StackLock | None:
    """The stack's current lock, when it can be trusted (else it is resolved again, from nothing)."""
    try:
        existing = read_lock(graph.root / LOCK_DIR / name, graph.root)
    except StaleError:
        return None  # damaged, edited or an older format
    if existing is not None and existing.fingerprint == fp and tampered(graph, name, existing) is not None:
        return None  # edited, or not this stack's: nothing in it is trusted
    return existing


def _resolve(run: _Run, name: str, fp: str, existing: StackLock | None, warnings: list[str]) -> StackLock:
    """Resolve every ecosystem of one stack, at the same time."""
    graph, stack, upgrades = run.graph, run.graph.stacks[name], run.upgrades
    previous = None if upgrades.everything else existing  # whose pins to keep
    platforms = graph.platforms(name)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        python = pool.submit(_lock_python, run, name, previous, existing)
        apt = pool.submit(_lock_apt, graph, name, run.locks, run.resolvers.apt, previous, upgrades.apt(existing)) if (stack.apt_packages or stack.apt_build) else None
        npm = pool.submit(
            run.resolvers.npm.resolve, name, list(stack.npm_packages), stack.npm_allow_scripts, stack.npm_node,
            previous=previous.npm if previous else None, upgrade=[n for n, _ in upgrades.npm(existing)],
        ) if stack.npm_packages else None
        image = pool.submit(_lock_image, stack.base, platforms, existing, run.resolvers.image, upgrades.everything or upgrades.image(stack.base), warnings) if stack.base else None
        base = image.result() if image else None  # first: its warnings come before any other failure
        for warning in warnings:
            log.warning("warning: %s: %s", name, warning)
        by_platform = python.result()
        lock = StackLock(
            stack=name,
            fingerprint=fp,
            parent=stack.extends,
            platforms=platforms,
            python=PythonLock(
                version=graph.python_version(name),
                resolver=run.python_tool() if (stack.python_packages or _pip_projection(graph, name)) else (existing.python.resolver if existing else "none"),
                by_platform=by_platform,
                parents=[a.name for a in graph.ancestors(name)],
            ),
            image=base,
            apt=apt.result() if apt else None,
            npm=npm.result() if npm else None,
        )
    lock.source_date_epoch = _epoch(lock, existing)
    return lock


def _lock_python(run: _Run, name: str, previous: StackLock | None, existing: StackLock | None) -> dict[str, list[Pin]]:
    """The Python pins of each platform, resolved at the same time; only what the parents lack."""
    graph, stack = run.graph, run.graph.stacks[name]
    platforms = graph.platforms(name)
    if not _python_inputs(graph, name) or not (stack.python_packages or _pip_projection(graph, name)):
        return {p: [] for p in platforms}  # nothing new to install on top of the parent
    run.python_tool()
    requests = [_python_request(run, name, platform, previous, existing) for platform in platforms]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(platforms))) as pool:
        results = list(pool.map(run.resolvers.python.resolve, requests))
    return {p: _delta(name, pins, _parent_env(graph, name, run.locks, p)) for p, pins in zip(platforms, results)}


def _python_request(run: _Run, name: str, platform: str, previous: StackLock | None, existing: StackLock | None) -> PythonRequest:
    graph, locks = run.graph, run.locks
    chain = graph.ancestors(name) + [graph.stacks[name]]
    platforms = graph.platforms(name)
    return PythonRequest(
        stack=name,
        python_version=graph.python_version(name),
        platform=PYTHON_PLATFORMS[platform],
        inputs=_python_inputs(graph, name),
        constraints=[
            (f"{LOCK_DIR}/{a.name}/{requirements_file(platform, platforms)}", locks[a.name].python.by_platform[platform])
            for a in chain[:-1]
            if locks[a.name].python.by_platform.get(platform)
        ],
        index_url=run.index_url,
        preferences=list(_parent_env(graph, name, locks, platform).values()) + (previous.python.by_platform.get(platform, []) if previous else []),
        upgrade=[f"{n}=={v}" if v else n for n, v in run.upgrades.python(existing)],
        allow_sdists=graph.stacks[name].python_sdists,
        target=platform,
    )


def _epoch(lock: StackLock, existing: StackLock | None) -> int:
    """When the lock's content was resolved: kept while re-locking gives the same files."""
    if existing is not None and existing.source_date_epoch is not None:
        same = {k: v for k, v in lock_files(lock).items() if k != MANIFEST} == {k: v for k, v in lock_files(existing).items() if k != MANIFEST}
        if same:
            return existing.source_date_epoch
    return int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())


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


def _check_upgrade_names(graph: StackGraph, names: list[str], upgrades: Upgrades) -> None:
    """Every --upgrade-package must name something that some selected stack locks."""
    if not upgrades.packages:
        return
    seen: set[str] = set()
    for name in names:
        try:
            lock = read_lock(graph.root / LOCK_DIR / name, graph.root)
        except StaleError:
            lock = None
        for found in (upgrades.python(lock), upgrades.apt(lock), upgrades.npm(lock)):
            seen.update(n for n, _ in found)
        seen.update(upgrades.image_names(graph.stacks[name].base))
    for n, _ in upgrades.packages:
        if n not in seen and canonicalize_name(n) not in seen:
            raise BakegenError(
                f"--upgrade-package {n}: no locked Python, apt or npm package, or base image, is named '{n}'",
                hint="check the name against locks/*/ (run bakegen lock first for new stacks)",
            )


def _lock_apt(
    graph: StackGraph, name: str, locks: dict[str, StackLock], resolver: AptLookup,
    previous: StackLock | None = None, upgrade: list[tuple[str, str | None]] = (),  # type: ignore[assignment]
) -> AptLock:
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
    moved = {n for n, _ in upgrade}
    preferred: dict[str, dict[str, str]] = {a: {} for a in archs}
    for a in archs:
        if previous is not None and previous.apt is not None:
            preferred[a].update({n: v for n, v in previous.apt.packages(a, ("req", "dep", "build", "build-dep")).items() if n not in moved})
        preferred[a].update({n: v for n, v in upgrade if v})
    entries: list[AptEntry] = []
    for packages, kinds in ((stack.apt_packages, ("req", "dep")), (stack.apt_build, ("build", "build-dep"))):
        if not packages:
            continue
        names = {p.partition("=")[0] for p in packages}
        by_arch = resolver.resolve(AptRequest(stack=name, spec=spec, archs=archs, packages=list(packages), fixed=fixed, preferred=preferred))
        for arch, pins in by_arch.items():
            for pin in pins:
                if pin.name in fixed[arch]:
                    continue
                kind = kinds[0] if pin.name in names else kinds[1]
                entries.append(AptEntry(arch, kind, pin.name, pin.version, pin.sha256, pin.filename))
    return AptLock(spec.distro, spec.suite, spec.snapshot, spec.mirror, entries, resolver=resolver.name)


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
    stale += [f"{name} (no stack named {name})" for name in orphan_lock_folders(graph)]
    if stale:
        raise StaleError(f"locks are out of date: {', '.join(stale)}", hint="run bakegen lock")
    return locks


def lock_folders_without_stack(graph: StackGraph) -> set[str]:
    folder = graph.root / LOCK_DIR
    return {p.name for p in folder.iterdir() if p.name not in graph.stacks} if folder.is_dir() else set()


def orphan_lock_folders(graph: StackGraph) -> list[str]:
    """Lock folders of stacks that no longer exist, which still hold files bakegen wrote."""
    return sorted({path.split("/")[1] for path in orphans(graph.root, LOCK_DIR, set(), lock_folders_without_stack(graph))})


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
        fp = stack_fingerprint(graph, name, locks[parent.name] if parent else None)
        problem = "no lock" if existing is None else lock_problem(graph, name, existing, fp)
        if problem is None and existing is not None and existing.format_version < LOCK_VERSION:
            problem = f"lock format {existing.format_version} (run bakegen lock: it rewrites it in format {LOCK_VERSION} and resolves nothing)"
        if problem is not None:
            stale.append((name, problem))
        else:
            locks[name] = existing  # type: ignore[assignment]
    return stale


def lock_problem(graph: StackGraph, name: str, lock: StackLock, fp: str) -> str | None:
    """Why ``lock`` cannot be used for stack ``name`` (tampered or stale), or None."""
    if lock.fingerprint != fp:
        changed = f"stacks/{name}.toml" if graph.stacks[name].extends is None else f"stacks/{name}.toml or its parent's lock"
        return f"{changed} changed since it was locked"
    return tampered(graph, name, lock)


def tampered(graph: StackGraph, name: str, lock: StackLock) -> str | None:
    """Where a lock whose fingerprint matches contradicts its stack file (in what the fingerprint does not hash), or None."""
    stack = graph.stacks[name]
    facts = {
        "stack": (lock.stack, name),
        "parent": (lock.parent, stack.extends),
        "platforms": (lock.platforms, graph.platforms(name)),
        "python version": (lock.python.version, graph.python_version(name)),
        "base image": (lock.image.ref if lock.image else None, stack.base),
    }
    pinned = ImageRef.parse(stack.base).digest if stack.base else None
    if pinned is not None:
        facts["base image digest"] = (lock.image.digest if lock.image else None, pinned)
    for what, (have, want) in facts.items():
        if have != want:
            return f"tampered: the lock's {what} is {have!r}, the stack says {want!r}"
    if lock.source_date_epoch is None:
        return "tampered: the lock has no source_date_epoch"
    return None

