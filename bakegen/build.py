"""The build runner: ``docker buildx bake`` on the generated bake file."""

from __future__ import annotations

import os
import re
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from bakegen import proc
from bakegen.attest import attach_sboms, layout_platforms
from bakegen.errors import BakegenError
from bakegen.lock import StackLock
from bakegen.oci import layout_digest, push_by_digest, require_skopeo
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
    # the ecosystems' build secrets (logins): the bake variable (BuildSecret.variable) -> the file
    secrets: dict[str, str] = field(default_factory=dict)
    load: bool = False
    push: bool = False
    progress: str = "auto"
    # BuildKit's provenance attestation carries build times: on, it changes the image index's digest
    # on every build
    provenance: bool = False
    # layer compression of --load and --push (README: "Layer compression"); every layer, the base's
    # too, is compressed again, so a digest never depends on what an earlier build left in the cache
    compression: str = COMPRESSIONS[0]
    builder: str | None = None  # a buildx builder (docker buildx bake --builder), e.g. a remote one
    context: str | None = None  # a docker context whose engine builds (docker --context)
    platform: str | None = None  # build only this one of each stack's platforms (--load, --push)
    extra: list[str] = field(default_factory=list)


def bake_command(root: Path, opts: BuildOptions) -> tuple[list[str], dict[str, str]]:
    """The ``docker buildx bake`` command and the variables it reads from the environment."""
    if not (root / BAKE_FILE).exists():
        raise BakegenError(f"{BAKE_FILE} not found in {root}", hint="run bakegen generate first")
    if opts.load and opts.push:
        raise BakegenError("--load and --push cannot be combined", hint="pick one")
    cmd = [*docker(opts), "buildx", "bake", "--file", BAKE_FILE, "--progress", opts.progress]
    if opts.builder:
        cmd += ["--builder", opts.builder]
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
        cmd.insert(cmd.index("bake") + 1, f"--allow=fs.read={path}")
    for variable, file in sorted(opts.secrets.items()):
        # a secret's file, read by buildx (the entitlement) and passed as the secret
        variables[variable] = file
        cmd.insert(cmd.index("bake") + 1, f"--allow=fs.read={file}")
    if opts.registry is not None:
        variables["REGISTRY"] = opts.registry
    if opts.tag_prefix is not None:
        variables["TAG_PREFIX"] = opts.tag_prefix
    if opts.cache:
        variables["CACHE"] = opts.cache
    return cmd, variables


def docker(opts: BuildOptions) -> list[str]:
    return ["docker", "--context", opts.context] if opts.context else ["docker"]


def builder_options(name: str) -> dict[str, str]:
    """--builder NAME: a docker context (buildx's docker driver builds only on the current
    context's engine, so bakegen runs ``docker --context NAME``), or any other buildx builder
    (``docker buildx bake --builder NAME``: docker-container, kubernetes, remote)."""
    found = proc.run(["docker", "buildx", "inspect", name], check=False)
    if found.returncode != 0:
        raise BakegenError(
            f"--builder {name}: no buildx builder or docker context has that name",
            hint="docker buildx ls lists them; for another engine: docker context create NAME "
            "--docker host=ssh://user@host (README: \"Building on many machines\")",
        )
    driver = re.search(r"^Driver:\s*(\S+)", found.stdout, re.M)
    return {"context": name} if driver and driver.group(1) == "docker" else {"builder": name}


def build(root: Path, opts: BuildOptions) -> None:
    cmd, variables = bake_command(root, opts)
    proc.run(cmd, cwd=root, env={**os.environ, **variables}, capture=False)


# --- reproducible --load and --push ------------------------------------------------------
#
# BuildKit's image exporter (the docker driver's --load and --push) cannot rewrite file
# times, and a parent built inside a child's bake is re-stamped with the child's date.
# So each level of the graph (parents first) is exported to an OCI layout with
# rewrite-timestamp=true under one SOURCE_DATE_EPOCH per graph (the root lock's). A child is
# built FROM its parent's image by digest: the parent's exported layout when it was built in
# the same run (an oci-layout:// context), or the parent's image in the registry (a
# docker-image:// context, README: "Building on many machines"). Either way BuildKit keeps the
# parent's layers as they are (it rewrites only the layers that are not its base image's), so
# the child has the same digest. The layouts are then loaded (docker load keeps the digest on
# the containerd image store) or pushed by digest with skopeo --preserve-digests.


@dataclass
class Chain:
    """What to build, parents first: the stacks in levels, each image's SOURCE_DATE_EPOCH, its
    parent, and the parents that are not built here (stack -> REPOSITORY@DIGEST in a registry)."""

    levels: list[list[str]]
    epochs: dict[str, int]
    parents: dict[str, str | None]
    external: dict[str, str] = field(default_factory=dict)


def chain_of(
    graph: StackGraph,
    locks: dict[str, StackLock],
    targets: list[str] | None,
    only: list[str] | None = None,
) -> Chain:
    """``targets`` and their parents, or ``only`` those stacks (their parents come from a
    registry: :attr:`Chain.external`). The epoch policy: one SOURCE_DATE_EPOCH per graph, its root
    lock's (README: "Reproducible builds"), so parents and children stamp files alike and a leaf
    bump moves no other layer."""
    selected = [n for n in graph.order if n in only] if only else graph.select(targets)
    return Chain(
        levels=graph.levels(selected),
        epochs={n: int(locks[graph.root_of(n).name].source_date_epoch or 0) for n in selected},
        parents={n: graph.stacks[n].extends for n in selected},
    )


