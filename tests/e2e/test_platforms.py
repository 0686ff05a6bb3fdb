"""A two-platform stack and its child, locked for amd64 and arm64, built by one bake, pushed, and run.

The arm64 half runs under QEMU (scripts/engine.sh arm64). The base is the
stand-in index in the local registry, with an amd64 and an arm64 image, as the
real python:3.13-slim has; `bakegen lock` pins it there by digest. (Two --no-cache
builds of both platforms, bit for bit: make bench-repro.)
"""

from __future__ import annotations

import json
import time

import pytest
from packaging.utils import canonicalize_name

from bakegen.project import read_lock
from e2e.conftest import bakegen, docker, registry_get

pytestmark = pytest.mark.e2e

PLATFORMS = ["linux/amd64", "linux/arm64"]
MACHINE = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
INDEX = "application/vnd.oci.image.index.v1+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def stacks(base: str) -> dict[str, str]:
    return {
        # compiled wheels (numpy, pyzmq) and an apt package of each architecture
        "multi": f'name = "multi"\ndescription = "two platforms"\nbase = "{base}"\n'
                 # no pip in the image: its 800 files would be compiled under QEMU for nothing this test reads
                 'platforms = ["linux/amd64", "linux/arm64"]\n[python]\nversion = "3.13"\npip = false\npackages = ["numpy>=2.1,<3", "pyzmq>=26,<28"]\n'
                 '[apt]\nsuite = "trixie"\npackages = ["tini"]\n',
        "multikid": 'name = "multikid"\ndescription = "its child"\nextends = "multi"\n[python]\npackages = ["six"]\n',
    }


def platform_manifests(repo: str, tag: str = "latest") -> dict[str, dict]:
    """platform -> image manifest, from the pushed index (attestations left out)."""
    index, _ = registry_get(repo, tag)
    assert index["mediaType"] in (INDEX, LIST), index
    return {
        f"linux/{m['platform']['architecture']}": registry_get(repo, m["digest"])[0]
        for m in index["manifests"]
        if m.get("platform", {}).get("os") == "linux"
    }


