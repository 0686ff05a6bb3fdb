"""Debian and Ubuntu packages: the ``[apt]`` table, ``apt.lock`` (version and sha256 per
architecture) and ``apt-sources.list``; ``apt.build`` packages stay in the builder stages."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Any

from debian.debian_support import Version as DebVersion
from packageurl import PackageURL

from bakegen import apt_repositories, schema
from bakegen.apt_lock import (
    APT_KINDS,
    APT_LOCK,
    APT_SOURCES,
    AptEntry,
    AptLock,
    parse_apt,
    render_apt,
    summary,
)
from bakegen.ecosystem import Ecosystem, LockedEntry, ReadFile, ResolveContext, SbomItem
from bakegen.errors import StackError, did_you_mean
from bakegen.files import sha256_text
from bakegen.instructions import Command, Mount, Run, user
from bakegen.lock import (
    SCHEMA_SHA,
    SCHEMA_VERSIONS,
    TOOL_PATTERN,
    StackLock,
    arch_of,
    matches,
    schema_obj,
)
from bakegen.plan import DOCKERFILE_DIR, ORDER_SYSTEM, Facts, PlanContext, Stage, Step, heading
from bakegen.resolvers.apt import AptRequest, AptResolver
from bakegen.resolvers.debian import DEBIAN_SUITES, UBUNTU_SUITES, AptSpec, distro_of
from bakegen.stack import EffectiveStack, StackGraph, stack_location

# the stage with the apt.build packages, which the builder stages start from
TOOLS_STAGE = "build-tools"
APT_SCRIPT = f"{DOCKERFILE_DIR}/apt-install.sh"  # the install script every apt stack mounts
PACKAGE = r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?"
KINDS = (("req", "dep"), ("build", "build-dep"))  # the kinds of (runtime, build) packages

TABLE: dict[str, Any] = {
    "packages": schema.list_of(
        schema.matching(PACKAGE, "apt package", "git or git=1:2.47.3-0+deb13u1")
    ),
    "build": schema.list_of(schema.matching(PACKAGE, "apt package", "build-essential")),
    "suite": schema.matching(r"[a-z]+", "suite", "trixie"),
    "snapshot": schema.matching(r"\d{8}T\d{6}Z", "snapshot", "20261101T000000Z"),
    "mirror": schema.matching(
        r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[A-Za-z0-9._~%+-]+)*",
        "mirror URL", "http://deb.debian.org/debian",
    ),
    "repositories": apt_repositories.TABLE,
}


def packages_of(stack: EffectiveStack) -> tuple[list[str], list[str]]:
    """The stack's own (runtime packages, build packages)."""
    table = stack.table("apt")
    return list(table.get("packages", ())), list(table.get("build", ()))


def installed_names(stack: EffectiveStack) -> set[str]:
    """The apt packages in the image: its own and its parents' runtime packages (names)."""
    return {p.partition("=")[0] for s in stack.chain for p in s.table("apt").get("packages", ())}


