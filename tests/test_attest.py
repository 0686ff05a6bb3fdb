"""SBOM attestations added to an OCI layout: BuildKit's shape, the images untouched, the same bytes every time."""

from __future__ import annotations

import hashlib
import json
import shutil

from bakegen.attest import CYCLONEDX, IN_TOTO, attach_sboms
from bakegen.oci import layout_blobs, layout_digest


def put(layout, doc) -> tuple[str, int]:
    data = json.dumps(doc).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


def single_image_layout(path):
    """What BuildKit's OCI exporter writes for one platform, under two names."""
    (path / "blobs" / "sha256").mkdir(parents=True)
    config, csize = put(path, {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    layer, lsize = put(path, {"pretend": "layer"})
    manifest, msize = put(path, {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                 "config": {"digest": config, "size": csize}, "layers": [{"digest": layer, "size": lsize}]})
    names = [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": msize,
              "annotations": {"io.containerd.image.name": f"reg/geo:{tag}", "org.opencontainers.image.ref.name": tag},
              "platform": {"architecture": "amd64", "os": "linux"}} for tag in ("latest", "v1")]
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": names}))
    return manifest


def test_an_sbom_attestation_sits_beside_the_image_in_an_index(tmp_path):
    image = single_image_layout(tmp_path / "a")
    sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"name": "numpy"}]})
    top = attach_sboms(tmp_path / "a", "geo", lambda platform: sbom if platform == "linux/amd64" else "{}")
    index = json.loads((tmp_path / "a" / "blobs" / "sha256" / top.split(":")[1]).read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    first, attestation = index["manifests"]
    assert first["digest"] == image and first["platform"] == {"architecture": "amd64", "os": "linux"}  # the image itself is untouched
    assert attestation["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert attestation["annotations"] == {"vnd.docker.reference.digest": image, "vnd.docker.reference.type": "attestation-manifest"}
    manifest = json.loads((tmp_path / "a" / "blobs" / "sha256" / attestation["digest"].split(":")[1]).read_text())
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == IN_TOTO and layer["annotations"] == {"in-toto.io/predicate-type": CYCLONEDX}
    statement = json.loads((tmp_path / "a" / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_text())
    assert statement["predicate"] == json.loads(sbom) and statement["subject"][0]["digest"] == {"sha256": image.split(":")[1]}
    # every name now points at the index; the layout's digest and blobs follow
    assert layout_digest(tmp_path / "a") == top
    assert {e["digest"] for e in json.loads((tmp_path / "a" / "index.json").read_text())["manifests"]} == {top}
    assert layer["digest"] in layout_blobs(tmp_path / "a")


def test_the_same_layout_and_sbom_give_the_same_index(tmp_path):
    single_image_layout(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    sbom = json.dumps({"bomFormat": "CycloneDX"})
    assert attach_sboms(tmp_path / "a", "geo", lambda p: sbom) == attach_sboms(tmp_path / "b", "geo", lambda p: sbom)


def test_buildkit_s_own_attestation_stays_beside_its_image(tmp_path):
    """bakegen build --provenance: BuildKit's index holds the image and its provenance attestation; both stay, and the
    SBOM attestation comes after them."""
    layout = tmp_path / "a"
    image = single_image_layout(layout)
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    provenance, psize = put(layout, {"schemaVersion": 2, "layers": []})
    att = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": provenance, "size": psize,
           "annotations": {"vnd.docker.reference.digest": image, "vnd.docker.reference.type": "attestation-manifest"},
           "platform": {"architecture": "unknown", "os": "unknown"}}
    buildkit_index, isize = put(layout, {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                         "manifests": [{k: v for k, v in entries[0].items() if k != "annotations"}, att]})
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": buildkit_index, "size": isize}]}))
    top = attach_sboms(layout, "geo", lambda platform: "{}")
    index = json.loads((layout / "blobs" / "sha256" / top.split(":")[1]).read_text())
    assert [m["digest"] for m in index["manifests"]][:2] == [image, provenance] and len(index["manifests"]) == 3
    assert index["manifests"][2]["annotations"]["vnd.docker.reference.digest"] == image
