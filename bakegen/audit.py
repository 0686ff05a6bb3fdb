"""``bakegen audit``: the known vulnerabilities of every locked package, per image.

It loops over the ecosystems: each one with an advisory source (:mod:`bakegen.advisories`) is
looked up; the others are listed as not checked, with the reason the ecosystem gives. A finding
names its advisory, the package and version, the versions that fix it, and the images that
install it (the stack whose lock pins it, and the stacks built on that one).

Exit codes: 0 when nothing that a lock could fix was found; 1 when an advisory has a fix that the
lock does not use (an accepted risk in bakegen.toml aside); 3 when nothing fixable was found but
a source could not be asked (so the gate does not pass silently).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bakegen import __version__
from bakegen import registry as ordered
from bakegen.advisories import Advisory, Package, Unchecked
from bakegen.diff import Change, ImageDiff, split
from bakegen.files import GENERATED_MARKER
from bakegen.lock import StackLock
from bakegen.stack import StackGraph

EXIT_FIXABLE = 1
EXIT_UNCHECKED = 3


@dataclass(frozen=True)
class Finding:
    ecosystem: str
    package: str
    version: str
    advisory: Advisory
    images: tuple[str, ...]
    accepted: str | None = None  # the reason recorded in bakegen.toml (or --ignore)

    @property
    def fixable(self) -> bool:
        return bool(self.advisory.fixed) and self.accepted is None


# why a package from a stack's own index is not checked (its name must not leak; exit 3 all the
# same: never a silent pass)
PRIVATE = "from a stack's own index: its name is not sent to a public advisory source"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[tuple[str, str, str]] = field(default_factory=list)  # (eco, what, reason)
    checked: dict[str, tuple[int, str]] = field(default_factory=dict)  # eco -> (count, source)

    @property
    def exit_code(self) -> int:
        if any(f.fixable for f in self.findings):
            return EXIT_FIXABLE
        return EXIT_UNCHECKED if self.unchecked_sources() else 0

    def unchecked_sources(self) -> list[tuple[str, str, str]]:
        """What a source failed to answer (not what no source covers)."""
        return [u for u in self.unchecked if u[0] in self.checked]

    def unchecked_groups(self) -> list[str]:
        """The unchecked, one line per ecosystem and reason: "python: 3 packages (a 1, b 2, ...):
        HTTP 404 from pypi.org"."""
        groups: dict[tuple[str, str], list[str]] = {}
        for eco, what, reason in self.unchecked:
            groups.setdefault((eco, reason), []).append(what)
        out = []
        for (eco, reason), whats in groups.items():
            more = ", ..." if len(whats) > 3 else ""
            shown = whats[0] if len(whats) == 1 else (
                f"{len(whats)} packages ({', '.join(whats[:3])}{more})")
            out.append(f"{eco}: {shown}: {reason}")
        return out


def locked_packages(
    graph: StackGraph, locks: dict[str, StackLock], stacks: list[str]
) -> dict[str, dict[Package, set[str]]]:
    """Per ecosystem: each locked (name, version), and the images that install it."""
    out: dict[str, dict[Package, set[str]]] = {}
    for stack in stacks:
        chain = [*(a.name for a in graph.ancestors(stack)), stack]
        for owner in chain:
            lock = locks[owner]
            for eco in ordered.ECOSYSTEMS:
                part = lock.parts.get(eco.name)
                for entry in eco.entries(lock, part) if part is not None else []:
                    if not entry.group:  # build-only packages never reach an image
                        out.setdefault(eco.name, {}).setdefault((entry.name, entry.version),
                                                                set()).add(stack)
    return out


def _private(graph: StackGraph, locks: dict[str, StackLock], stacks: list[str], eco_name: str,
             index_url: str) -> set[Package]:
    """The ecosystem's packages from an index of a stack's own (a private one): their names are
    not sent to the public advisory source."""
    owners = {o for s in stacks for o in [*(a.name for a in graph.ancestors(s)), s]}
    eco = next(e for e in ordered.ECOSYSTEMS if e.name == eco_name)
    return {(e.name, e.version) for o in sorted(owners)
            if (part := locks[o].parts.get(eco_name)) is not None
            for e in eco.entries(locks[o], part)
            if e.source and e.source.rstrip("/") != index_url.rstrip("/")}


def _public(report: Report, eco_name: str, packages: dict[Package, set[str]],
            private: set[Package]) -> dict[Package, set[str]]:
    """``packages`` without the private ones, which the report lists as not checked."""
    for name, version in sorted(private & set(packages)):
        report.unchecked.append((eco_name, f"{name} {version}", PRIVATE))
    return {p: s for p, s in packages.items() if p not in private}


