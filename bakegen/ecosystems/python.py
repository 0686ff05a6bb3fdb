"""Python packages: the ``[python]`` table, its hashed pins (in pip-compile's format:
:mod:`bakegen.requirements`), the image's virtualenv.

A root stack makes ``/opt/venv`` in its final stage with uv from the builder stage
(in the builder, and copied, when it has build tools or no uv; with ``env = "base"``
it installs into a vendor image's own Python); a child installs only what its
parents lack, into a staging prefix that is copied over the parent's venv.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bakegen import python_install, schema
from bakegen.advisories import AdvisorySource, PypiAdvisories
from bakegen.cuda import cuda_labels, cuda_section
from bakegen.ecosystem import Ecosystem, LockedEntry, ReadFile, ResolveContext, SbomItem
from bakegen.errors import ResolutionError, StackError, StaleError
from bakegen.files import sha256_text
from bakegen.lock import (
    NAME_PATTERN,
    SCHEMA_PLATFORM,
    SCHEMA_SHA,
    SCHEMA_VERSIONS,
    TOOL_PATTERN,
    StackLock,
    matches,
    schema_obj,
)
from bakegen.plan import Facts, PlanContext, Stage, Step
from bakegen.python_indexes import PACKAGE_NAME, PYPI, Indexes, indexes_of
from bakegen.python_install import (
    BUILDER,
    FINISH_SCRIPT,
    ORDER,
    SLIM_SCRIPT,
    VENV,
    constraints_path,
    env_of,
    pip_of,
    render_constraints,
    requirements_file,
    shared_venv,
    slim_of,
)
from bakegen.requirements import pins_digest, pypi_items, read_requirements, render_requirements
from bakegen.resolvers.pins import DEFAULT_INDEX, Pin, PythonRequest, PythonResolver
from bakegen.resolvers.python import get_resolver
from bakegen.schema import Invalid
from bakegen.stack import EffectiveStack, StackGraph, stack_location

# Docker platform -> uv's --python-platform (glibc 2.28: every current Debian/Ubuntu base)
PYTHON_PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_28",
                    "linux/arm64": "aarch64-manylinux_2_28"}
JUPYTER_SERVER = "jupyter-server"
WORKERS = 4


@dataclass
class PythonLock:
    version: str
    resolver: str
    by_platform: dict[str, list[Pin]]  # in the stack's platform order; the first is the primary
    parents: list[str] = field(default_factory=list)

    @property
    def pins(self) -> list[Pin]:
        """The primary platform's pins."""
        return next(iter(self.by_platform.values()), [])

    def by_name(self, platform: str | None = None) -> dict[str, Pin]:
        pins = self.by_platform[platform] if platform else self.pins
        return {p.key: p for p in pins}


# --- the [python] table -------------------------------------------------------------


def _requirement(value: Any) -> str:
    value = schema.text(value)
    try:
        req = Requirement(value)
    except InvalidRequirement as exc:
        detail = str(exc).splitlines()[0]
        raise Invalid(f"invalid requirement {schema.shown(value)}: {detail}",
                      "write a PEP 508 requirement such as 'numpy>=2.1' or 'pandas[excel]~=2.2'",
                      value) from None
    if req.url:
        raise Invalid(f"requirement {schema.shown(value)} is a direct URL",
                      "name a package from the index, with a version range", value)
    return value


TABLE: dict[str, Any] = {
    "version": schema.matching(r"3\.\d{1,2}", "Python version", "3.13"),
    "packages": schema.list_of(_requirement),
    "env": schema.one_of("venv", "base"),
    "interpreter": schema.matching(r"/(?:[A-Za-z0-9._+-]+/)*[A-Za-z0-9._+-]+", "interpreter path",
                                   "/opt/conda/bin/python"),
    "slim": schema.boolean,
    "pip": schema.boolean,
    "sdists": schema.boolean,
    "index_url": schema.source_url,
    "extra_index_urls": schema.list_of(schema.source_url),
    "sources": schema.table_of(schema.matching(PACKAGE_NAME, "package name", "acme-tools"),
                               schema.source_url),
}


def stack_indexes(stack: EffectiveStack) -> Indexes:
    return indexes_of([s.table("python") for s in stack.chain], canonicalize_name)


def packages_of(stack: EffectiveStack) -> list[str]:
    return list(stack.table("python").get("packages", ()))


def canonical_requirements(packages: list[str]) -> list[str]:
    """Requirement strings normalized for hashing: canonical names, sorted."""
    out = []
    for text in packages:
        req = Requirement(text)
        req.name = canonicalize_name(req.name)
        out.append(str(req))
    return sorted(out)


