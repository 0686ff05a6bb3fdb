"""Published images are bit for bit: two clean `bakegen build --push` runs give the registry the same
digests, children share their parents' layers, --load keeps the digest, a leaf pin bump uploads only
the layers that changed, and verify-repro checks a pushed image against a clean rebuild."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from bakegen.project import read_lock
from e2e.conftest import bakegen, older_release, push, registry_get

pytestmark = pytest.mark.e2e
STACKS = ("base", "scipy", "geo")


def image_manifest(repo: str, tag: str = "latest") -> dict:
    """The linux/amd64 image manifest behind a tag (bakegen pushes an index: the image and its SBOM attestation)."""
    index, _ = registry_get(repo, tag)
    digest = next(m["digest"] for m in index["manifests"] if m["platform"]["os"] == "linux")
    return registry_get(repo, digest)[0]


def test_two_clean_pushes_give_the_registry_the_same_digests(published):
    root, repos, a, b = published
    for stack in STACKS:
        _, in_a = registry_get(f"{repos}-a/{stack}", "latest")
        _, in_b = registry_get(f"{repos}-b/{stack}", "latest")
        assert in_a == in_b == a[stack]["containerimage.digest"] == b[stack]["containerimage.digest"], stack
        print(f"{stack}: {in_a} in both registries")


def test_children_share_their_parents_layers_in_the_registry(published):
    _, repos, _, _ = published
    layers = {s: [x["digest"] for x in image_manifest(f"{repos}-a/{s}")["layers"]] for s in STACKS}
    assert layers["scipy"][: len(layers["base"])] == layers["base"]
    assert layers["geo"][: len(layers["scipy"])] == layers["scipy"]


def test_load_keeps_the_pushed_digest(published, engine):
    root, repos, a, _ = published
    out = bakegen(root, "build", "--load", "--registry", "bakegen-pub-local", "--base-image", f"base={engine.standin}",
                  "--ca-bundle", engine.ca_bundle, "--progress", "quiet")
    assert out.returncode == 0, out.stderr[-3000:]
    for stack in STACKS:
        image_id = subprocess.run(["docker", "image", "inspect", f"bakegen-pub-local/{stack}:latest", "--format", "{{.Id}}"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        assert image_id == a[stack]["containerimage.digest"], stack


def test_verify_repro_checks_the_registry_against_a_clean_rebuild(published, engine):
    root, repos, _, _ = published
    start = time.monotonic()
    out = bakegen(root, "verify-repro", "base", "--against", f"{repos}-a/base:latest",
                  "--base-image", f"base={engine.standin}", "--ca-bundle", engine.ca_bundle, "--progress", "quiet")
    print(f"verify-repro base --against the registry (one clean build of base): {time.monotonic() - start:.0f}s")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("base: identical (sha256:")


def test_a_leaf_pin_bump_uploads_only_the_layers_that_changed(published, engine):
    root, repos, a, _ = published
    pin = read_lock(root / "locks" / "geo", root).parts["python"].by_name()["xyzservices"].version
    older = older_release("xyzservices", pin)
    moved = bakegen(root, "lock", "--upgrade-package", f"xyzservices=={older}")
    assert moved.returncode == 0, moved.stderr
    assert "geo: locked" in moved.stdout and "scipy: up to date" in moved.stdout and "base: up to date" in moved.stdout
    assert bakegen(root, "generate").returncode == 0
    before = [x["digest"] for x in image_manifest(f"{repos}-a/geo")["layers"]]
    after_meta = push(root, engine, f"{repos}-a")
    manifest = image_manifest(f"{repos}-a/geo")
    after = [x["digest"] for x in manifest["layers"]]
    changed = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
    total = sum(x["size"] for x in manifest["layers"])
    uploaded = after_meta["geo"]["bakegen.pushed_bytes"]
    new_layers = sum(x["size"] for x in manifest["layers"] if x["digest"] not in before)
    print(f"xyzservices {pin} -> {older} in geo: {len(changed)} of {len(after)} layers changed; "
          f"{uploaded / 1e6:.2f} MB uploaded of {total / 1e6:.1f} MB compressed ({100 * uploaded / total:.2f}%)")
    assert after_meta["base"]["bakegen.pushed_bytes"] == 0 and after_meta["scipy"]["bakegen.pushed_bytes"] == 0
    assert len(before) == len(after) and len(changed) == 2  # the Python packages and the pip constraints: npm's layer stays
    assert new_layers <= uploaded <= new_layers + 400_000  # the new layers, the config, the new SBOM attestation and nothing else


def test_the_lock_sbom_rides_with_each_image_as_an_attestation(published):
    root, repos, _, _ = published
    index, _ = registry_get(f"{repos}-a/scipy", "latest")
    image = next(m for m in index["manifests"] if m["platform"]["os"] == "linux")
    (attestation,) = [m for m in index["manifests"] if m["platform"]["os"] == "unknown"]
    assert attestation["annotations"] == {"vnd.docker.reference.digest": image["digest"], "vnd.docker.reference.type": "attestation-manifest"}
    manifest, _ = registry_get(f"{repos}-a/scipy", attestation["digest"])
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.in-toto+json" and layer["annotations"]["in-toto.io/predicate-type"] == "https://cyclonedx.org/bom"
    host, _, path = f"{repos}-a/scipy".partition("/")
    url = f"http://{host.replace('localhost', '127.0.0.1')}/v2/{path}/blobs/{layer['digest']}"
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=30) as resp:
        statement = json.load(resp)
    assert statement["subject"][0]["digest"] == {"sha256": image["digest"].split(":")[1]}
    out = bakegen(root, "sbom", "scipy", "--format", "cyclonedx", "--output", str(root / "sbom-check"))
    assert out.returncode == 0, out.stderr
    assert statement["predicate"] == json.loads((root / "sbom-check" / "scipy" / "amd64.cdx.json").read_text())


ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def test_layers_are_zstd_and_gzip_on_request_whatever_the_cache_holds(published, engine):
    """Every layer, the base's too, is compressed as asked (force-compression): a gzip push of base, then a zstd
    push from the same cache, which now holds gzip blobs of every layer, gives the first clean push's digest."""
    root, repos, a, _ = published
    assert {x["mediaType"] for s in STACKS for x in image_manifest(f"{repos}-a/{s}")["layers"]} == {ZSTD}
    gz = push(root, engine, f"{repos}-gzip", "--compression", "gzip", "base")
    assert {x["mediaType"] for x in image_manifest(f"{repos}-gzip/base")["layers"]} == {GZIP}
    assert gz["base"]["containerimage.digest"] != a["base"]["containerimage.digest"]
    again = push(root, engine, f"{repos}-again", "base")
    assert again["base"]["containerimage.digest"] == a["base"]["containerimage.digest"]
