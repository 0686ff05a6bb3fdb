from __future__ import annotations

import pytest

from bakegen.build import BuildOptions, Chain, bake_command
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


@pytest.mark.parametrize("args, message", [
    (["--push"], "--push needs --registry"),
    (["--load", "--registry", 'ghcr.io/acme",dest=/tmp/x'], "is not a registry host"),
    (["--load", "--registry", "GHCR.io/Acme"], "is not a registry host"),
    (["--load", "--tag-prefix", 'pr-1",name=evil'], "is not a tag prefix"),
])
def test_image_names_are_checked_before_anything_is_built(tmp_path, capsys, args, message):
    from bakegen.cli import main

    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "base.toml").write_text('name = "base"\ndescription = "b"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n')
    assert main(["-C", str(tmp_path), "build", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and message in err[0] and len(err) == 2, err


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_every_layer_of_a_published_image_is_compressed_alike(tmp_path, compression):
    """The OCI export compresses every layer again (force-compression): a layer that an earlier build left in the
    cache with another compression never reaches an image, so the digest depends only on the locks and this choice."""
    from bakegen.build import _oci_settings

    chain = Chain(levels=[["scipy"]], epochs={"scipy": 1}, parents={"scipy": "base"})
    args = _oci_settings("scipy", ["r/scipy:latest"], chain, {"base": "sha256:" + "a" * 64}, tmp_path, BuildOptions(compression=compression))
    output = next(a for a in args if a.startswith("scipy.output="))
    options = dict(part.split("=", 1) for part in output.removeprefix("scipy.output=").split(",") if "=" in part)
    assert options["compression"] == compression
    assert options["force-compression"] == "true"
    assert options["rewrite-timestamp"] == "true"


def test_the_default_compression_is_zstd_and_the_cli_offers_gzip(tmp_path):
    from bakegen.cli import parser as cli_parser

    parser = cli_parser()
    assert BuildOptions().compression == "zstd"
    assert parser.parse_args(["build", "--compression", "gzip"]).compression == "gzip"
    assert parser.parse_args(["verify-repro", "base"]).compression == "zstd"


def test_an_unknown_compression_never_reaches_the_exporter_options(tmp_path):
    from bakegen.build import _oci_settings

    with pytest.raises(BakegenError, match="unknown layer compression"):
        chain = Chain(levels=[["base"]], epochs={"base": 1}, parents={"base": None})
        _oci_settings("base", ["r/base:latest"], chain, {}, tmp_path, BuildOptions(compression="zstd,dest=/etc"))
