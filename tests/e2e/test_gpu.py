"""A CUDA stack's labels on a real image: a small stack whose lock holds PyPI's CUDA runtime wheel (about 1 MB, not
torch's several GB: that build is make bench-gpu) is built by BuildKit, and the image says the CUDA it needs and the
oldest NVIDIA driver that runs it; the library is in the image at the locked version."""

from __future__ import annotations

import json

import pytest

from bakegen.cuda import cuda_of
from e2e.conftest import bakegen, docker

pytestmark = pytest.mark.e2e

STACK = '''name = "cuda"
description = "the CUDA runtime from PyPI"
base = "python:3.13-slim@sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6"
platforms = ["linux/amd64"]

[python]
version = "3.13"
packages = ["nvidia-cuda-runtime>=13,<14"]
pip = false
'''


def test_the_image_says_the_cuda_of_its_lock_and_the_driver_it_needs(engine, tmp_path):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "cuda.toml").write_text(STACK)
    for args in (["lock"], ["generate"]):
        out = bakegen(tmp_path, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    packages = json.loads((tmp_path / "locks/cuda/lock.json").read_text())["python"]["packages"]["linux/amd64"]
    cuda = cuda_of(packages)
    assert cuda is not None and cuda.major == 13
    out = bakegen(tmp_path, "build", "--load", "--registry", "bakegen-gpu", "--base-image", f"cuda={engine.standin}",
                  "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", "bakegen-gpu/cuda:latest"))
    assert {k: v for k, v in labels.items() if k.startswith("io.bakegen.cuda")} == {
        "io.bakegen.cuda": cuda.version, "io.bakegen.cuda.variant": cuda.variant, "io.bakegen.cuda.min-driver": "580"}
    probe = "import importlib.metadata as m; print(m.version('nvidia-cuda-runtime'))"
    shown = docker("run", "--rm", "--entrypoint", "/opt/venv/bin/python", "bakegen-gpu/cuda:latest", "-c", probe).strip()
    assert shown == packages["nvidia-cuda-runtime"]
