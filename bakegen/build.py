"""The build runner: ``docker buildx bake`` on the generated bake file."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from bakegen import proc
from bakegen.attest import attach_sboms
from bakegen.errors import BakegenError
from bakegen.lock import StackLock
from bakegen.oci import layout_digest, push_layout
from bakegen.render import BAKE_FILE
from bakegen.render.bake import base_variable
from bakegen.stack import StackGraph

COMPRESSIONS = ("zstd", "gzip")  # layer compression of --load and --push; the first is the default


@dataclass
class BuildOptions:
    targets: list[str] = field(default_factory=list)
    base_images: dict[str, str] = field(default_factory=dict)  # stack -> image reference
    ca_bundle: str | None = None
    registry: str | None = None
    tag_prefix: str | None = None
    cache: str | None = None  # registry repository for the layer cache
    load: bool = False
    push: bool = False
    progress: str = "auto"
    # BuildKit's provenance attestation carries build times: on, it changes the image index's digest
    # on every build
    provenance: bool = False
    # layer compression of --load and --push (README: "Layer compression"); every layer, the base's
    # too, is compressed again, so a digest never depends on what an earlier build left in the cache
    compression: str = COMPRESSIONS[0]
    extra: list[str] = field(default_factory=list)


def bake_command(root: Path, opts: BuildOptions) -> tuple[list[str], dict[str, str]]:
    """The ``docker buildx bake`` command and the variables it reads from the environment."""
    if not (root / BAKE_FILE).exists():
        raise BakegenError(f"{BAKE_FILE} not found in {root}", hint="run bakegen generate first")
    if opts.load and opts.push:
        raise BakegenError("--load and --push cannot be combined", hint="pick one")
    cmd = ["docker", "buildx", "bake", "--file", BAKE_FILE, "--progress", opts.progress]
    if opts.load:
        cmd.append("--load")
    if opts.push:
        cmd.append("--push")
    cmd.append("--provenance=mode=max" if opts.provenance else "--provenance=false")
    cmd += opts.extra
    cmd += opts.targets
    variables: dict[str, str] = {}
    for stack, ref in sorted(opts.base_images.items()):
        variables[base_variable(stack)] = ref
    if opts.ca_bundle:
        path = Path(opts.ca_bundle).resolve()
        if not path.is_file():
            raise BakegenError(
                f"CA bundle {opts.ca_bundle} not found",
                hint="pass the path of a PEM file, e.g. /etc/ssl/certs/ca-certificates.crt",
            )
        variables["CA_BUNDLE"] = str(path)
        # buildx asks for an entitlement to read a secret outside the context.
        cmd.insert(3, f"--allow=fs.read={path}")
    if opts.registry is not None:
        variables["REGISTRY"] = opts.registry
    if opts.tag_prefix is not None:
        variables["TAG_PREFIX"] = opts.tag_prefix
    if opts.cache:
        variables["CACHE"] = opts.cache
    return cmd, variables


def build(root: Path, opts: BuildOptions) -> None:
    cmd, variables = bake_command(root, opts)
    proc.run(cmd, cwd=root, env={**os.environ, **variables}, capture=False)


# --- reproducible --load and --push ------------------------------------------------------
#
# BuildKit's image exporter (the docker driver's --load and --push) cannot rewrite file
# times, and a parent built inside a child's bake is re-stamped with the child's date.
# So each level of the graph (parents first) is exported to an OCI layout with
# rewrite-timestamp=true under one SOURCE_DATE_EPOCH per graph (the root lock's); a child
# is built FROM its parent's exported layout (an oci-layout:// context, by digest), so its
# parent's layers are the parent's own bytes. The layouts are then loaded (docker load
# keeps the digest on the containerd image store) or pushed with skopeo --preserve-digests.


@dataclass
class Chain:
    """What to build, parents first: the stacks in levels, each image's SOURCE_DATE_EPOCH, and its
    parent."""

    levels: list[list[str]]
    epochs: dict[str, int]
    parents: dict[str, str | None]


def chain_of(graph: StackGraph, locks: dict[str, StackLock], targets: list[str] | None) -> Chain:
    """``targets`` and their parents. The epoch policy: one SOURCE_DATE_EPOCH per graph, its root
    lock's (README: "Reproducible builds"), so parents and children stamp files alike and a leaf
    bump moves no other layer."""
    selected = graph.select(targets)
    return Chain(
        levels=graph.levels(selected),
        epochs={n: int(locks[graph.root_of(n).name].source_date_epoch or 0) for n in selected},
        parents={n: graph.stacks[n].extends for n in selected},
    )


@dataclass
class Published:
    stack: str
    # the manifest (or image index) digest: the same on every machine, from the same locks
    digest: str
    names: list[str]  # image references (repository:tag)
    pushed_bytes: int = 0  # compressed blob bytes the registry did not have


def bake_targets(root: Path, opts: BuildOptions) -> dict[str, Any]:
    """The bake file's targets as ``docker buildx bake --print`` resolves them (tags with REGISTRY
    and TAG_PREFIX)."""
    cmd, variables = bake_command(
        root,
        BuildOptions(
            targets=opts.targets,
            base_images=opts.base_images,
            ca_bundle=opts.ca_bundle,
            registry=opts.registry,
            tag_prefix=opts.tag_prefix,
            cache=opts.cache,
            extra=["--print"],
        ),
    )
    return dict(
        json.loads(proc.run(cmd, cwd=root, env={**os.environ, **variables}).stdout)["target"]
    )


def reproducible_build(
    root: Path,
    chain: Chain,
    opts: BuildOptions,
    work: Path,
    sbom: Callable[[str, str], str] | None = None,
) -> list[Published]:
    """Build ``chain`` (parents first) to OCI layouts in ``work``; attach each image's SBOM
    (``sbom(stack, platform)``: CycloneDX JSON) as an attestation; load or push each image."""
    if opts.push and shutil.which("skopeo") is None:
        raise BakegenError(
            "bakegen build --push needs skopeo, to push each image with the digest it was built "
            "with",
            hint="install it (apt-get install skopeo; GitHub's ubuntu runners have it), or build "
            "with --load",
        )
    try:
        return _levels(root, chain, opts, work, sbom)
    except (OSError, ValueError, KeyError) as exc:
        raise BakegenError(
            f"the OCI layouts of the build could not be read or written: {type(exc).__name__}: "
            f"{exc}",
            hint="check the free space of the temporary folder (TMPDIR); the OCI exporter needs "
            "buildx >= 0.13 with BuildKit >= 0.13",
        ) from None


def _levels(
    root: Path, chain: Chain, opts: BuildOptions, work: Path, sbom: Callable[[str, str], str] | None
) -> list[Published]:
    targets = bake_targets(
        root, replace(opts, targets=[s for level in chain.levels for s in level])
    )
    out: list[Published] = []
    digests: dict[str, str] = {}
    for level in chain.levels:
        extra = [
            f"--allow=fs.write={work}",
            f"--allow=fs.read={work}",
        ]  # the layouts: written here, read as the children's parents
        extra += [
            arg
            for stack in level
            for arg in _oci_settings(
                stack,
                targets[stack]["tags"],
                chain.epochs[stack],
                chain.parents.get(stack),
                digests,
                work,
                opts,
            )
        ]
        cmd, variables = bake_command(
            root, replace(opts, targets=level, load=False, push=False, extra=[*opts.extra, *extra])
        )
        proc.run(cmd, cwd=root, env={**os.environ, **variables}, capture=opts.progress == "quiet")
        for stack in level:
            digests[stack] = layout_digest(work / stack)  # the image: what the children build FROM
            # the statement names the stack, not where it is pushed: the same image has the same
            # index everywhere
            top = (
                attach_sboms(work / stack, stack, partial(sbom, stack)) if sbom else digests[stack]
            )
            published = Published(stack, top, list(targets[stack]["tags"]))
            if opts.load:
                _load(work / stack)
            if opts.push:
                published.pushed_bytes = push_layout(work / stack, published.names)
            out.append(published)
    return out


def _oci_settings(
    stack: str,
    names: list[str],
    epoch: int,
    parent: str | None,
    digests: dict[str, str],
    work: Path,
    opts: BuildOptions,
) -> list[str]:
    if opts.compression not in COMPRESSIONS:  # it goes into the exporter's option string
        raise BakegenError(
            f"unknown layer compression {opts.compression!r}",
            hint=f"use one of: {', '.join(COMPRESSIONS)}",
        )
    output = (
        f"{stack}.output=type=oci,dest={work / stack},tar=false,rewrite-timestamp=true,"
        f'compression={opts.compression},force-compression=true,"name={",".join(names)}"'
    )
    sets = [output, f"{stack}.args.SOURCE_DATE_EPOCH={epoch}"]
    if not opts.provenance:
        sets.append(f"{stack}.attest=type=provenance,disabled=true")
    if parent is not None:
        if parent not in digests:
            raise BakegenError(
                f"{stack}: its parent {parent} was not built first",
                hint="this is a bug in bakegen's build order",
            )
        sets.append(f"{stack}.contexts.{parent}=oci-layout://{work / parent}@{digests[parent]}")
    return [arg for s in sets for arg in ("--set", s)]


def _load(layout: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar", dir=layout.parent) as archive:
        with tarfile.open(archive.name, "w") as tar:
            for path in sorted(layout.iterdir()):
                if path.name != "ingest":
                    tar.add(path, arcname=path.name)
        proc.run(["docker", "load", "--quiet", "--input", archive.name])
