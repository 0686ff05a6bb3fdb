"""kill -9 at any moment of lock --upgrade, generate and init: every output all old or all new.

Each run is a real process, killed with SIGKILL after a delay; its renames are
slowed (in the test's wrapper, not in bakegen) so that kills land between them.
After a kill, `bakegen check` names an unfinished write, the next run of the same
command finishes it, and no temporary file stays in the tree.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HERE, tree

# The wrapper: slow renames down, resolve with the fakes (no network), then run the CLI.
WRAPPER = """
import os, sys, time
sys.path[:0] = [{tests!r}]
import bakegen.files, bakegen.cli, bakegen.locker
from fakes import FakeImages, FakeResolver
real = os.replace
def slow(src, dst):
    time.sleep(0.1)
    return real(src, dst)
bakegen.files.os.replace = slow
bakegen.cli.get_resolver = lambda name: FakeResolver()
bakegen.cli.Resolvers = lambda python: bakegen.locker.Resolvers(python=python, image=FakeImages())
sys.exit(bakegen.cli.main(sys.argv[1:]))
"""

BASE = 'name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["jupyterlab<4.3"]\n'
KID = 'name = "kid"\ndescription = "k"\nextends = "base"\n[python]\npackages = ["pandas"]\n'
GEO = 'name = "geo"\ndescription = "g"\nextends = "kid"\n[python]\npackages = ["ipyleaflet"]\n'


def run(root: Path, *args: str, kill_after: float | None = None) -> int | None:
    cmd = [sys.executable, "-c", WRAPPER.format(tests=str(HERE)), "-C", str(root), *args]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1790000000"}  # the same lock dates in every run
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if kill_after is None:
        return proc.wait(60)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    return None


def project(tmp: Path, upgrade_ready: bool = True) -> Path:
    root = tmp / "p"
    (root / "stacks").mkdir(parents=True)
    for name, text in {"base": BASE, "kid": KID, "geo": GEO}.items():
        (root / "stacks" / f"{name}.toml").write_text(text)
    assert run(root, "lock") == 0 and run(root, "generate") == 0
    return root


def scenario(tmp: Path, command: str) -> tuple[Path, list[str]]:
    """A project where ``command`` changes many files, and the arguments to run."""
    if command == "init":
        root = tmp / "p"
        root.mkdir(parents=True)
        return root, ["init"]
    root = project(tmp)
    (root / "stacks" / "base.toml").write_text(BASE.replace("jupyterlab<4.3", "jupyterlab"))
    if command == "lock":
        return root, ["lock", "--upgrade"]  # moves jupyterlab: every lock file of every stack changes
    assert run(root, "lock", "--upgrade") == 0
    return root, ["generate"]


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if ".bakegen-transaction" in p.parts or p.name.endswith((".tmp", ".part"))]


@pytest.mark.parametrize("command", ["lock", "generate", "init"])
def test_killed_at_any_moment_all_old_or_all_new(command, tmp_path):
    root, args = scenario(tmp_path / "s", command)
    old = tree(root)
    done = tmp_path / "done"
    shutil.copytree(root, done)
    started = time.monotonic()
    assert run(done, *args) == 0
    whole = time.monotonic() - started
    new = tree(done)
    assert new != old
    seen = {"old": 0, "new": 0, "interrupted": 0}
    for i in range(16):
        work = tmp_path / f"k{i}"
        shutil.copytree(root, work)
        run(work, *args, kill_after=whole * i / 15)
        state = tree(work)
        if (work / ".bakegen-transaction").exists():
            seen["interrupted"] += 1
            checked = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(work), "check"], capture_output=True, text=True)
            if command != "init":
                assert checked.returncode == 1 and checked.stdout.startswith("stale: interrupted "), checked.stdout + checked.stderr
            assert run(work, *args) == 0  # the next run finishes it
            after = tree(work)
            assert after == new, [k for k in sorted(set(after) | set(new)) if after.get(k) != new.get(k)]
            assert not leftovers(work)
        else:
            assert state in (old, new), f"kill {i}: a mix of old and new files"
            seen["old" if state == old else "new"] += 1
            assert not leftovers(work)
        shutil.rmtree(work)
    assert seen["interrupted"] > 0 and seen["old"] > 0, seen  # the kills landed before and inside the write


TERM_WRAPPER = """
import sys, time
from pathlib import Path
import bakegen.build, bakegen.cli
def slow_build(root, chain, opts, work, names, sbom=None):
    (Path(work) / "base").mkdir()
    (Path(work) / "base" / "blob").write_bytes(b"layer")
    print("building", flush=True)
    time.sleep(60)
bakegen.build.reproducible_build = slow_build
sys.exit(bakegen.cli.main(sys.argv[1:]))
"""


def test_sigterm_during_a_build_removes_its_oci_layouts(tmp_path):
    """A cancelled CI job sends SIGTERM: bakegen build stops with one error line and leaves no layout in TMPDIR."""
    root = project(tmp_path)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    cmd = [sys.executable, "-c", TERM_WRAPPER, "-C", str(root), "build", "--load"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.stdout.readline() == "building\n"
    assert [p.name for p in scratch.iterdir()][0].startswith("bakegen-build-")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err == "error: terminated (SIGTERM)\n", err
    assert list(scratch.iterdir()) == []
