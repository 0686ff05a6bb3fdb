"""The image graph as a picture: Mermaid (GitHub renders it in a pull request body and in
Markdown files) and Graphviz dot.

A node is a stack: its name and, for a root, its base image (without the digest). An edge goes
from a parent to each child. The images that a change rebuilds are highlighted. Names and
image references are checked values (a stack name, an OCI reference), and are quoted for each
language anyway: tests/test_graph.py checks both outputs with the real parsers (Mermaid's own,
and Graphviz's dot).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bakegen.errors import BakegenError
from bakegen.lock import StackLock
from bakegen.oci import ImageRef
from bakegen.stack import StackGraph

CHANGED_FILL = "#ffd8a8"  # the highlighted images' colour (an orange that reads in light and dark)
CHANGED_STROKE = "#e8590c"


@dataclass(frozen=True)
class Node:
    name: str
    parent: str | None
    base: str | None  # a root's base image, NAME[:TAG] (its digest left out)


def nodes_of_graph(graph: StackGraph) -> list[Node]:
    return [Node(n, graph.stacks[n].extends, _without_digest(graph.stacks[n].base))
            for n in graph.order]


def nodes_of_locks(locks: dict[str, StackLock]) -> list[Node]:
    """The graph as the locks record it (``bakegen diff`` has locks, not stack files): parents
    first."""
    out: list[Node] = []
    placed: set[str] = set()
    todo = sorted(locks)
    while todo:
        ready = [n for n in todo if locks[n].parent is None or locks[n].parent in placed
                 or locks[n].parent not in locks]
        for name in ready or todo:
            image = locks[name].parts.get("image")
            base = _without_digest(image.ref if image else None)
            out.append(Node(name, locks[name].parent, base))
            placed.add(name)
        todo = [n for n in todo if n not in placed]
    return out


def _without_digest(ref: str | None) -> str | None:
    """NAME[:TAG]; None for no reference, or one that is not a valid image reference (a lock from
    another revision can hold anything)."""
    try:
        ImageRef.parse(ref) if ref else None
    except BakegenError:
        return None
    return ref.split("@", 1)[0] if ref else None


def to_mermaid(nodes: list[Node], changed: Collection[str] = ()) -> str:
    """A Mermaid flowchart; node ids are n0, n1, ... (a stack name with a hyphen is a label, not
    an id)."""
    ids = {node.name: f"n{i}" for i, node in enumerate(nodes)}
    lines = ["flowchart TD"]
    for node in nodes:
        label = node.name + (f"<br/>{node.base}" if node.base else "")
        lines.append(f'  {ids[node.name]}["{_mermaid_text(label)}"]')
    for node in nodes:
        if node.parent in ids:
            lines.append(f"  {ids[node.parent]} --> {ids[node.name]}")
    marked = [ids[n.name] for n in nodes if n.name in changed]
    if marked:
        style = f"fill:{CHANGED_FILL},stroke:{CHANGED_STROKE},stroke-width:2px"
        lines.append(f"  classDef changed {style}")
        lines.append(f"  class {','.join(marked)} changed")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: its quote and the characters Mermaid reads as markup
    (a backtick would start a Markdown string, and three would close the pull request body's
    code fence) written as entity codes; a control character as a space."""
    codes = {'"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "`": "#96;"}
    out = "".join(codes.get(ch, ch) if ch.isprintable() else " " for ch in text)
    return out.replace("#lt;br/#gt;", "<br/>")


def to_dot(nodes: list[Node], changed: Collection[str] = ()) -> str:
    lines = ["digraph bakegen {", "  rankdir=TB;", '  node [shape=box, fontname="sans-serif"];']
    for node in nodes:
        label = node.name + (f"\n{node.base}" if node.base else "")
        style = (f', style="filled,bold", fillcolor="{CHANGED_FILL}", color="{CHANGED_STROKE}"'
                 if node.name in changed else "")
        lines.append(f"  {_dot_string(node.name)} [label={_dot_string(label)}{style}];")
    names = {node.name for node in nodes}
    for node in nodes:
        if node.parent in names:
            lines.append(f"  {_dot_string(node.parent)} -> {_dot_string(node.name)};")
    return "\n".join(lines + ["}"]) + "\n"


def _dot_string(text: str | None) -> str:
    """A DOT double-quoted string: backslash and quote escaped, a line break as DOT's \\n."""
    body = str(text).replace("\\", "\\\\").replace('"', '\\"')
    body = "".join(ch if ch.isprintable() or ch == "\n" else " " for ch in body)
    return '"' + body.replace("\n", "\\n") + '"'


FORMATS = {"mermaid": to_mermaid, "dot": to_dot}
