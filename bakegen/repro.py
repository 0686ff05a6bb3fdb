"""Reproducibility: build a stack twice from the same locks and compare the results.

Each build is what ``bakegen build --load/--push`` publishes (bakegen.build.reproducible_build:
the stack and its parents, level by level, ``--no-cache``, to OCI layouts with
``rewrite-timestamp=true`` under the graph's SOURCE_DATE_EPOCH). Identical manifest
digests mean bit-for-bit identical images; otherwise the first differing file is
found by reading the two layer tarballs side by side. With a registry reference,
one clean build is compared with what the registry holds.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from bakegen.build import BuildOptions, Chain, reproducible_build
from bakegen.oci import OciImage, open_blob, read_oci_platforms, registry_digest


def layer_names(config: dict, steps: list[tuple[str, str | None]]) -> dict[int, str]:
    """Layer index -> the plan's name for it: BuildKit writes one history entry per instruction of
    the final stage, so the last entries are the plan's ``steps`` ((instruction, layer name)), in
    order."""
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


def platform_difference(
    a: dict[str, OciImage],
    b: dict[str, OciImage],
    steps: list[tuple[str, str | None]] | None = None,
) -> str | None:
    """The first difference between two builds of the same platforms, named by platform when there
    are several."""
    if sorted(a) != sorted(b):
        return f"the builds have the platforms {', '.join(sorted(a))} and {', '.join(sorted(b))}"
    for platform in sorted(a):
        difference = first_difference(
            a[platform], b[platform], layer_names(a[platform].config, steps) if steps else None
        )
        if difference:
            return f"{platform}: {difference}" if len(a) > 1 else difference
    return None


def _layer_members(path: Path, digest: str) -> dict[str, tuple]:
    with open_blob(path, digest) as fh, layer_tar(fh) as tar:
        return _members(tar)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@contextmanager
def layer_tar(fh: IO[bytes]) -> Iterator[tarfile.TarFile]:
    """A layer blob as a tar archive: zstd (bakegen's default), gzip or plain, told by its first
    bytes."""
    if fh.read(4) != ZSTD_MAGIC:
        fh.seek(0)
        with tarfile.open(fileobj=fh, mode="r:*") as tar:
            yield tar
        return
    import zstandard

    fh.seek(0)
    with (
        zstandard.ZstdDecompressor().stream_reader(fh) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        yield tar


def _members(tar: tarfile.TarFile) -> dict[str, tuple]:
    out = {}
    for m in tar:  # in order: a zstd layer is read as a stream
        data = hashlib.sha256(tar.extractfile(m).read()).hexdigest() if m.isfile() else ""  # type: ignore[union-attr]
        out[m.name] = (m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, data)
    return out


FIELDS = ("type", "mode", "uid", "gid", "size", "mtime", "link target", "content")


def first_difference(a: OciImage, b: OciImage, names: dict[int, str] | None = None) -> str | None:
    """None when identical; else a sentence naming the first difference (its layer by the plan's
    ``names`` when given)."""
    if a.manifest_digest == b.manifest_digest:
        return None
    if len(a.layers) != len(b.layers):
        return f"the images have {len(a.layers)} and {len(b.layers)} layers"
    history = [h for h in a.config.get("history", []) if not h.get("empty_layer")]
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        if la == lb:
            continue
        step = (names or {}).get(i) or (
            history[i].get("created_by", "?")[:120] if i < len(history) else "?"
        )
        ma, mb = _layer_members(a.path, la), _layer_members(b.path, lb)
        for name in sorted(set(ma) | set(mb)):
            if ma.get(name) != mb.get(name):
                if name not in ma or name not in mb:
                    only = "2" if name not in ma else "1"
                    return f"layer {i + 1} ({step}): /{name} is only in build {only}"
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
    # of the two builds: the index of a multi-platform build, else the manifest
    digests: tuple[str, str]
    difference: str | None
    platforms: dict[str, tuple[str, str]] = field(default_factory=dict)  # platform -> its manifests

    @property
    def identical(self) -> bool:
        return self.difference is None


def verify_repro(
    root: Path,
    chain: Chain,
    opts: BuildOptions,
    workdir: Path | None = None,
    steps: list[tuple[str, str | None]] | None = None,
    against: str | None = None,
    sbom: Callable[[str, str], str] | None = None,
    names: dict[str, list[str]] | None = None,
) -> ReproResult:
    """Build the last stack of ``chain`` (with its parents) twice with --no-cache, as ``bakegen
    build`` publishes it, and compare; with ``against`` (a registry reference), build once and
    compare with the registry's digest. ``names``: each stack's image references (they name the
    images in the layouts, not in the digests)."""
    stack = chain.levels[-1][0]
    names = names or {n: [f"{n}:latest"] for level in chain.levels for n in level}
    clean = replace(opts, load=False, push=False, extra=[*opts.extra, "--no-cache"])
    with tempfile.TemporaryDirectory(prefix="bakegen-repro-", dir=workdir) as tmp:
        images = []
        for n in (1,) if against else (1, 2):
            work = Path(tmp) / f"build{n}"
            work.mkdir()
            reproducible_build(root, chain, clean, work, names, sbom)
            images.append(read_oci_platforms(work / stack))
        if against:
            remote = registry_digest(against)
            ((top, one),) = images
            difference = (
                None
                if remote == top
                else f"the registry holds {remote} for {against}; a clean build gives {top}"
            )
            return ReproResult(
                stack,
                (remote, top),
                difference,
                {p: (img.manifest_digest, img.manifest_digest) for p, img in one.items()},
            )
        (top1, one), (top2, two) = images
        difference = (
            None
            if top1 == top2
            else platform_difference(one, two, steps) or "the image indexes differ"
        )
        per_platform = {
            p: (one[p].manifest_digest, two[p].manifest_digest) for p in sorted(one) if p in two
        }
        return ReproResult(stack, (top1, top2), difference, per_platform)
