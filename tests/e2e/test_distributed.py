"""Building on many machines: two engines, A (the first) and B (scripts/engine.sh second: its own
dockerd, containerd, data-root and socket), that share nothing but the local registry.

A builds and pushes base. B, which has never seen base, builds scipy and geo FROM base's digest in
the registry. The digests equal those of a one-machine bakegen build --push; B built no layer of
base; a registry cache from A serves B; a failed leaf moves no tag, a later run moves them all;
and --builder runs a build on B's engine from A's command line.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.conftest import copy_project, registry_get

pytestmark = pytest.mark.e2e
STACKS = ("base", "scipy", "geo")


@dataclass
class Run:
    root: Path
    repo: str  # REGISTRY of the distributed build
    meta: Path  # the jobs' metadata files
    digests: dict[str, str]  # what promote tagged
    logs: dict[str, str]  # B's build log per stack
    seconds: dict[str, float]  # B's build time per stack


def job(machine, root, repo, stacks, meta, engine, *extra):
    """One CI job: build only ``stacks`` FROM their parents' digests and push by digest; its metadata file."""
    out_file = meta / f"{'-'.join(stacks)}-{machine.name}.json"
    parents = ["--parents", str(meta)] if any(meta.iterdir()) else []
    start = time.monotonic()
    out = machine.bakegen(root, "build", "--push", "--registry", repo, "--stacks", *stacks, *parents,
                          "--ca-bundle", engine.ca_bundle, "--progress", "plain", "--metadata-file", str(out_file), *extra)
    seconds = time.monotonic() - start
    assert out.returncode == 0, f"{machine.name}: {out.stdout[-3000:]}{out.stderr[-3000:]}"
    assert "pushed by digest only, no tag moved" in out.stdout
    print(f"machine {machine.name}: bakegen build --push --stacks {' '.join(stacks)}: {seconds:.0f}s")
    return out.stdout + out.stderr, seconds


def tags(repo: str) -> dict[str, str | None]:
    """Every tag of every stack in ``repo`` -> the digest it names (None: no such tag)."""
    out = {}
    for stack in STACKS:
        for tag in ("latest", "python-3.13"):
            try:
                out[f"{stack}:{tag}"] = registry_get(f"{repo}/{stack}", tag)[1]
            except Exception:  # noqa: BLE001 - the registry's 404
                out[f"{stack}:{tag}"] = None
    return out


