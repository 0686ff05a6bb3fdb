"""Python applications, each in a virtualenv of its own, as pipx installs them: the ``[apps]``
table.

``[apps] packages = ["nbstripout>=0.8", "ruff"]`` installs each application into
``/opt/apps/<app>`` from its own hashed lock (``locks/<stack>/app-<app>.txt``;
``app-<app>.<arch>.txt`` for each further platform) and puts its console scripts
in ``/opt/apps/bin``, which is on PATH after the image's own virtualenv. An
application's dependencies never meet the notebook environment's: each resolves
alone, and a parent's pins do not constrain it.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bakegen import __version__
from bakegen.ecosystem import Ecosystem, LockedEntry, ReadFile, ResolveContext, SbomItem
from bakegen.ecosystems.python import PYTHON_PLATFORMS, tool_version, version_newer
from bakegen.ecosystems.python import TABLE as PYTHON_TABLE
from bakegen.errors import StackError
from bakegen.files import GENERATED_MARKER, sha256_text
from bakegen.instructions import THEN, Command, Copy, Env, Mount, Run, Verbatim, arg, user
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
from bakegen.plan import DOCKERFILE_DIR, ORDER_PACKAGES, PlanContext, Stage, Step, heading
from bakegen.python_install import (
    CACERT_MOUNT,
    FINISH_MOUNT,
    FINISH_SCRIPT,
    PIP_CACHE_ENV,
    UV,
    finish,
    installer,
    make_venv,
    pip_install,
    pip_uninstall,
    uv_install,
    uv_steps,
)
from bakegen.requirements import pin_lines, pypi_items, read_requirements
from bakegen.resolvers.pins import DEFAULT_INDEX, Pin, PythonRequest, PythonResolver
from bakegen.schema import Invalid
from bakegen.stack import EffectiveStack, StackGraph, stack_location

APPS = "/opt/apps"
OUT = "/opt/bakegen/apps"
STAGE = "apps-builder"
SCRIPT = f"{DOCKERFILE_DIR}/bakegen-apps.sh"
ORDER = ORDER_PACKAGES + 5  # after npm, before the notebook environment's Python packages
FILE = re.compile(r"app-(?P<app>[a-z0-9]+(?:-[a-z0-9]+)*)(?:\.(?P<arch>amd64|arm64))?\.txt")
SCHEMA_FILE_PATTERN = (
    "^" + re.sub(r"\?P<\w+>", "", FILE.pattern) + "$"
)  # JSON Schema's regexes have no named groups

TABLE: dict[str, Any] = {"packages": PYTHON_TABLE["packages"]}


def app_file(app: str, platform: str, platforms: list[str]) -> str:
    return f"app-{app}.txt" if platform == platforms[0] else f"app-{app}.{arch_of(platform)}.txt"


def _is_requirement(value: Any) -> bool:
    """What the stack's [apps] packages allow (it is written into the lock file's header)."""
    try:
        PYTHON_TABLE["packages"]([value])
    except Invalid:
        return False
    return True


@dataclass
class AppsLock:
    resolver: str
    requirements: dict[str, str]  # app (canonical name) -> its requirement, as written
    pins: dict[str, dict[str, list[Pin]]]  # app -> platform -> pins


def _apps(stack: EffectiveStack) -> dict[str, str]:
    """The stack's own applications: canonical name -> requirement."""
    return {
        canonicalize_name(Requirement(r).name): r for r in stack.table("apps").get("packages", ())
    }


def render_app(lock: StackLock, part: AppsLock, app: str, platform: str, command: str) -> str:
    lines = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}': the application {app} "
        f"({part.requirements[app]}),",
        f"# in a virtualenv of its own, Python {lock.parts['python'].version} on {platform}. "
        f"Resolved with {part.resolver}.",
        "# Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
    ]
    for pin in sorted(part.pins[app][platform], key=lambda p: p.key):
        lines += pin_lines(pin)
    return "\n".join(lines) + "\n"


