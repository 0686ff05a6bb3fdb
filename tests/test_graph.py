"""bakegen graph and the pull request body's picture, checked with the real parsers: Mermaid's own (the mermaid
package from npm, pinned in tests/tools, in a jsdom window) and Graphviz's dot (Debian's graphviz, `make tools`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from conftest import REPO, write_stacks
from fakes import lock_project

from bakegen.cli import main
from bakegen.graph import Node, to_dot, to_mermaid

TOOLS = REPO / "tests" / "tools"
NODE_ENV_PATH = f"{Path(sys.executable).parent}:/usr/bin:/bin"


def mermaid(*texts: str, tmp_path: Path) -> subprocess.CompletedProcess:
    files = []
    for i, text in enumerate(texts):
        files.append(tmp_path / f"g{i}.mmd")
        files[-1].write_text(text)
    return subprocess.run(["node", str(TOOLS / "mermaid-parse.mjs"), *map(str, files)], capture_output=True, text=True,
                          env={"PATH": NODE_ENV_PATH, "HOME": str(tmp_path)}, timeout=120)


def dot(text: str) -> subprocess.CompletedProcess:
    assert shutil.which("dot"), "Graphviz is installed by make tools (scripts/engine.sh graphviz)"
    return subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)


HOSTILE = 'evil"] ; click n0 "javascript:alert(1)" ; x["`**b**` ``` <script>#1 &amp;\n\tz'
GRAPHS = {
    "example": [Node("base", None, "python:3.13-slim"), Node("scipy", "base", None), Node("geo", "scipy", None)],
    "names": [Node("r-1", None, "localhost:5000/team/py-base:3.12"), Node("a-b-c", "r-1", None), Node("end", "r-1", None),
              Node("graph", None, "ghcr.io/acme/x:latest"), Node("subgraph", "graph", None), Node("2x", "graph", None)],
    "hostile": [Node("base", None, HOSTILE), Node("kid", "base", None)],
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_mermaid_s_parser_reads_every_graph(name, tmp_path):
    nodes = GRAPHS[name]
    plain, marked = to_mermaid(nodes), to_mermaid(nodes, {nodes[-1].name})
    out = mermaid(plain, marked, tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": flowchart-v2") == 2
    assert "click" not in re.sub(r'"[^"]*"', "", marked)  # a label never ends early: no directive outside one


def test_mermaid_s_parser_can_fail(tmp_path):
    out = mermaid('flowchart TD\n  n0["base] --> n1\n', tmp_path=tmp_path)
    assert out.returncode == 1 and "Parse error" in out.stderr


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graphviz_reads_every_graph(name):
    nodes = GRAPHS[name]
    out = dot(to_dot(nodes, {nodes[0].name}))
    assert out.returncode == 0, out.stderr
    titles = [unescape(t) for t in re.findall(r"<title>(.*?)</title>", out.stdout)]
    assert {n.name for n in nodes} <= set(titles), titles
    edges = {t for t in titles if "->" in t}
    assert edges == {f"{n.parent}->{n.name}" for n in nodes if n.parent}


def test_graphviz_can_fail():
    assert dot('digraph { "a" -> }').returncode != 0


def test_bakegen_graph_highlights_what_a_change_since_a_revision_rebuilds(tmp_path, capsys):
    root = write_stacks(tmp_path / "p", {
        "base": 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["six"]\n',
        "kid": 'name = "kid"\ndescription = "k"\nextends = "base"\n[python]\npackages = ["packaging"]\n',
        "other": 'name = "other"\ndescription = "o"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["six"]\n',
    })
    lock_project(root)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "before"], check=True)
    (root / "stacks" / "base.toml").write_text((root / "stacks" / "base.toml").read_text().replace('["six"]', '["six", "tornado"]'))
    lock_project(root)
    assert main(["-C", str(root), "graph", "--changed-since", "HEAD"]) == 0
    text = capsys.readouterr().out
    ids = dict(re.findall(r'(n\d+)\["(\w+)', text))
    assert re.search(r"^  class (\S+) changed$", text, re.M).group(1).split(",") == [k for k, v in ids.items() if v in ("base", "kid")]
    assert mermaid(text, tmp_path=tmp_path).returncode == 0
    assert main(["-C", str(root), "graph", "--format", "dot", "--changed-since", "HEAD", "-o", str(root / "g.dot")]) == 0
    assert dot((root / "g.dot").read_text()).returncode == 0
    assert main(["-C", str(root), "graph", "--changed-since", "nope"]) == 2


def test_the_pull_request_body_s_picture_is_mermaid_github_shows(tmp_path, capsys):
    """The diff's Markdown as GitHub's own parser reads it: one mermaid block, which Mermaid's parser reads."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    from bakegen.diff import Change, ImageDiff, to_markdown

    diffs = [ImageDiff("base", "changed", {"python": [Change("six", "1.16.0", "1.17.0")]}, True, "its lock changed")]
    body = to_markdown(diffs, "main", "working tree", nodes=GRAPHS["hostile"])
    html = cmarkgfm.github_flavored_markdown_to_html(body, options=Options.CMARK_OPT_UNSAFE)
    (block,) = re.findall(r'<pre lang="mermaid"><code>(.*?)</code></pre>', html, flags=re.S)
    assert mermaid(unescape(block), tmp_path=tmp_path).returncode == 0
    assert "<script" not in html