@pytest.fixture(scope="module")
def distributed(built, engine, registry, machine_a, machine_b, tmp_path_factory) -> Run:
    root = copy_project(built.root, tmp_path_factory.mktemp("distributed"))
    repo = f"{registry}/bakegen-dist-{uuid.uuid4().hex[:8]}"
    meta = tmp_path_factory.mktemp("metadata")
    out = machine_a.bakegen(root, "build", "--push", "--registry", repo, "--stacks", "base", "--base-image", f"base={engine.standin}",
                            "--ca-bundle", engine.ca_bundle, "--progress", "quiet", "--metadata-file", str(meta / "base-a.json"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert tags(repo)["base:latest"] is None  # pushed by digest: no tag yet
    logs, seconds = {}, {}
    for stack in ("scipy", "geo"):
        logs[stack], seconds[stack] = job(machine_b, root, repo, [stack], meta, engine)
    promoted = machine_a.bakegen(root, "promote", "--registry", repo, "--metadata", str(meta), "--metadata-file", str(root / "final.json"))
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    final = json.loads((root / "final.json").read_text())
    return Run(root, repo, meta, {s: final[s]["containerimage.digest"] for s in STACKS}, logs, seconds)


def test_the_digests_equal_a_one_machine_push(distributed, published):
    _, _, one_machine, _ = published
    for stack in STACKS:
        _, tagged = registry_get(f"{distributed.repo}/{stack}", "latest")
        print(f"{stack}: one machine {one_machine[stack]['containerimage.digest']}, two machines {tagged}")
        assert tagged == distributed.digests[stack] == one_machine[stack]["containerimage.digest"], stack


def test_b_built_no_layer_of_base(distributed, built):
    """B's log holds scipy's and geo's steps only: it read base's image by digest, and ran none of the steps that
    only base's Dockerfile has (they bind-mount base's own lock files)."""
    base_only = set(re.findall(r"source=(locks/base/[^,\s]+)", (built.root / "dockerfiles/base/Dockerfile").read_text()))
    base_only -= set(re.findall(r"source=(locks/base/[^,\s]+)", (built.root / "dockerfiles/scipy/Dockerfile").read_text()))
    assert base_only, "base's Dockerfile mounts lock files of its own"
    log = distributed.logs["scipy"]
    assert f"[context base] load metadata for {distributed.repo}/base@sha256:" in log
    ran = re.findall(r"^#\d+ \[[^\]]*\] (?:RUN|COPY).*$", log, re.M)
    assert ran and not [step for step in ran if any(src in step for src in base_only)]
    assert f"[context scipy] load metadata for {distributed.repo}/scipy@sha256:" in distributed.logs["geo"]


def test_a_registry_cache_from_a_serves_b(distributed, engine, machine_a, machine_b):
    """A exports scipy's layer cache to the registry; B, its build cache emptied, rebuilds scipy from it."""
    cache = f"{distributed.repo}/bakegen-cache"
    meta = distributed.meta
    job(machine_a, distributed.root, distributed.repo, ["scipy"], meta, engine, "--cache", cache)
    machine_b.docker("buildx", "prune", "--all", "--force")
    assert machine_b.cache_records() == 0
    log, seconds = job(machine_b, distributed.root, distributed.repo, ["scipy"], meta, engine, "--cache", cache)
    cold = distributed.seconds["scipy"]
    print(f"B's build of scipy: {cold:.0f}s with no cache, {seconds:.0f}s from A's registry cache ({seconds / cold:.2f}x)")
    steps = {m.group(1): m.group(2) for m in re.finditer(r"^#(\d+) \[[^\]]*\] ((?:RUN|COPY).*)$", log, re.M)}
    cached = [text for n, text in steps.items() if re.search(rf"^#{n} CACHED$", log, re.M)]
    assert any("uv pip install" in text for text in cached), "the Python install step came from A's cache"
    digest = json.loads((meta / "scipy-b.json").read_text())["scipy"]["containerimage.digest"]
    assert digest == distributed.digests["scipy"]


def test_a_failed_leaf_moves_no_tag_and_a_later_run_moves_them_all(distributed, engine, machine_a, machine_b, tmp_path):
    """scipy changes (a new last step) and geo fails after scipy was pushed: promote refuses, every tag stays.
    geo fixed, the next run moves every tag."""
    root, repo = distributed.root, distributed.repo
    before = tags(repo)
    assert before["scipy:latest"] == distributed.digests["scipy"] and before["geo:latest"] == distributed.digests["geo"]
    stacks = root / "stacks"
    scipy_toml, geo_toml = (stacks / "scipy.toml").read_text(), (stacks / "geo.toml").read_text()
    (stacks / "scipy.toml").write_text(scipy_toml + '\n[[steps]]\nrun = "echo two machines > /tmp/bakegen-e2e-marker"\n')
    (stacks / "geo.toml").write_text(geo_toml + '\n[[steps]]\nrun = "exit 3"\nneeds = []\n')
    for args in (["lock"], ["generate"]):
        out = machine_a.bakegen(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    meta = tmp_path / "run-2"
    meta.mkdir()
    (meta / "base-a.json").write_text((distributed.meta / "base-a.json").read_text())  # base did not change
    job(machine_b, root, repo, ["scipy"], meta, engine)
    failed = machine_b.bakegen(root, "build", "--push", "--registry", repo, "--stacks", "geo", "--parents", str(meta),
                               "--ca-bundle", engine.ca_bundle, "--progress", "quiet", "--metadata-file", str(meta / "geo-b.json"))
    assert failed.returncode != 0 and not (meta / "geo-b.json").exists()
    promote = machine_a.bakegen(root, "promote", "--registry", repo, "--metadata", str(meta))
    assert promote.returncode != 0
    assert promote.stderr.splitlines()[0] == "error: geo: no job pushed an image of it (no metadata file names it)"
    assert tags(repo) == before, "a failed job leaves every tag where it was"
    new_scipy = json.loads((meta / "scipy-b.json").read_text())["scipy"]["containerimage.digest"]
    assert new_scipy != before["scipy:latest"]

    (stacks / "geo.toml").write_text(geo_toml)
    for args in (["lock"], ["generate"]):
        assert machine_a.bakegen(root, *args).returncode == 0
    job(machine_b, root, repo, ["geo"], meta, engine)
    promote = machine_a.bakegen(root, "promote", "--registry", repo, "--metadata", str(meta))
    assert promote.returncode == 0, promote.stdout + promote.stderr
    after = tags(repo)
    new_geo = json.loads((meta / "geo-b.json").read_text())["geo"]["containerimage.digest"]
    assert after["scipy:latest"] == after["scipy:python-3.13"] == new_scipy
    assert after["geo:latest"] == after["geo:python-3.13"] == new_geo != before["geo:latest"]
    assert after["base:latest"] == before["base:latest"]
    (stacks / "scipy.toml").write_text(scipy_toml)
    for args in (["lock"], ["generate"]):
        assert machine_a.bakegen(root, *args).returncode == 0


def test_a_remote_builder_builds_on_b_from_a_s_command_line(distributed, engine, machine_a, machine_b, tmp_path):
    """--builder names a docker context of B's engine: the build runs there (buildx says so, and A's build cache
    does not change), and gives the one-machine digest."""
    machine_a.docker("context", "create", "engine-b", "--docker", f"host={machine_b.env['DOCKER_HOST']}")
    meta = tmp_path / "remote"
    meta.mkdir()
    (meta / "base-a.json").write_text((distributed.meta / "base-a.json").read_text())
    a_before = machine_a.cache_records()
    log, _ = job(machine_a, distributed.root, distributed.repo, ["scipy"], meta, engine, "--builder", "engine-b")
    assert '#0 building with "engine-b" instance using docker driver' in log
    assert machine_b.cache_records() > 0 and machine_a.cache_records() == a_before
    digest = json.loads((meta / "scipy-a.json").read_text())["scipy"]["containerimage.digest"]
    assert digest == distributed.digests["scipy"]
