#!/usr/bin/env python3
"""Reproducible, yes or no: each example stack, a stack with its own files, and a two-platform stack.

Prints figures; asserts nothing. Run: make bench-repro (needs the engine: make engine; the
two-platform case also needs scripts/engine.sh arm64, which make engine runs).

For each case, `bakegen verify-repro STACK`: two `--no-cache` builds from the same locks (a
child's builds include its parents), each to an OCI layout with rewrite-timestamp; yes when the
image digests are equal, else the first differing file. The cases:

* the shipped stacks, as shipped (scipy and geo slim);
* `custom`: the example base with a file, a user's file, a start hook and two build steps;
* `multi`: numpy and pyzmq for linux/amd64 and linux/arm64 (QEMU) on the stand-in index.

The CI suite keeps one real double build: tests/e2e/test_publish.py pushes the example graph
twice with --no-cache and compares the digests. These were its other double builds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from _bench import BASE_IMAGE, CA_BUNDLE, REPO, bakegen, project, table, workdir

from bakegen.project import load_stacks

CUSTOM = """\
name = "custom"
description = "The example base with files, a start hook and two build steps"
extends = "base"

[[files]]
source = "jupyter_server_config.py"
target = "/etc/jupyter/jupyter_server_config.py"

[[files]]
source = "tracker.jupyterlab-settings"
target = "/home/jovyan/.jupyter/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
owner = "user"

[[steps]]
run = "mkdir -p /srv/bakegen && echo made-by-root > /srv/bakegen/root.txt"
user = "root"
needs = []

[[steps]]
run = "jupyter --version > $HOME/.jupyter-version"

[start]
hooks = ["marker.sh"]
"""
MULTI = """\
name = "multi"
description = "two platforms"
base = "{base}"
platforms = ["linux/amd64", "linux/arm64"]
[python]
version = "3.13"
pip = false
packages = ["numpy>=2.1,<3", "pyzmq>=26,<28"]
[apt]
suite = "trixie"
packages = ["tini"]
"""


def verify(root: Path, name: str, base: str | None) -> tuple[bool, float, str]:
    cmd = [sys.executable, "-m", "bakegen", "-C", str(root), "verify-repro", name, "--progress", "quiet"]
    cmd += ["--base-image", f"base={base}"] if base else []
    cmd += ["--ca-bundle", CA_BUNDLE] if CA_BUNDLE else []
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(f"bench: verify-repro {name} failed:\n{proc.stdout}{proc.stderr[-4000:]}")
    return proc.returncode == 0, took, (proc.stdout.strip().splitlines() or ["?"])[-1].removeprefix(f"{name}: ")


def custom_project(tmp: Path) -> Path:
    root = project(tmp, "custom")
    (root / "stacks" / "custom.toml").write_text(CUSTOM)
    folder = root / "stacks" / "custom"
    folder.mkdir()
    (folder / "jupyter_server_config.py").write_text('c.ServerApp.tornado_settings = {"headers": {"X-Bakegen": "1"}}\n')
    (folder / "tracker.jupyterlab-settings").write_text('{"codeCellConfig": {"lineNumbers": true}}\n')
    (folder / "marker.sh").write_text("echo hook ran\n")
    bakegen(root, "lock")
    bakegen(root, "generate")
    return root


def multi_project(tmp: Path) -> Path | None:
    """The two-platform stack on the stand-in index (None when scripts/engine.sh arm64 cannot make it)."""
    proc = subprocess.run([str(REPO / "scripts" / "engine.sh"), "arm64"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  multi: skipped, scripts/engine.sh arm64 failed: {proc.stderr.strip()[-300:]}")
        return None
    base = proc.stdout.split()[-1].split("@")[0].replace("127.0.0.1", "localhost")
    root = tmp / "multi"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "multi.toml").write_text(MULTI.format(base=base))
    bakegen(root, "lock")
    bakegen(root, "generate")
    return root


def main() -> None:
    rows = [["stack", "reproducible", "time (2 builds)", "digest or first difference"]]
    with workdir() as tmp:
        shipped = project(tmp, "graph")
        cases = [(shipped, name, BASE_IMAGE) for name in load_stacks(shipped).order]
        cases.append((custom_project(tmp), "custom", BASE_IMAGE))
        multi = multi_project(tmp)
        if multi is not None:
            cases.append((multi, "multi", None))
        for root, name, base in cases:
            same, took, detail = verify(root, name, base)
            rows.append([name, "yes" if same else "no", f"{took:.0f}s", detail])
            print(f"  {name}: {detail} ({took:.0f}s)", flush=True)
    print(f"base image: {BASE_IMAGE} (multi: the stand-in index for amd64 and arm64)")
    print(table(rows))


if __name__ == "__main__":
    main()
