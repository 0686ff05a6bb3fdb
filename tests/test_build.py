from __future__ import annotations

import pytest

from bakegen.build import BuildOptions, bake_command
from bakegen.errors import BakegenError


def test_bake_command_and_variables(tmp_path):
    (tmp_path / "docker-bake.hcl").write_text("")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cmd, env = bake_command(tmp_path, BuildOptions(
        targets=["geo"], base_images={"base": "local/python:3.13", "my-root": "x"}, ca_bundle=str(ca),
        registry="ghcr.io/acme", load=True,
    ))
    assert cmd == ["docker", "buildx", "bake", f"--allow=fs.read={ca}", "--file", "docker-bake.hcl", "--progress", "auto", "--load", "--provenance=false", "geo"]
    assert "--provenance=mode=max" in bake_command(tmp_path, BuildOptions(push=True, provenance=True))[0]
    assert env == {"BASE_IMAGE_BASE": "local/python:3.13", "BASE_IMAGE_MY_ROOT": "x", "CA_BUNDLE": str(ca), "REGISTRY": "ghcr.io/acme"}


def test_bake_command_errors(tmp_path):
    with pytest.raises(BakegenError, match="docker-bake.hcl not found"):
        bake_command(tmp_path, BuildOptions())
    (tmp_path / "docker-bake.hcl").write_text("")
    with pytest.raises(BakegenError, match="CA bundle /nope.pem not found"):
        bake_command(tmp_path, BuildOptions(ca_bundle="/nope.pem"))
    with pytest.raises(BakegenError, match="cannot be combined"):
        bake_command(tmp_path, BuildOptions(load=True, push=True))
