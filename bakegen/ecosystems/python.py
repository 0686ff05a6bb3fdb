"""Python packages: the ``[python]`` table, pip-compile-style hashed requirements, the image's virtualenv.

A root stack makes ``/opt/venv`` in its final stage with uv from the builder stage
(in the builder, and copied, when it has build tools or no uv; with ``env = "base"``
it installs into a vendor image's own Python); a child installs only what its
parents lack, into a staging prefix that is copied over the parent's venv.
"""

from __future__ import annotations

import hashlib
import shlex
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from packageurl import PackageURL
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bakegen import __version__, schema
from bakegen.ecosystem import Ecosystem, LockedEntry, ReadFile, ResolveContext, SbomItem
from bakegen.errors import Location, ResolutionError, StackError, StaleError
from bakegen.files import GENERATED_MARKER, sha256_text
from bakegen.lock import NAME_PATTERN, SCHEMA_PLATFORM, SCHEMA_SHA, SCHEMA_VERSIONS, TOOL_PATTERN, StackLock, arch_of, matches, schema_obj
from bakegen.plan import DOCKERFILE_DIR, ORDER_PACKAGES, Facts, PlanContext, Stage, Step, heading
from bakegen.resolvers.python import DEFAULT_INDEX, Pin, PythonRequest, PythonResolver, get_resolver, parse_requirements
from bakegen.schema import Invalid
from bakegen.stack import EffectiveStack, StackGraph, stack_location

REQUIREMENTS = "requirements.txt"
# Docker platform -> uv's --python-platform (glibc 2.28: every current Debian/Ubuntu base)
PYTHON_PLATFORMS = {"linux/amd64": "x86_64-manylinux_2_28", "linux/arm64": "aarch64-manylinux_2_28"}
VENV = "/opt/venv"
BUILDER = "builder"  # the stage that makes the virtualenv
STAGING = "/opt/bakegen/staging"
JUPYTER_SERVER = "jupyter-server"
ORDER = ORDER_PACKAGES + 10  # after npm and applications: Python pins move most often
VENV_LAYER = "Python virtualenv (requirements.txt)"  # a root stack's virtualenv layer, as bakegen report names it
WORKERS = 4
SLIM_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-slim.py"  # the slim step's pruning script


def requirements_file(platform: str, platforms: list[str]) -> str:
    """The Python lock file of ``platform``: the first platform's is ``requirements.txt``."""
    return REQUIREMENTS if platform == platforms[0] else f"requirements-{arch_of(platform)}.txt"


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
        raise Invalid(f"invalid requirement {schema.shown(value)}: {detail}", "write a PEP 508 requirement such as 'numpy>=2.1' or 'pandas[excel]~=2.2'", value) from None
    if req.url:
        raise Invalid(f"requirement {schema.shown(value)} is a direct URL", "name a package from the index, with a version range", value)
    return value


TABLE: dict[str, Any] = {
    "version": schema.matching(r"3\.\d{1,2}", "Python version", "3.13"),
    "packages": schema.list_of(_requirement),
    "env": schema.one_of("venv", "base"),
    "interpreter": schema.matching(r"/(?:[A-Za-z0-9._+-]+/)*[A-Za-z0-9._+-]+", "interpreter path", "/opt/conda/bin/python"),
    "slim": schema.boolean,
    "pip": schema.boolean,
    "sdists": schema.boolean,
}


def env_of(stack: EffectiveStack) -> str:
    """"venv": bakegen's /opt/venv; "base": the base image's own Python (vendor images)."""
    return str(stack.root_table("python").get("env", "venv"))


def pip_of(stack: EffectiveStack) -> bool:
    """Is pip in the image's virtualenv, for runtime installs? ([python] pip of the root; default true with env = "venv".)"""
    return env_of(stack) == "venv" and stack.root_table("python").get("pip") is not False


def slim_of(stack: EffectiveStack) -> bool:
    """``[python] slim`` of the stack, else of its nearest ancestor that sets it; False when none does."""
    return bool(stack.nearest("python", "slim", False))


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


# --- the lock file ---------------------------------------------------------------------


