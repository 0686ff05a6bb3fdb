"""bakegen's own build tools: uv, which installs the locked Python packages in the builder stages.

A root stack locks uv like any Python package, with its hashes, per platform
(``locks/<root>/build-tools.txt``; ``build-tools-<arch>.txt`` for each further
platform). Each builder stage installs it from that lock with pip (hash-checked)
into ``/opt/bakegen/uv``, next to the image's files, never among them: no image
gets uv. Children use their root's lock. uv then installs the stack's own lock
(``uv pip install --require-hashes --no-deps``): downloads in parallel, and
bytecode compiled on every core (see :mod:`bakegen.ecosystems.python`).

The section is optional: a lock from before bakegen locked its build tools
installs with pip, as it did; ``bakegen lock -E tools`` adds it. It is not in
the fingerprint (the stack file does not decide it), and ``bakegen lock`` keeps
the locked uv until an upgrade moves it (``--upgrade``, ``-E tools``, ``-P uv``).
"""

from __future__ import annotations

import importlib.metadata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from bakegen import __version__
from bakegen.ecosystem import Ecosystem, LockedEntry, ReadFile, ResolveContext
from bakegen.ecosystems.python import PYTHON_PLATFORMS, tool_version
from bakegen.errors import Location, StaleError
from bakegen.files import GENERATED_MARKER, sha256_text
from bakegen.lock import (
    SCHEMA_PLATFORM,
    SCHEMA_SHA,
    SCHEMA_VERSIONS,
    TOOL_PATTERN,
    StackLock,
    arch_of,
    matches,
    schema_obj,
)
from bakegen.plan import Facts, PlanContext, UvLock
from bakegen.requirements import pin_lines, read_requirements
from bakegen.resolvers.pins import DEFAULT_INDEX, Pin, PythonRequest, PythonResolver
from bakegen.stack import EffectiveStack

TOOLS = ("uv",)  # what the file may hold
FILE = "build-tools.txt"


def tools_file(platform: str, platforms: list[str]) -> str:
    return FILE if platform == platforms[0] else f"build-tools-{arch_of(platform)}.txt"


@dataclass
class ToolsLock:
    resolver: str
    by_platform: dict[str, list[Pin]]  # the stack's platforms, in its order


def render_tools(lock: StackLock, part: ToolsLock, platform: str, command: str) -> str:
    lines = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}': bakegen's build tools on "
        f"{platform},",
        "# installed in the builder stages only (no image gets them). Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
    ]
    for pin in sorted(part.by_platform[platform], key=lambda p: p.key):
        lines += pin_lines(pin)
    return "\n".join(lines) + "\n"


def local_uv() -> str:
    """The uv that this bakegen runs with: what a first lock pins."""
    return importlib.metadata.version("uv")


