"""Building on many machines, without Docker: the jobs' metadata files (hostile input), parents by digest, the
checks before any tag moves, and the index that promote merges from per-platform images (the same bytes as a
one-machine build's). A registry in a dict stands in for skopeo; tests/e2e/test_distributed.py runs the real one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import REPO, write_stacks
from fakes import lock_project

from bakegen import publish
from bakegen.attest import attach_sboms, image_index
from bakegen.errors import BakegenError
from bakegen.project import load_stacks
from bakegen.render.bake import image_names
from bakegen.staleness import current_locks

REPO_NAME = "registry.test/acme"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Manifests by reference (repository@digest or repository:tag); every tag move recorded."""

    def __init__(self):
        self.manifests: dict[str, bytes] = {}
        self.moves: list[tuple[str, str, str]] = []
        self.indexes: list[tuple[str, bytes]] = []

    def put(self, repo: str, data: bytes, tag: str | None = None) -> str:
        digest = sha(data)
        self.manifests[f"{repo}@{digest}"] = data
        if tag:
            self.manifests[f"{repo}:{tag}"] = data
        return digest

    def read(self, reference: str):
        data = self.manifests.get(reference)
        return None if data is None else (data, sha(data))

    def tag(self, repo: str, digest: str, name: str) -> None:
        assert f"{repo}@{digest}" in self.manifests, "a tag moves only to an image the registry holds"
        self.moves.append((repo, digest, name))

    def push_index(self, repo: str, data: bytes) -> str:
        self.indexes.append((repo, data))
        return self.put(repo, data)


@pytest.fixture
def registry(monkeypatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(publish, "read_manifest", fake.read)
    monkeypatch.setattr(publish, "tag_image", fake.tag)
    monkeypatch.setattr(publish, "push_index", fake.push_index)
    return fake


def pushed_image(fake: FakeRegistry, repo: str, identity: str, platforms: list[str], marker: str = "") -> str:
    """An index as bakegen build --push pushes it: one image per platform (its manifest annotated with what the
    lock pins, io.bakegen.lock) and its attestation."""
    images, attestations = [], []
    for platform in platforms:
        os_, arch = platform.split("/")
        config = json.dumps({"architecture": arch, "os": os_, "marker": marker}).encode()
        manifest = json.dumps({"schemaVersion": 2, "config": {"digest": sha(config), "size": len(config)}, "layers": [],
                               "annotations": {"io.bakegen.lock": identity}}).encode()
        digest = fake.put(repo, manifest)
        images.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(manifest),
                       "platform": {"architecture": arch, "os": os_}})
        statement = json.dumps({"subject": digest}).encode()
        attestations.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": fake.put(repo, statement),
                             "size": len(statement), "platform": {"architecture": "unknown", "os": "unknown"},
                             "annotations": {"vnd.docker.reference.digest": digest, "vnd.docker.reference.type": "attestation-manifest"}})
    return fake.put(repo, image_index(images, attestations))


@pytest.fixture
def example():
    graph = load_stacks(REPO)
    locks = current_locks(graph)
    return graph, locks, image_names(graph, locks, REPO_NAME, "")


def ident(lock) -> str:
    """What an image's io.bakegen.lock annotation says when it was built from ``lock``."""
    from bakegen.lock import lock_identity
    from bakegen.registry import ECOSYSTEMS

    return lock_identity(lock, ECOSYSTEMS)