class Apt(Ecosystem[AptLock, AptResolver]):
    name = "apt"
    audit_unchecked = ("Debian: no security tracker is reachable from the build machines; "
                       "Debian's security updates arrive with bakegen lock -E apt")
    layer_order = ORDER_SYSTEM
    stages = (TOOLS_STAGE,)
    provides = ("tools_stage", "init")
    in_format_2 = True
    table = TABLE
    file_patterns = (re.escape(APT_LOCK), re.escape(APT_SOURCES))

    # --- the stack table ---
    def check(self, table: dict[str, Any], fields: dict[str, Any], err: Any) -> None:
        for key in ("suite", "snapshot", "mirror"):
            if "extends" in fields and key in table:
                raise err(f"'apt.{key}' can only be set on a root stack", ("apt", key),
                          "the base image decides where apt packages come from; set it in the "
                          "stack that has 'base'")

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        return apt_repositories.problems(stack, graph) or self._suite_problems(stack, graph)

    def _suite_problems(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        packages, build = packages_of(stack)
        root, suite = stack.root, stack.root_table("apt").get("suite")
        key = "packages" if packages else "build"
        if (packages or build) and suite is None:
            return [StackError(
                f"apt packages need 'apt.suite' in stacks/{root.name}.toml",
                location=stack_location(stack.stack, graph.root, ("apt", key)),
                hint=f"set [apt] suite = \"trixie\" (the Debian or Ubuntu release of {root.base}) "
                     f"in stacks/{root.name}.toml",
            )]
        suites = DEBIAN_SUITES + UBUNTU_SUITES
        if suite is not None and distro_of(suite) is None and stack.parent is None:
            return [StackError(
                f"apt.suite: unknown Debian or Ubuntu release '{suite}'",
                location=stack_location(stack.stack, graph.root, ("apt", "suite")),
                hint=did_you_mean(suite, suites) or f"use one of: {', '.join(suites)}",
            )]
        return []

    # --- locking ---
    def default_resolver(self) -> AptResolver:
        return AptResolver()

    def used(self, stack: EffectiveStack) -> bool:
        return any(packages_of(stack))

    def _source(self, stack: EffectiveStack) -> list[Any]:
        root = stack.root_table("apt")
        return [root.get("suite"), root.get("snapshot"), root.get("mirror")]

    def fingerprint(self, stack: EffectiveStack) -> Any:
        packages, build = packages_of(stack)
        if not (packages or build):
            return None
        return {"source": self._source(stack), "packages": sorted(packages), "build": sorted(build),
                **apt_repositories.fingerprint_of(apt_repositories.repositories_of(stack))}

    def parent_digest(self, lock: StackLock) -> tuple[str, str | None] | None:
        apt = lock.parts.get("apt")
        if apt is None:
            return "apt_pins", None
        return "apt_pins", hashlib.sha256(repr(sorted(apt.entries, key=repr)).encode()).hexdigest()

    def resolve(self, ctx: ResolveContext[AptResolver]) -> AptLock:
        """Pin the stack's apt packages and their dependencies per architecture; parents' pins are
        fixed."""
        suite, snapshot, mirror = self._source(ctx.stack)
        if ctx.exclude_newer and not snapshot:
            ctx.warnings.append("apt: the cool-down does not apply: the archive serves only its "
                                "current versions (apt.snapshot locks a date)")
        distro = distro_of(suite)
        assert distro is not None
        repositories = apt_repositories.repositories_of(ctx.stack)
        spec = AptSpec(distro, suite, snapshot, mirror, repositories)
        archs = [arch_of(p) for p in ctx.stack.platforms]
        fixed: dict[str, dict[str, str]] = {a: {} for a in archs}
        for lock in ctx.parents:
            if lock.parts.get("apt") is not None:
                for a in archs:
                    fixed[a].update(lock.parts["apt"].packages(a))
        preferred = self._preferred(ctx, archs)
        entries: list[AptEntry] = []
        for packages, kinds in zip(packages_of(ctx.stack), KINDS):
            if packages:
                request = AptRequest(stack=ctx.stack.name, spec=spec, archs=archs,
                                     packages=packages, fixed=fixed, preferred=preferred)
                names = {p.partition("=")[0] for p in packages}
                entries += self._entries(ctx.resolver.resolve(request), names, kinds, fixed)
        source = (spec.distro, spec.suite, spec.snapshot, spec.mirror)
        return AptLock(*source, entries, resolver=ctx.resolver.name, repositories=repositories)

    def _preferred(
        self, ctx: ResolveContext[AptResolver], archs: list[str]
    ) -> dict[str, dict[str, str]]:
        """The previous lock's versions (unless upgraded), and the versions asked for."""
        moved = {n for n, _ in ctx.upgrade}
        previous = ctx.previous_part("apt")
        preferred: dict[str, dict[str, str]] = {a: {} for a in archs}
        for a in archs:
            if previous is not None:
                kept = previous.packages(a, APT_KINDS).items()
                preferred[a].update({n: v for n, v in kept if n not in moved})
            preferred[a].update({n: v for n, v in ctx.upgrade if v})
        return preferred

    def _entries(
        self, by_arch: dict[str, Any], names: set[str], kinds: tuple[str, str],
        fixed: dict[str, dict[str, str]],
    ) -> list[AptEntry]:
        return [
            AptEntry(arch, kinds[0] if pin.name in names else kinds[1], pin.name, pin.version,
                     pin.sha256, pin.filename)
            for arch, pins in by_arch.items() for pin in pins if pin.name not in fixed[arch]
        ]

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        """Where the packages come from is the stack's; what it asks for (and the versions it pins)
        is in the lock as asked. What the resolver added (dependencies) has the same shape as the
        stack's own names."""
        part = lock.parts.get("apt")
        if part is None:
            return []
        suite, snapshot, mirror = self._source(stack)
        locked = [part.distro, part.suite, part.snapshot, part.mirror]
        facts: list[tuple[str, Any, Any]] = [
            ("apt source", locked, [distro_of(suite), suite, snapshot, mirror]),
            ("apt repositories", [apt_repositories.section(r) for r in part.repositories],
             [apt_repositories.section(r) for r in apt_repositories.repositories_of(stack)]),
        ]
        for asked, kinds in zip(packages_of(stack), KINDS):
            wanted = {p.partition("=")[0]: p.partition("=")[2] for p in asked}
            named = sorted({e.name for e in part.entries if e.kind == kinds[0]})
            kept = sorted(n for n in named if n in wanted)
            facts.append((f"apt {kinds[0]} packages", named, kept))
            pinned = sorted((e.name, e.version) for e in part.entries
                            if e.kind == kinds[0] and wanted.get(e.name))
            asked_for = sorted((n, wanted[n]) for n, _ in pinned)
            facts.append((f"apt {kinds[0]} versions", pinned, asked_for))
            if not asked and any(e.kind in kinds for e in part.entries):
                facts.append((f"apt {kinds[0]} entries", kinds[0], None))
        return facts

    def section_problem(self, section: dict[str, Any]) -> str | None:
        resolver = section.get("resolver", "python-debian")
        ok = section.get("distro") in ("debian", "ubuntu") and matches(resolver, TOOL_PATTERN)
        repositories = section.get("repositories", [])
        ok = ok and isinstance(repositories, list) and None not in (
            apt_repositories.from_section(r) for r in repositories)
        return None if ok else "apt: not what bakegen writes"

    # --- lock files ---
    def files(self, lock: StackLock, part: AptLock, command: str) -> dict[str, str]:
        text, sources = render_apt(lock, command)
        return {APT_LOCK: text, APT_SOURCES: sources}

    def section_of(self, lock: StackLock, part: AptLock, files: dict[str, str]) -> dict[str, Any]:
        return {
            "distro": part.distro, "suite": part.suite, "snapshot": part.snapshot,
            "mirror": part.mirror, "resolver": part.resolver,
            "file": APT_LOCK, "sha256": sha256_text(files[APT_LOCK]),
            "sources_file": APT_SOURCES, "sources_sha256": sha256_text(files[APT_SOURCES]),
            "packages": {arch_of(p): summary(part, arch_of(p)) for p in lock.platforms},
            **({"repositories": [apt_repositories.section(r) for r in part.repositories]}
               if part.repositories else {}),
        }

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> AptLock:
        text = read_file(section["file"], section["sha256"])
        read_file(section["sources_file"], section["sources_sha256"])  # present and not edited
        return AptLock(
            distro=section["distro"], suite=section["suite"], snapshot=section.get("snapshot"),
            mirror=section.get("mirror"), entries=parse_apt(text, f"{where}/{section['file']}"),
            resolver=section.get("resolver", "python-debian"),
            repositories=tuple(r for r in map(apt_repositories.from_section,
                                              section.get("repositories", [])) if r is not None),
        )

    def section_schema(self) -> dict[str, Any]:
        kinds = {"runtime": SCHEMA_VERSIONS, "build": SCHEMA_VERSIONS}
        summary_schema = schema_obj(kinds, ["runtime"])
        return schema_obj({
            "distro": {"enum": ["debian", "ubuntu"]},
            "suite": {"type": "string"},
            "snapshot": {"type": ["string", "null"]},
            "mirror": {"type": ["string", "null"]},
            "resolver": {"type": "string"},
            "file": {"const": APT_LOCK},
            "sha256": SCHEMA_SHA,
            "sources_file": {"const": APT_SOURCES},
            "sources_sha256": SCHEMA_SHA,
            "packages": {"type": "object", "additionalProperties": summary_schema},
            "repositories": {"type": "array", "items": {"type": "object"}},
        }, ["distro", "file", "mirror", "packages", "resolver", "sha256", "snapshot",
            "sources_file", "sources_sha256", "suite"])

    def entries(self, lock: StackLock, part: AptLock) -> list[LockedEntry]:
        platforms = {arch_of(p): p for p in lock.platforms}
        return [
            LockedEntry(self.name, e.name, platforms.get(e.arch, f"linux/{e.arch}"), e.version,
                        (f"sha256:{e.sha256}",), "build" if e.kind.startswith("build") else "")
            for e in part.entries
        ]

    def newer(self, old: str, new: str) -> bool:
        return bool(DebVersion(new) > DebVersion(old))

    def sbom_items(self, lock: StackLock, part: AptLock, platform: str) -> list[SbomItem]:
        """The runtime packages (build packages stay in the builder stage)."""
        out = []
        for e in part.entries:
            if e.arch != arch_of(platform) or e.kind not in ("req", "dep"):
                continue
            # pool/main/d/debconf/debconf_1.5.91_all.deb
            deb_arch = e.filename.removesuffix(".deb").rsplit("_", 1)[-1]
            qualifiers = {"arch": deb_arch, "distro": part.suite}
            purl = PackageURL(type="deb", namespace=part.distro, name=e.name, version=e.version,
                              qualifiers=qualifiers)
            hashes = (("sha256", e.sha256),)
            out.append(SbomItem("deb", e.name, e.version, purl, lock.stack, hashes))
        return out

    # --- the Dockerfile ---
    def facts(self, ctx: PlanContext) -> Facts:
        apt = ctx.lock.parts.get("apt")
        build = bool(apt and any(e.kind in ("build", "build-dep") for e in apt.entries))
        init = "tini" if "tini" in installed_names(ctx.stack) else None
        return replace(ctx.facts, tools_stage=TOOLS_STAGE if build else None, init=init)

    def tools_stage(self, ctx: PlanContext) -> Stage | None:
        if not ctx.facts.tools_stage:
            return None
        title = heading("build tools: the locked apt.build packages, for the builder stages only")
        steps = [Step(user("root")), Step(_install(ctx, "build"))]
        return Stage(title, ctx.from_, TOOLS_STAGE, steps)

    def final_steps(self, ctx: PlanContext) -> list[Step]:
        apt = ctx.lock.parts.get("apt")
        if not (apt and any(e.kind in ("req", "dep") for e in apt.entries)):
            return []
        why = f"Exactly the locked apt packages ({ctx.lock_dir}/apt.lock), sha256-checked."
        return [Step(_install(ctx, "runtime"), (why,), "apt packages (apt.lock)", ORDER_SYSTEM)]

    def project_templates(self, graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
        used = any(lock.parts.get("apt") is not None for lock in locks.values())
        return {APT_SCRIPT: "apt-install.sh.j2"} if used else {}


def _install(ctx: PlanContext, group: str) -> Run:
    """apt-install.sh with the lock; each step bind-mounts only the lock files it reads: a Python
    pin bump does not re-run apt."""
    mounts = (
        Mount("cache", id="bakegen-apt-cache", target="/var/cache/apt", sharing="locked"),
        Mount("cache", id="bakegen-apt-lists", target="/var/lib/apt/lists", sharing="locked"),
        *(Mount("bind", source=f"{ctx.lock_dir}/{f}", target=f"/tmp/bakegen/lock/{f}")
          for f in (APT_LOCK, APT_SOURCES)),
        Mount("bind", source=APT_SCRIPT, target="/tmp/bakegen/apt-install.sh"),
        # the third-party repositories' keys, from the stacks' folders (apt-sources.list names them)
        *(Mount("bind", source=key, target=at)
          for key, at in apt_repositories.mounted_keys(ctx.stack)),
    )
    install = Command(("sh", "/tmp/bakegen/apt-install.sh", "/tmp/bakegen/lock", group))
    return Run((install,), mounts)


ECOSYSTEM = Apt()