class Tools(Ecosystem[ToolsLock, PythonResolver]):
    name = "tools"
    audit_unchecked = "bakegen's build tool uv stays in the builder stage"
    provides = ("uv_lock",)
    resolver_of = "python"  # uv is a Python package on PyPI
    optional = True
    file_patterns = (r"build-tools\.txt", r"build-tools-[a-z0-9]+\.txt")

    def used(self, stack: EffectiveStack) -> bool:
        return stack.parent is None

    def resolve(self, ctx: ResolveContext[PythonResolver]) -> ToolsLock:
        requirements = [
            f"{tool}=={version}" if version else tool
            for tool, version in self._versions(ctx).items()
        ]
        platforms = list(ctx.stack.platforms)
        with ThreadPoolExecutor(max_workers=len(platforms)) as pool:
            found = list(
                pool.map(
                    lambda p: ctx.resolver.resolve(self._request(ctx, p, requirements)), platforms
                )
            )
        return ToolsLock(tool_version(ctx.resolver), dict(zip(platforms, found)))

    def _versions(self, ctx: ResolveContext[PythonResolver]) -> dict[str, str | None]:
        """Each tool's version: as asked (-P uv==X), the newest (an upgrade), as locked, or this
        bakegen's uv."""
        previous = ctx.previous_part(self.name)
        locked = (
            {p.key: p.version for pins in previous.by_platform.values() for p in pins}
            if previous
            else {}
        )
        moved = dict(ctx.upgrade)
        return {
            tool: moved[tool]
            if tool in moved
            else None
            if ctx.move_all
            else locked.get(tool) or local_uv()
            for tool in TOOLS
        }

    def _request(
        self, ctx: ResolveContext[PythonResolver], platform: str, requirements: list[str]
    ) -> PythonRequest:
        return PythonRequest(
            stack=ctx.stack.name,
            python_version=ctx.stack.python_version,
            platform=PYTHON_PLATFORMS[platform],
            inputs=[("bakegen's build tools", requirements)],
            index_url=ctx.index_url or DEFAULT_INDEX,
            target=platform,  # no cool-down: the pin is the uv that bakegen runs with
        )

    # --- lock files ---
    def files(self, lock: StackLock, part: ToolsLock, command: str) -> dict[str, str]:
        return {
            tools_file(p, lock.platforms): render_tools(lock, part, p, command)
            for p in lock.platforms
        }

    def section_of(self, lock: StackLock, part: ToolsLock, files: dict[str, str]) -> dict[str, Any]:
        def file(p: str) -> dict[str, str]:
            return {
                "file": tools_file(p, lock.platforms),
                "sha256": sha256_text(files[tools_file(p, lock.platforms)]),
            }

        return {
            "resolver": part.resolver,
            "files": {p: file(p) for p in lock.platforms},
            "packages": {
                p: {pin.key: pin.version for pin in sorted(pins, key=lambda x: x.key)}
                for p, pins in part.by_platform.items()
            },
        }

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> ToolsLock:
        by_platform = read_requirements(
            section["files"], list(doc["platforms"]), read_file, where, tools_file
        )
        for platform, pins in by_platform.items():
            if sorted(p.key for p in pins) != sorted(TOOLS):
                raise StaleError(
                    f"{tools_file(platform, list(doc['platforms']))} holds "
                    f"{sorted(p.key for p in pins)}, not bakegen's build tools {list(TOOLS)}",
                    location=Location(where),
                    hint="run bakegen lock -E tools",
                )
        return ToolsLock(section["resolver"], by_platform)

    def section_schema(self) -> dict[str, Any]:
        return schema_obj(
            {
                "resolver": {"type": "string"},
                "files": {
                    "type": "object",
                    "propertyNames": SCHEMA_PLATFORM,
                    "additionalProperties": schema_obj(
                        {"file": {"type": "string"}, "sha256": SCHEMA_SHA}
                    ),
                },
                "packages": {
                    "type": "object",
                    "propertyNames": SCHEMA_PLATFORM,
                    "additionalProperties": SCHEMA_VERSIONS,
                },
            }
        )

    def section_problem(self, section: dict[str, Any]) -> str | None:
        return (
            None
            if matches(section.get("resolver"), TOOL_PATTERN)
            else "tools/resolver: not what bakegen writes"
        )

    def entries(self, lock: StackLock, part: ToolsLock) -> list[LockedEntry]:
        return [
            LockedEntry(self.name, p.key, platform, p.version, p.hashes)
            for platform, pins in part.by_platform.items()
            for p in pins
        ]

    def upgrade_names(self, stack: EffectiveStack, lock: StackLock | None) -> set[str]:
        return set(TOOLS) if stack.parent is None else set()

    def summary(self, lock: StackLock, part: ToolsLock) -> str:
        return ", ".join(f"{p.key} {p.version}" for p in part.by_platform[lock.platforms[0]])

    # --- the Dockerfile ---
    def facts(self, ctx: PlanContext) -> Facts:
        """Where the builder stages find uv's lock: the root stack's (None for a lock without one:
        pip installs)."""
        root = ctx.stack.root.name
        part = ctx.locks[root].parts.get(self.name) if root in ctx.locks else None
        files = tuple(tools_file(p, ctx.locks[root].platforms) for p in ctx.locks[root].platforms)
        return replace(ctx.facts, uv_lock=UvLock(f"locks/{root}", files) if part else None)


ECOSYSTEM = Tools()
