#!/usr/bin/env python3
"""Publish an image index that joins single-platform images already in a registry.

    registry-index.py http://127.0.0.1:5000 REPO TAG SOURCE_TAG...

Each SOURCE_TAG is an image (or a one-platform index, as `docker push` makes on
the containerd store) in REPO. Its platform comes from its config. The index is
PUT as REPO:TAG; its digest is printed. Standard library only: it runs before
bakegen's virtualenv exists.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.request

INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join([
    INDEX,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def get(url: str) -> tuple[bytes, str]:
    req = urllib.request.Request(url, headers={"Accept": ACCEPT})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as resp:
        return resp.read(), resp.headers["Content-Type"].split(";")[0]


def image_descriptor(base: str, repo: str, ref: str) -> dict:
    """The descriptor of the one image (not attestation) that REF names, with its platform."""
    body, media_type = get(f"{base}/v2/{repo}/manifests/{ref}")
    doc = json.loads(body)
    if "manifests" in doc:
        images = [m for m in doc["manifests"] if m.get("platform", {}).get("os") not in (None, "unknown")]
        if len(images) != 1:
            raise SystemExit(f"registry-index: {repo}:{ref} holds {len(images)} images, expected one")
        return image_descriptor(base, repo, images[0]["digest"])
    config = json.loads(get(f"{base}/v2/{repo}/blobs/{doc['config']['digest']}")[0])
    platform = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body), "platform": platform}


def main(base: str, repo: str, tag: str, *sources: str) -> None:
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [image_descriptor(base, repo, s) for s in sources]}
    body = json.dumps(index, indent=2, sort_keys=True).encode()
    req = urllib.request.Request(f"{base}/v2/{repo}/manifests/{tag}", data=body, method="PUT", headers={"Content-Type": INDEX})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as resp:
        digest = resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()
    print(digest)


if __name__ == "__main__":
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
