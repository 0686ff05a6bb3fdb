"""The build runner: ``docker buildx bake`` on the generated bake file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bakegen import proc
from bakegen.errors import BakegenError
from bakegen.render import BAKE_FILE
from bakegen.render.bake import base_variable


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
    # BuildKit's provenance attestation carries build times: on, it changes the image index's digest on every build
    provenance: bool = False
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
            raise BakegenError(f"CA bundle {opts.ca_bundle} not found", hint="pass the path of a PEM file, e.g. /etc/ssl/certs/ca-certificates.crt")
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
