"""Base-image digest pinning against a real OCI registry (Debian's docker-registry)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bakegen.project import read_lock
from e2e.conftest import bakegen, registry_get

pytestmark = pytest.mark.e2e


def push(tmp: Path, tag: str, base: str, marker: str) -> str:
    """Build FROM base with one marker file, push it with an index (provenance on); return the index digest."""
    ctx = tmp / marker
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo {marker} > /marker\n")
    subprocess.run(["docker", "buildx", "build", "--provenance=mode=min", "--push", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    return registry_digest(tag)


def registry_digest(tag: str) -> str:
    repo, _, ref = tag.rpartition(":")
    return registry_get(repo, ref)[1]


def test_lock_pins_digest_keeps_it_and_upgrade_moves_it(registry, engine, tmp_path):
    tag = f"{registry}/bakegen-test/python:3.13-slim"
    first = push(tmp_path, tag, engine.standin, "first")
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks" / "base.toml").write_text(
        f'name = "base"\ndescription = "from a local registry"\nbase = "{tag}"\n[python]\nversion = "3.13"\n'
    )
    out = bakegen(root, "lock")
    assert out.returncode == 0, out.stderr
    lock = read_lock(root / "locks" / "base")
    assert lock.parts["image"].digest == first
    index = json.loads(subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", tag], capture_output=True, text=True, check=True).stdout)
    amd64 = [m["digest"] for m in index["manifests"] if m.get("platform", {}).get("architecture") == "amd64"]
    assert lock.parts["image"].platforms == {"linux/amd64": amd64[0]}
    assert lock.parts["image"].media_type == "application/vnd.oci.image.index.v1+json"

    second = push(tmp_path, tag, engine.standin, "second")
    assert second != first
    assert bakegen(root, "lock").returncode == 0
    assert read_lock(root / "locks" / "base").parts["image"].digest == first  # a plain lock keeps the old digest

    # the generated files build FROM the pinned digest, not the moved tag
    assert bakegen(root, "generate").returncode == 0
    assert f"ARG BASE_IMAGE={tag}@{first}" in (root / "dockerfiles/base/Dockerfile").read_text()
    cache = f"{registry}/bakegen-test/cache"
    # the stack locks pip (python.pip defaults to true): the build reaches PyPI, through the proxy's CA here
    ca = ["--ca-bundle", engine.ca_bundle] if Path(engine.ca_bundle).is_file() else []
    build = bakegen(root, "build", "--load", "--registry", "bakegen-regtest", "--progress", "plain", "--cache", cache, *ca)
    assert build.returncode == 0, build.stderr[-3000:]
    assert registry_digest(f"{cache}:base").startswith("sha256:")  # the layer cache was exported to the registry
    meta = tmp_path / "bake-metadata.json"
    rebuild = bakegen(root, "build", "--load", "--registry", "bakegen-regtest", "--progress", "plain", "--cache", cache, "--metadata-file", str(meta), *ca)
    assert "importing cache manifest from " + cache in rebuild.stdout + rebuild.stderr
    # JupyterHub profiles pinned to the digest of the image BuildKit produced
    image_id = subprocess.run(["docker", "image", "inspect", "bakegen-regtest/base:latest", "--format", "{{.Id}}"], capture_output=True, text=True, check=True).stdout.strip()
    profiles = bakegen(root, "profiles", "--registry", "bakegen-regtest", "--metadata", str(meta))
    assert profiles.returncode == 0, profiles.stderr
    assert f"image: bakegen-regtest/base@{image_id}" in profiles.stdout
    marker = subprocess.run(["docker", "run", "--rm", "bakegen-regtest/base:latest", "cat", "/marker"], capture_output=True, text=True, check=True)
    assert marker.stdout.strip() == "first"

    up = bakegen(root, "lock", "--upgrade")
    assert up.returncode == 0, up.stderr
    assert read_lock(root / "locks" / "base").parts["image"].digest == second

    # --upgrade-package names the image: only its digest moves
    third = push(tmp_path, tag, engine.standin, "third")
    up = bakegen(root, "lock", "--upgrade-package", tag)
    assert up.returncode == 0, up.stderr
    assert read_lock(root / "locks" / "base").parts["image"].digest == third

    # bakegen build --push puts the images into the registry
    assert bakegen(root, "generate").returncode == 0
    pushed = bakegen(root, "build", "--push", "--registry", f"{registry}/bakegen-pushed", "--progress", "plain", "--provenance", *ca)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert registry_digest(f"{registry}/bakegen-pushed/base:latest").startswith("sha256:")
    # --provenance: BuildKit's attestation manifest sits beside the image in the index
    index = json.loads(subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", f"{registry}/bakegen-pushed/base:latest"],
                                      capture_output=True, text=True, check=True).stdout)
    kinds = sorted(m.get("annotations", {}).get("vnd.docker.reference.type", "image") for m in index["manifests"])
    assert kinds == ["attestation-manifest", "attestation-manifest", "image"], index
    # ... and bakegen's SBOM attestation (CycloneDX, from the locks), about the same image
    image = next(m["digest"] for m in index["manifests"] if m["platform"]["os"] != "unknown")
    predicates = {}
    for m in index["manifests"]:
        if m["platform"]["os"] == "unknown":
            assert m["annotations"]["vnd.docker.reference.digest"] == image
            manifest, _ = registry_get(f"{registry}/bakegen-pushed/base", m["digest"])
            predicates.update({layer["annotations"]["in-toto.io/predicate-type"]: layer["digest"] for layer in manifest["layers"]})
    assert "https://cyclonedx.org/bom" in predicates and any("slsa.dev/provenance" in p for p in predicates), predicates


def test_a_new_user_behind_a_registry_mirror_locks_with_it(registry, engine, tmp_path):
    """bakegen init, then bakegen lock through a mirror of Docker Hub (the local registry holds library/python, as a
    pull-through cache would): the lock keeps the image's own name, with the digest the mirror serves."""
    mirrored = f"{registry}/library/python:3.13-slim"
    subprocess.run(["docker", "tag", engine.standin, mirrored], check=True)
    subprocess.run(["docker", "push", "-q", mirrored], check=True, capture_output=True)
    digest = registry_digest(mirrored)
    root = tmp_path / "team"
    root.mkdir()
    assert bakegen(root, "init").returncode == 0
    out = bakegen(root, "lock", "--registry-mirror", registry.replace("localhost", "127.0.0.1"))
    assert out.returncode == 0, out.stdout + out.stderr
    image = read_lock(root / "locks" / "base").parts["image"]
    assert (image.ref, image.digest) == ("python:3.13-slim", digest)
    assert bakegen(root, "generate").returncode == 0
    assert f"ARG BASE_IMAGE=python:3.13-slim@{digest}" in (root / "dockerfiles/base/Dockerfile").read_text()
