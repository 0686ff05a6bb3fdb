"""SBOM attestations in an OCI layout, in the shape BuildKit's ``attest type=sbom`` gives them.

For each image (platform) of the layout, an attestation manifest whose one layer is an
in-toto statement (``application/vnd.in-toto+json``, predicate type CycloneDX) about that
image's manifest digest; the image index lists it with platform ``unknown/unknown`` and
the annotations ``vnd.docker.reference.type = attestation-manifest`` and
``vnd.docker.reference.digest = <the image's digest>``, where ``docker buildx imagetools
inspect``, Docker Scout and other tools look for it. The SBOM comes from the locks and
carries no build time, so the image index stays the same on every build; the images'
own manifests do not change at all.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bakegen.oci import CONFIG, INDEX, MANIFEST, get_json, put_blob

IN_TOTO = "application/vnd.in-toto+json"
CYCLONEDX = "https://cyclonedx.org/bom"
STATEMENT = "https://in-toto.io/Statement/v0.1"

# (platform "linux/amd64") -> the image's CycloneDX JSON
SbomOf = Callable[[str], str]


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def attestation(layout: Path, subject: str, platform: str, name: str, sbom: str) -> dict[str, Any]:
    """Write the attestation manifest of one image; its index entry. ``name`` (the subject's) holds
    no registry or tag, so that the image has the same index wherever it is pushed."""
    statement = {
        "_type": STATEMENT,
        "predicateType": CYCLONEDX,
        "subject": [
            {
                "name": f"pkg:docker/{name}?platform={urllib.parse.quote(platform, safe='')}",
                "digest": {"sha256": subject.split(":")[1]},
            }
        ],
        "predicate": json.loads(sbom),
    }
    manifest = _statement_manifest(layout, _canonical(statement))
    return {
        "mediaType": MANIFEST,
        "digest": put_blob(layout, manifest),
        "size": len(manifest),
        "annotations": {
            "vnd.docker.reference.digest": subject,
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


def _statement_manifest(layout: Path, layer: bytes) -> bytes:
    """The manifest of an in-toto statement (its one layer) with an empty unknown/unknown config."""
    layer_digest = put_blob(layout, layer)
    rootfs = {"type": "layers", "diff_ids": [layer_digest]}
    config = _canonical(
        {"architecture": "unknown", "os": "unknown", "config": {}, "rootfs": rootfs}
    )
    annotations = {"in-toto.io/predicate-type": CYCLONEDX}
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": CONFIG,
                "digest": put_blob(layout, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": IN_TOTO,
                    "digest": layer_digest,
                    "size": len(layer),
                    "annotations": annotations,
                }
            ],
        }
    )


def attach_sboms(layout: Path, name: str, sbom_of: SbomOf) -> str:
    """Add an SBOM attestation for each image of the layout; the new top digest (always an image
    index, written by :func:`image_index`). BuildKit's own attestations (its provenance, with
    ``bakegen build --provenance``) stay beside their images."""
    entries = json.loads((layout / "index.json").read_text())
    images = platform_images(layout, entries["manifests"][0])
    added = [
        attestation(layout, m["digest"], platform_name(m["platform"]), name,
                    sbom_of(platform_name(m["platform"])))
        for m in images
    ]
    data = image_index(images, [*buildkit_attestations(layout, entries["manifests"][0]), *added])
    digest = put_blob(layout, data)
    for entry in entries["manifests"]:
        entry.update({"mediaType": INDEX, "digest": digest, "size": len(data)})
        entry.pop("platform", None)
    (layout / "index.json").write_text(json.dumps(entries))
    return digest


def buildkit_attestations(layout: Path, top: dict[str, Any]) -> list[dict[str, Any]]:
    doc = get_json(layout, top["digest"])
    return [m for m in doc.get("manifests", []) if is_attestation(m)]


def image_index(images: list[dict[str, Any]], attestations: list[dict[str, Any]]) -> bytes:
    """The one way bakegen writes an image index: its images (:func:`descriptor`), sorted by
    platform, then their attestations in the same order. A stack built for all its platforms on
    one machine, and the same stack built one platform per machine and merged by ``bakegen
    promote``, get the same bytes, so the same digest."""
    order = sorted(images, key=lambda m: _platform_key(m["platform"]))
    rank = {m["digest"]: i for i, m in enumerate(order)}
    attached = sorted(attestations,
                      key=lambda a: rank[a["annotations"]["vnd.docker.reference.digest"]])
    return json.dumps({"schemaVersion": 2, "mediaType": INDEX,
                       "manifests": [*order, *attached]}).encode()


def descriptor(media_type: str, digest: str, size: int, config: dict[str, Any]) -> dict[str, Any]:
    """An image's entry in an index, its platform read from its config."""
    platform = {k: config[k] for k in ("architecture", "os", "variant") if config.get(k)}
    return {"mediaType": media_type, "digest": digest, "size": size, "platform": platform}


def platform_images(layout: Path, top: dict[str, Any]) -> list[dict[str, Any]]:
    """The images (not attestations) of a layout's top manifest or index, as descriptors."""
    doc = get_json(layout, top["digest"])
    found = doc["manifests"] if "manifests" in doc else [top]
    return [
        descriptor(m["mediaType"], m["digest"], m["size"],
                   get_json(layout, get_json(layout, m["digest"])["config"]["digest"]))
        for m in found
        if not is_attestation(m)
    ]


def layout_platforms(layout: Path) -> dict[str, str]:
    """Each platform of the layout's image ("linux/amd64") and its image manifest's digest."""
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    return {platform_name(m["platform"]): m["digest"] for m in platform_images(layout, top)}


def is_attestation(entry: dict[str, Any]) -> bool:
    return entry.get("platform", {}).get("os") == "unknown"


def _platform_key(platform: dict[str, str]) -> tuple[str, str, str]:
    return platform["os"], platform["architecture"], platform.get("variant", "")


def platform_name(platform: dict[str, str]) -> str:
    """The platform as a stack names it, "linux/arm64" (an arm64 image's variant v8 is not part
    of it)."""
    return f"{platform['os']}/{platform['architecture']}"