class Python(Ecosystem[PythonLock, PythonResolver]):
    name = "python"
    build_secrets = (python_install.NETRC_SECRET,)
    layer_order = ORDER + 2  # the vendor install; the venv and the constraints come before it
    in_format_2 = True
    always_locked = True  # every image has a Python: the section is never null
    stages = (BUILDER,)
    provides = ("server_here", "server_python", "image_user")
    reads = ("base_user",)
    table = TABLE
    file_patterns = (r"requirements\.txt", r"requirements-[a-z0-9]+\.txt")

    # --- the stack table ---
    def check(self, table: dict[str, Any], fields: dict[str, Any], err: Any) -> None:
        env = table.get("env", "venv")
        if table.get("pip") and env == "base":
            raise err("'python.pip' is for bakegen's virtualenv, and this stack installs into its "
                      "base image's Python", ("python", "pip"),
                      "remove pip: the base image's Python has its own")
        if "interpreter" in table and env != "base":
            raise err("'python.interpreter' needs python.env = \"base\"", ("python", "interpreter"),
                      'set env = "base" to install into the base image\'s own Python')
        if "base" in fields and "version" not in table:
            raise err("missing 'python.version' for a stack with a base image", ("python",),
                      'add [python] version = "3.13" matching the base image')
        for key in ("env", "interpreter", "pip"):
            if "extends" in fields and key in table:
                raise err(f"'python.{key}' can only be set on a root stack", ("python", key),
                          "a child uses its parent's Python")

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        errors = []
        own = stack.table("python")
        if own.get("slim") and env_of(stack) == "base":
            errors.append(StackError(
                "python.slim needs bakegen's own virtualenv, and this stack installs into its base "
                "image's Python",
                location=stack_location(stack.stack, graph.root, ("python", "slim")),
                hint=f'remove slim, or set [python] env = "venv" in stacks/{stack.root.name}.toml'))
        if (stack.parent is not None and "version" in own
                and own["version"] != stack.python_version):
            errors.append(StackError(
                f"python.version '{own['version']}' differs from '{stack.python_version}' "
                f"inherited from '{stack.parent.name}'",
                location=stack_location(stack.stack, graph.root, ("python", "version")),
                hint="a child stack runs its parent's Python: remove python.version or make it "
                "match"))
        return errors

    # --- locking ---
    def default_resolver(self) -> PythonResolver:
        return get_resolver("uv")

    def used(self, stack: EffectiveStack) -> bool:
        return True

    def _options(self, stack: EffectiveStack) -> dict[str, bool]:
        """Settings that change what resolves; keys only when set, so old fingerprints hold."""
        pip = {"pip": True} if self._ships_pip(stack) else {}
        return {**pip, **({"sdists": True} if stack.table("python").get("sdists") else {})}

    def _ships_pip(self, stack: EffectiveStack) -> bool:
        """A root stack that ships pip locks it."""
        return stack.parent is None and pip_of(stack)

    def fingerprint(self, stack: EffectiveStack) -> Any:
        return {"version": stack.python_version,
                "requirements": canonical_requirements(packages_of(stack)), **self._options(stack),
                **stack_indexes(stack).fingerprint()}

    def parent_digest(self, lock: StackLock) -> tuple[str, str | None] | None:
        return "python_pins", pins_digest(lock.parts["python"].by_platform)

    def _inputs(self, stack: EffectiveStack) -> list[tuple[str, list[str]]]:
        inputs = [(f"stacks/{s.name}.toml", list(s.table("python")["packages"]))
                  for s in stack.chain if s.table("python").get("packages")]
        if self._ships_pip(stack) and not any(
                canonicalize_name(Requirement(r).name) == "pip" for r in packages_of(stack)):
            inputs.append((f"stacks/{stack.name}.toml [python] pip", ["pip"]))
        return inputs

    def resolve(self, ctx: ResolveContext[PythonResolver]) -> PythonLock:
        stack = ctx.stack
        active = bool(packages_of(stack) or self._ships_pip(stack))
        existing = ctx.existing.parts.get("python") if ctx.existing else None
        return PythonLock(
            version=stack.python_version,
            resolver=tool_version(ctx.resolver) if active
            else (existing.resolver if existing else "none"),
            by_platform=self._resolve_pins(ctx) if active and self._inputs(stack)
            else {p: [] for p in stack.platforms},
            parents=[a.name for a in stack.ancestors],
        )

    def _resolve_pins(self, ctx: ResolveContext[PythonResolver]) -> dict[str, list[Pin]]:
        """The pins of each platform, resolved at the same time; only what the parents lack."""
        platforms = list(ctx.stack.platforms)
        requests = [self._request(ctx, platform) for platform in platforms]
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(platforms))) as pool:
            results = list(pool.map(ctx.resolver.resolve, requests))
        return {p: _delta(ctx.stack.name, pins, _parent_env(ctx.parents, p))
                for p, pins in zip(platforms, results)}

    def _request(self, ctx: ResolveContext[PythonResolver], platform: str) -> PythonRequest:
        platforms = list(ctx.stack.platforms)
        previous = ctx.previous_part("python")
        return PythonRequest(
            stack=ctx.stack.name,
            python_version=ctx.stack.python_version,
            platform=PYTHON_PLATFORMS[platform],
            inputs=self._inputs(ctx.stack),
            constraints=[
                (f"locks/{lock.stack}/{requirements_file(platform, platforms)}",
                 lock.parts["python"].by_platform[platform])
                for lock in ctx.parents if lock.parts["python"].by_platform.get(platform)
            ],
            index_url=ctx.index_url or DEFAULT_INDEX,
            preferences=list(_parent_env(ctx.parents, platform).values())
            + (previous.by_platform.get(platform, []) if previous else []),
            upgrade=[f"{n}=={v}" if v else n for n, v in ctx.upgrade],
            allow_sdists=bool(ctx.stack.table("python").get("sdists")),
            exclude_newer=ctx.exclude_newer,
            indexes=stack_indexes(ctx.stack),
            target=platform,
        )

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        part = lock.parts["python"]
        indexes = stack_indexes(stack)
        pins = [p for by_platform in part.by_platform.values() for p in by_platform]
        allowed = {*indexes.all(PYPI), PYPI}
        foreign = sorted({p.index for p in pins if p.index and p.index.rstrip("/") not in allowed})
        elsewhere = sorted({p.key for p in pins if p.key in indexes.sources
                            and p.index.rstrip("/") != indexes.sources[p.key].rstrip("/")})
        return [("python version", part.version, stack.python_version),
                ("python parents", part.parents, [a.name for a in stack.ancestors]),
                ("python indexes the stack does not name", foreign, []),
                ("python sources not from their own index", elsewhere, [])]

    # --- lock files ---
    def files(self, lock: StackLock, part: PythonLock, command: str) -> dict[str, str]:
        return {requirements_file(p, lock.platforms): render_requirements(lock, p, command)
                for p in lock.platforms}

    def section_of(self, lock: StackLock, part: PythonLock,
                   files: dict[str, str]) -> dict[str, Any]:
        def file(p: str) -> str:
            return requirements_file(p, lock.platforms)

        packages = {p: {pin.key: pin.version for pin in sorted(pins, key=lambda x: x.key)}
                    for p, pins in part.by_platform.items()}
        cuda = cuda_section(packages)
        return {
            "version": part.version,
            "resolver": part.resolver,
            "parents": part.parents,
            "files": {p: {"file": file(p), "sha256": sha256_text(files[file(p)])}
                      for p in lock.platforms},
            "packages": packages,
            **({"cuda": cuda} if cuda else {}),  # derived from the packages, for reviewers
        }

    def read(self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any],
             where: str) -> PythonLock:
        by_platform = read_requirements(section["files"], list(doc["platforms"]), read_file, where,
                                        requirements_file)
        if section.get("packages") != {p: {pin.key: pin.version for pin in pins}
                                       for p, pins in by_platform.items()}:
            raise StaleError(f"{where}/lock.json: python/packages is not what the requirements "
                             "files pin", hint="run bakegen lock")
        return PythonLock(version=section["version"], resolver=section["resolver"],
                          parents=list(section.get("parents", [])), by_platform=by_platform)

    def section_schema(self) -> dict[str, Any]:
        return schema_obj({
            "version": {"type": "string", "pattern": "^3\\.[0-9]+$"},
            "resolver": {"type": "string"},
            "parents": {"type": "array", "items": {"type": "string"}},
            "files": {"type": "object", "propertyNames": SCHEMA_PLATFORM,
                      "additionalProperties": schema_obj({"file": {"type": "string"},
                                                          "sha256": SCHEMA_SHA})},
            "packages": {"type": "object", "propertyNames": SCHEMA_PLATFORM,
                         "additionalProperties": SCHEMA_VERSIONS},
            "cuda": {"type": "object", "propertyNames": SCHEMA_PLATFORM,
                     "additionalProperties": schema_obj({k: {"type": "string"} for k in
                                                         ("version", "variant", "min_driver")})},
        }, ["files", "packages", "parents", "resolver", "version"])

    def section_problem(self, section: dict[str, Any]) -> str | None:
        parents = section.get("parents", [])
        checks = [
            ("python/version", matches(section.get("version"), r"3\.[0-9]{1,2}")),
            ("python/resolver", section.get("resolver") == "none"
             or matches(section.get("resolver"), TOOL_PATTERN)),
            ("python/parents", isinstance(parents, list)
             and all(matches(p, NAME_PATTERN) for p in parents)),
            ("python/cuda", section.get("cuda", {}) == cuda_section(section.get("packages", {}))),
        ]
        return next((f"{where}: not what bakegen writes" for where, ok in checks if not ok), None)

    def labels(self, locks: list[StackLock]) -> dict[str, str]:
        """The CUDA the image's packages (its chain's) were built for, and the oldest driver that
        runs them."""
        packages: dict[str, dict[str, str]] = {p: {} for p in locks[-1].platforms}
        for lock in locks:
            part = lock.parts.get("python")
            for platform, pins in (part.by_platform.items() if part else ()):
                packages.setdefault(platform, {}).update({pin.key: pin.version for pin in pins})
        return cuda_labels(packages)

    def entries(self, lock: StackLock, part: PythonLock) -> list[LockedEntry]:
        return [LockedEntry(self.name, p.key, platform, p.version, p.hashes, source=p.index)
                for platform, pins in part.by_platform.items() for p in pins]

    def normalize(self, name: str) -> str:
        return canonicalize_name(name)

    def advisory_source(self, index_url: str) -> AdvisorySource:
        """PyPI's JSON API, at the index's root (``https://pypi.org`` for ``.../simple``)."""
        return PypiAdvisories(index_url.rstrip("/").removesuffix("/simple"))

    def newer(self, old: str, new: str) -> bool:
        return version_newer(old, new)

    def sbom_items(self, lock: StackLock, part: PythonLock, platform: str) -> list[SbomItem]:
        return pypi_items(lock.stack, part.by_platform.get(platform, []))

    # --- the Dockerfile ---
    def facts(self, ctx: PlanContext) -> Facts:
        vendor = env_of(ctx.stack) == "base"
        parent = ctx.stack.parent
        interpreter = ctx.stack.root_table("python").get("interpreter", "")
        return replace(
            ctx.facts,
            server_here=has_server(ctx.graph, ctx.name, ctx.locks) and not (
                parent is not None and has_server(ctx.graph, parent.name, ctx.locks)),
            server_python=(interpreter or "python3") if vendor else f"{VENV}/bin/python",
            image_user=ctx.facts.base_user if vendor and not ctx.stack.root.user_declared else None,
        )

    def builder_stages(self, ctx: PlanContext) -> list[Stage]:
        return python_install.builder_stages(ctx)

    def final_steps(self, ctx: PlanContext) -> list[Step]:
        return python_install.final_steps(ctx)

    def generated_files(self, ctx: PlanContext) -> dict[str, str]:
        if not shared_venv(ctx):
            return {}
        return {constraints_path(ctx.name, p): render_constraints(ctx, p)
                for p in ctx.lock.platforms}

    def project_templates(self, graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
        slim = any(slim_of(graph.effective(n)) and locks[n].parts["python"].pins
                   for n in graph.order)
        finish = any(env_of(graph.effective(n)) == "venv" and locks[n].parts["python"].pins
                     for n in graph.order)
        return {**({SLIM_SCRIPT: "bakegen-slim.py.j2"} if slim else {}),
                **({FINISH_SCRIPT: "bakegen-finish.py.j2"} if finish else {})}


_TOOLS: dict[int, str] = {}
_TOOLS_LOCK = threading.Lock()


def tool_version(resolver: Any) -> str:
    """The resolver's name and version ("uv 0.9.5"), asked once per resolver."""
    with _TOOLS_LOCK:
        if id(resolver) not in _TOOLS:
            _TOOLS[id(resolver)] = resolver.version()
        return _TOOLS[id(resolver)]


def version_newer(old: str, new: str) -> bool:
    try:
        return Version(new) > Version(old)
    except InvalidVersion:
        return new > old


def _parent_env(parents: list[StackLock], platform: str) -> dict[str, Pin]:
    """The Python pins the parents install on ``platform``."""
    env: dict[str, Pin] = {}
    for lock in parents:
        env.update({p.key: p for p in lock.parts["python"].by_platform.get(platform, [])})
    return env


def _delta(name: str, full: list[Pin], parent_env: dict[str, Pin]) -> list[Pin]:
    """What ``name`` installs on top of its parents; refuses any moved parent pin."""
    out = []
    for pin in full:
        have = parent_env.get(pin.key)
        if have is None:
            out.append(pin)
        elif have.version != pin.version:
            raise ResolutionError(
                f"{name}: the resolver moved {pin.key} from {have.version} (pinned by a parent) "
                f"to {pin.version}",
                hint="a child stack cannot change a parent's pin; change the parent stack instead",
            )
    return out


def has_server(graph: StackGraph, name: str, locks: dict[str, StackLock]) -> bool:
    """Does the image of ``name`` have a Jupyter server? (A vendor notebook image has its own.)"""
    stack = graph.effective(name)
    if env_of(stack) == "base":
        return True
    return any(JUPYTER_SERVER in locks[s.name].parts["python"].by_name(p)
               for s in stack.chain for p in locks[s.name].parts["python"].by_platform)


ECOSYSTEM = Python()
