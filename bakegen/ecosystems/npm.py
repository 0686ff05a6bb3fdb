"""npm packages (JupyterLab extensions' assets, CLI tools): the ``[npm]`` table, npm's own
package.json and package-lock.json, installed by ``npm ci`` in a builder stage of its own."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from packageurl import PackageURL

from bakegen import schema
from bakegen.advisories import AdvisorySource, NpmAdvisories
from bakegen.ecosystem import (
    HASHES,
    BuildSecret,
    Ecosystem,
    LockedEntry,
    ReadFile,
    ResolveContext,
    SbomItem,
)
from bakegen.ecosystems.apt import installed_names
from bakegen.ecosystems.python import version_newer
from bakegen.errors import Location, ResolutionError, StackError, StaleError
from bakegen.files import sha256_text
from bakegen.instructions import THEN, Command, Copy, Env, Mount, Run, Shell, Verbatim, user
from bakegen.lock import (
    SCHEMA_SHA,
    SCHEMA_VERSIONS,
    TOOL_PATTERN,
    StackLock,
    arch_of,
    matches,
    schema_obj,
)
from bakegen.plan import ORDER_PACKAGES, PlanContext, Stage, Step
from bakegen.resolvers.npm import (
    NpmLock,
    NpmResolver,
    check_registry_only,
    package_manifest,
    registry_of,
    registry_url,
)
from bakegen.stack import EffectiveStack, StackGraph, stack_location

PACKAGE_JSON = "package.json"
PACKAGE_LOCK = "package-lock.json"
STAGE = "npm-builder"
# npm packages from the registry only: a name and a version, range or dist-tag (no
# file:, git, URL or alias specs, which would bypass the registry's integrity).
SCOPE = r"@[a-z0-9][a-z0-9._~-]{0,213}"
PACKAGE = r"(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*(?:@[A-Za-z0-9.^~<>=|*+ -]+)?"

TABLE: dict[str, Any] = {
    "packages": schema.list_of(
        schema.matching(
            PACKAGE, "npm package (a registry name with a version or range)", "leaflet@1.9.4"
        )
    ),
    "allow_scripts": schema.boolean,
    "node": schema.one_of("apt", "base"),
    "registry": schema.source_url,
    "scopes": schema.table_of(schema.matching(SCOPE, "npm scope", "@acme"), schema.source_url),
}
# The BuildKit secret with the registries' logins (bakegen build --npmrc), npm's userconfig
# while npm ci runs.
NPMRC_SECRET = BuildSecret("npmrc", ".npmrc file", "tokens of private npm registries",
                           "pass an .npmrc: //npm.example.com/:_authToken=TOKEN",
                           "NPM_CONFIG_USERCONFIG")


def registries_of(stack: EffectiveStack) -> tuple[tuple[str, str], ...]:
    """The stack's npm registries (its chain's, a child's win): ("", URL) in place of npm's,
    ("@scope", URL) per scope; () for npm's own."""
    found: dict[str, str] = {}
    for s in stack.chain:
        table = s.table("npm")
        found.update({"": table["registry"]} if "registry" in table else {})
        found.update(dict(table.get("scopes", ())))
    return tuple(sorted(found.items()))


def _settings(stack: EffectiveStack) -> tuple[list[str], bool, str]:
    table = stack.table("npm")
    return (
        list(table.get("packages", ())),
        bool(table.get("allow_scripts", False)),
        str(table.get("node", "apt")),
    )


NPM_CPU = {"amd64": "x64", "arm64": "arm64"}


def npm_fits(meta: dict[str, Any], arch: str) -> bool:
    """False for a package whose ``os``/``cpu`` exclude Linux on ``arch`` (npm ci leaves such an
    optional package out)."""
    for field_, value in (("os", "linux"), ("cpu", NPM_CPU.get(arch, arch))):
        allowed = meta.get(field_)
        if not isinstance(allowed, list):
            continue
        wanted = [v for v in allowed if not v.startswith("!")]
        if f"!{value}" in allowed or (wanted and value not in wanted):
            return False
    return True


