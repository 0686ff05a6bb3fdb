"""Shared e2e fixtures: the example graph, built once per session with a real BuildKit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, tree
from packaging.version import Version

from bakegen.project import load_stacks

PREFIX = "bakegen-e2e"


def bakegen(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True)


def docker(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@dataclass
class Built:
    root: Path
    order: list[str]
    parents: dict[str, str | None]

    def image(self, name: str) -> str:
        return f"{PREFIX}/{name}:latest"

    def chain(self, name: str) -> list[str]:
        out = [name]
        while self.parents[out[0]]:
            out.insert(0, self.parents[out[0]])  # type: ignore[arg-type]
        return out


def copy_project(source: Path, root: Path) -> Path:
    """The stacks, locks and generated files of ``source`` in ``root``."""
    for d in ("stacks", "locks", "dockerfiles"):
        shutil.copytree(source / d, root / d)
    shutil.copy(source / "docker-bake.hcl", root)
    return root


@pytest.fixture(scope="session")
def built(engine, tmp_path_factory) -> Built:
    root = copy_project(REPO, tmp_path_factory.mktemp("project"))
    before = tree(root)

    lock = bakegen(root, "lock")
    assert lock.returncode == 0, lock.stderr
    assert [line.split(":")[1].split("(")[0].strip() for line in lock.stdout.splitlines()] == ["up to date"] * 3, lock.stdout
    gen = bakegen(root, "generate", "--check")
    assert gen.returncode == 0, gen.stderr
    assert tree(root) == before, "the committed locks and generated files must be current"
    refresh_apt(root)

    args = ["build", "--base-image", f"base={engine.standin}", "--registry", PREFIX, "--load", "--progress", "plain"]
    if Path(engine.ca_bundle).is_file():
        args += ["--ca-bundle", engine.ca_bundle]
    start = time.monotonic()
    # The root first, then the whole graph (as an incremental CI build does); the layer
    # test below checks that the children still reuse the root's layers.
    first = bakegen(root, *args, "base")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    build = bakegen(root, *args)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    print(f"bake of the example graph: {time.monotonic() - start:.1f}s")
    graph = load_stacks(root)
    return Built(root, graph.order, {n: graph.stacks[n].extends for n in graph.order})


def refresh_apt(root: Path) -> None:
    """Move the copy's apt pins to what Debian's archive serves today.

    Debian replaces a version in its archive when it publishes an update, and
    the snapshot archive is not reachable here, so a committed apt lock stops
    being installable within days. The e2e tests build the committed Python and
    npm locks as they are, and the apt lock as ``bakegen lock
    --upgrade-ecosystem apt`` makes it today (every apt pin at its newest).
    """
    for args in (["lock", "--upgrade-ecosystem", "apt"], ["generate"]):
        out = bakegen(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr


MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def registry_get(repo: str, reference: str) -> tuple[dict, str]:
    """A manifest or index from the local registry (repo: HOST/NAME; reference: a tag or digest), and its digest.

    Its ``mediaType`` is the registry's Content-Type: an OCI index need not repeat it in its body.
    """
    host, _, name = repo.partition("/")
    url = f"http://{host.replace('localhost', '127.0.0.1')}/v2/{name}/manifests/{reference}"
    req = urllib.request.Request(url, headers={"Accept": MANIFEST_TYPES})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as resp:
        doc = {**json.load(resp), "mediaType": resp.headers["Content-Type"].split(";")[0]}
        return doc, resp.headers["Docker-Content-Digest"]


def run(image: str, *cmd: str) -> str:
    return docker("run", "--rm", image, *cmd)


def last_bake_steps(log: str, target: str) -> dict[str, bool]:
    """The RUN and COPY steps of the last bake in a ``--progress plain`` log (bakegen build bakes one level at a
    time, each numbered from #0), each with whether it ran (False: CACHED). With one target in a bake, BuildKit
    names its steps without the target (``[builder 1/1]``)."""
    log = log[log.rindex("#0 building with"):]
    steps = {m.group(1): m.group(2) for m in re.finditer(rf"^#(\d+) \[(?:{re.escape(target)} )?[^\]]*\] ((?:RUN|COPY)[^\n]*)$", log, re.M)}
    return {text: not re.search(rf"^#{n} CACHED$", log, re.M) for n, text in steps.items()}


def older_release(package: str, current: str) -> str:
    """The newest release of ``package`` on PyPI before ``current``."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/json", timeout=30) as resp:
        releases = json.load(resp)["releases"]
    older = sorted((Version(v) for v, files in releases.items() if files and Version(v) < Version(current) and not Version(v).is_prerelease))
    return str(older[-1])


