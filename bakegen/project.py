"""Stack files and locks read with the registered ecosystems.

The readers of stack files and locks (:mod:`bakegen.stackfile`, :mod:`bakegen.lockfile`) are given
the ecosystems and import none of them; :mod:`bakegen.registry` lists them. This module, above both,
binds the two: what the commands (and tests) call to read a project. Each call reads
``registry.ECOSYSTEMS`` when it runs, so a test may add an ecosystem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bakegen import lock, lockfile, registry, stackfile
from bakegen.lock import StackLock
from bakegen.stack import Stack, StackGraph


def load_stacks(root: Path, stacks_dir: str = "stacks") -> StackGraph:
    """Every stack file of the project, checked (:func:`bakegen.stackfile.load_stacks`)."""
    return stackfile.load_stacks(root, registry.ECOSYSTEMS, stacks_dir)


def load_stack(path: Path, root: Path | None = None) -> Stack:
    return stackfile.load_stack(path, registry.ECOSYSTEMS, root)


def read_lock(lock_dir: Path, root: Path | None = None) -> StackLock | None:
    """``locks/<stack>/``, checked (:func:`bakegen.lockfile.read_lock`); ``None`` when there is none
    yet."""
    return lockfile.read_lock(lock_dir, registry.ECOSYSTEMS, root)


def lock_files(found: StackLock, command: str = "bakegen lock") -> dict[str, str]:
    """Every file of ``locks/<stack>/``, the manifest last."""
    return lock.lock_files(found, registry.ECOSYSTEMS, command)


def manifest_schema() -> dict[str, Any]:
    return lock.manifest_schema(registry.ECOSYSTEMS)


def render_schema() -> str:
    """``schema/lock-v<N>.schema.json`` (``make schema`` writes it)."""
    return lock.render_schema(registry.ECOSYSTEMS)