def render_requirements(lock: StackLock, platform: str | None = None, command: str = "bakegen lock") -> str:
    """Render pip-compile's format. Deterministic: pins sorted by name, hashes sorted."""
    py = lock.parts["python"]
    platform = platform or lock.platforms[0]
    lines = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}', Python {py.version} on {platform}.",
        f"# Resolved with {py.resolver}. Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
    ]
    if py.parents:
        lines.append("# Installed on top of (never moves their pins):")
        lines.extend(f"#    locks/{p}/{REQUIREMENTS}" for p in py.parents)
        lines.append("#")
    for pin in sorted(py.by_platform[platform], key=lambda p: p.key):
        lines += pin_lines(pin)
    return "\n".join(lines) + "\n"


def pin_lines(pin: Pin) -> list[str]:
    lines = [f"{pin.key}=={pin.version}" + (" \\" if pin.hashes else "")]
    lines += [f"    --hash={h}" + (" \\" if i < len(pin.hashes) - 1 else "") for i, h in enumerate(pin.hashes)]
    if len(pin.via) == 1:
        lines.append(f"    # via {pin.via[0]}")
    elif pin.via:
        lines.append("    # via")
        lines.extend(f"    #   {v}" for v in pin.via)
    return lines


def pins_digest(by_platform: dict[str, list[Pin]]) -> str:
    text = "".join(
        f"{platform} {p.key}=={p.version} {' '.join(p.hashes)}\n"
        for platform, pins in sorted(by_platform.items())
        for p in sorted(pins, key=lambda p: p.key)
    )
    return hashlib.sha256(text.encode()).hexdigest()


def read_requirements(files: dict[str, Any], platforms: list[str], read_file: ReadFile, where: str,
                      name_of: Callable[[str, list[str]], str]) -> dict[str, list[Pin]]:
    """The hashed pins of each platform, from the lock files the manifest names: one per platform, each named as
    bakegen names it (the file the Dockerfile mounts), read strictly (no option line, a hash for every pin)."""
    if set(files) != set(platforms):
        raise StaleError(f"the lock's files are for {sorted(files)}, its platforms are {platforms}", location=Location(where), hint="run bakegen lock")
    out = {}
    for platform in platforms:
        name = name_of(platform, platforms)
        if files[platform]["file"] != name:
            raise StaleError(f"the manifest names {str(files[platform]['file'])[:80]!r} for {platform}, not {name}", location=Location(where), hint="run bakegen lock")
        out[platform] = parse_requirements(read_file(name, files[platform]["sha256"]), f"{where}/{name}", strict=True)
    return out


