"""Compare two sets of locks: what changed per image and ecosystem, and what to rebuild.

The locks of a git revision are read from ``git archive``; the same reader as
for the working tree reads them (so a damaged lock is an error, not a diff).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bakegen import __version__, proc
from bakegen import registry as ordered
from bakegen.ecosystem import AnyEcosystem
from bakegen.errors import BakegenError, CommandError, StaleError, one_line
from bakegen.files import GENERATED_MARKER, output_problem
from bakegen.graph import Node, to_mermaid
from bakegen.imagediff import SOURCE_BYTES, SOURCE_SIZE, ImageFigures
from bakegen.lock import MAX_LOCK_FILE, StackLock, arch_of
from bakegen.project import read_lock

FROM = "from "  # "1.0 from https://pypi.example.com/simple": a version and where it comes from


def sections() -> list[str]:
    """The ecosystems' labels, in registry order."""
    return [eco.section for eco in ordered.ECOSYSTEMS]


@dataclass
class Change:
    name: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        if split(self.old)[0] == split(self.new)[0]:
            return "moved"  # the same version, from another index
        return "upgraded" if self.newer else "downgraded"

    newer: bool = True
    security: str = ""  # "fixes ID", "introduces ID" (bakegen diff --audit)


def split(value: str) -> tuple[str, str]:
    """A diff's version and where it comes from: "1.0 from URL" -> ("1.0", "URL")."""
    version, _, source = value.partition(f" {FROM}")
    return version, source


@dataclass
class ImageDiff:
    stack: str
    status: str  # "added", "removed", "changed", "unchanged"
    changes: dict[str, list[Change]] = field(default_factory=dict)  # ecosystem -> changes
    rebuild: bool = False
    rebuild_reason: str = ""
    figures: list[ImageFigures] = field(default_factory=list)  # bakegen diff --registry


def _compare(
    old: dict[str, str], new: dict[str, str], newer: Callable[[str, str], bool]
) -> list[Change]:
    out = []
    for name in sorted(set(old) | set(new)):
        o, n = old.get(name), new.get(name)
        if o == n:
            continue
        change = Change(name, o, n)
        if o is not None and n is not None:
            change.newer = newer(split(o)[0], split(n)[0])
        out.append(change)
    return out


def _versions(eco: AnyEcosystem, lock: StackLock | None) -> dict[str, str]:
    """The ecosystem's entries of ``lock`` by label: name, (arch) off the primary platform,
    [group]."""
    part = lock.parts.get(eco.name) if lock else None
    if lock is None or part is None:
        return {}
    primary = lock.platforms[0]
    return {
        e.name
        + ("" if e.platform in ("", primary) else f" ({arch_of(e.platform)})")
        + (f" [{e.group}]" if e.group else ""):
        e.version + (f" {FROM}{e.source}" if e.source else "")
        for e in eco.entries(lock, part)
    }


def diff_locks(
    old: dict[str, StackLock], new: dict[str, StackLock], parents: dict[str, str | None]
) -> list[ImageDiff]:
    """Per stack (sorted), the changes from ``old`` to ``new``, and which images to rebuild."""
    out: dict[str, ImageDiff] = {}
    for name in sorted(set(old) | set(new)):
        o, n = old.get(name), new.get(name)
        changes = {
            eco.section: _compare(_versions(eco, o), _versions(eco, n), eco.newer)
            for eco in ordered.ECOSYSTEMS
        }
        changes = {k: v for k, v in changes.items() if v}
        status = (
            "added"
            if o is None
            else "removed"
            if n is None
            else "changed"
            if changes
            else "unchanged"
        )
        out[name] = ImageDiff(name, status, changes)
    # an image is rebuilt when its own lock changed, or any of its parents is rebuilt
    for name in sorted(out):
        d = out[name]
        if d.status in ("added", "changed"):
            d.rebuild, d.rebuild_reason = (
                True,
                "its lock changed" if d.status == "changed" else "new image",
            )
    changed = True
    while changed:
        changed = False
        for name, d in sorted(out.items()):
            parent = parents.get(name)
            if not d.rebuild and d.status != "removed" and parent in out and out[parent].rebuild:
                d.rebuild, d.rebuild_reason, changed = True, f"its parent {parent} is rebuilt", True
    return list(out.values())


