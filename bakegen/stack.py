"""The stack model: what the user wrote, and what each stack inherits.

A stack file ``stacks/<name>.toml`` describes one image; :mod:`bakegen.stackfile`
reads and checks it into a :class:`Stack`. A :class:`StackGraph` holds every
stack of a project in build order, and gives each its :class:`EffectiveStack`
(the inherited values, computed once). :func:`find_line` finds where a key is
written, for errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bakegen.errors import Location, StackError, did_you_mean

DEFAULT_USER = ("jovyan", 1000, 100)
DEFAULT_PORT = 8888
DEFAULT_TAGS = ("latest",)

NAME = r"[a-z0-9]+(?:[-_][a-z0-9]+)*"
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
USER = r"[a-z_][a-z0-9_-]{0,31}"
LABEL_KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}"
PLATFORMS = ("linux/amd64", "linux/arm64")
DEFAULT_PLATFORMS = ("linux/amd64",)


@dataclass(frozen=True)
class User:
    name: str = DEFAULT_USER[0]
    uid: int = DEFAULT_USER[1]
    gid: int = DEFAULT_USER[2]


@dataclass(frozen=True)
class Stack:
    """One validated stack file. Inherited values are resolved in its :class:`EffectiveStack`."""

    name: str
    path: Path
    description: str
    base: str | None = None
    extends: str | None = None
    tables: dict[str, Any] = field(
        default_factory=dict
    )  # each ecosystem's validated tables, as written
    profile: tuple[tuple[str, Any], ...] = ()  # [profile] overrides for JupyterHub's profileList
    user_declared: bool = False
    env: tuple[tuple[str, str], ...] = ()
    user: User | None = None
    port: int | None = None
    command: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = DEFAULT_TAGS
    platforms: tuple[str, ...] | None = None

    def table(self, ecosystem: str) -> dict[str, Any]:
        return self.tables.get(ecosystem, {})

    def __hash__(self) -> int:
        return hash((self.name, self.path))


@dataclass(frozen=True)
class EffectiveStack:
    """A stack with what it inherits resolved, computed once (:meth:`StackGraph.effective`)."""

    stack: Stack
    chain: tuple[Stack, ...]  # root first, this stack last
    platforms: tuple[str, ...]
    user: User

    @property
    def name(self) -> str:
        return self.stack.name

    @property
    def root(self) -> Stack:
        return self.chain[0]

    @property
    def parent(self) -> Stack | None:
        return self.chain[-2] if len(self.chain) > 1 else None

    @property
    def ancestors(self) -> tuple[Stack, ...]:
        return self.chain[:-1]

    @property
    def python_version(self) -> str:
        """The image's Python (every image has one; the root stack says which)."""
        return str(self.root.table("python")["version"])

    def table(self, ecosystem: str) -> dict[str, Any]:
        return self.stack.table(ecosystem)

    def root_table(self, ecosystem: str) -> dict[str, Any]:
        return self.root.table(ecosystem)

    def nearest(self, ecosystem: str, key: str, default: Any = None) -> Any:
        """``key`` of the stack's table, else of its nearest ancestor that sets it."""
        return next(
            (s.table(ecosystem)[key] for s in reversed(self.chain) if key in s.table(ecosystem)),
            default,
        )


# --- schema -----------------------------------------------------------------
# Each key maps to a checker (bakegen.schema) that returns the converted value or
# raises Invalid(message, hint). Tables map to nested schemas.


# --- locating keys in the source text ------------------------------------------

_HEADER_RE = re.compile(
    r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$"
)  # [table] and [[array of tables]]
_KEY_RE = re.compile(
    r"""^\s*((?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
)


_PART_RE = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.\s]+)\s*""")


def _unquote(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" else key


def _split_dotted(key: str) -> tuple[str, ...]:
    return tuple(_unquote(m.group(1)) for m in _PART_RE.finditer(key))


def find_line(text: str, dotted: tuple[str, ...]) -> int | None:
    """Best-effort 1-based line of ``dotted`` (e.g. ("python", "pakages")) in TOML text."""
    table: tuple[str, ...] = ()
    header_line: int | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _HEADER_RE.match(line)
        if m:
            table = _split_dotted(m.group(1))
            if table == dotted:
                return lineno
            if table == dotted[:-1]:
                header_line = lineno
            continue
        m = _KEY_RE.match(line)
        if m:
            key = _split_dotted(m.group(1))
            if (
                table + key == dotted
                or table + key == dotted[: len(table + key)]
                and len(table + key) < len(dotted)
            ):
                return lineno
    return header_line


# --- loading --------------------------------------------------------------------


@dataclass
class StackGraph:
    """All stacks of a project, validated, in build order (parents first)."""

    root: Path
    stacks: dict[str, Stack]
    order: list[str] = field(default_factory=list)
    _effective: dict[str, EffectiveStack] = field(default_factory=dict, repr=False)

    def parent(self, name: str) -> Stack | None:
        ext = self.stacks[name].extends
        return self.stacks[ext] if ext else None

    def ancestors(self, name: str) -> list[Stack]:
        """Root first, excluding ``name`` itself."""
        chain: list[Stack] = []
        p = self.parent(name)
        while p is not None:
            chain.append(p)
            p = self.parent(p.name)
        return chain[::-1]

    def root_of(self, name: str) -> Stack:
        chain = self.ancestors(name)
        return chain[0] if chain else self.stacks[name]

    def user(self, name: str) -> User:
        user = self.root_of(name).user
        assert user is not None
        return user

    def effective(self, name: str) -> EffectiveStack:
        """The stack with what it inherits, computed once."""
        if name not in self._effective:
            chain = (*self.ancestors(name), self.stacks[name])
            self._effective[name] = EffectiveStack(
                self.stacks[name], chain, tuple(self.platforms(name)), self.user(name)
            )
        return self._effective[name]

    def platforms(self, name: str) -> list[str]:
        return list(self.root_of(name).platforms or DEFAULT_PLATFORMS)

    def levels(self, names: list[str]) -> list[list[str]]:
        """``names`` in groups that can be built or locked together: each after all of its
        parents."""
        depth = {name: len(self.ancestors(name)) for name in names}
        return [[n for n in names if depth[n] == d] for d in sorted(set(depth.values()))]

    def select(self, names: list[str] | None) -> list[str]:
        """``names`` plus their ancestors, in build order; all stacks when ``names`` is empty."""
        if not names:
            return list(self.order)
        wanted: set[str] = set()
        for n in names:
            if n not in self.stacks:
                raise StackError(
                    f"no stack named '{n}'",
                    hint=did_you_mean(n, self.stacks) or f"stacks: {', '.join(self.order)}",
                )
            wanted.add(n)
            wanted.update(s.name for s in self.ancestors(n))
        return [n for n in self.order if n in wanted]


def stack_location(stack: Stack, root: Path, key: tuple[str, ...]) -> Location:
    """Where ``key`` is written in the stack's file (for errors of the graph and of an
    ecosystem)."""
    shown = (
        str(stack.path.relative_to(root)) if stack.path.is_relative_to(root) else str(stack.path)
    )
    return Location(shown, find_line(stack.path.read_text(encoding="utf-8"), key))