class Python(Ecosystem[PythonLock, PythonResolver]):
    name = "python"
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
            raise err("'python.pip' is for bakegen's virtualenv, and this stack installs into its base image's Python", ("python", "pip"), "remove pip: the base image's Python has its own")
        if "interpreter" in table and env != "base":
            raise err("'python.interpreter' needs python.env = \"base\"", ("python", "interpreter"), 'set env = "base" to install into the base image\'s own Python')
        if "base" in fields and "version" not in table:
            raise err("missing 'python.version' for a stack with a base image", ("python",), 'add [python] version = "3.13" matching the base image')
        for key in ("env", "interpreter", "pip"):
            if "extends" in fields and key in table:
                raise err(f"'python.{key}' can only be set on a root stack", ("python", key), "a child uses its parent's Python")

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        errors = []
        own = stack.table("python")
        if own.get("slim") and env_of(stack) == "base":
            errors.append(StackError("python.slim needs bakegen's own virtualenv, and this stack installs into its base image's Python",
                                     location=stack_location(stack.stack, graph.root, ("python", "slim")),
                                     hint=f"remove slim, or set [python] env = \"venv\" in stacks/{stack.root.name}.toml"))
        if stack.parent is not None and "version" in own and own["version"] != stack.python_version:
            errors.append(StackError(f"python.version '{own['version']}' differs from '{stack.python_version}' inherited from '{stack.parent.name}'",
                                     location=stack_location(stack.stack, graph.root, ("python", "version")),
                                     hint="a child stack runs its parent's Python: remove python.version or make it match"))
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
        return {"version": stack.python_version, "requirements": canonical_requirements(packages_of(stack)), **self._options(stack)}

    def parent_digest(self, lock: StackLock) -> tuple[str, str | None] | None:
        return "python_pins", pins_digest(lock.parts["python"].by_platform)

    def _inputs(self, stack: EffectiveStack) -> list[tuple[str, list[str]]]:
        inputs = [(f"stacks/{s.name}.toml", list(s.table("python")["packages"])) for s in stack.chain if s.table("python").get("packages")]
        if self._ships_pip(stack) and not any(canonicalize_name(Requirement(r).name) == "pip" for r in packages_of(stack)):
            inputs.append((f"stacks/{stack.name}.toml [python] pip", ["pip"]))
        return inputs

    def resolve(self, ctx: ResolveContext[PythonResolver]) -> PythonLock:
        stack = ctx.stack
        active = bool(packages_of(stack) or self._ships_pip(stack))
        existing = ctx.existing.parts.get("python") if ctx.existing else None
        return PythonLock(
            version=stack.python_version,
            resolver=tool_version(ctx.resolver) if active else (existing.resolver if existing else "none"),
            by_platform=self._resolve_pins(ctx) if active and self._inputs(stack) else {p: [] for p in stack.platforms},
            parents=[a.name for a in stack.ancestors],
        )

    def _resolve_pins(self, ctx: ResolveContext[PythonResolver]) -> dict[str, list[Pin]]:
        """The pins of each platform, resolved at the same time; only what the parents lack."""
        platforms = list(ctx.stack.platforms)
        requests = [self._request(ctx, platform) for platform in platforms]
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(platforms))) as pool:
            results = list(pool.map(ctx.resolver.resolve, requests))
        return {p: _delta(ctx.stack.name, pins, _parent_env(ctx.parents, p)) for p, pins in zip(platforms, results)}

    def _request(self, ctx: ResolveContext[PythonResolver], platform: str) -> PythonRequest:
        platforms = list(ctx.stack.platforms)
        previous = ctx.previous_part("python")
        return PythonRequest(
            stack=ctx.stack.name,
            python_version=ctx.stack.python_version,
            platform=PYTHON_PLATFORMS[platform],
            inputs=self._inputs(ctx.stack),
            constraints=[
                (f"locks/{lock.stack}/{requirements_file(platform, platforms)}", lock.parts["python"].by_platform[platform])
                for lock in ctx.parents if lock.parts["python"].by_platform.get(platform)
            ],
            index_url=ctx.index_url or DEFAULT_INDEX,
            preferences=list(_parent_env(ctx.parents, platform).values()) + (previous.by_platform.get(platform, []) if previous else []),
            upgrade=[f"{n}=={v}" if v else n for n, v in ctx.upgrade],
            allow_sdists=bool(ctx.stack.table("python").get("sdists")),
            target=platform,
        )

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        part = lock.parts["python"]
        return [("python version", part.version, stack.python_version), ("python parents", part.parents, [a.name for a in stack.ancestors])]

    # --- lock files ---
    def files(self, lock: StackLock, part: PythonLock, command: str) -> dict[str, str]:
        return {requirements_file(p, lock.platforms): render_requirements(lock, p, command) for p in lock.platforms}

    def section_of(self, lock: StackLock, part: PythonLock, files: dict[str, str]) -> dict[str, Any]:
        def file(p: str) -> str:
            return requirements_file(p, lock.platforms)

        return {
            "version": part.version,
            "resolver": part.resolver,
            "parents": part.parents,
            "files": {p: {"file": file(p), "sha256": sha256_text(files[file(p)])} for p in lock.platforms},
            "packages": {p: {pin.key: pin.version for pin in sorted(pins, key=lambda x: x.key)} for p, pins in part.by_platform.items()},
        }

    def read(self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str) -> PythonLock:
        return PythonLock(version=section["version"], resolver=section["resolver"], parents=list(section.get("parents", [])),
                          by_platform=read_requirements(section["files"], list(doc["platforms"]), read_file, where, requirements_file))

    def section_schema(self) -> dict[str, Any]:
        return schema_obj({
            "version": {"type": "string", "pattern": "^3\\.[0-9]+$"},
            "resolver": {"type": "string"},
            "parents": {"type": "array", "items": {"type": "string"}},
            "files": {"type": "object", "propertyNames": SCHEMA_PLATFORM, "additionalProperties": schema_obj({"file": {"type": "string"}, "sha256": SCHEMA_SHA})},
            "packages": {"type": "object", "propertyNames": SCHEMA_PLATFORM, "additionalProperties": SCHEMA_VERSIONS},
        })

    def section_problem(self, section: dict[str, Any]) -> str | None:
        checks = [
            ("python/version", matches(section.get("version"), r"3\.[0-9]{1,2}")),
            ("python/resolver", section.get("resolver") == "none" or matches(section.get("resolver"), TOOL_PATTERN)),
            ("python/parents", isinstance(section.get("parents", []), list) and all(matches(p, NAME_PATTERN) for p in section.get("parents", []))),
        ]
        return next((f"{where}: not what bakegen writes" for where, ok in checks if not ok), None)

    def entries(self, lock: StackLock, part: PythonLock) -> list[LockedEntry]:
        return [LockedEntry(self.name, p.key, platform, p.version, p.hashes) for platform, pins in part.by_platform.items() for p in pins]

    def normalize(self, name: str) -> str:
        return canonicalize_name(name)

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
            server_here=has_server(ctx.graph, ctx.name, ctx.locks) and not (parent is not None and has_server(ctx.graph, parent.name, ctx.locks)),
            server_python=(interpreter or "python3") if vendor else f"{VENV}/bin/python",
            image_user=ctx.facts.base_user if vendor and not ctx.stack.root.user_declared else None,
        )

    def builder_stages(self, ctx: PlanContext) -> list[Stage]:
        vendor, has_python = env_of(ctx.stack) == "base", bool(ctx.lock.parts["python"].pins)
        if vendor or (ctx.parent and not has_python):
            return []
        if _in_final(ctx):
            return [Stage(heading("builder: uv, the installer, stays in this stage"), ctx.tools, BUILDER, [Step("USER root"), *uv_steps(ctx)])]
        stage = Stage(heading("builder: build tools and the pip cache stay in this stage"), ctx.tools, BUILDER, [Step("USER root")])
        if not ctx.parent:  # with uv, pip is in the virtualenv when the lock has it ([python] pip)
            stage.steps.append(Step(f"RUN python3 -m venv {'--without-pip ' if _uv(ctx) else ''}{VENV}"))
        if has_python:
            stage.steps += (uv_steps(ctx) if _uv(ctx) else []) + _install_steps(ctx)
        return [stage]

    def final_steps(self, ctx: PlanContext) -> list[Step]:
        vendor, has_python = env_of(ctx.stack) == "base", bool(ctx.lock.parts["python"].pins)
        steps = []
        if not ctx.parent and not vendor:  # the virtualenv: made here, or copied from the builder
            made = _install_steps(ctx, final=True) if _in_final(ctx) else [Step(f"COPY --from={BUILDER} {VENV} {VENV}", layer=VENV_LAYER, order=ORDER)]
            steps += [*made, Step(f"ENV VIRTUAL_ENV={VENV} \\\n    PATH={VENV}/bin:$PATH", order=ORDER)]
        elif has_python and not vendor:
            steps.append(Step(f"COPY --from={BUILDER} {STAGING}/ {VENV}/", layer="Python packages (requirements.txt)", order=ORDER))
        if _shared_venv(ctx):
            steps += _constraints_steps(ctx)
        if has_python and vendor:
            steps.append(_vendor_install(ctx))
        return steps

    def generated_files(self, ctx: PlanContext) -> dict[str, str]:
        if not _shared_venv(ctx):
            return {}
        return {constraints_path(ctx.name, p): render_constraints(ctx, p) for p in ctx.lock.platforms}

    def project_templates(self, graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
        slim = any(slim_of(graph.effective(n)) and locks[n].parts["python"].pins for n in graph.order)
        finish = any(env_of(graph.effective(n)) == "venv" and locks[n].parts["python"].pins for n in graph.order)
        return {**({SLIM_SCRIPT: "bakegen-slim.py.j2"} if slim else {}), **({FINISH_SCRIPT: "bakegen-finish.py.j2"} if finish else {})}


def pypi_items(stack: str, pins: list[Pin]) -> list[SbomItem]:
    """SBOM components of Python distributions (``pkg:pypi``), with their sha256 hashes."""
    return [
        SbomItem("pypi", pin.key, pin.version, PackageURL(type="pypi", name=pin.key, version=pin.version), stack,
                 tuple(("sha256", h.removeprefix("sha256:")) for h in pin.hashes))
        for pin in pins
    ]


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
                f"{name}: the resolver moved {pin.key} from {have.version} (pinned by a parent) to {pin.version}",
                hint="a child stack cannot change a parent's pin; change the parent stack instead",
            )
    return out


