"""A multi-platform stack pair, locked for real for amd64 and arm64, built by BuildKit for amd64.

(No arm64 emulation here: the arm64 half is locked, not built.) The pip steps
bind-mount each platform's requirements file and pick theirs by TARGETARCH.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bakegen.lock import read_lock
from e2e.conftest import bakegen, docker

pytestmark = pytest.mark.e2e

DIGEST = "sha256:9662417aace5ae7b8e2609cce472b72a8958e134ba372808abe9cc1a0c0125e6"  # python:3.13-slim, as in stacks/base.toml
STACKS = {
    "multi": f'name = "multi"\ndescription = "two platforms"\nbase = "python:3.13-slim@{DIGEST}"\n'
             'platforms = ["linux/amd64", "linux/arm64"]\n[python]\nversion = "3.13"\npackages = ["six"]\n',
    "multikid": 'name = "multikid"\ndescription = "its child"\nextends = "multi"\n[python]\npackages = ["packaging"]\n',
}


def test_multi_platform_stacks_build_for_amd64(engine, tmp_path: Path):
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    for name, text in STACKS.items():
        (root / "stacks" / f"{name}.toml").write_text(text)
    for args in (["lock"], ["generate"]):
        out = bakegen(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    for name in STACKS:
        assert read_lock(root / "locks" / name).platforms == ["linux/amd64", "linux/arm64"]
        assert (root / "locks" / name / "requirements-arm64.txt").is_file()
    env = {**os.environ, "BASE_IMAGE_MULTI": engine.standin, "CA_BUNDLE": engine.ca_bundle, "REGISTRY": "bakegen-e2e-multi"}
    build = subprocess.run(
        ["docker", "buildx", "bake", f"--allow=fs.read={engine.ca_bundle}", "--progress", "plain", "--load", "--set", "*.platform=linux/amd64"],
        cwd=root, env=env, capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    out = docker("run", "--rm", "bakegen-e2e-multi/multikid:latest", "python", "-c", "import six, packaging; print(six.__version__, packaging.__version__)")
    locked = {p.key: p.version for s in STACKS for p in read_lock(root / "locks" / s).python.pins}
    assert out.split() == [locked["six"], locked["packaging"]]
