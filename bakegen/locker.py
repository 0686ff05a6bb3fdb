"""The lock step: stacks in, locks out (as data; the CLI writes them).

Stacks are locked parents first. A child is resolved with the union of its
parents' locks as constraints, so it can never move a parent's pin; its lock
lists only what its parents lack. A stack whose inputs (fingerprint) have not
changed since it was locked is not resolved again, unless ``upgrade`` is set.
A root stack's base image is pinned by digest; a plain lock keeps the digest it
has, ``upgrade`` asks the registry again. Whether a lock is current (its
fingerprint, stale and tampered locks) is :mod:`bakegen.staleness`.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name

from bakegen import registry as ordered
from bakegen.ecosystem import AnyEcosystem, ResolveContext
from bakegen.errors import BakegenError, StaleError
from bakegen.lock import LOCK_VERSION, MANIFEST, StackLock
from bakegen.project import lock_files, read_lock
from bakegen.registry import Resolvers
from bakegen.resolvers.pins import DEFAULT_INDEX
from bakegen.stack import EffectiveStack, StackGraph
from bakegen.staleness import (
    LOCK_DIR,
    stack_fingerprint,
    tampered,
)

log = logging.getLogger("bakegen")


@dataclass(frozen=True)
class Upgrades:
    """What ``bakegen lock`` may move: everything, or the named packages (any ecosystem).

    A name is one that an ecosystem locks (a Python distribution, an apt or npm
    package), or a base image (its reference without digest, e.g.
    ``python:3.13-slim``, or its name, ``python``). ``name==version`` asks for
    that version.
    """

    everything: bool = False
    packages: tuple[tuple[str, str | None], ...] = ()
    ecosystems: tuple[str, ...] = ()  # every pin of these ecosystems moves (--upgrade-ecosystem)

    @classmethod
    def parse(cls, everything: bool, specs: list[str],
              ecosystems: tuple[str, ...] | list[str] = ()) -> Upgrades:
        out = []
        for spec in specs:
            name, sep, version = spec.partition("==")
            if not name or (sep and not version):
                raise BakegenError(f"--upgrade-package {spec!r} is not NAME or NAME==VERSION",
                                   hint="for example --upgrade-package numpy or --upgrade-package "
                                   "tini==0.19.0-3+b8")
            out.append((name.strip(), version.strip() or None))
        return cls(everything, tuple(out), tuple(ecosystems))

    def of(self, eco: AnyEcosystem, stack: EffectiveStack,
           lock: StackLock | None) -> list[tuple[str, str | None]]:
        """The (name, version or None) that move in ``eco`` for this stack."""
        names = eco.upgrade_names(stack, lock)
        if eco.name in self.ecosystems:
            return [(n, None) for n in sorted(names)]
        return [(eco.normalize(n), v) for n, v in self.packages
                if n in names or canonicalize_name(n) in names]

    def moves_all(self, eco: AnyEcosystem) -> bool:
        return self.everything or eco.name in self.ecosystems

    def touches(self, lock: StackLock | None, stack: EffectiveStack) -> bool:
        return self.everything or any(
            self.of(eco, stack, lock) or (eco.name in self.ecosystems and eco.used(stack))
            for eco in ordered.ECOSYSTEMS)


@dataclass
class LockOutcome:
    stack: str
    lock: StackLock
    changed: bool  # resolved now (True) or kept because its inputs did not change
    warnings: list[str] = field(default_factory=list)
    migrated: bool = False  # kept, and rewritten from an older lock format


@dataclass
class _Run:
    """What every stack of one ``bakegen lock`` shares."""

    graph: StackGraph
    resolvers: Resolvers
    upgrades: Upgrades
    index_url: str
    exclude_newer: str | None = None  # the cool-down (RFC 3339)
    locks: dict[str, StackLock] = field(default_factory=dict)  # filled parents first


# stacks, and ecosystems of one stack, resolved at once (they wait on the network and on resolvers)
WORKERS = 4


def lock_stacks(
    graph: StackGraph,
    resolvers: Resolvers,
    *,
    names: list[str] | None = None,
    index_url: str = DEFAULT_INDEX,
    upgrade: bool | Upgrades = False,
    exclude_newer: str | None = None,
) -> list[LockOutcome]:
    """Lock ``names`` (and their parents).

    A stack is resolved again when its fingerprint changed or an upgrade touches
    it; every other pin is kept (the previous lock is the resolvers' preference).
    Children are locked against their parents' new locks. Stacks whose parents
    are locked are resolved at the same time, and so are the ecosystems of one
    stack.
    """
    upgrades = upgrade if isinstance(upgrade, Upgrades) else Upgrades(everything=bool(upgrade))
    selected = graph.select(names)
    _check_upgrade_names(graph, selected, upgrades)
    run = _Run(graph, resolvers, upgrades, index_url, exclude_newer)
    outcomes: dict[str, LockOutcome] = {}
    for level in graph.levels(selected):
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(level))) as pool:
            for outcome in pool.map(lambda name: _lock_one(run, name), level):
                outcomes[outcome.stack] = outcome
                run.locks[outcome.stack] = outcome.lock
    return [outcomes[name] for name in selected]


def _lock_one(run: _Run, name: str) -> LockOutcome:
    graph = run.graph
    parent = graph.parent(name)
    fp = stack_fingerprint(graph, name, run.locks[parent.name] if parent else None)
    existing = _existing(graph, name, fp)
    untouched = existing is not None and not run.upgrades.touches(existing, graph.effective(name))
    if existing is not None and untouched and existing.fingerprint == fp:
        # a lock in an older format is rewritten in this one, resolving nothing
        old_format = existing.format_version < LOCK_VERSION
        return LockOutcome(name, existing, changed=old_format, migrated=old_format)
    moving = (_moving(run, name, existing)
              if existing is not None and existing.fingerprint == fp else [])
    if moving:
        # the inputs did not change: only what the upgrade names moves, every other pin is kept
        # as locked
        relocked = _relock_some(run, name, existing, moving)  # type: ignore[arg-type]
        return LockOutcome(name, relocked, changed=True)
    rest = stack_fingerprint(graph, name, run.locks[parent.name] if parent else None, offline=False)
    if (existing is not None and untouched
            and rest in (existing.fingerprint, existing.resolved_fingerprint)):
        # only the stack's own files or steps changed
        return LockOutcome(name, _relock_offline(run, name, fp, rest, existing), changed=True)
    outcome = LockOutcome(name, None, changed=True)  # type: ignore[arg-type]
    outcome.lock = _resolve(run, name, fp, existing, outcome.warnings)
    outcome.lock.resolved_fingerprint = rest if _uses_offline(outcome.lock) else None
    return outcome


def _moving(run: _Run, name: str, existing: StackLock) -> list[AnyEcosystem]:
    """The ecosystems an upgrade moves in a stack whose inputs did not change (all of them for
    --upgrade)."""
    if run.upgrades.everything:
        return []
    stack = run.graph.effective(name)
    return [eco for eco in ordered.ECOSYSTEMS if eco.used(stack) and (
        run.upgrades.of(eco, stack, existing) or eco.name in run.upgrades.ecosystems)]


def _relock_some(run: _Run, name: str, existing: StackLock,
                 moving: list[AnyEcosystem]) -> StackLock:
    """The existing lock with ``moving`` resolved again (with the previous lock as preference)."""
    stack = run.graph.effective(name)
    parts = dict(existing.parts)
    warnings: list[str] = []
    for eco in moving:
        parts[eco.name] = eco.resolve(_context(run, eco, stack, existing, warnings))
    for warning in warnings:
        log.warning("warning: %s: %s", name, warning)
    lock = StackLock(stack=name, fingerprint=existing.fingerprint, parent=existing.parent,
                     platforms=existing.platforms, parts=parts,
                     resolved_fingerprint=existing.resolved_fingerprint)
    lock.source_date_epoch = _epoch(lock, existing)
    return lock


def _uses_offline(lock: StackLock) -> bool:
    return any(eco.offline and lock.parts.get(eco.name) is not None for eco in ordered.ECOSYSTEMS)


def _relock_offline(run: _Run, name: str, fp: str, rest: str, existing: StackLock) -> StackLock:
    """The existing lock with its offline ecosystems locked again (no network, no other pin
    moves)."""
    stack = run.graph.effective(name)
    parts = {k: v for k, v in existing.parts.items()
             if not next(e for e in ordered.ECOSYSTEMS if e.name == k).offline}
    for eco in ordered.ECOSYSTEMS:
        if eco.offline and eco.used(stack):
            parts[eco.name] = eco.resolve(_context(run, eco, stack, existing, []))
    lock = StackLock(stack=name, fingerprint=fp, parent=existing.parent,
                     platforms=existing.platforms, parts=parts,
                     source_date_epoch=existing.source_date_epoch)
    lock.resolved_fingerprint = rest if _uses_offline(lock) else None
    return lock


def _existing(graph: StackGraph, name: str, fp: str) -> StackLock | None:
    """The stack's current lock, when it can be trusted (else it is resolved again, from
    nothing)."""
    try:
        existing = read_lock(graph.root / LOCK_DIR / name, graph.root)
    except StaleError:
        return None  # damaged, edited or an older format
    if (existing is not None and existing.fingerprint == fp
            and tampered(graph, name, existing) is not None):
        return None  # edited, or not this stack's: nothing in it is trusted
    return existing


def _context(run: _Run, eco: AnyEcosystem, stack: EffectiveStack, existing: StackLock | None,
             warnings: list[str]) -> ResolveContext:
    upgrades = run.upgrades
    return ResolveContext(
        stack=stack,
        parents=[run.locks[a.name] for a in stack.ancestors],
        previous=None if upgrades.everything else existing,
        existing=existing,
        upgrade=upgrades.of(eco, stack, existing),
        move_all=upgrades.moves_all(eco),
        resolver=run.resolvers.get(eco.name),
        index_url=run.index_url,
        warnings=warnings,
        exclude_newer=run.exclude_newer,
    )


def _resolve(run: _Run, name: str, fp: str, existing: StackLock | None,
             warnings: list[str]) -> StackLock:
    """Resolve every ecosystem that the stack uses, at the same time."""
    stack = run.graph.effective(name)
    used = [eco for eco in ordered.ECOSYSTEMS if eco.used(stack)]
    parts: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures: list[tuple[AnyEcosystem, Future[Any], list[str]]] = []
        for eco in used:
            own: list[str] = []
            future = pool.submit(eco.resolve, _context(run, eco, stack, existing, own))
            futures.append((eco, future, own))
        # in registry order: the base image's warnings come before any other failure
        for eco, future, own in futures:
            parts[eco.name] = future.result()
            for warning in own:
                log.warning("warning: %s: %s", name, warning)
            warnings += own
    lock = StackLock(stack=name, fingerprint=fp, parent=stack.stack.extends,
                     platforms=list(stack.platforms), parts=parts)
    lock.source_date_epoch = _epoch(lock, existing)
    return lock


def _epoch(lock: StackLock, existing: StackLock | None) -> int:
    """When the lock's content was resolved: kept while re-locking gives the same files."""
    if existing is not None and existing.source_date_epoch is not None:
        def files(found: StackLock) -> dict[str, str]:
            return {k: v for k, v in lock_files(found).items() if k != MANIFEST}

        if files(lock) == files(existing):
            return existing.source_date_epoch
    return int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())


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
        for eco in ordered.ECOSYSTEMS:
            seen.update(n for n, _ in upgrades.of(eco, graph.effective(name), lock))
    for n, _ in upgrades.packages:
        if n not in seen and canonicalize_name(n) not in seen:
            kinds = ", ".join(eco.name for eco in ordered.ECOSYSTEMS)
            raise BakegenError(
                f"--upgrade-package {n}: no locked package or base image ({kinds}) is named '{n}'",
                hint="check the name against locks/*/ (run bakegen lock first for new stacks)",
            )


def outcome_files(outcomes: list[LockOutcome]) -> dict[str, str]:
    """The files to write for the stacks that were resolved now."""
    return {
        f"{LOCK_DIR}/{o.stack}/{rel}": text
        for o in outcomes
        if o.changed
        for rel, text in lock_files(o.lock).items()
    }