def write_meta(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


# --- metadata files -------------------------------------------------------------------------


@pytest.mark.parametrize("doc, message", [
    ([], "not a metadata file"),
    ({"nosuch": {"containerimage.digest": "sha256:" + "a" * 64}}, "'nosuch': (the key): no stack of this project has that name"),
    ({"base": "sha256:" + "a" * 64}, "'base': (the value): not an object"),
    ({"base": {"containerimage.digest": "sha256:" + "a" * 63}}, "containerimage.digest: not sha256: and 64 hex digits"),
    ({"base": {"containerimage.digest": "sha256:" + "a" * 64 + "\n"}}, "containerimage.digest: not sha256"),
    ({"base": {"containerimage.digest": "sha256:" + "A" * 64}}, "containerimage.digest: not sha256"),
    ({"base": {"containerimage.digest": "localhost:5000/evil@sha256:" + "a" * 64}}, "containerimage.digest: not sha256"),
    ({"base": {"containerimage.digest": "sha256:" + "a" * 64, "bakegen.platforms": {"linux/arm64": "sha256:" + "b" * 64}}},
     "bakegen.platforms: not platforms of the stack (linux/amd64)"),
    ({"base": {"containerimage.digest": "sha256:" + "a" * 64, "bakegen.platforms": ["linux/amd64"]}}, "bakegen.platforms"),
])
def test_a_crafted_metadata_file_is_one_error_naming_the_file_and_key(tmp_path, example, doc, message):
    graph, _, _ = example
    path = write_meta(tmp_path / "meta.json", doc)
    with pytest.raises(BakegenError) as err:
        publish.read_metadata([path], graph)
    assert str(path) in err.value.message and message in err.value.message, err.value.message


def test_a_huge_or_missing_metadata_file_is_refused(tmp_path, example):
    graph, _, _ = example
    big = tmp_path / "big.json"
    big.write_text('{"base": {"containerimage.digest": "' + "x" * (2 << 20) + '"}}')
    with pytest.raises(BakegenError, match="at most 1 MiB"):
        publish.read_metadata([big], graph)
    with pytest.raises(BakegenError, match="not found"):
        publish.read_metadata([tmp_path / "nope.json"], graph)


def test_a_folder_stands_for_its_json_files(tmp_path, example):
    graph, _, _ = example
    one, two = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    write_meta(tmp_path / "a.json", {"base": {"containerimage.digest": one}})
    write_meta(tmp_path / "b.json", {"base": {"containerimage.digest": two, "bakegen.platforms": {"linux/amd64": one}}})
    (tmp_path / "notes.txt").write_text("not read")
    found = publish.read_metadata([tmp_path], graph)
    assert [(p.digest, p.platforms) for p in found["base"]] == [(one, {}), (two, {"linux/amd64": one})]


# --- parents -------------------------------------------------------------------------------


def test_a_parent_comes_from_a_metadata_file_checked_against_its_lock(tmp_path, example, registry):
    graph, locks, names = example
    digest = pushed_image(registry, f"{REPO_NAME}/base", ident(locks["base"]), ["linux/amd64"])
    given = publish.read_metadata([write_meta(tmp_path / "m.json", {"base": {"containerimage.digest": digest}})], graph)
    assert publish.parent_images(graph, locks, {"base": ["linux/amd64"]}, names, given) == {"base": f"{REPO_NAME}/base@{digest}"}


def test_without_metadata_a_parent_comes_from_its_content_tag(example, registry):
    graph, locks, names = example
    content = publish.content_name(names["scipy"], locks["scipy"])
    assert content == names["scipy"][-1] and content.split(":")[-1].endswith(locks["scipy"].fingerprint[7:19])
    digest = pushed_image(registry, f"{REPO_NAME}/scipy", ident(locks["scipy"]), ["linux/amd64"])
    registry.manifests[content] = registry.manifests[f"{REPO_NAME}/scipy@{digest}"]
    assert publish.parent_images(graph, locks, {"scipy": ["linux/amd64"]}, names, {}) == {"scipy": f"{REPO_NAME}/scipy@{digest}"}


def test_a_parent_built_from_a_relock_with_the_same_fingerprint_is_refused(tmp_path, example, registry):
    """An upgrade keeps a stack's fingerprint (its inputs) and moves its pins: the content tag of the same day can
    name the other image. What the lock pins decides."""
    import dataclasses

    graph, locks, names = example
    relocked = dataclasses.replace(locks["base"], source_date_epoch=locks["base"].source_date_epoch + 60)
    assert relocked.fingerprint == locks["base"].fingerprint and ident(relocked) != ident(locks["base"])
    other = pushed_image(registry, f"{REPO_NAME}/base", ident(relocked), ["linux/amd64"])
    given = publish.read_metadata([write_meta(tmp_path / "m.json", {"base": {"containerimage.digest": other}})], graph)
    with pytest.raises(BakegenError, match="was built from other locks"):
        publish.parent_images(graph, locks, {"base": ["linux/amd64"]}, names, given)


def test_a_missing_parent_is_one_error_saying_how_to_get_it(example, registry):
    graph, locks, names = example
    with pytest.raises(BakegenError) as err:
        publish.parent_images(graph, locks, {"base": ["linux/amd64"]}, names, {})
    assert err.value.message.startswith("the image of the parent base is not known: no metadata file names it")
    assert "bakegen build --push --stacks base" in err.value.hint


def test_a_parent_built_from_other_locks_is_refused(tmp_path, example, registry):
    """A metadata file can name any image: it is used only when its manifest carries the parent lock's fingerprint."""
    graph, locks, names = example
    stale = pushed_image(registry, f"{REPO_NAME}/base", "sha256:" + "0" * 64, ["linux/amd64"])
    given = publish.read_metadata([write_meta(tmp_path / "m.json", {"base": {"containerimage.digest": stale}})], graph)
    with pytest.raises(BakegenError, match="was built from other locks"):
        publish.parent_images(graph, locks, {"base": ["linux/amd64"]}, names, given)
    absent = publish.read_metadata([write_meta(tmp_path / "n.json", {"base": {"containerimage.digest": "sha256:" + "9" * 64}})], graph)
    with pytest.raises(BakegenError, match="is not in the registry"):
        publish.parent_images(graph, locks, {"base": ["linux/amd64"]}, names, absent)


# --- promote -------------------------------------------------------------------------------


def test_promote_checks_every_image_before_it_moves_a_tag(tmp_path, example, registry):
    graph, locks, names = example
    meta = {}
    for stack in ("base", "scipy"):
        meta[stack] = {"containerimage.digest": pushed_image(registry, f"{REPO_NAME}/{stack}", ident(locks[stack]), ["linux/amd64"])}
    given = publish.read_metadata([write_meta(tmp_path / "m.json", meta)], graph)
    with pytest.raises(BakegenError) as err:
        publish.plan_promotion(graph, locks, graph.order, names, given)
    assert err.value.message == "geo: no job pushed an image of it (no metadata file names it)"
    assert registry.moves == []

    meta["geo"] = {"containerimage.digest": pushed_image(registry, f"{REPO_NAME}/geo", "sha256:" + "0" * 64, ["linux/amd64"])}
    given = publish.read_metadata([write_meta(tmp_path / "m.json", meta)], graph)
    with pytest.raises(BakegenError, match="geo: .* was built from other locks"):
        publish.plan_promotion(graph, locks, graph.order, names, given)
    assert registry.moves == []

    meta["geo"] = {"containerimage.digest": pushed_image(registry, f"{REPO_NAME}/geo", ident(locks["geo"]), ["linux/amd64"])}
    given = publish.read_metadata([write_meta(tmp_path / "m.json", meta)], graph)
    publish.promote(publish.plan_promotion(graph, locks, graph.order, names, given))
    assert sorted((name, digest) for _, digest, name in registry.moves) == sorted(
        (name, meta[stack]["containerimage.digest"]) for stack in graph.order for name in names[stack])


TWO = 'platforms = ["linux/amd64", "linux/arm64"]\n'


def two_platform_project(tmp_path):
    root = write_stacks(tmp_path / "p", {
        "root": f'name = "root"\ndescription = "r"\nbase = "python:3.13-slim"\n{TWO}[python]\nversion = "3.13"\npackages = ["six"]\n',
        "kid": 'name = "kid"\ndescription = "k"\nextends = "root"\n[python]\npackages = ["packaging"]\n',
    })
    lock_project(root)
    graph = load_stacks(root)
    locks = current_locks(graph)
    return graph, locks, image_names(graph, locks, REPO_NAME, "")


def oci_layout(path: Path, images: list[tuple[str, str]]) -> Path:
    """An OCI layout as BuildKit exports it: one manifest, or an index of one manifest per platform."""
    (path / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes) -> str:
        (path / "blobs" / "sha256" / sha(data)[7:]).write_bytes(data)
        return sha(data)

    entries = []
    for platform, fingerprint in images:
        os_, arch = platform.split("/")
        config = json.dumps({"architecture": arch, "os": os_, "rootfs": {"diff_ids": []}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
                               "layers": [], "annotations": {"io.bakegen.lock": fingerprint}}).encode()
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest), "size": len(manifest),
                        "platform": {"architecture": arch, "os": os_}})
    if len(entries) > 1:  # BuildKit's own index: its order and fields, which attach_sboms does not keep
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": list(reversed(entries))}).encode()
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": blob(index), "size": len(index)}
    else:
        top = entries[0]
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return path


