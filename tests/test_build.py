from __future__ import annotations

import pytest
from conftest import REPO

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


@pytest.mark.parametrize("args, message", [
    (["--stacks", "scipy"], "--stacks and --level build FROM the parents' images in the registry, and push by digest: they need --push"),
    (["geo", "--stacks", "scipy", "--push", "--registry", "r.test/a"], "give the stacks to build one way"),
    (["--stacks", "scipy", "--level", "1", "--push", "--registry", "r.test/a"], "give the stacks to build one way"),
    (["--level", "7", "--push", "--registry", "r.test/a"], "--level 7: the graph has levels 0 to 2"),
    (["--level", "-1", "--push", "--registry", "r.test/a"], "the graph has levels 0 to 2"),
    (["--stacks", "nosuch", "--push", "--registry", "r.test/a"], "no stack named 'nosuch'"),
    (["--load", "--parents", "x.json"], "--parents is for --stacks and --level"),
    (["--load", "--platform", "linux/arm64"], "--platform 'linux/arm64': base is built for linux/amd64"),
    (["--load", "--platform", "linux/amd64,dest=/tmp/x"], "is built for linux/amd64"),
    (["--platform", "linux/amd64"], "--platform is for --load and --push"),
    (["--load", "--builder", "b;touch /tmp/x"], "is not a builder name"),
    (["--load", "--builder=-b"], "is not a builder name"),
])
def test_distributed_build_options_are_checked_before_anything_runs(capsys, args, message):
    """One error line each, before any docker command runs."""
    from bakegen.cli import main

    assert main(["-C", str(REPO), "build", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and message in err[0] and len(err) == 2, err


def test_promote_needs_a_registry_and_metadata(capsys, tmp_path):
    from bakegen.cli import main

    assert main(["-C", str(REPO), "promote", "--metadata", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: promote needs --registry")
    with pytest.raises(SystemExit):
        main(["-C", str(REPO), "promote", "--registry", "r.test/a"])
    assert "--metadata" in capsys.readouterr().err


def test_a_builder_that_is_a_docker_context_runs_docker_with_that_context(monkeypatch, tmp_path):
    """buildx's docker driver builds only on the current context's engine: a context name becomes docker --context;
    any other builder (docker-container, remote) becomes bake --builder."""
    from bakegen import build, proc

    drivers = {"engine-b": "docker", "remote-kit": "remote"}

    def fake_run(cmd, **kwargs):
        name = cmd[-1]
        if name not in drivers:
            return proc.Result(cmd, 1, "", f'ERROR: no builder "{name}" found')
        return proc.Result(cmd, 0, f"Name:   {name}\nDriver: {drivers[name]}\n", "")

    monkeypatch.setattr(proc, "run", fake_run)
    (tmp_path / "docker-bake.hcl").write_text("")
    context = build.BuildOptions(load=True, **build.builder_options("engine-b"))
    assert build.bake_command(tmp_path, context)[0][:5] == ["docker", "--context", "engine-b", "buildx", "bake"]
    remote = build.BuildOptions(load=True, **build.builder_options("remote-kit"))
    cmd = build.bake_command(tmp_path, remote)[0]
    assert cmd[:3] == ["docker", "buildx", "bake"] and cmd[cmd.index("--builder") + 1] == "remote-kit"
    with pytest.raises(BakegenError, match="no buildx builder or docker context has that name"):
        build.builder_options("nosuch")