def has_server(graph: StackGraph, name: str, locks: dict[str, StackLock]) -> bool:
    """Does the image of ``name`` have a Jupyter server? (A vendor notebook image has its own.)"""
    stack = graph.effective(name)
    if env_of(stack) == "base":
        return True
    return any(JUPYTER_SERVER in locks[s.name].parts["python"].by_name(p) for s in stack.chain for p in locks[s.name].parts["python"].by_platform)


# --- build steps -----------------------------------------------------------------------

# The cache mount is root's; a child's builder inherits HOME=/home/<user> from its parent, where pip would
# find no writable cache and download every wheel again.
PIP_CACHE = "PIP_CACHE_DIR=/root/.cache/pip"
_PIP = f"PIP_CONSTRAINT= {PIP_CACHE} {VENV}/bin/pip install --no-input --disable-pip-version-check --require-hashes --no-deps --no-compile"
PIP_CACERT = "if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi"
_PIP_CACHE = "--mount=type=cache,id=bakegen-pip,target=/root/.cache/pip"
# uv (bakegen's build tool, locked by the root stack: ecosystems/tools.py), in the builder stages only
UV_PREFIX = "/opt/bakegen/uv"
UV = f"{UV_PREFIX}/bin/uv"
UV_CACHE = "--mount=type=cache,id=bakegen-uv,target=/root/.cache/uv"
UV_CACERT = "if [ -s /run/secrets/cacert ]; then export SSL_CERT_FILE=/run/secrets/cacert; fi"
# pip for the uv install: run from the wheel that python3-pip-whl (Debian) or else ensurepip (python.org) ships, or
# from a virtualenv made for it when the base image has no such wheel
DEBIAN_PIP_WHEELS = "/usr/share/python-wheels"  # Debian's python3-pip-whl, which its python3 -m venv installs pip from
PIP_WHEEL = (f"    pip=; for w in {DEBIAN_PIP_WHEELS}/pip-*.whl \"$(python3 -c 'import ensurepip, os; print(os.path.dirname(ensurepip.__file__))' 2>/dev/null)\"/_bundled/pip-*.whl; do \\\n"
             '        if [ -f "$w" ]; then pip="python3 $w/pip"; break; fi; \\\n'
             '    done; \\\n'
             '    if [ -z "$pip" ]; then python3 -m venv /opt/bakegen/pip && pip=/opt/bakegen/pip/bin/pip; fi; \\\n')