def outside_parents(chain: Chain) -> list[str]:
    """The parents of the chain's stacks that the chain does not build."""
    built = {n for level in chain.levels for n in level}
    return sorted({p for p in chain.parents.values() if p is not None and p not in built})


@dataclass
class Published:
    stack: str
    # the manifest (or image index) digest: the same on every machine, from the same locks
    digest: str
    names: list[str]  # image references (repository:tag)
    pushed_bytes: int = 0  # compressed blob bytes the registry did not have
    platforms: dict[str, str] = field(default_factory=dict)  # platform -> image manifest digest


def reproducible_build(
    root: Path,
    chain: Chain,
    opts: BuildOptions,
    work: Path,
    names: dict[str, list[str]],
    sbom: Callable[[str, str], str] | None = None,
) -> list[Published]:
    """Build ``chain`` (parents first) to OCI layouts in ``work``; attach each image's SBOM
    (``sbom(stack, platform)``: CycloneDX JSON) as an attestation; load each image, or push it by
    digest (``names``: each stack's image references; no tag moves here)."""
    if opts.push:
        require_skopeo("bakegen build --push")
    try:
        return _levels(root, chain, opts, work, names, sbom)
    except (OSError, ValueError, KeyError) as exc:
        raise BakegenError(
            f"the OCI layouts of the build could not be read or written: {type(exc).__name__}: "
            f"{exc}",
            hint="check the free space of the temporary folder (TMPDIR); the OCI exporter needs "
            "buildx >= 0.13 with BuildKit >= 0.13",
        ) from None


def _levels(
    root: Path,
    chain: Chain,
    opts: BuildOptions,
    work: Path,
    names: dict[str, list[str]],
    sbom: Callable[[str, str], str] | None,
) -> list[Published]:
    out: list[Published] = []
    digests: dict[str, str] = {}
    for level in chain.levels:
        # the layouts: written here, read as the children's parents
        extra = [f"--allow=fs.write={work}", f"--allow=fs.read={work}"]
        extra += [arg for stack in level
                  for arg in _oci_settings(stack, names[stack], chain, digests, work, opts)]
        cmd, variables = bake_command(
            root, replace(opts, targets=level, load=False, push=False, extra=[*opts.extra, *extra])
        )
        proc.run(cmd, cwd=root, env={**os.environ, **variables}, capture=opts.progress == "quiet")
        for stack in level:
            digests[stack] = layout_digest(work / stack)  # the image: what the children build FROM
            out.append(_publish_one(work / stack, stack, names[stack], opts, sbom))
    return out


def _publish_one(
    layout: Path,
    stack: str,
    names: list[str],
    opts: BuildOptions,
    sbom: Callable[[str, str], str] | None,
) -> Published:
    """Attach the SBOMs to one exported image, then load it or push it by digest."""
    # the statement names the stack, not where it is pushed: the same image has the same index
    # everywhere
    top = attach_sboms(layout, stack, partial(sbom, stack)) if sbom else layout_digest(layout)
    published = Published(stack, top, names, platforms=layout_platforms(layout))
    if opts.load:
        _load(layout, opts)
    if opts.push:
        _, published.pushed_bytes = push_by_digest(layout, names[0])
    return published


def _oci_settings(
    stack: str,
    names: list[str],
    chain: Chain,
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
    sets = [output, f"{stack}.args.SOURCE_DATE_EPOCH={chain.epochs[stack]}"]
    if not opts.provenance:
        sets.append(f"{stack}.attest=type=provenance,disabled=true")
    if opts.platform:
        sets += _one_platform(stack, opts)
    parent = chain.parents.get(stack)
    if parent is not None:
        context = _parent_context(stack, parent, chain, digests, work)
        sets.append(f"{stack}.contexts.{parent}={context}")
    return [arg for s in sets for arg in ("--set", s)]


def _parent_context(
    stack: str, parent: str, chain: Chain, digests: dict[str, str], work: Path
) -> str:
    """The parent's image by digest: built in this run (its layout), or in a registry."""
    if parent in digests:
        return f"oci-layout://{work / parent}@{digests[parent]}"
    if parent in chain.external:
        return f"docker-image://{chain.external[parent]}"
    raise BakegenError(
        f"{stack}: its parent {parent} was neither built first nor found in a registry",
        hint="this is a bug in bakegen's build order",
    )


def _one_platform(stack: str, opts: BuildOptions) -> list[str]:
    """A per-platform job: only that platform, with a layer cache of its own (two jobs writing one
    cache reference would each replace the other's)."""
    sets = [f"{stack}.platform={opts.platform}"]
    if opts.cache:
        ref = f"{opts.cache}:{stack}-{str(opts.platform).split('/')[1]}"
        sets += [f"{stack}.cache-from=type=registry,ref={ref}",
                 f"{stack}.cache-to=type=registry,ref={ref},mode=max"]
    return sets


def _load(layout: Path, opts: BuildOptions) -> None:
    """Into the builder's engine when it is a docker context, else the current one."""
    with tempfile.NamedTemporaryFile(suffix=".tar", dir=layout.parent) as archive:
        with tarfile.open(archive.name, "w") as tar:
            for path in sorted(layout.iterdir()):
                if path.name != "ingest":
                    tar.add(path, arcname=path.name)
        proc.run([*docker(opts), "load", "--quiet", "--input", archive.name])
