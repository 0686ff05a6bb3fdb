"""The one shape every ecosystem has, and the one locked-entry type.

An ecosystem (Python packages, apt packages, npm packages, the base image, ...)
is one module in ``bakegen/ecosystems/`` with one :class:`Ecosystem` object. It
owns, for its own kind of package:

* its stack table: the schema (``table``) and the checks (``check``, ``check_graph``);
* how it resolves (``resolve``), given the effective stack, the parents' locks,
  the previous lock and what to upgrade (:class:`ResolveContext`);
* its lock files (``files``, ``read``), its manifest section (``section_of``,
  ``section_schema``) and its locked entries (``entries``), which diffs,
  upgrades and name checks use;
* its build steps, as data (``plan``): the stages and steps of the Dockerfile.

Generic code (locker, lock, diff, plan, report, cli) loops over the ordered
list in :mod:`bakegen.registry`, which it is given or imports, and never names
an ecosystem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from packageurl import PackageURL

from bakegen.instructions import Mount, Shell

if TYPE_CHECKING:
    from bakegen.advisories import AdvisorySource
    from bakegen.errors import StackError
    from bakegen.lock import StackLock
    from bakegen.plan import Facts, PlanContext, Stage, Step
    from bakegen.stack import EffectiveStack, StackGraph


@dataclass(frozen=True)
class LockedEntry:
    """One locked thing: ``(ecosystem, name, platform) -> version, hashes``.

    ``platform`` is empty for what does not depend on it (npm packages, the base
    image). ``group`` tells entries of one name apart in what they are for (apt's
    ``build`` packages, which stay in the builder stage).
    """

    ecosystem: str
    name: str
    platform: str
    version: str
    hashes: tuple[str, ...] = ()
    group: str = ""
    source: str = ""  # where it comes from, when a stack names it (a Python index)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ecosystem, self.name, self.platform)


@dataclass(frozen=True)
class SbomItem:
    """One component of an image, as a lock records it (for ``bakegen sbom``)."""

    kind: str  # oci, pypi, deb, npm
    name: str
    version: str
    purl: PackageURL
    stack: str  # the stack whose lock installs it
    hashes: tuple[tuple[str, str], ...] = ()  # (algorithm of HASHES, hex)
    license: str | None = None
    download: str | None = None

    @property
    def ref(self) -> str:
        return str(self.purl.to_string())


# SRI / lock algorithm -> (CycloneDX, SPDX) names
HASHES = {
    "sha1": ("SHA-1", "SHA1"),
    "sha256": ("SHA-256", "SHA256"),
    "sha384": ("SHA-384", "SHA384"),
    "sha512": ("SHA-512", "SHA512"),
}


@dataclass(frozen=True)
class BuildSecret:
    """A file an ecosystem's build steps read as a BuildKit secret (a login), never in a layer.

    ``bakegen build --ID FILE`` (or the environment variable ``BAKEGEN_ID``) passes it; the bake
    file's variable of the same name does too, for ``docker buildx bake`` run by hand. The steps
    mount it as ``/run/secrets/ID``.
    """

    id: str  # the secret's id, the option's name (--netrc): lower-case letters
    what: str  # what the file is, for messages: "netrc file"
    help: str  # what it holds, for --help: "logins of private package indexes"
    hint: str  # its format, for an error's hint
    env: str  # the variable the installing tool reads the file's path from: NETRC

    @property
    def variable(self) -> str:
        """The environment variable and bake variable that name the file."""
        return f"BAKEGEN_{self.id.upper()}"

    def login(self) -> tuple[Shell, Mount]:
        """What a build step adds to read it: the secret mounted, and ``env`` pointing at it when
        the build was given one."""
        at = f"/run/secrets/{self.id}"
        export = Shell(f"if [ -s {at} ]; then export {self.env}={at}; fi")
        return export, Mount("secret", id=self.id)


# A lock file's text, read and checked against the manifest: read_file(name, sha256) -> text
ReadFile = Callable[[str, str], str]


PartT = TypeVar("PartT")  # an ecosystem's part of a stack's lock (a dataclass of its own)
ResolverT = TypeVar("ResolverT")  # what it resolves with (a fake in tests)


@dataclass
class ResolveContext(Generic[ResolverT]):
    """What one ecosystem needs to lock one stack."""

    stack: EffectiveStack
    parents: list[StackLock]  # the ancestors' new locks, root first
    previous: StackLock | None  # whose pins to keep (None: upgrade everything)
    existing: StackLock | None  # the stack's current lock
    upgrade: list[tuple[str, str | None]]  # (name, version or None) of this ecosystem to move
    move_all: bool  # every pin of this ecosystem moves
    resolver: ResolverT
    index_url: str
    warnings: list[str] = field(default_factory=list)
    # the cool-down: no release published after this time (RFC 3339, UTC); None: no limit
    exclude_newer: str | None = None

    def previous_part(self, name: str) -> Any:
        return self.previous.parts.get(name) if self.previous else None


class Ecosystem(Generic[PartT, ResolverT]):
    """The interface; the defaults are what an ecosystem without that part does.

    ``PartT`` is the type of its part of a lock (``StackLock.parts[name]``), which it
    resolves, reads, writes and lists; ``ResolverT`` what it resolves with.
    """

    name: str = ""  # the stack table, --upgrade-ecosystem, the diff label's default
    section: str = ""  # its key in lock.json (and diff); defaults to name
    fingerprint_key: str = ""  # its key in the fingerprint; defaults to name
    # The first ecosystems were in lock format 2 with a key even when unused (null):
    # they keep it, so that old locks stay fresh. Every newer one adds its key only
    # when a stack uses it, so adding an ecosystem changes no fingerprint.
    in_format_2: bool = False
    always_locked: bool = False  # its manifest section is never null (every image has it)
    table: dict[str, Any] | None = None  # the stack table's schema (bakegen.schema checkers)
    # the lock files it owns in locks/<stack>/ (full-match regexes)
    file_patterns: tuple[str, ...] = ()
    resolver_of: str = ""  # resolves with another ecosystem's resolver (named)
    # locks from the stack's own files, never the network: its changes re-resolve no other ecosystem
    offline: bool = False
    # where its packages are in the final image (a build step that needs it comes after)
    layer_order: int = 0
    # the names of the Dockerfile stages it adds (a stack cannot take them)
    stages: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()  # the plan Facts fields its facts() sets
    # the Facts fields its facts() reads (those of ecosystems before it)
    reads: tuple[str, ...] = ()
    # A lock made before it existed may lack its section (the plan does without it); bakegen
    # lock -E NAME adds it.
    optional: bool = False
    # why bakegen audit does not check its packages (when it has no advisory source)
    audit_unchecked: str = "no advisory source"
    # the logins its build steps read, as BuildKit secrets (bakegen build --ID FILE)
    build_secrets: tuple[BuildSecret, ...] = ()

    def __init__(self) -> None:
        self.section = self.section or self.name
        self.fingerprint_key = self.fingerprint_key or self.name

    # --- the stack table -------------------------------------------------------
    def stack_tables(self) -> dict[str, Any]:
        """The stack file's keys it owns (its name by default), with their schemas."""
        return {self.name: self.table} if self.table is not None else {}

    def check(
        self, table: dict[str, Any], fields: dict[str, Any], err: Callable[..., StackError]
    ) -> None:
        """Checks of one stack file's table that need more than one key (raise ``err(...)``)."""

    def check_graph(self, stack: EffectiveStack, graph: StackGraph) -> list[StackError]:
        """Checks that need the parents."""
        return []

    # --- locking ---------------------------------------------------------------
    def default_resolver(self) -> ResolverT | None:
        return None

    def used(self, stack: EffectiveStack) -> bool:
        """Does the stack ask this ecosystem for anything (so it is resolved)?"""
        return False

    def fingerprint(self, stack: EffectiveStack) -> Any:
        """What of the stack decides this ecosystem's lock (JSON data); None when unused."""
        return None

    def parent_digest(self, lock: StackLock) -> tuple[str, str | None] | None:
        """(key, digest) of a parent's pins that its children's locks depend on."""
        return None

    def resolve(self, ctx: ResolveContext[ResolverT]) -> PartT:
        raise NotImplementedError

    def tampered(self, stack: EffectiveStack, lock: StackLock) -> list[tuple[str, Any, Any]]:
        """(what, the lock's, the stack's) facts that the fingerprint does not hash."""
        return []

    # --- lock files -----------------------------------------------------------
    def files(self, lock: StackLock, part: PartT, command: str) -> dict[str, str]:
        return {}

    def section_of(self, lock: StackLock, part: PartT, files: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def read(
        self, section: dict[str, Any], read_file: ReadFile, doc: dict[str, Any], where: str
    ) -> PartT:
        raise NotImplementedError

    def section_schema(self) -> dict[str, Any]:
        return {"type": "object"}

    def section_problem(self, section: dict[str, Any]) -> str | None:
        """A field of a checksummed section that is not what bakegen writes (it reaches generated
        files)."""
        return None

    # --- what is locked -------------------------------------------------------
    def labels(self, locks: list[StackLock]) -> dict[str, str]:
        """Labels of the image that its locked packages decide (the CUDA they need), from the
        locks of its chain, root first."""
        return {}

    def entries(self, lock: StackLock, part: PartT) -> list[LockedEntry]:
        return []

    def upgrade_names(self, stack: EffectiveStack, lock: StackLock | None) -> set[str]:
        """The names ``--upgrade-package`` can give for this stack."""
        part = lock.parts.get(self.name) if lock else None
        return {e.name for e in self.entries(lock, part)} if lock and part is not None else set()

    def summary(self, lock: StackLock, part: PartT) -> str:
        """A few words on what is locked, for ``bakegen lock``'s output."""
        primary = lock.platforms[0]
        return (
            f"{sum(1 for e in self.entries(lock, part) if e.platform in ('', primary))} {self.name}"
        )

    def normalize(self, name: str) -> str:
        return name

    def newer(self, old: str, new: str) -> bool:
        return True

    def advisory_source(self, index_url: str) -> AdvisorySource | None:
        """Where the known vulnerabilities of its packages are published (bakegen audit); None:
        not checked (``audit_unchecked`` says why)."""
        return None

    def sbom_items(self, lock: StackLock, part: PartT, platform: str) -> list[SbomItem]:
        """What it installs in the final image on ``platform``, as SBOM components (purl, hashes,
        license)."""
        return []

    # --- the Dockerfile -----------------------------------------------------------
    def facts(self, ctx: PlanContext) -> Facts:
        """``ctx.facts`` with the fields this ecosystem provides set (computed before any step is
        planned)."""
        return ctx.facts

    def tools_stage(self, ctx: PlanContext) -> Stage | None:
        """A stage that the builder stages start from (build tools), when there is one."""
        return None

    def builder_stages(self, ctx: PlanContext) -> list[Stage]:
        return []

    def final_steps(self, ctx: PlanContext) -> list[Step]:
        return []

    def project_templates(self, graph: StackGraph, locks: dict[str, StackLock]) -> dict[str, str]:
        """Project-wide files it needs (``dockerfiles/<file>``: the template that makes it)."""
        return {}

    def template_variables(self, template: str) -> dict[str, Any]:
        """What one of its project templates receives besides ``header`` (render's
        TEMPLATE_VARIABLES says so)."""
        return {}

    def generated_files(self, ctx: PlanContext) -> dict[str, str]:
        """Files generated next to the Dockerfile (``dockerfiles/<stack>/...``)."""
        return {}


# Any ecosystem: what a list of them holds (each has its own lock part and resolver).
AnyEcosystem = Ecosystem[Any, Any]