# --link-mode copy: the cache is another file system (a cache mount); files are copied, never linked to it
UV_INSTALL = f"{UV} pip install --no-config --quiet --cache-dir /root/.cache/uv --link-mode copy --require-hashes --no-deps"
FINISH_SCRIPT = f"{DOCKERFILE_DIR}/bakegen-finish.py"  # bytecode (sharded: bit for bit), duplicates linked, group access
FINISH_MOUNT = f"--mount=type=bind,source={FINISH_SCRIPT},target=/tmp/bakegen/finish.py"


def _uv(ctx: PlanContext) -> bool:
    """Does this stack's builder install with uv (its root's lock has bakegen's build tools)?"""
    return ctx.facts.uv_lock is not None


def _in_final(ctx: PlanContext) -> bool:
    """Is the root stack's virtualenv made in the final stage, with the builder's uv mounted? Yes when the builder
    would start from the same image (no build tools): copying the virtualenv over wrote it twice and made BuildKit
    hash every byte of it for the cache key (5 s of a 40 s build of the S1 set)."""
    return (not ctx.parent and env_of(ctx.stack) == "venv" and _uv(ctx) and not ctx.facts.tools_stage
            and bool(ctx.lock.parts["python"].pins))


def uv_steps(ctx: PlanContext) -> list[Step]:
    """uv in the builder, from the root stack's lock: pip (hash-checked) into a prefix of its own, per platform."""
    assert ctx.facts.uv_lock is not None
    lock_dir, files = ctx.facts.uv_lock.lock_dir, ctx.facts.uv_lock.files
    mounts = "".join(f"    --mount=type=bind,source={lock_dir}/{f},target=/tmp/bakegen/tools/{f} \\\n" for f in files)
    pick = ('    req=/tmp/bakegen/tools/build-tools.txt; if [ -f "/tmp/bakegen/tools/build-tools-$TARGETARCH.txt" ]; then '
            'req="/tmp/bakegen/tools/build-tools-$TARGETARCH.txt"; fi; \\\n')
    run = (f"RUN {_PIP_CACHE} \\\n{mounts}    --mount=type=secret,id=cacert \\\n    {PIP_CACERT}; \\\n{pick}{PIP_WHEEL}"
           f'    PIP_CONSTRAINT= PIP_ROOT_USER_ACTION=ignore {PIP_CACHE} $pip install --no-input --disable-pip-version-check --require-hashes --no-deps --no-compile -q --target {UV_PREFIX} -r "$req"')
    return [Step("ARG TARGETARCH", ("uv, the installer, from the root stack's lock (build-tools.txt): it stays in this stage.",
                                    "pip runs from the base image's own pip wheel (Debian's, or else ensurepip's) when it has one:",
                                    "a virtualenv with pip installed took 2.5 s.")), Step(run)]


