"""Reproducibility: build a stack twice from the same locks and compare the results.

Each build is a ``docker buildx bake --no-cache`` of one target to an OCI
tarball with ``rewrite-timestamp=true`` (file times clamped to the lock's
SOURCE_DATE_EPOCH). Identical manifest digests mean bit-for-bit identical
images; otherwise the first differing file is found by reading the two layer
tarballs side by side.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bakegen import proc
from bakegen.build import BuildOptions, bake_command


@dataclass
class OciImage:
    manifest_digest: str
    config: dict
    layers: list[str]  # blob digests, in order
    path: Path


def read_oci(path: Path) -> OciImage:
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"]

        def blob(d: str) -> bytes:
            return tar.extractfile(f"blobs/sha256/{d.split(':')[1]}").read()  # type: ignore[union-attr]

        doc = json.loads(blob(digest))
        if "manifests" in doc:  # an index: take the first image manifest
            digest = next(m["digest"] for m in doc["manifests"] if m.get("platform", {}).get("os") != "unknown")
            doc = json.loads(blob(digest))
        config = json.loads(blob(doc["config"]["digest"]))
        return OciImage(digest, config, [layer["digest"] for layer in doc["layers"]], path)


def _members(tar: tarfile.TarFile) -> dict[str, tuple]:
    out = {}
    for m in tar.getmembers():
        data = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else ""  # type: ignore[union-attr]
        out[m.name] = (m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, data)
    return out


FIELDS = ("type", "mode", "uid", "gid", "size", "mtime", "link target", "content")


def first_difference(a: OciImage, b: OciImage) -> str | None:
    """None when identical; else a sentence naming the first difference."""
    if a.manifest_digest == b.manifest_digest:
        return None
    if len(a.layers) != len(b.layers):
        return f"the images have {len(a.layers)} and {len(b.layers)} layers"
    history = [h for h in a.config.get("history", []) if not h.get("empty_layer")]
    with tarfile.open(a.path) as ta, tarfile.open(b.path) as tb:
        for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
            if la == lb:
                continue
            step = history[i].get("created_by", "?")[:120] if i < len(history) else "?"
            ma = _members(tarfile.open(fileobj=ta.extractfile(f"blobs/sha256/{la.split(':')[1]}"), mode="r:*"))
            mb = _members(tarfile.open(fileobj=tb.extractfile(f"blobs/sha256/{lb.split(':')[1]}"), mode="r:*"))
            for name in sorted(set(ma) | set(mb)):
                if ma.get(name) != mb.get(name):
                    if name not in ma or name not in mb:
                        return f"layer {i + 1} ({step}): /{name} is only in build {'2' if name not in ma else '1'}"
                    what = next(f for f, x, y in zip(FIELDS, ma[name], mb[name]) if x != y)
                    return f"layer {i + 1} ({step}): /{name} differs in {what}"
            return f"layer {i + 1} ({step}): same files, different archive (file order or headers)"
    ca, cb = dict(a.config), dict(b.config)
    for key in sorted(set(ca) | set(cb)):
        if ca.get(key) != cb.get(key):
            return f"the image config differs in '{key}'"
    return "the manifests differ (annotations or media types)"


@dataclass
class ReproResult:
    stack: str
    digests: tuple[str, str]
    difference: str | None

    @property
    def identical(self) -> bool:
        return self.difference is None


def verify_repro(root: Path, stack: str, opts: BuildOptions, epoch: int | None = None, workdir: Path | None = None) -> ReproResult:
    """Build ``stack`` twice with --no-cache to OCI tarballs and compare them.

    ``epoch`` (the lock's) is passed as SOURCE_DATE_EPOCH: the image's created
    time and, with rewrite-timestamp, every file time.
    """
    sde = ["--set", f"{stack}.args.SOURCE_DATE_EPOCH={epoch}"] if epoch is not None else []
    with tempfile.TemporaryDirectory(prefix="bakegen-repro-", dir=workdir) as tmp:
        images = []
        for n in (1, 2):
            dest = Path(tmp) / f"build{n}.tar"
            build = BuildOptions(
                targets=[stack], base_images=opts.base_images, ca_bundle=opts.ca_bundle, progress=opts.progress,
                extra=["--no-cache", "--set", f"{stack}.output=type=oci,dest={dest},rewrite-timestamp=true",
                       "--set", f"{stack}.attest=type=provenance,disabled=true", *sde],
            )
            cmd, variables = bake_command(root, build)
            proc.run(cmd, cwd=root, env={**os.environ, **variables}, capture=opts.progress == "quiet")
            images.append(read_oci(dest))
        return ReproResult(stack, (images[0].manifest_digest, images[1].manifest_digest), first_difference(*images))
