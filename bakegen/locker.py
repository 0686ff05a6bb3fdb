"""The lock step: stacks in, locks out (as data; the CLI writes them).

Stacks are locked parents first. A child is resolved with the union of its
parents' locks as constraints, so it can never move a parent's pin; its lock
lists only what its parents lack. A stack whose inputs (fingerprint) have not
changed since it was locked is not resolved again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from bakegen.errors import ResolutionError, StaleError
from bakegen.lock import (
    MANIFEST,
    REQUIREMENTS,
    Pin,
    PythonLock,
    StackLock,
    fingerprint,
    read_lock,
    render_manifest,
    render_requirements,
)
from bakegen.resolvers.python import DEFAULT_INDEX, DEFAULT_PLATFORM, PythonRequest, PythonResolver
from bakegen.stack import StackGraph, canonical_requirements

LOCK_DIR = "locks"


@dataclass
class LockOutcome:
    stack: str
    lock: StackLock
    changed: bool  # resolved now (True) or kept because its inputs did not change


def _pins_digest(pins: list[Pin]) -> str:
    text = "".join(f"{p.key}=={p.version} {' '.join(p.hashes)}\n" for p in sorted(pins, key=lambda p: p.key))
    return hashlib.sha256(text.encode()).hexdigest()


def stack_fingerprint(graph: StackGraph, name: str, parent_lock: StackLock | None, platform: str = DEFAULT_PLATFORM) -> str:
    """Fingerprint of everything that decides a stack's lock (see :func:`bakegen.lock.fingerprint`)."""
    stack = graph.stacks[name]
    projection = {
        "python": {
            "version": graph.python_version(name),
            "platform": platform,
            "requirements": canonical_requirements(stack),
        },
        "base_image": stack.base,
        "parent": None
        if parent_lock is None
        else {"name": parent_lock.stack, "fingerprint": parent_lock.fingerprint, "python_pins": _pins_digest(parent_lock.python.pins)},
    }
    return fingerprint(projection)


def _env_pins(graph: StackGraph, name: str, locks: dict[str, StackLock]) -> list[Pin]:
    """The pins the parents of ``name`` install (their union)."""
    pins: list[Pin] = []
    for anc in graph.ancestors(name):
        if anc.name in locks:
            pins.extend(locks[anc.name].python.pins)
    return pins


def lock_stacks(
    graph: StackGraph,
    resolver: PythonResolver,
    *,
    names: list[str] | None = None,
    platform: str = DEFAULT_PLATFORM,
    index_url: str = DEFAULT_INDEX,
) -> list[LockOutcome]:
    """Lock ``names`` (and their parents); resolve only stacks whose fingerprint changed."""
    locks: dict[str, StackLock] = {}
    outcomes: list[LockOutcome] = []
    resolver_version: str | None = None
    for name in graph.select(names):
        stack = graph.stacks[name]
        parent = graph.parent(name)
        parent_lock = locks[parent.name] if parent else None
        fp = stack_fingerprint(graph, name, parent_lock, platform)
        try:
            existing = read_lock(graph.root / LOCK_DIR / name, graph.root)
        except StaleError:
            existing = None  # damaged or edited: resolve again
        if existing is not None and existing.fingerprint == fp:
            locks[name] = existing
            outcomes.append(LockOutcome(name, existing, changed=False))
            continue
        resolver_version = resolver_version or resolver.version()
        ancestors = graph.ancestors(name)
        parent_env = {p.key: p for p in _env_pins(graph, name, locks)}
        chain = ancestors + [stack]
        request = PythonRequest(
            stack=name,
            python_version=graph.python_version(name),
            platform=platform,
            inputs=[(f"stacks/{s.name}.toml", list(s.python_packages)) for s in chain if s.python_packages],
            constraints=[(f"{LOCK_DIR}/{a.name}/{REQUIREMENTS}", locks[a.name].python.pins) for a in ancestors if locks[a.name].python.pins],
            index_url=index_url,
        )
        if stack.python_packages:
            full = resolver.resolve(request)
        else:
            full = []  # nothing new to install on top of the parent
        pins = _delta(name, full, parent_env)
        lock = StackLock(
            stack=name,
            fingerprint=fp,
            parent=parent.name if parent else None,
            base_image=stack.base,
            python=PythonLock(
                version=graph.python_version(name),
                platform=platform,
                resolver=resolver_version,
                pins=pins,
                parents=[a.name for a in ancestors],
            ),
        )
        locks[name] = lock
        outcomes.append(LockOutcome(name, lock, changed=True))
    return outcomes


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


def lock_files(outcomes: list[LockOutcome]) -> dict[str, str]:
    """The files to write for the stacks that were resolved now."""
    files: dict[str, str] = {}
    for o in outcomes:
        if not o.changed:
            continue
        req = render_requirements(o.lock)
        files[f"{LOCK_DIR}/{o.stack}/{REQUIREMENTS}"] = req
        files[f"{LOCK_DIR}/{o.stack}/{MANIFEST}"] = render_manifest(o.lock, req)
    return files


def current_locks(graph: StackGraph, platform: str = DEFAULT_PLATFORM) -> dict[str, StackLock]:
    """Read every stack's lock and check it matches its stack; raise :class:`StaleError` listing what is stale."""
    locks: dict[str, StackLock] = {}
    stale: list[str] = []
    for name in graph.order:
        parent = graph.parent(name)
        if parent and parent.name not in locks:
            stale.append(f"{name} (parent '{parent.name}' is not locked)")
            continue
        existing = read_lock(graph.root / LOCK_DIR / name, graph.root)
        if existing is None:
            stale.append(f"{name} (no lock)")
            continue
        fp = stack_fingerprint(graph, name, locks[parent.name] if parent else None, existing.python.platform or platform)
        if existing.fingerprint != fp:
            stale.append(f"{name} (stacks/{name}.toml changed since it was locked)")
            continue
        locks[name] = existing
    if stale:
        raise StaleError(f"locks are out of date: {', '.join(stale)}", hint="run bakegen lock")
    return locks