def audit(
    graph: StackGraph,
    locks: dict[str, StackLock],
    stacks: list[str],
    index_url: str,
    accepted: dict[str, str],
) -> Report:
    report = Report()
    for eco_name, packages in sorted(locked_packages(graph, locks, stacks).items()):
        eco = next(e for e in ordered.ECOSYSTEMS if e.name == eco_name)
        packages = _public(report, eco_name, packages, _private(graph, locks, stacks, eco_name,
                                                                 index_url))
        source = eco.advisory_source(index_url)
        if source is None:
            report.unchecked.append((eco_name, f"{len(packages)} packages", eco.audit_unchecked))
            continue
        report.checked[eco_name] = (len(packages), source.label)
        for package, result in sorted(source.lookup(sorted(packages)).items()):
            if isinstance(result, Unchecked):
                report.unchecked.append((eco_name, f"{package[0]} {package[1]}", result.reason))
                continue
            for advisory in result:
                names = {advisory.id, *advisory.aliases}
                reason = next((accepted[i] for i in sorted(names) if i in accepted), None)
                report.findings.append(Finding(eco_name, *package, advisory,
                                               tuple(s for s in stacks if s in packages[package]),
                                               reason))
    return report


def to_text(report: Report) -> str:
    lines = [f"# {GENERATED_MARKER} {__version__} (bakegen audit)"]
    for eco, (count, source) in sorted(report.checked.items()):
        lines.append(f"checked: {count} {eco} packages against {source}")
    for f in report.findings:
        a = f.advisory
        also = f" ({', '.join(a.aliases)})" if a.aliases else ""
        fix = f"fixed in {', '.join(a.fixed)}" if a.fixed else "no fix known"
        state = f"accepted: {f.accepted}" if f.accepted else ("FIXABLE" if a.fixed else "unfixed")
        lines.append(f"{a.id}{also}: {f.ecosystem} {f.package} {f.version}, {fix}; "
                     f"images: {', '.join(f.images)} [{state}]")
        if a.summary:
            lines.append(f"  {a.summary}")
    lines += [f"not checked: {group}" for group in report.unchecked_groups()]
    fixable = sum(1 for f in report.findings if f.fixable)
    lines.append(f"{len(report.findings)} known vulnerabilities, {fixable} with a fix the locks "
                 "do not use" + (", some packages not checked" if report.unchecked_sources()
                                 else ""))
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> str:
    doc = {
        "_comment": f"{GENERATED_MARKER} {__version__} (bakegen audit)",
        "findings": [
            {"id": f.advisory.id, "aliases": list(f.advisory.aliases), "ecosystem": f.ecosystem,
             "package": f.package, "version": f.version, "fixed": list(f.advisory.fixed),
             "summary": f.advisory.summary, "link": f.advisory.link, "images": list(f.images),
             "accepted": f.accepted, "fixable": f.fixable}
            for f in report.findings
        ],
        "checked": {eco: {"packages": n, "source": s} for eco, (n, s) in report.checked.items()},
        "not_checked": [{"ecosystem": e, "what": w, "reason": r} for e, w, r in report.unchecked],
        "exit_code": report.exit_code,
    }
    return json.dumps(doc, indent=2) + "\n"


FORMATS = {"text": to_text, "json": to_json}


def mark_changes(diffs: list[ImageDiff], index_url: str) -> list[str]:
    """Each version change of an ecosystem with an advisory source gets ``fixes ID`` /
    ``introduces ID`` (the old version's advisories against the new one's). Returns what could
    not be checked."""
    unchecked = []
    for eco in ordered.ECOSYSTEMS:
        source = eco.advisory_source(index_url)
        changes = [c for d in diffs for c in d.changes.get(eco.section, []) if c.new]
        if source is None or not changes:
            continue
        pairs = [(c, c.name.split(" ")[0], _version(c.old), _version(c.new) or "")
                 for c in changes if not _from_own_index(c, index_url)]
        found = source.lookup(sorted({(n, v) for _, n, old, new in pairs for v in (old, new) if v}))
        for c, name, old_version, new_version in pairs:
            old, new = found[name, old_version] if old_version else [], found[name, new_version]
            if isinstance(old, Unchecked) or isinstance(new, Unchecked):
                reason = next(r.reason for r in (old, new) if isinstance(r, Unchecked))
                unchecked.append(f"{eco.name} {c.name}: {reason}")
                c.security = "not checked"
                continue
            c.security = _security(old, new)
    return unchecked


def _version(value: str | None) -> str | None:
    """A diff's version without where it comes from ("1.0 from URL" -> "1.0")."""
    return split(value)[0] if value else value


def _from_own_index(change: Change, index_url: str) -> bool:
    """A change to or from a package of a stack's own index: never named to the public source
    (marked "not checked")."""
    sources = {split(v)[1].rstrip("/") for v in (change.old, change.new) if v}
    if not sources - {"", index_url.rstrip("/")}:
        return False
    change.security = f"not checked ({PRIVATE})"
    return True


def _security(old: list[Advisory], new: list[Advisory]) -> str:
    before, after = {a.id for a in old}, {a.id for a in new}
    notes = [f"fixes {i}" for i in sorted(before - after)]
    notes += [f"introduces {i}" for i in sorted(after - before)]
    return ", ".join(notes)