# --- two machines ---------------------------------------------------------------------------


@dataclass
class Machine:
    """A machine of its own: a Docker engine (DOCKER_HOST), a HOME (docker's config, contexts and
    buildx state) and a TMPDIR. Machine B's engine is scripts/engine.sh's second engine: its own
    dockerd, containerd, data-root and socket. A and B share nothing but the registry."""

    name: str
    env: dict[str, str]

    def bakegen(self, root: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True, env=self.env)

    def docker(self, *args: str) -> str:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise AssertionError(f"{self.name}: docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def cache_records(self) -> int:
        """BuildKit's cache records on this machine's engine."""
        return len([line for line in self.docker("buildx", "du", "--verbose").splitlines() if line.startswith("ID:")])


def _machine(name: str, tmp_path_factory, **env: str) -> Machine:
    home = tmp_path_factory.mktemp(f"home-{name}")
    tmp = tmp_path_factory.mktemp(f"tmp-{name}")
    base = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "BUILDX_BUILDER")}
    return Machine(name, {**base, "HOME": str(home), "TMPDIR": str(tmp), **env})


@pytest.fixture(scope="session")
def machine_a(engine, tmp_path_factory) -> Machine:
    """The first engine, with a HOME of its own."""
    return _machine("a", tmp_path_factory)


@pytest.fixture(scope="session")
def machine_b(engine, tmp_path_factory) -> Machine:
    """The second engine (scripts/engine.sh second), emptied first: it has never built or pulled
    anything in this run."""
    proc = subprocess.run([str(REPO / "scripts" / "engine.sh"), "second"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/engine.sh second failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    host = proc.stdout.split()[-1]
    assert host.startswith("unix://") and host != "unix:///var/run/docker.sock", host
    b = _machine("b", tmp_path_factory, DOCKER_HOST=host)
    b.docker("system", "prune", "--all", "--force")
    b.docker("buildx", "prune", "--all", "--force")
    assert b.cache_records() == 0 and not b.docker("image", "ls", "--quiet").split()
    assert b.docker("info", "--format", "{{.DockerRootDir}}") != docker("info", "--format", "{{.DockerRootDir}}")
    return b


# --- one-machine pushes ---------------------------------------------------------------------


def push(root, engine, registry, *extra):
    meta = root / f"metadata-{registry.rsplit('/', 1)[1]}.json"
    start = time.monotonic()
    out = bakegen(root, "build", "--push", "--registry", registry, "--base-image", f"base={engine.standin}",
                  "--ca-bundle", engine.ca_bundle, "--progress", "quiet", "--metadata-file", str(meta), *extra)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"bakegen build --push {' '.join(extra)} to {registry}: {time.monotonic() - start:.0f}s")
    return json.loads(meta.read_text())


@pytest.fixture(scope="session")
def published(built, engine, registry, tmp_path_factory):
    """Two clean pushes of the example graph, on one machine, into two repositories that no earlier run used.
    The registry outlives a test run (a warm machine, a CI runner that ran before), and bit-for-bit images are
    the same every run: an earlier run's leaf bump would have left the very layers this run's bump makes, and
    nothing would be uploaded."""
    root = copy_project(built.root, tmp_path_factory.mktemp("publish"))
    run = uuid.uuid4().hex[:8]
    a = push(root, engine, f"{registry}/bakegen-pub-{run}-a", "--no-cache")
    b = push(root, engine, f"{registry}/bakegen-pub-{run}-b", "--no-cache")
    return root, f"{registry}/bakegen-pub-{run}", a, b
