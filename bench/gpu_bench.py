#!/usr/bin/env python3
"""The CUDA stack (examples/gpu: torch from PyPI with its nvidia-* wheels) built for linux/amd64: time, size and the
CUDA labels. No GPU is needed to build it.

Prints figures; asserts nothing. Run: make bench-gpu (needs the engine: make engine; downloads several GB from PyPI).

With BENCH_GPU_ANCHOR=1 it also builds the anchor, a single-stage Dockerfile that runs `pip install --no-cache-dir
--require-hashes -r` the same lock on the same base, and prints bakegen's figures as ratios of the anchor's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _bench import (
    BASE_IMAGE,
    CA_BUNDLE,
    IMAGE_PREFIX,
    REPO,
    bakegen,
    docker,
    image_size,
    mb,
    table,
    venv_size,
    workdir,
)

from bakegen.build import BuildOptions, bake_command

EXAMPLE = REPO / "examples" / "gpu"
STACK = "pytorch"
ANCHOR = """\
FROM {base}
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=cacert \\
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \\
    python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt
ENV PATH=/opt/venv/bin:$PATH
"""


def build_bakegen(root: Path) -> float:
    opts = BuildOptions(targets=[STACK], base_images={STACK: BASE_IMAGE}, ca_bundle=CA_BUNDLE,
                        registry=f"{IMAGE_PREFIX}gpu", load=True, progress="plain")
    cmd, variables = bake_command(root, opts)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env={**os.environ, **variables}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-6000:]}")
    return time.perf_counter() - start


def build_anchor(root: Path, ctx: Path) -> float:
    ctx.mkdir()
    shutil.copy(root / "locks" / STACK / "requirements.txt", ctx / "requirements.txt")
    (ctx / "Dockerfile").write_text(ANCHOR.format(base=BASE_IMAGE))
    start = time.perf_counter()
    secret = ["--secret", f"id=cacert,src={CA_BUNDLE}"] if CA_BUNDLE else []
    docker("buildx", "build", "--load", *secret, "--tag", f"{IMAGE_PREFIX}gpu-anchor/{STACK}:latest", str(ctx))
    return time.perf_counter() - start


def main() -> None:
    with workdir() as tmp:
        root = tmp / "gpu"
        shutil.copytree(EXAMPLE, root)
        bakegen(root, "generate")
        took = build_bakegen(root)
        image = f"{IMAGE_PREFIX}gpu/{STACK}:latest"
        disk, download, layers = image_size(image)
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", image))
        torch = docker("run", "--rm", "--entrypoint", "/opt/venv/bin/python", image, "-c",
                       "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())").strip()
        rows = [["image", "build (cold)", "on disk", "to download", "layers", "/opt/venv"],
                ["bakegen", f"{took:.0f} s", mb(disk), mb(download), str(layers), mb(venv_size(image))]]
        if os.environ.get("BENCH_GPU_ANCHOR") == "1":
            anchor_took = build_anchor(root, tmp / "anchor")
            anchor = f"{IMAGE_PREFIX}gpu-anchor/{STACK}:latest"
            a_disk, a_download, a_layers = image_size(anchor)
            rows.append(["single-stage pip", f"{anchor_took:.0f} s", mb(a_disk), mb(a_download), str(a_layers), mb(venv_size(anchor))])
            rows.append(["ratio", f"{took / anchor_took:.2f}x", f"{disk / a_disk:.2f}x", f"{download / a_download:.2f}x", "", ""])
        print(table(rows))
        print(f"torch in the image (version, CUDA, a GPU here): {torch}")
        print("labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k.startswith("io.bakegen.cuda")))


if __name__ == "__main__":
    main()