def sri_hashes(integrity: str) -> tuple[tuple[str, str], ...]:
    """Subresource Integrity (``sha512-<base64>``, space-separated) -> ((algorithm, hex), ...)."""
    out = []
    for token in integrity.split():
        alg, _, b64 = token.partition("-")
        if alg not in HASHES:
            continue
        try:
            out.append((alg, base64.b64decode(b64.split("?", 1)[0], validate=True).hex()))
        except (binascii.Error, ValueError):
            continue
    return tuple(sorted(set(out)))


def _check_lock_files(part: NpmLock, where: str) -> None:
    """package.json has exactly bakegen's keys, and package-lock.json is npm's, for that
    package.json, with every package from the registry with an integrity hash (as at lock time)."""

    def refuse(what: str, file: str = PACKAGE_LOCK) -> StaleError:
        return StaleError(
            f"{file}: {what}", location=Location(where), hint="run bakegen lock to rewrite it"
        )

    try:
        manifest, doc = json.loads(part.package_json), json.loads(part.package_lock)
    except (ValueError, RecursionError):
        raise refuse("not JSON", f"{PACKAGE_JSON} or {PACKAGE_LOCK}") from None
    if (
        not isinstance(manifest, dict)
        or set(manifest) != set(package_manifest("x", []))
        or not isinstance(manifest["dependencies"], dict)
    ):
        raise refuse("not the package.json bakegen writes", PACKAGE_JSON)
    packages = doc.get("packages") if isinstance(doc, dict) else None
    if (
        not isinstance(packages, dict)
        or doc.get("lockfileVersion") not in (2, 3)
        or doc.get("name") != manifest["name"]
    ):
        raise refuse("not an npm lock (lockfileVersion 2 or 3) of package.json")
    if (
        not isinstance(packages.get(""), dict)
        or packages[""].get("dependencies", {}) != manifest["dependencies"]
    ):
        raise refuse("the lock's root package does not match package.json")
    try:
        check_registry_only(doc, where, registry_url(), dict(part.registries))
    except ResolutionError as exc:
        raise refuse(exc.message.split(": ", 1)[-1]) from None


def _registries_ok(registries: Any) -> bool:
    """A lock's registries: scopes ("" or @scope) to URLs without a login, as a stack's."""
    return isinstance(registries, dict) and all(
        isinstance(k, str) and (k == "" or re.fullmatch(SCOPE, k))
        and isinstance(v, str) and schema.SOURCE_URL.fullmatch(v)
        for k, v in registries.items())