@pytest.fixture(scope="module")
def pushed(arm64_standin, registry, engine, tmp_path_factory):
    base_tag = arm64_standin.split("@")[0].replace("127.0.0.1", "localhost")
    root = tmp_path_factory.mktemp("multi")
    (root / "stacks").mkdir()
    for name, text in stacks(base_tag).items():
        (root / "stacks" / f"{name}.toml").write_text(text)
    for args in (["lock"], ["generate"]):
        out = bakegen(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    prefix = f"{registry}/bakegen-e2e-multi"
    start = time.monotonic()
    build = bakegen(root, "build", "--push", "--registry", prefix, "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    print(f"two-platform bake and push of multi + multikid: {time.monotonic() - start:.0f}s")
    return root, prefix, arm64_standin


def test_the_base_is_pinned_per_platform_in_the_lock(pushed):
    root, _, standin = pushed
    lock = read_lock(root / "locks" / "multi")
    assert lock.platforms == PLATFORMS and lock.parts["image"].digest == standin.split("@")[1]
    assert sorted(lock.parts["image"].platforms) == PLATFORMS
    assert (root / "locks" / "multi" / "requirements-arm64.txt").is_file()


def test_the_index_has_both_platforms(pushed):
    _, prefix, _ = pushed
    for name in ("multi", "multikid"):
        assert sorted(platform_manifests(f"{prefix}/{name}")) == PLATFORMS
        # no provenance attestation (it holds build times) unless bakegen build --provenance: only
        # bakegen's SBOM attestation, one per platform, about that platform's image
        index, _ = registry_get(f"{prefix}/{name}", "latest")
        images = [m["digest"] for m in index["manifests"] if m["platform"]["os"] == "linux"]
        attestations = [m for m in index["manifests"] if m["platform"]["os"] == "unknown"]
        assert len(images) == 2 and sorted(m["annotations"]["vnd.docker.reference.digest"] for m in attestations) == sorted(images), index
        for m in attestations:
            manifest, _ = registry_get(f"{prefix}/{name}", m["digest"])
            assert [x["annotations"]["in-toto.io/predicate-type"] for x in manifest["layers"]] == ["https://cyclonedx.org/bom"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_each_platform_runs_its_own_lock(pushed, platform):
    root, prefix, _ = pushed
    image = f"{prefix}/multikid:latest"
    docker("pull", "-q", "--platform", platform, image)
    start = time.monotonic()
    probe = ("import json, platform, importlib.metadata as m, numpy, zmq, six\n"
             "print(json.dumps({'machine': platform.machine(), 'sum': int(numpy.arange(10).sum()),"
             " 'dists': sorted([d.metadata['Name'], d.version] for d in m.distributions())}))")
    out = json.loads(docker("run", "--rm", "--platform", platform, image, "python", "-c", probe))
    print(f"{platform}: python start + imports {time.monotonic() - start:.1f}s")
    assert out["machine"] == MACHINE[platform] and out["sum"] == 45
    locked = {(p.key, p.version) for s in ("multi", "multikid") for p in read_lock(root / "locks" / s).parts["python"].by_platform[platform]}
    assert {(canonicalize_name(n), v) for n, v in out["dists"]} == locked
    arch = platform.split("/")[1]
    dpkg = docker("run", "--rm", "--platform", platform, image, "dpkg-query", "-W", "-f", "${Package}:${Architecture}=${Version}\n")
    installed = set(dpkg.split())
    entries = [e for e in read_lock(root / "locks" / "multi").parts["apt"].entries if e.arch == arch and e.kind in ("req", "dep")]
    assert entries and {e.name for e in entries} >= {"tini"}
    for e in entries:
        assert f"{e.name}:{arch}={e.version}" in installed or f"{e.name}:all={e.version}" in installed, e


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_child_reuses_its_parents_layers(pushed, platform):
    _, prefix, _ = pushed
    parent = [layer["digest"] for layer in platform_manifests(f"{prefix}/multi")[platform]["layers"]]
    child = [layer["digest"] for layer in platform_manifests(f"{prefix}/multikid")[platform]["layers"]]
    assert len(child) > len(parent) and child[: len(parent)] == parent


def test_report_shows_each_platform(pushed):
    root, prefix, _ = pushed
    for name in ("multi", "multikid"):
        for platform in PLATFORMS:
            docker("pull", "-q", "--platform", platform, f"{prefix}/{name}:latest")
    out = bakegen(root, "report", "--registry", prefix, "--format", "json")
    assert out.returncode == 0, out.stderr
    reports = {(r["stack"], r["platform"]): r for r in json.loads(out.stdout)}
    assert sorted(reports) == [(s, p) for s in ("multi", "multikid") for p in PLATFORMS]
    for platform in PLATFORMS:
        kid = reports["multikid", platform]
        assert kid["added_size"] and kid["size"] == reports["multi", platform]["size"] + kid["added_size"]
    # numpy's wheels differ per architecture, so the two Python layers do too
    assert reports["multi", "linux/amd64"]["size"] != reports["multi", "linux/arm64"]["size"]


def test_one_job_per_platform_gives_the_one_machine_index(pushed, engine, machine_a, tmp_path):
    """multikid for amd64 and for arm64 in a job each (--platform), FROM multi's image in the registry, each pushed
    by digest; promote merges the two into the very index that the one-machine build of both platforms pushed.
    (Both jobs run on machine A, from its cache: a build on another machine gives the same layers, which
    tests/e2e/test_distributed.py checks with a second engine.)"""
    root, prefix, _ = pushed
    _, one_machine = registry_get(f"{prefix}/multikid", "latest")
    for machine, platform in ((machine_a, "linux/amd64"), (machine_a, "linux/arm64")):
        meta = tmp_path / f"multikid-{platform.split('/')[1]}.json"
        start = time.monotonic()
        out = machine.bakegen(root, "build", "--push", "--registry", prefix, "--stacks", "multikid", "--platform", platform,
                              "--ca-bundle", engine.ca_bundle, "--progress", "quiet", "--metadata-file", str(meta))
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        print(f"machine {machine.name}: multikid for {platform} alone: {time.monotonic() - start:.0f}s")
        entry = json.loads(meta.read_text())["multikid"]
        assert list(entry["bakegen.platforms"]) == [platform] and entry["containerimage.digest"] != one_machine
    assert registry_get(f"{prefix}/multikid", "latest")[1] == one_machine  # no tag moved yet
    promote = machine_a.bakegen(root, "promote", "multikid", "--registry", prefix, "--metadata", str(tmp_path),
                                "--metadata-file", str(tmp_path / "final.out"))
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert "(merged from one image per platform)" in promote.stdout
    merged = json.loads((tmp_path / "final.out").read_text())["multikid"]["containerimage.digest"]
    print(f"multikid: one machine {one_machine}, one job per platform {merged}")
    assert merged == one_machine == registry_get(f"{prefix}/multikid", "latest")[1]
