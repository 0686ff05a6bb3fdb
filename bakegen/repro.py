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
from dataclasses import dataclass, field
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
    """The (first) image of an OCI tarball."""
    return next(iter(read_oci_platforms(path)[1].values()))


def read_oci_platforms(path: Path) -> tuple[str, dict[str, OciImage]]:
    """The digest the tarball's index names (an image index or one manifest), and its image per platform."""
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        top = index["manifests"][0]["digest"]

        def blob(d: str) -> bytes:
            return tar.extractfile(f"blobs/sha256/{d.split(':')[1]}").read()  # type: ignore[union-attr]

        doc = json.loads(blob(top))
        entries = [(m["digest"], json.loads(blob(m["digest"]))) for m in doc["manifests"] if m.get("platform", {}).get("os") != "unknown"] if "manifests" in doc else [(top, doc)]
        images = {}
        for digest, manifest in entries:
            config = json.loads(blob(manifest["config"]["digest"]))
            platform = "/".join(p for p in (config.get("os"), config.get("architecture"), config.get("variant")) if p)
            images[platform] = OciImage(digest, config, [layer["digest"] for layer in manifest["layers"]], path)
        return top, images


def layer_names(config: dict, steps: list[tuple[str, str | None]]) -> dict[int, str]:
    """Layer index -> the plan's name for it: BuildKit writes one history entry per instruction of the
    final stage, so the last entries are the plan's ``steps`` ((instruction, layer name)), in order."""
    history = config.get("history", [])
    first_own = len(history) - len(steps)
    names, layer = {}, 0
    for i, entry in enumerate(history):
        if entry.get("empty_layer"):
            continue
        if i >= first_own and steps[i - first_own][1]:
            names[layer] = str(steps[i - first_own][1])
        layer += 1
    return names


def platform_difference(a: dict[str, OciImage], b: dict[str, OciImage], steps: list[tuple[str, str | None]] | None = None) -> str | None:
    """The first difference between two builds of the same platforms, named by platform when there are several."""
    if sorted(a) != sorted(b):
        return f"the builds have the platforms {', '.join(sorted(a))} and {', '.join(sorted(b))}"
    for platform in sorted(a):
        difference = first_difference(a[platform], b[platform], layer_names(a[platform].config, steps) if steps else None)
        if difference:
            return f"{platform}: {difference}" if len(a) > 1 else difference
    return None


def _members(tar: tarfile.TarFile) -> dict[str, tuple]:
    out = {}
    for m in tar.getmembers():
        data = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else ""  # type: ignore[union-attr]
        out[m.name] = (m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, data)
    return out


FIELDS = ("type", "mode", "uid", "gid", "size", "mtime", "link target", "content")


def first_difference(a: OciImage, b: OciImage, names: dict[int, str] | None = None) -> str | None:
    """None when identical; else a sentence naming the first difference (its layer by the plan's ``names`` when given)."""
    if a.manifest_digest == b.manifest_digest:
        return None
    if len(a.layers) != len(b.layers):
        return f"the images have {len(a.layers)} and {len(b.layers)} layers"
    history = [h for h in a.config.get("history", []) if not h.get("empty_layer")]
    with tarfile.open(a.path) as ta, tarfile.open(b.path) as tb:
        for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
            if la == lb:
                continue
            step = (names or {}).get(i) or (history[i].get("created_by", "?")[:120] if i < len(history) else "?")
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
    digests: tuple[str, str]  # of the two builds: the index of a multi-platform build, else the manifest
    difference: str | None
    platforms: dict[str, tuple[str, str]] = field(default_factory=dict)  # platform -> its manifest digests

    @property
    def identical(self) -> bool:
        return self.difference is None


def verify_repro(root: Path, stack: str, opts: BuildOptions, epoch: int | None = None, workdir: Path | None = None,
                 steps: list[tuple[str, str | None]] | None = None) -> ReproResult:
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
            images.append(read_oci_platforms(dest))
        (top1, one), (top2, two) = images
        difference = None if top1 == top2 else platform_difference(one, two, steps) or "the image indexes differ"
        per_platform = {p: (one[p].manifest_digest, two[p].manifest_digest) for p in sorted(one) if p in two}
        return ReproResult(stack, (top1, top2), difference, per_platform)