def _shared_venv(ctx: PlanContext) -> bool:
    return pip_of(ctx.stack) and bool(ctx.lock.parts["python"].pins)


def _install_comments(ctx: PlanContext) -> tuple[str, ...]:
    lines = ["Hash-checked install of exactly the locked wheels. The lock is bind-mounted",
             "and the proxy CA (if any) is a BuildKit secret: neither lands in a layer."]
    if _uv(ctx):
        lines += ["uv downloads and installs in parallel. bakegen-finish.py compiles the bytecode (4",
                  "processes, each a fixed share of the files: bit for bit on any machine; none for"]
        lines += ["tests folders) and links identical files."]
    if not ctx.parent and not pip_of(ctx.stack):
        lines += ["[python] pip = false: no pip in the virtualenv, which stays root's."]
    elif ctx.parent and not _uv(ctx):
        lines.append("ensurepip gives this stage a pip when the parent's virtualenv has none.")
    if _shared_venv(ctx):
        lines += ["Runtime installs (%pip install): the virtualenv is writable by the user's group",
                  f"({ctx.stack.user.gid}, setgid folders), as docker-stacks' environment is."]
    if slim_of(ctx.stack):
        lines += ["[python] slim: tests folders and C/Cython sources are removed before the layer is made,",
                  "and every top-level module that imported before must still import."]
    return tuple(lines)


def _install_steps(ctx: PlanContext, final: bool = False) -> list[Step]:
    """The hash-checked install of the lock (per platform when there are several): in the builder, or with
    ``final`` in the final stage, with the builder's uv mounted (its layer: the virtualenv)."""
    platforms = ctx.lock.platforms
    scripts = f"    --mount=type=bind,from={BUILDER},source={UV_PREFIX},target={UV_PREFIX} \\\n" if final else ""
    scripts += f"    --mount=type=bind,source={SLIM_SCRIPT},target=/tmp/bakegen/slim.py \\\n" if slim_of(ctx.stack) else ""
    scripts += f"    {FINISH_MOUNT} \\\n"
    layer, order = (VENV_LAYER, ORDER) if final else (None, 0)  # in the final stage, the step makes the virtualenv's layer
    cache, cacert = (UV_CACHE, UV_CACERT) if _uv(ctx) else (_PIP_CACHE, PIP_CACERT)
    if len(platforms) > 1:
        mounts = "".join(f"    --mount=type=bind,source={ctx.lock_dir}/{f},target=/tmp/bakegen/lock/{f} \\\n" for f in (requirements_file(p, platforms) for p in platforms))
        run = (f"RUN {cache} \\\n{mounts}{scripts}    --mount=type=secret,id=cacert \\\n    {cacert}; \\\n"
               "    req=/tmp/bakegen/lock/requirements.txt; \\\n"
               '    if [ -f "/tmp/bakegen/lock/requirements-$TARGETARCH.txt" ]; then req="/tmp/bakegen/lock/requirements-$TARGETARCH.txt"; fi; \\\n'
               '    ln -s "$req" /tmp/bakegen/requirements.txt; \\\n')
        head = [Step("ARG TARGETARCH", _install_comments(ctx), order=order)]
    else:
        run = (f"RUN {cache} \\\n    --mount=type=bind,source={ctx.lock_dir}/{REQUIREMENTS},target=/tmp/bakegen/requirements.txt \\\n"
               f"{scripts}    --mount=type=secret,id=cacert \\\n    {cacert}; \\\n")
        head = []
    return head + [Step(run + _install_commands(ctx, final), () if head else _install_comments(ctx), layer, order)]


