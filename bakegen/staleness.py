"""Whether the locks are current, without the network: each stack's fingerprint, the locks that no
longer match their stacks (stale or tampered), and lock folders of stacks that no longer exist.

``bakegen check``, ``generate`` and the lock step (:mod:`bakegen.locker`, which trusts a lock only
when nothing here refuses it) share these checks.
"""

from __future__ import annotations

from typing import Any

from bakegen import registry as ordered
from bakegen.errors import StaleError
from bakegen.files import orphans
from bakegen.lock import LOCK_VERSION, StackLock, fingerprint
from bakegen.project import read_lock
from bakegen.stack import StackGraph

LOCK_DIR = "locks"


def stack_fingerprint(graph: StackGraph, name: str, parent_lock: StackLock | None,
                      offline: bool = True) -> str:
    """Fingerprint of everything that decides a stack's lock (see :func:`bakegen.lock.fingerprint`).

    An ecosystem that the stack does not use adds nothing (the first ecosystems keep
    the null key they had in format 2), so adding an ecosystem changes no fingerprint.
    """
    stack = graph.effective(name)
    projection: dict[str, Any] = {"platforms": list(stack.platforms)}
    for eco in ordered.ECOSYSTEMS:
        value = eco.fingerprint(stack) if offline or not eco.offline else None
        if value is not None or eco.in_format_2:
            projection[eco.fingerprint_key] = value
    projection["parent"] = None
    if parent_lock is not None:
        digests = dict(d for eco in ordered.ECOSYSTEMS for d in [eco.parent_digest(parent_lock)]
                       if d is not None)
        projection["parent"] = {"name": parent_lock.stack, "fingerprint": parent_lock.fingerprint,
                                **digests}
    return fingerprint(projection)


def current_locks(graph: StackGraph) -> dict[str, StackLock]:
    """Read every stack's lock and check it matches its stack; raise :class:`StaleError` listing
    what is stale."""
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
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.name not in graph.stacks}


def orphan_lock_folders(graph: StackGraph) -> list[str]:
    """Lock folders of stacks that no longer exist, which still hold files bakegen wrote."""
    found = orphans(graph.root, LOCK_DIR, set(), lock_folders_without_stack(graph))
    return sorted({path.split("/")[1] for path in found})


def stale_locks(graph: StackGraph, locks: dict[str, StackLock]) -> list[tuple[str, str]]:
    """(stack, reason) for each stack whose lock does not match it; fills ``locks`` with the good
    ones. No network."""
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
        rest = stack_fingerprint(graph, name, locks[parent.name] if parent else None, offline=False)
        problem = "no lock" if existing is None else lock_problem(graph, name, existing, fp, rest)
        if problem is None and existing is not None and existing.format_version < LOCK_VERSION:
            problem = (f"lock format {existing.format_version} (run bakegen lock: it rewrites it "
                       f"in format {LOCK_VERSION} and resolves nothing)")
        if problem is not None:
            stale.append((name, problem))
        else:
            locks[name] = existing  # type: ignore[assignment]
    return stale


def lock_problem(graph: StackGraph, name: str, lock: StackLock, fp: str,
                 rest: str | None = None) -> str | None:
    """Why ``lock`` cannot be used for stack ``name`` (tampered or stale), or None. ``rest``: the
    fingerprint without the stack's own files and steps (when it still matches, only they
    changed)."""
    own_only = rest is not None and rest in (lock.resolved_fingerprint, lock.fingerprint)
    if lock.fingerprint != fp and own_only:
        return (f"stacks/{name}.toml's files, steps or hooks (stacks/{name}/) changed since it "
                "was locked")
    if lock.fingerprint != fp:
        changed = (f"stacks/{name}.toml" if graph.stacks[name].extends is None
                   else f"stacks/{name}.toml or its parent's lock")
        return f"{changed} changed since it was locked"
    return tampered(graph, name, lock)


def tampered(graph: StackGraph, name: str, lock: StackLock) -> str | None:
    """Where a lock whose fingerprint matches contradicts its stack file (in what the fingerprint
    does not hash), or None."""
    stack = graph.effective(name)
    optional = {eco.name for eco in ordered.ECOSYSTEMS
                if eco.optional and eco.used(stack) and eco.name not in lock.parts}
    used = {eco.name for eco in ordered.ECOSYSTEMS if eco.used(stack)}
    facts: list[tuple[str, Any, Any]] = [
        ("stack", lock.stack, name),
        ("parent", lock.parent, stack.stack.extends),
        ("platforms", lock.platforms, list(stack.platforms)),
        # a section for an ecosystem the stack does not use would add a stage (an npm builder,
        # say); an optional one may be missing (a lock from before it existed)
        ("ecosystems", sorted(set(lock.parts) | optional), sorted(used | optional)),
    ]
    facts += [fact for eco in ordered.ECOSYSTEMS for fact in eco.tampered(stack, lock)]
    for what, have, want in facts:
        if have != want:
            return f"tampered: the lock's {what} is {have!r}, the stack says {want!r}"
    if lock.source_date_epoch is None:
        return "tampered: the lock has no source_date_epoch"
    return None
