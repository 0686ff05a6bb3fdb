#!/usr/bin/env python3
"""Image size: bakegen's images against single-stage `pip install --no-cache-dir` Dockerfiles.

Prints figures; asserts nothing. Run: make bench-size (needs the engine: make engine).

For each example stack, three images on the same base image with the same
packages at the same locked versions:

* single-stage: one hand-written-style Dockerfile per stack, written the
  careful way: `apt-get install` of the chain's locked apt packages (build tools
  included: one stage keeps what it installs), `apt-get clean` and no apt lists,
  a virtualenv with `pip install --no-cache-dir -r` the chain's
  locked requirements, `npm ci` of the npm lock, and a user;
* bakegen default: the generated Dockerfiles with `slim` switched off;
* bakegen slim: the shipped stacks (`scipy` sets [python] slim = true, `geo`
  inherits it).

Sizes are as `bakegen report` counts them: the sum of the uncompressed layers
(on disk) and the compressed size (to download).
"""

from __future__ import annotations

import re
from pathlib import Path

from _bench import (
    BASE_IMAGE,
    CA_BUNDLE,
    REPO,
    bake,
    bakegen,
    docker,
    image_size,
    mb,
    project,
    table,
    venv_size,
    workdir,
)

from bakegen.project import load_stacks, read_lock

SINGLE_STAGE = """\
FROM {base}
USER root
COPY apt-sources.list /etc/apt/sources.list.d/locked.list
RUN apt-get update \\
 && apt-get install -y --no-install-recommends {apt} \\
 && apt-get clean \\
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 --gid 100 jovyan
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=cacert \\
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \\
    python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
{npm}ENV PATH=/opt/venv/bin:$PATH
USER 1000:100
"""
NPM = """\
COPY package.json package-lock.json /opt/npm/
RUN --mount=type=secret,id=cacert \\
    if [ -s /run/secrets/cacert ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/cacert; fi; \\
    cd /opt/npm && npm ci --ignore-scripts --no-audit --no-fund
"""


def single_stage(root: Path, ctx: Path, chain: list[str]) -> None:
    """Write a single-stage Dockerfile for the last stack of ``chain`` into ``ctx``."""
    ctx.mkdir()
    apt, requirements, npm = {}, [], ""
    for stack in chain:
        lock = read_lock(root / "locks" / stack)
        if lock.parts.get("apt"):
            apt.update({e.name: e.version for e in lock.parts["apt"].entries if e.arch == "amd64" and e.kind in ("req", "build")})
        requirements.append(re.sub(r"(?m)^#.*\n", "", (root / "locks" / stack / "requirements.txt").read_text()))
        if lock.parts.get("npm"):
            for name in ("package.json", "package-lock.json"):
                (ctx / name).write_text((root / "locks" / stack / name).read_text())
            npm = NPM
    (ctx / "requirements.txt").write_text("".join(requirements))
    (ctx / "apt-sources.list").write_text((root / "locks" / chain[0] / "apt-sources.list").read_text())
    (ctx / "Dockerfile").write_text(SINGLE_STAGE.format(base=BASE_IMAGE, apt=" ".join(f"{p}={v}" for p, v in sorted(apt.items())), npm=npm))


def main() -> None:
    graph = load_stacks(REPO)
    stacks = graph.order
    with workdir() as tmp:
        shipped = project(tmp, "slim")
        default = project(tmp, "default")
        for path in (default / "stacks").glob("*.toml"):
            path.write_text(re.sub(r"(?m)^slim = true\n", "", path.read_text()))
        bakegen(default, "generate")
        bake(default, [], "bench-default")
        bake(shipped, [], "bench-slim")
        secret = ["--secret", f"id=cacert,src={CA_BUNDLE}"] if CA_BUNDLE else []
        for name in stacks:
            ctx = tmp / f"single-{name}"
            single_stage(shipped, ctx, [s.name for s in graph.ancestors(name)] + [name])
            docker("buildx", "build", "--load", "--progress", "quiet", "-t", f"bench-single/{name}:latest", *secret, str(ctx))

        def cell(image: str) -> tuple[str, int]:
            disk, download, layers = image_size(image)
            return f"{mb(disk)} ({mb(download)} download, {layers} layers)", disk

        rows = [["stack", "single-stage pip --no-cache-dir", "bakegen default", "bakegen slim", "default vs single", "slim vs single"]]
        venvs = [["stack", "single-stage", "bakegen default", "bakegen slim", "default / single", "slim / single"]]
        for name in stacks:
            single, s = cell(f"bench-single/{name}:latest")
            dflt, d = cell(f"bench-default/{name}:latest")
            slim, m = cell(f"bench-slim/{name}:latest")
            rows.append([name, single, dflt, slim, f"{(d - s) / 1e6:+.1f} MB ({(d - s) / s:+.1%})", f"{(m - s) / 1e6:+.1f} MB ({(m - s) / s:+.1%})"])
            vs, vd, vm = (venv_size(f"bench-{kind}/{name}:latest") for kind in ("single", "default", "slim"))
            venvs.append([name, mb(vs), mb(vd), mb(vm), f"{vd / vs:.2f}x", f"{vm / vs:.2f}x"])
    print(f"base image: {BASE_IMAGE}; sizes on disk (sum of uncompressed layers), base image included")
    print(table(rows))
    print("negative = smaller than the single-stage image")
    print("\nthe virtualenv /opt/venv alone (du -sb: a hard-linked file counted once); goal: default <= 0.85x, slim <= 0.65x")
    print(table(venvs))


if __name__ == "__main__":
    main()