def upload(fake: FakeRegistry, layout: Path, repo: str) -> None:
    for blob in (layout / "blobs" / "sha256").iterdir():
        fake.manifests[f"{repo}@sha256:{blob.name}"] = blob.read_bytes()


def test_per_platform_jobs_merge_into_the_one_machine_index(tmp_path, registry):
    """kid built for amd64 on one machine and for arm64 on another: promote's merged index is byte for byte the
    index a one-machine build of both platforms attaches its SBOMs to, so the digest is the same."""
    graph, locks, names = two_platform_project(tmp_path)
    fingerprint, repo = ident(locks["kid"]), f"{REPO_NAME}/kid"
    platforms = ["linux/amd64", "linux/arm64"]
    sbom = lambda platform: json.dumps({"bomFormat": "CycloneDX", "platform": platform})  # noqa: E731
    whole = oci_layout(tmp_path / "whole", [(p, fingerprint) for p in platforms])
    one_machine = attach_sboms(whole, "kid", sbom)
    meta = {}
    for platform in platforms:
        layout = oci_layout(tmp_path / platform.replace("/", "-"), [(platform, fingerprint)])
        top = attach_sboms(layout, "kid", sbom)
        upload(registry, layout, repo)
        meta[platform] = write_meta(tmp_path / f"kid-{platform.split('/')[1]}.json",
                                    {"kid": {"containerimage.digest": top, "bakegen.platforms": {platform: "sha256:" + "0" * 64}}})
    given = publish.read_metadata(list(meta.values()), graph)
    (plan,) = publish.plan_promotion(graph, locks, ["kid"], names, given)
    assert plan.digest == one_machine and plan.index == (whole / "blobs" / "sha256" / one_machine[7:]).read_bytes()
    publish.promote([plan])
    assert registry.indexes == [(repo, plan.index)]
    assert {name for _, digest, name in registry.moves if digest == one_machine} == set(names["kid"])

    given = publish.read_metadata([meta["linux/amd64"]], graph)
    with pytest.raises(BakegenError, match="kid: no job pushed its linux/arm64 image"):
        publish.plan_promotion(graph, locks, ["kid"], names, given)


