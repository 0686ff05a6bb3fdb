"""The apt lock files of a stack: ``apt.lock`` (each package's version, sha256 and .deb, per
architecture and kind) and ``apt-sources.list``, written and read back."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bakegen import __version__
from bakegen.errors import Location, StaleError, one_line
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock, arch_of
from bakegen.resolvers.debian import FILENAME, NAME, VERSION, AptSpec, Repository, debian_version

APT_LOCK = "apt.lock"
APT_SOURCES = "apt-sources.list"
APT_KINDS = ("req", "dep", "build", "build-dep")


@dataclass(frozen=True)
class AptEntry:
    """One line of apt.lock: a package pinned for one architecture."""

    arch: str  # the platform's architecture (amd64, arm64)
    kind: str  # req: asked for by the stack; dep: pulled in; build / build-dep: builder stage only
    name: str
    version: str
    sha256: str
    filename: str


@dataclass
class AptLock:
    distro: str
    suite: str
    snapshot: str | None
    mirror: str | None
    entries: list[AptEntry]
    resolver: str = "python-debian"
    repositories: tuple[Repository, ...] = ()  # third-party ones, their keys pinned

    def sources(self, archs: list[str]) -> str:
        """The apt sources lines used to lock, and to install."""
        spec = AptSpec(self.distro, self.suite, self.snapshot, self.mirror, self.repositories)
        return spec.sources_list(archs)

    def packages(self, arch: str, kinds: tuple[str, ...] = ("req", "dep")) -> dict[str, str]:
        return {e.name: e.version for e in self.entries if e.arch == arch and e.kind in kinds}


def render_apt(lock: StackLock, command: str = "bakegen lock") -> tuple[str, str]:
    """apt.lock and apt-sources.list. Sorted by arch, kind, name."""
    apt = lock.parts["apt"]
    where = f"{apt.distro} {apt.suite}" + (f" at snapshot {apt.snapshot}" if apt.snapshot else "")
    head = [
        "#",
        f"# {GENERATED_MARKER} {__version__} for stack '{lock.stack}': apt packages from {where} "
        f"({APT_SOURCES}).",
        "# Do not edit; to update, run:",
        "#",
        f"#    {command}",
        "#",
        "# kind: req = listed in the stack, dep = pulled in by one; build, build-dep = "
        "builder stage only.",
        "# Installed with 'pkg=version'; the build fails if apt would install anything else, or a",
        "# downloaded .deb does not match its sha256.",
        "#",
        "# arch kind package version sha256 file",
    ]
    order = {k: i for i, k in enumerate(APT_KINDS)}
    rows = sorted(apt.entries, key=lambda e: (e.arch, order[e.kind], e.name))
    lines = [f"{e.arch} {e.kind} {e.name} {e.version} sha256:{e.sha256} {e.filename}" for e in rows]
    text = "\n".join(head + lines) + "\n"
    sources = f"# {GENERATED_MARKER} {__version__}: the apt sources of stack '{lock.stack}' "
    sources += f"({where}). Do not edit.\n" + apt.sources([arch_of(p) for p in lock.platforms])
    return text, sources


_APT_LINE = re.compile(
    rf"(?P<arch>amd64|arm64) (?P<kind>req|dep|build|build-dep) (?P<name>{NAME}) "
    rf"(?P<version>{VERSION}) sha256:(?P<sha256>[0-9a-f]{{64}}) (?P<file>{FILENAME})"
)



def parse_apt(text: str, source: str = APT_LOCK) -> list[AptEntry]:
    out = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _APT_LINE.fullmatch(line)
        if m is None or not debian_version(m["version"]):
            where = Location(source, lineno)
            message = f"cannot read apt lock line: {one_line(line, 200)}"
            raise StaleError(message, location=where, hint="run bakegen lock")
        out.append(AptEntry(m["arch"], m["kind"], m["name"], m["version"], m["sha256"], m["file"]))
    return out



def summary(apt: AptLock, arch: str) -> dict[str, dict[str, str]]:
    out = {"runtime": apt.packages(arch, ("req", "dep"))}
    build = apt.packages(arch, ("build", "build-dep"))
    if build:
        out["build"] = build
    return out