def _install_commands(ctx: PlanContext, final: bool = False) -> str:
    """pip install, slim, compileall and the group-writable venv: into the venv (root) or a staging prefix (child);
    ``final``: the venv is made here too."""
    slim, shared, gid = slim_of(ctx.stack), _shared_venv(ctx), ctx.stack.user.gid
    target = STAGING if ctx.parent else VENV
    if _uv(ctx):
        lines = [f"    {UV_INSTALL} --python {VENV}/bin/python{f' --prefix {STAGING}' if ctx.parent else ''} -r /tmp/bakegen/requirements.txt"]
        if final:
            lines = [f"    python3 -m venv --without-pip {VENV}", " && " + lines[0].lstrip()]
    elif ctx.parent:
        lines = [f"    {VENV}/bin/python -m ensurepip --default-pip >/dev/null", f" && {_PIP} --prefix={STAGING} -r /tmp/bakegen/requirements.txt"]
    else:
        lines = [f"    {_PIP} -r /tmp/bakegen/requirements.txt"]
    if slim:
        lines.append(f" && {VENV}/bin/python /tmp/bakegen/slim.py /tmp/bakegen/requirements.txt --prefix {target}")
    if not ctx.parent and not pip_of(ctx.stack) and not _uv(ctx):
        lines.append(f" && {VENV}/bin/python -m pip uninstall --no-input --disable-pip-version-check -q -y pip")
    options = (f" --dest {VENV}" if ctx.parent else "") + (f" --group {gid}" if shared else "")
    lines.append(f" && {VENV}/bin/python /tmp/bakegen/finish.py {target}{options}")
    return " \\\n".join(lines)


def constraints_path(name: str, platform: str) -> str:
    return f"dockerfiles/{name}/pip-constraints-{arch_of(platform)}.txt"


def render_constraints(ctx: PlanContext, platform: str) -> str:
    """Every Python pin of the stack's image on ``platform`` (its parents' and its own), as a pip constraints file."""
    pins = {p.key: p.version for s in ctx.stack.chain for p in ctx.locks[s.name].parts["python"].by_platform.get(platform, [])}
    head = f"# {GENERATED_MARKER} {__version__} from locks/ (stack '{ctx.name}', {platform}). Do not edit; to update, run: bakegen generate\n"
    return head + "".join(f"{key}=={version}\n" for key, version in sorted(pins.items()))


def _constraints_steps(ctx: PlanContext) -> list[Step]:
    files = [constraints_path(ctx.name, p) for p in ctx.lock.platforms]
    mounts = "".join(f"--mount=type=bind,source={f},target=/tmp/bakegen/{f.rsplit('/', 1)[1]} \\\n    " for f in files)
    steps = [
        Step("ARG TARGETARCH", ("The pins of every locked package, for pip at run time: `%pip install x` cannot move",
                                "them (PIP_CONSTRAINT= pip install ... moves one on purpose)."), order=ORDER),
        Step(f"RUN {mounts}install -D -m 0644 /tmp/bakegen/pip-constraints-$TARGETARCH.txt /etc/bakegen/pip-constraints.txt",
             layer="pip constraints (the image's pins)", order=ORDER),
    ]
    if not ctx.parent:
        steps.append(Step("ENV PIP_CONSTRAINT=/etc/bakegen/pip-constraints.txt", order=ORDER))
    return steps


def _vendor_install(ctx: PlanContext) -> Step:
    interpreter = ctx.stack.root_table("python").get("interpreter", "")
    py = f'py={shlex.quote(interpreter)}; [ -n "$py" ] || py=$(command -v python3 || command -v python); '
    return Step(
        f"RUN {_PIP_CACHE} \\\n    --mount=type=bind,source={ctx.lock_dir}/{REQUIREMENTS},target=/tmp/bakegen/requirements.txt \\\n"
        f"    --mount=type=secret,id=cacert \\\n    {PIP_CACERT}; \\\n    {py}\\\n"
        f'    SOURCE_DATE_EPOCH={ctx.lock.source_date_epoch or 0} PYTHONHASHSEED=0 {PIP_CACHE} "$py" -m pip install --no-input --disable-pip-version-check --require-hashes --no-deps -r /tmp/bakegen/requirements.txt',
        ("Hash-checked install into the base image's own Python (python.env = \"base\"), in one",
         "layer that holds only what changed; pip replaces the vendor's versions it must move.",
         "SOURCE_DATE_EPOCH (the lock's) makes pip write checked-hash .pyc files; with a fixed",
         "hash seed they are the same in every build."),
        "Python packages into the base image's Python", ORDER + 2)


ECOSYSTEM = Python()