# --- what a registry serves can be crafted too ------------------------------------------------


GOOD = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "1" * 64, "size": 10,
        "platform": {"architecture": "amd64", "os": "linux"}}


@pytest.mark.parametrize("served", [
    b"{not json",
    b'"manifests"',
    b'{"manifests": null}',
    b'{"manifests": ["platform"]}',
    json.dumps({"manifests": [{**GOOD, "platform": None}]}).encode(),
    json.dumps({"manifests": [{**GOOD, "platform": {"architecture": "amd64"}}]}).encode(),
    json.dumps({"manifests": [{k: v for k, v in GOOD.items() if k != "digest"}]}).encode(),
    json.dumps({"manifests": [{**GOOD, "digest": 5}]}).encode(),
    json.dumps({"manifests": [{**GOOD, "digest": "sha256:" + "1" * 64 + ",evil"}]}).encode(),
    json.dumps({"manifests": [{**GOOD, "size": "10"}]}).encode(),
    json.dumps({"manifests": [{**GOOD, "annotations": [1]}]}).encode(),
    json.dumps({"manifests": [GOOD, {**GOOD, "digest": "sha256:" + "2" * 64}]}).encode(),  # two amd64 images
    b"[" * 100_000,
])
def test_a_crafted_index_in_the_registry_is_one_error_line(example, registry, served):
    graph, locks, _ = example
    digest = registry.put(f"{REPO_NAME}/base", served)
    with pytest.raises(BakegenError, match=f"base: {REPO_NAME}/base@{digest} is not (a JSON image index|an image index)"):
        publish.check_image("base", f"{REPO_NAME}/base", digest, locks["base"], ["linux/amd64"])


