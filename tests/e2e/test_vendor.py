"""A stack on a vendor notebook image: conda-like Python and its own user, detected, not declared."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

from bakegen.project import load_stacks, read_lock
from e2e.conftest import docker

pytestmark = pytest.mark.e2e

# A stand-in for a Vertex AI Workbench image: its own Python environment at /opt/conda
# (first on PATH) with JupyterLab, and its own user "jupyter" (uid 1000, gid 1000).
VENDOR = """\
FROM {standin}
RUN --mount=type=secret,id=cacert \\
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \\
    python3 -m venv /opt/conda && /opt/conda/bin/pip install --no-cache-dir -q "jupyterlab>=4.2,<5" \\
 && groupadd --gid 1000 jupyter && useradd --create-home --uid 1000 --gid 1000 jupyter
ENV PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER jupyter
"""


def test_vendor_base_image(engine, registry, tmp_path):
    tag = f"{registry}/bakegen-test/workbench:py313"
    ctx = tmp_path / "vendor"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(VENDOR.format(standin=engine.standin))
    subprocess.run(["docker", "buildx", "build", "--push", "-q",
                    "--secret", f"id=cacert,src={engine.ca_bundle}", "-t", tag, str(ctx)], check=True, capture_output=True)

    # the shipped example, on the stand-in (same Python as the stand-in's)
    example = (REPO / "examples/vertex/stacks/vertex.toml").read_text()
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "stacks/vertex.toml").write_text(
        example.replace("us-docker.pkg.dev/deeplearning-platform-release/gcr.io/base-cpu.py310", tag).replace('version = "3.10"', 'version = "3.13"')
    )

    def bakegen(*args):
        out = subprocess.run([sys.executable, "-m", "bakegen", "-C", str(root), *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    bakegen("lock")
    lock = read_lock(root / "locks/vertex")
    assert lock.parts["image"].user == "jupyter"  # read from the image config
    bakegen("generate")
    dockerfile = (root / "dockerfiles/vertex/Dockerfile").read_text()
    assert "/opt/venv" not in dockerfile and "USER jupyter" in dockerfile and "useradd" not in dockerfile
    bakegen("build", "--load", "--registry", "bakegen-vendor", "--ca-bundle", engine.ca_bundle, "--progress", "plain")

    image = "bakegen-vendor/vertex:latest"
    out = docker("run", "--rm", image, "sh", "-c", "id -un; command -v python; python -c 'import ipyleaflet, jupyterlab; print(ipyleaflet.__file__)'")
    user, python, module = out.split()
    assert user == "jupyter" and python == "/opt/conda/bin/python" and module.startswith("/opt/conda/lib/")
    listed = json.loads(docker("run", "--rm", image, "python", "-m", "pip", "list", "--format=json"))
    installed = {d["name"].lower().replace("_", "-"): d["version"] for d in listed}
    assert all(installed.get(p.key) == p.version for p in lock.parts["python"].pins)  # the locked versions, in the vendor's Python
    assert docker("run", "--rm", image, "sh", "-c", "test -w ~/work && echo writable").strip() == "writable"
    assert load_stacks(REPO / "examples/vertex").order == ["vertex"]
    # and it builds bit for bit: pip writes checked-hash .pyc files under the lock's SOURCE_DATE_EPOCH
    repro = bakegen("verify-repro", "vertex", "--ca-bundle", engine.ca_bundle, "--progress", "quiet")
    assert repro.stdout.startswith("vertex: identical (sha256:"), repro.stdout