class Npm(Ecosystem[NpmLock, NpmResolver]):
    name = "npm"
    build_secrets = (NPMRC_SECRET,)
    layer_order = ORDER_PACKAGES
    stages = (STAGE,)
    in_format_2 = True
    table = TABLE
    file_patterns = (re.escape(PACKAGE_JSON), re.escape(PACKAGE_LOCK))

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        packages, _, node = _settings(stack)
        if not packages or node != "apt":
            return []
        builder_apt = installed_names(stack) | {
            p.partition("=")[0] for p in stack.table("apt").get("build", ())
        }
        missing = [tool for tool in ("nodejs", "npm") if tool not in builder_apt]
        if not missing:
            return []
        return [
            StackError(
                f"npm packages need {' and '.join(missing)} in the builder stage",
                location=stack_location(stack.stack, graph.root, ("npm", "packages")),
                hint='add [apt] build = ["nodejs", "npm"] (locked, builder stage only), or set '
                'npm.node = "base" if the base image has node',
            )
        ]

    def default_resolver(self) -> NpmResolver:
        return NpmResolver()

    def used(self, stack: EffectiveStack) -> bool:
        return bool(_settings(stack)[0])

    def fingerprint(self, stack: EffectiveStack) -> Any:
        packages, allow_scripts, node = _settings(stack)
        registries = registries_of(stack)
        return (
            {"packages": sorted(packages), "allow_scripts": allow_scripts, "node": node,
             **({"registries": dict(registries)} if registries else {})}
            if packages
            else None
        )

    def resolve(self, ctx: ResolveContext[NpmResolver]) -> NpmLock:
        packages, allow_scripts, node = _settings(ctx.stack)
        return ctx.resolver.resolve(
            ctx.stack.name,
            packages,
            allow_scripts,
            node,
            previous=ctx.previous_part(self.name),
            upgrade=[n for n, _ in ctx.upgrade],
            before=ctx.exclude_newer,
            registries=registries_of(ctx.stack),
        )

    def files(self, lock: StackLock, part: NpmLock, command: str) -> dict[str, str]:
        return {PACKAGE_JSON: part.package_json, PACKAGE_LOCK: part.package_lock}

    def section_of(self, lock: StackLock, part: NpmLock, files: dict[str, str]) -> dict[str, Any]:
        return {
            "tool": part.tool,
            "node": part.node,
            "allow_scripts": part.allow_scripts,
            "file": PACKAGE_LOCK,
            "sha256": sha256_text(files[PACKAGE_LOCK]),
            "package_file": PACKAGE_JSON,
            "package_sha256": sha256_text(files[PACKAGE_JSON]),
            "packages": part.packages(),
            **({"registries": dict(part.registries)} if part.registries else {}),
        }

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> NpmLock:
        part = NpmLock(
            package_json=read_file(section["package_file"], section["package_sha256"]),
            package_lock=read_file(section["file"], section["sha256"]),
            tool=section["tool"],
            allow_scripts=section["allow_scripts"],
            node=section["node"],
            registries=tuple(sorted(section.get("registries", {}).items())),
        )
        _check_lock_files(part, where)
        return part

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        """allow_scripts, node and package.json are the stack's (package.json's description names
        bakegen's version)."""
        part = lock.parts.get(self.name)
        if part is None:
            return []
        packages, allow_scripts, node = _settings(stack)
        have = {k: v for k, v in json.loads(part.package_json).items() if k != "description"}
        want = {
            k: v for k, v in package_manifest(stack.name, packages).items() if k != "description"
        }
        return [
            ("npm allow_scripts", part.allow_scripts, allow_scripts),
            ("npm node", part.node, node),
            ("npm package.json", have, want),
            ("npm registries", dict(part.registries), dict(registries_of(stack))),
        ]

    def section_problem(self, section: dict[str, Any]) -> str | None:
        ok = (
            matches(section.get("tool"), TOOL_PATTERN)
            and isinstance(section.get("allow_scripts"), bool)
            and section.get("node") in ("apt", "base")
            and section.get("file") == PACKAGE_LOCK
            and section.get("package_file") == PACKAGE_JSON
            and _registries_ok(section.get("registries", {}))
        )
        return None if ok else "npm: not what bakegen writes"

    def section_schema(self) -> dict[str, Any]:
        props = {
            "tool": {"type": "string"},
            "node": {"enum": ["apt", "base"]},
            "allow_scripts": {"type": "boolean"},
            "file": {"const": PACKAGE_LOCK},
            "sha256": SCHEMA_SHA,
            "package_file": {"const": PACKAGE_JSON},
            "package_sha256": SCHEMA_SHA,
            "packages": SCHEMA_VERSIONS,
            "registries": {"type": "object", "additionalProperties": {"type": "string"}},
        }
        return schema_obj(props, required=sorted(set(props) - {"registries"}))

    def entries(self, lock: StackLock, part: NpmLock) -> list[LockedEntry]:
        """Each package; ``source``: the stack's own registry it comes from, if any."""
        mine = dict(part.registries)
        out = []
        for path, version in part.packages().items():
            name = path.split("node_modules/", 1)[1] if path.startswith("node_modules/") else path
            out.append(LockedEntry(self.name, name, "", version, source=registry_of(name, mine)))
        return out

    def advisory_source(self, index_url: str) -> AdvisorySource:
        return NpmAdvisories(registry_url())

    def upgrade_names(self, stack: EffectiveStack, lock: StackLock | None) -> set[str]:
        part = lock.parts.get(self.name) if lock else None
        return {path.rsplit("node_modules/", 1)[-1] for path in part.packages()} if part else set()

    def newer(self, old: str, new: str) -> bool:
        return version_newer(old, new)

    def sbom_items(self, lock: StackLock, part: NpmLock, platform: str) -> list[SbomItem]:
        out = []
        for path, meta in sorted(json.loads(part.package_lock).get("packages", {}).items()):
            if not path or "version" not in meta or not npm_fits(meta, arch_of(platform)):
                continue
            name = path.rsplit("node_modules/", 1)[-1]
            scope, _, short = name.rpartition("/")
            purl = PackageURL(
                type="npm", namespace=scope or None, name=short, version=meta["version"]
            )
            license_ = meta.get("license") if isinstance(meta.get("license"), str) else None
            out.append(
                SbomItem(
                    "npm",
                    name,
                    meta["version"],
                    purl,
                    lock.stack,
                    sri_hashes(meta.get("integrity", "")),
                    license_,
                    meta.get("resolved"),
                )
            )
        return out

    # --- the Dockerfile ---
    def builder_stages(self, ctx: PlanContext) -> list[Stage]:
        npm = ctx.lock.parts.get(self.name)
        if npm is None:
            return []
        files = (PACKAGE_JSON, PACKAGE_LOCK)
        locks = tuple(
            Mount("bind", source=f"{ctx.lock_dir}/{f}", target=f"/tmp/bakegen/npm/{f}")
            for f in files
        )
        login = NPMRC_SECRET.login() if npm.registries else ()
        mounts = (
            Mount("cache", id="bakegen-npm", target="/root/.npm"),
            *locks,
            Mount("secret", id="cacert"),
            *login[1:],
        )
        scripts = () if npm.allow_scripts else ("--ignore-scripts",)
        where = f"/opt/npm/{ctx.name}"
        cacert = (
            "if [ -s /run/secrets/cacert ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/cacert; fi"
        )
        parts = (
            Shell(cacert),
            *login[:1],
            Command(("install", "-d", where), after=THEN),
            Command(("cp", *(f"/tmp/bakegen/npm/{f}" for f in files), f"{where}/")),
            Command(("cd", where)),
            Command(("npm", "ci", *scripts, "--no-audit", "--no-fund", "--no-update-notifier")),
            Command(("rm", PACKAGE_LOCK)),
        )
        run = Run(parts, mounts)
        why = "Exactly the locked npm packages: npm ci checks every integrity hash in "
        why += "package-lock.json."
        title = "# --- npm builder: node, npm and npm's cache stay in this stage -----------------"
        note = "Its own stage, so that a Python pin bump does not re-run npm (and the reverse)."
        return [Stage(title, ctx.tools, STAGE, [Step(user("root")), Step(run, (why,))], (note,))]

    def final_steps(self, ctx: PlanContext) -> list[Step]:
        if ctx.lock.parts.get(self.name) is None:
            return []
        where = f"/opt/npm/{ctx.name}"
        return [
            Step(
                Copy((where,), where, stage=STAGE),
                (
                    "npm packages before Python: they change less often, so a Python bump keeps "
                    "this layer.",
                ),
                "npm packages (package-lock.json)",
                ORDER_PACKAGES,
            ),
            Step(
                Env((("PATH", Verbatim(f"{where}/node_modules/.bin:$PATH")),)), order=ORDER_PACKAGES
            ),
        ]


ECOSYSTEM = Npm()