@pytest.mark.parametrize("manifest", [b"[1]", b'{"annotations": [1]}', b'{"annotations": {"io.bakegen.fingerprint": 5}}'])
def test_a_crafted_image_manifest_is_one_error_line(example, registry, manifest):
    graph, locks, _ = example
    image = registry.put(f"{REPO_NAME}/base", manifest)
    index = registry.put(f"{REPO_NAME}/base", json.dumps({"manifests": [{**GOOD, "digest": image}]}).encode())
    with pytest.raises(BakegenError, match="is not a JSON image manifest|was built from other locks"):
        publish.check_image("base", f"{REPO_NAME}/base", index, locks["base"], ["linux/amd64"])


def test_metadata_nested_deep_or_through_a_link_is_refused(tmp_path, example):
    graph, _, _ = example
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    with pytest.raises(BakegenError, match="not a metadata file"):
        publish.read_metadata([deep], graph)
    folder = tmp_path / "artifacts"
    folder.mkdir()
    secret = tmp_path / "outside.json"
    secret.write_text('{"ghp_SECRET": 1}')
    (folder / "x.json").symlink_to(secret)
    with pytest.raises(BakegenError, match="is a symbolic link") as err:
        publish.read_metadata([folder], graph)
    assert "SECRET" not in err.value.message
    fifo = tmp_path / "fifo.json"
    import os

    os.mkfifo(fifo)
    with pytest.raises(BakegenError, match="not a regular file"):
        publish.read_metadata([fifo], graph)


def test_a_missing_skopeo_is_not_a_missing_image(monkeypatch):
    from bakegen import oci, proc
    from bakegen.errors import CommandError

    def no_skopeo(cmd, **kwargs):
        raise CommandError(cmd, 127, "skopeo: command not found")

    monkeypatch.setattr(proc, "run", no_skopeo)
    with pytest.raises(CommandError):
        oci.read_manifest("registry.test/acme/base:latest")

    def unknown(cmd, **kwargs):
        raise CommandError(cmd, 1, 'level=fatal msg="reading manifest latest in registry.test/acme/base: manifest unknown"')

    monkeypatch.setattr(proc, "run", unknown)
    assert oci.read_manifest("registry.test/acme/base:latest") is None


def test_a_promote_that_stops_half_way_says_how_far_it_got(example, registry, monkeypatch):
    graph, locks, names = example
    plan = [publish.Promotion(s, f"{REPO_NAME}/{s}", "sha256:" + "1" * 64, names[s], {}) for s in graph.order]
    moved = []

    def flaky(repo, digest, name):
        if len(moved) == 4:
            raise BakegenError("skopeo exited with 1: unauthorized")
        moved.append(name)

    monkeypatch.setattr(publish, "tag_image", flaky)
    with pytest.raises(BakegenError) as err:
        publish.promote(plan)
    assert err.value.message.startswith(f"moved 4 of 9 tags, then {names['scipy'][1]}: skopeo exited with 1")
    assert "run bakegen promote again" in err.value.hint