# --- reading locks --------------------------------------------------------------------


def read_tree_locks(root: Path) -> dict[str, StackLock]:
    """The locks under ``root/locks/``: each folder named after the stack its manifest is for."""
    locks = {}
    folder = root / "locks"
    problem = output_problem(root, "locks") if folder.exists() or folder.is_symlink() else None
    if problem:
        raise BakegenError(
            f"cannot read locks/: {problem}", hint="locks/ must be a real folder of the project"
        )
    for d in sorted(folder.glob("*/")):
        lock = read_lock(d, root)
        if lock is not None and lock.stack != d.name:
            raise StaleError(
                f"locks/{one_line(d.name, 80)}/lock.json is the lock of stack '{lock.stack}'",
                hint="run bakegen lock to rewrite it",
            )
        if lock is not None:
            locks[d.name] = lock
    return locks


def read_rev_locks(root: Path, rev: str) -> dict[str, StackLock]:
    """The locks committed at ``rev`` (none when locks/ did not exist there)."""
    try:
        proc.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root)
    except CommandError:
        raise BakegenError(
            f"'{rev}' is not a git revision in {root}",
            hint="name a commit, branch or tag, e.g. HEAD or origin/main",
        ) from None
    listing = proc.run(
        ["git", "ls-tree", "-d", "--name-only", rev, "locks/"], cwd=root
    ).stdout.split()
    if not listing:
        return {}
    _check_rev_tree(root, rev)
    archive = proc.run(
        ["git", "archive", "--format=tar", rev, "locks/"], cwd=root, binary=True
    ).data
    with tempfile.TemporaryDirectory(prefix="bakegen-diff-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            _extract(tar, Path(tmp))
        return read_tree_locks(Path(tmp))


MAX_REV_BYTES = 200_000_000  # all of locks/ at a revision (a lock file is at most MAX_LOCK_FILE)
MAX_REV_FILES = 20_000


def _check_rev_tree(root: Path, rev: str) -> None:
    """The revision's locks/ holds regular files of bounded size only, before any of it is read."""
    out = proc.run(["git", "ls-tree", "-r", "-l", "-z", rev, "--", "locks/"], cwd=root).stdout
    entries = [line.split("\t", 1) for line in out.split("\0") if line]
    total = 0
    for meta, path in entries:
        mode, _, _, size = meta.split()
        if mode not in ("100644", "100755"):
            raise BakegenError(
                f"{rev}: {one_line(path, 120)} is not a regular file (mode {mode})",
                hint="locks/ holds regular files only",
            )
        if int(size) > MAX_LOCK_FILE:
            raise BakegenError(
                f"{rev}: {one_line(path, 120)} is larger than {MAX_LOCK_FILE} bytes",
                hint="locks/ holds lock files, not data",
            )
        total += int(size)
    if total > MAX_REV_BYTES or len(entries) > MAX_REV_FILES:
        raise BakegenError(
            f"{rev}: locks/ holds {len(entries)} files, {total} bytes: more than bakegen reads",
            hint="locks/ holds lock files, not data",
        )


def _extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Regular files and folders only, inside ``dest`` (Python < 3.11.4, e.g. Debian 12's, has no
    extraction filter)."""
    for member in tar.getmembers():
        if (
            not (member.isfile() or member.isdir())
            or member.name.startswith("/")
            or ".." in Path(member.name).parts
        ):
            raise BakegenError(
                f"git archive holds an unexpected entry {member.name!r}",
                hint="check the repository",
            )
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
    else:
        tar.extractall(dest)


# --- output -----------------------------------------------------------------------------


def to_json(
    diffs: list[ImageDiff], old_label: str, new_label: str, nodes: list[Node] | None = None
) -> str:
    doc: dict[str, Any] = {
        "_comment": f"{GENERATED_MARKER} {__version__} (bakegen diff)",
        "from": old_label,
        "to": new_label,
        "rebuild": [d.stack for d in diffs if d.rebuild],
        "images": {
            d.stack: {
                "status": d.status,
                "rebuild": d.rebuild,
                "reason": d.rebuild_reason or None,
                **({"figures": [
                    {"platform": f.platform, "old": f.old, "new": f.new, "note": f.note or None,
                     "changed_layers": [{"step": x.step, "digest": x.digest, "size": x.size}
                                        for x in f.changed],
                     "download_bytes": f.download, "size_change_bytes": f.size_change}
                    for f in d.figures
                ]} if d.figures else {}),
                "changes": {
                    eco: [
                        {"name": c.name, "change": c.kind, "from": c.old, "to": c.new,
                         **({"security": c.security} if c.security else {})}
                        for c in cs
                    ]
                    for eco, cs in d.changes.items()
                },
            }
            for d in diffs
        },
    }
    return json.dumps(doc, indent=2) + "\n"


def _line(c: Change) -> str:
    if c.kind == "added":
        return f"+ {c.name} {c.new}"
    if c.kind == "removed":
        return f"- {c.name} {c.old}"
    arrow = {"upgraded": "↑", "downgraded": "↓"}.get(c.kind, "→")
    return f"{arrow} {c.name} {c.old} -> {c.new}" + (f" ({c.security})" if c.security else "")


def to_text(
    diffs: list[ImageDiff], old_label: str, new_label: str, nodes: list[Node] | None = None
) -> str:
    lines = [
        f"# {GENERATED_MARKER} {__version__}",
        f"bakegen diff {one_line(old_label, 200)}..{new_label}",
    ]
    for d in diffs:
        if d.status == "unchanged" and not d.rebuild:
            continue
        head = f"{d.stack}: {d.status}" + (f", rebuild ({d.rebuild_reason})" if d.rebuild else "")
        lines.append(head)
        for eco in sections():
            for c in d.changes.get(eco, []):
                lines.append(f"  {eco}: {_line(c)}")
        for f in d.figures:
            lines.append(f"  {f.platform}: " + (
                f"{len(f.changed)} layers change ({', '.join(x.step for x in f.changed)}), "
                f"{size(f.download)} downloaded again, image size {size(f.size_change, True)}"
                if f.measured else f.note))
    rebuild = [d.stack for d in diffs if d.rebuild]
    lines.append(f"rebuild: {', '.join(rebuild) if rebuild else 'nothing'}")
    return "\n".join(lines) + "\n"


def to_markdown(
    diffs: list[ImageDiff], old_label: str, new_label: str, nodes: list[Node] | None = None
) -> str:
    """A pull request body. Every value from the repository (the revision, names, versions, a step's
    text) is a code span, which GitHub shows as it is: no HTML, no link, no @mention, no markdown of
    its own. ``nodes``: the image graph, drawn in Mermaid with the rebuilt images highlighted."""
    rebuild = [d.stack for d in diffs if d.rebuild]
    counts = {k: 0 for k in ("added", "removed", "upgraded", "downgraded")}
    for d in diffs:
        for cs in d.changes.values():
            for c in cs:  # "moved" (to another index) is counted when there is one
                counts[c.kind] = counts.get(c.kind, 0) + 1
    out = [
        f"<!-- {GENERATED_MARKER} {__version__} (bakegen diff) -->",
        "## Lock changes",
        "",
        f"{code(old_label)} → {code(new_label)}: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ".",
        "",
        "**Images to rebuild:** " + (", ".join(code(s) for s in rebuild) if rebuild else "none"),
    ]
    for d in diffs:
        if d.status == "unchanged" and not d.rebuild:
            continue
        reason = f", rebuild: {d.rebuild_reason}" if d.rebuild else ""
        out += ["", f"### {code(d.stack)} ({d.status}{_md_text(reason)})", ""]
        rows = [(eco, c) for eco in sections() for c in d.changes.get(eco, [])]
        if not rows:
            out.append("No package changes.")
            continue
        security = any(c.security for _, c in rows)
        extra = (" security |", "---|") if security else ("", "")
        out += ["| ecosystem | package | change | from | to |" + extra[0],
                "|---|---|---|---|---|" + extra[1]]
        for eco, c in rows:
            out.append(
                f"| {eco} | {code(c.name, table=True)} | {c.kind} | "
                f"{code(c.old or '', table=True)} | {code(c.new or '', table=True)} |"
                + (f" {code(c.security, table=True)} |" if security else "")
            )
    if any(d.figures for d in diffs):
        out += ["", "### What users download again", "", *_figures_md(diffs)]
    if nodes:
        out += ["", "### Image graph", "", "The images this change rebuilds are highlighted.", "",
                "```mermaid", to_mermaid(nodes, set(rebuild)).rstrip("\n"), "```"]
    return "\n".join(out) + "\n"


def size(n: int | None, signed: bool = False) -> str:
    """Bytes as MB (kB under 0.1 MB), with a sign for a change."""
    if n is None:
        return ""
    sign = ("+" if n > 0 else "-" if n < 0 else "±") if signed else ""
    value = abs(n)
    return f"{sign}{value / 1e6:.1f} MB" if value >= 100_000 else f"{sign}{value / 1e3:.1f} kB"


def _figures_md(diffs: list[ImageDiff]) -> list[str]:
    out = ["| image | platform | layers that change | downloaded again | image size |",
           "|---|---|---|---|---|"]
    for d in diffs:
        for f in d.figures:
            if not f.measured:
                out.append(f"| {code(d.stack, table=True)} | {f.platform} | not built | | |")
                continue
            layers = ", ".join(
                f"{code(step, table=True)} ({size(total)}" + (f", {n} layers)" if n > 1 else ")")
                for step, n, total in _grouped(f.changed))
            out.append(f"| {code(d.stack, table=True)} | {f.platform} | {layers or 'none'} | "
                       f"{size(f.download)} | {size(f.size_change, signed=True)} |")
    out += ["", "Downloaded again: the compressed layers (and the config) that the new image has "
            f"and the old one has not, from the {SOURCE_BYTES}. Image size: the change on disk, "
            f"from the {SOURCE_SIZE}. The images compared:", ""]
    for d in diffs:
        for f in d.figures:
            out.append(f"- {code(d.stack)} {f.platform}: {code(f.old or 'none')} → "
                       f"{code(f.new or 'none')}" + (f" ({_md_text(f.note)})" if f.note else ""))
    return out


def _grouped(layers: list[Any]) -> list[tuple[str, int, int]]:
    """Layers of one step name in a row, together: (name, how many, bytes)."""
    out: list[tuple[str, int, int]] = []
    for layer in layers:
        if out and out[-1][0] == layer.step:
            out[-1] = (layer.step, out[-1][1] + 1, out[-1][2] + layer.size)
        else:
            out.append((layer.step, 1, layer.size))
    return out


def code(text: str, table: bool = False) -> str:
    """``text`` as a markdown code span, whatever it holds: a fence longer than any run of backticks
    in it, padded when it starts or ends with a backtick or a space; ``|`` escaped in a table cell
    (GFM splits cells first). Empty text is nothing."""
    text = one_line(str(text), 300)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if table else span


_MARKDOWN = re.compile(r"([\\`*_\[\]<>&@#~|!])")


def _md_text(text: str) -> str:
    """Text of bakegen's own with a stack name in it (a rebuild reason): every markdown character
    escaped (a stack name has no dot or colon, so no link can form)."""
    return _MARKDOWN.sub(r"\\\1", text)


FORMATS = {"text": to_text, "markdown": to_markdown, "json": to_json}