class Apps(Ecosystem[AppsLock, PythonResolver]):
    name = "apps"
    audit_unchecked = "not checked yet: each application's own virtualenv"
    layer_order = ORDER
    stages = (STAGE,)
    resolver_of = "python"  # the same resolver (uv or pip-tools) as the notebook environment
    table = TABLE
    file_patterns = (FILE.pattern,)

    def check(self, table: dict[str, Any], fields: dict[str, Any], err: Any) -> None:
        seen: dict[str, str] = {}
        for requirement in table.get("packages", ()):
            app = canonicalize_name(Requirement(requirement).name)
            if app in seen:
                raise err(
                    f"apps.packages: '{requirement}' and '{seen[app]}' are the same application",
                    ("apps", "packages"),
                    "list each application once",
                    requirement,
                )
            if app in ("bin", "pip"):
                raise err(
                    f"apps.packages: an application cannot be named '{app}' (/opt/apps/bin holds "
                    "the scripts; pip installs the others)",
                    ("apps", "packages"),
                    "install it in the notebook environment ([python] packages) instead",
                    requirement,
                )
            if Requirement(requirement).marker is not None:
                raise err(
                    f"apps.packages: '{requirement}' has an environment marker",
                    ("apps", "packages"),
                    "an application is installed on every platform of the image; remove the marker",
                    requirement,
                )
            seen[app] = requirement

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        inherited = {app: s.name for s in stack.ancestors for app in _apps(graph.effective(s.name))}
        return [
            StackError(
                f"apps.packages: '{app}' is already installed by '{inherited[app]}'",
                location=stack_location(stack.stack, graph.root, ("apps", "packages")),
                hint=f"remove it here, or from stacks/{inherited[app]}.toml",
            )
            for app in _apps(stack)
            if app in inherited
        ][:1]

    def used(self, stack: EffectiveStack) -> bool:
        return bool(_apps(stack))

    def fingerprint(self, stack: EffectiveStack) -> Any:
        apps = _apps(stack)
        return {"packages": sorted(str(Requirement(r)) for r in apps.values())} if apps else None

    def resolve(self, ctx: ResolveContext[PythonResolver]) -> AppsLock:
        apps, platforms = _apps(ctx.stack), list(ctx.stack.platforms)
        jobs = [(app, platform) for app in apps for platform in platforms]
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(
                pool.map(
                    lambda job: ctx.resolver.resolve(
                        self._request(ctx, job[0], job[1], apps[job[0]])
                    ),
                    jobs,
                )
            )
        pins: dict[str, dict[str, list[Pin]]] = {app: {} for app in apps}
        for (app, platform), found in zip(jobs, results):
            pins[app][platform] = found
        return AppsLock(
            tool_version(ctx.resolver), dict(sorted(apps.items())), dict(sorted(pins.items()))
        )

    def _request(
        self, ctx: ResolveContext[PythonResolver], app: str, platform: str, requirement: str
    ) -> PythonRequest:
        previous = ctx.previous_part(self.name)
        kept = previous.pins.get(app, {}).get(platform, []) if previous else []
        names = {p.key for p in kept}
        return PythonRequest(
            stack=ctx.stack.name,
            python_version=ctx.stack.python_version,
            platform=PYTHON_PLATFORMS[platform],
            inputs=[(f"stacks/{ctx.stack.name}.toml [apps] {app}", [requirement])],
            index_url=ctx.index_url or DEFAULT_INDEX,
            preferences=list(kept),
            upgrade=[f"{n}=={v}" if v else n for n, v in ctx.upgrade if n in names],
            target=platform,
        )

    def files(self, lock: StackLock, part: AppsLock, command: str) -> dict[str, str]:
        return {
            app_file(app, p, lock.platforms): render_app(lock, part, app, p, command)
            for app in part.pins
            for p in lock.platforms
        }

    def section_of(self, lock: StackLock, part: AppsLock, files: dict[str, str]) -> dict[str, Any]:
        def file(app: str, p: str) -> dict[str, str]:
            name = app_file(app, p, lock.platforms)
            return {"file": name, "sha256": sha256_text(files[name])}

        return {
            "resolver": part.resolver,
            "apps": {
                app: {
                    "requirement": part.requirements[app],
                    "files": {p: file(app, p) for p in lock.platforms},
                    "packages": {
                        p: {pin.key: pin.version for pin in sorted(pins, key=lambda x: x.key)}
                        for p, pins in part.pins[app].items()
                    },
                }
                for app in part.pins
            },
        }

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> AppsLock:
        platforms = list(doc["platforms"])
        pins = {
            app: read_requirements(
                entry["files"], platforms, read_file, where, partial(app_file, app)
            )
            for app, entry in section["apps"].items()
        }
        return AppsLock(
            section["resolver"],
            {app: entry["requirement"] for app, entry in section["apps"].items()},
            pins,
        )

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        part = lock.parts.get(self.name)
        return (
            [("applications", part.requirements, dict(sorted(_apps(stack).items())))]
            if part is not None
            else []
        )

    def section_schema(self) -> dict[str, Any]:
        app = schema_obj(
            {
                "requirement": {"type": "string"},
                "files": {
                    "type": "object",
                    "propertyNames": SCHEMA_PLATFORM,
                    "additionalProperties": schema_obj(
                        {
                            "file": {"type": "string", "pattern": SCHEMA_FILE_PATTERN},
                            "sha256": SCHEMA_SHA,
                        }
                    ),
                },
                "packages": {
                    "type": "object",
                    "propertyNames": SCHEMA_PLATFORM,
                    "additionalProperties": SCHEMA_VERSIONS,
                },
            }
        )
        return schema_obj(
            {
                "resolver": {"type": "string"},
                "apps": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
                    "additionalProperties": app,
                },
            }
        )

    def section_problem(self, section: dict[str, Any]) -> str | None:
        apps = section.get("apps")
        if not isinstance(apps, dict) or not matches(section.get("resolver"), TOOL_PATTERN):
            return "apps: not what bakegen writes"
        ok = all(
            matches(a, r"[a-z0-9]+(?:-[a-z0-9]+)*")
            and isinstance(e, dict)
            and _is_requirement(e.get("requirement"))
            for a, e in apps.items()
        )
        return None if ok else "apps/apps: not what bakegen writes"

    def entries(self, lock: StackLock, part: AppsLock) -> list[LockedEntry]:
        return [
            LockedEntry(
                self.name,
                pin.key if pin.key == app else f"{app}/{pin.key}",
                platform,
                pin.version,
                pin.hashes,
            )
            for app, by_platform in part.pins.items()
            for platform, pins in by_platform.items()
            for pin in pins
        ]

    def upgrade_names(self, stack: EffectiveStack, lock: StackLock | None) -> set[str]:
        part = lock.parts.get(self.name) if lock else None
        return (
            {
                pin.key
                for by_platform in part.pins.values()
                for pins in by_platform.values()
                for pin in pins
            }
            if part
            else set()
        )

    def normalize(self, name: str) -> str:
        return canonicalize_name(name)

    def newer(self, old: str, new: str) -> bool:
        return version_newer(old, new)

    def sbom_items(self, lock: StackLock, part: AppsLock, platform: str) -> list[SbomItem]:
        return [
            item
            for by_platform in part.pins.values()
            for item in pypi_items(lock.stack, by_platform.get(platform, []))
        ]

    # --- the Dockerfile ---
    def builder_stages(self, ctx: PlanContext) -> list[Stage]:
        part = ctx.lock.parts.get(self.name)
        if part is None:
            return []
        files = [
            app_file(app, p, ctx.lock.platforms) for app in part.pins for p in ctx.lock.platforms
        ]
        uv = ctx.facts.uv_lock is not None
        cache, cacert = installer(uv)
        mounts = (
            cache,
            *(
                Mount("bind", source=f"{ctx.lock_dir}/{f}", target=f"/tmp/bakegen/apps/{f}")
                for f in files
            ),
            Mount("bind", source=SCRIPT, target="/tmp/bakegen/apps.sh"),
            FINISH_MOUNT,
            CACERT_MOUNT,
        )
        install = Command(
            ("sh", "/tmp/bakegen/apps.sh", "/tmp/bakegen/apps", OUT, *part.pins),
            (("BAKEGEN_UV", UV),) if uv else (PIP_CACHE_ENV,),
            after=THEN,
        )
        return [
            Stage(
                heading("applications: one virtualenv each, from its own lock"),
                ctx.tools,
                STAGE,
                [
                    Step(user("root")),
                    *(uv_steps(ctx) if uv else [Step(arg("TARGETARCH"))]),
                    Step(
                        Run((cacert, install), mounts),
                        (
                            "Each application in its own virtualenv (/opt/apps/<app>), "
                            "hash-checked; its console",
                            "scripts are linked into /opt/apps/bin.",
                        ),
                    ),
                ],
            )
        ]

    def final_steps(self, ctx: PlanContext) -> list[Step]:
        if ctx.lock.parts.get(self.name) is None:
            return []
        steps = [
            Step(
                Copy((f"{OUT}/",), "/", stage=STAGE), layer="applications (app-*.txt)", order=ORDER
            )
        ]
        if not any(self.used(ctx.graph.effective(a.name)) for a in ctx.stack.ancestors):
            steps.append(Step(Env((("PATH", Verbatim(f"$PATH:{APPS}/bin")),)), order=ORDER))
        return steps

    def template_variables(self, template: str) -> dict[str, Any]:
        """bakegen-apps.sh installs each application with the commands the image's own virtualenv is
        installed with."""
        if template != "bakegen-apps.sh.j2":
            return {}
        venv, python, req = Verbatim('"$venv"'), Verbatim('"$venv/bin/python"'), Verbatim('"$req"')
        commands = {
            "uv_venv": make_venv(venv, with_pip=False),
            "uv_install": uv_install(Verbatim('"$BAKEGEN_UV"'), python, req),
            "pip_venv": make_venv(venv),
            "pip_install": pip_install(Verbatim('"$venv/bin/pip"'), req, env=()),
            "pip_uninstall": pip_uninstall(python),
            "finish": finish(python, venv),
        }
        return {"install": {name: command.shell() for name, command in commands.items()}}

    def project_templates(self, graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
        if not any(lock.parts.get(self.name) is not None for lock in locks.values()):
            return {}
        return {SCRIPT: "bakegen-apps.sh.j2", FINISH_SCRIPT: "bakegen-finish.py.j2"}


ECOSYSTEM = Apps()
