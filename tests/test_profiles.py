"""bakegen profiles: Zero to JupyterHub's singleuser.profileList."""

from __future__ import annotations

import json

import pytest
import yaml

from bakegen.cli import main
from conftest import REPO


def profiles(capsys, *args):
    assert main(["-C", str(REPO), "profiles", *args]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_helm_values_have_the_fields_z2jh_documents(capsys):
    values = profiles(capsys, "--registry", "ghcr.io/acme")
    plist = values["singleuser"]["profileList"]
    assert [p["slug"] for p in plist] == ["base", "scipy", "geo"]
    for p in plist:
        assert set(p) <= {"display_name", "description", "slug", "default", "kubespawner_override"}
        assert isinstance(p["display_name"], str) and isinstance(p["description"], str)
        assert p["kubespawner_override"]["image"] == f"ghcr.io/acme/{p['slug']}:latest"
    assert [p.get("default", False) for p in plist] == [False, True, False]
    assert plist[1]["display_name"] == "SciPy"
    assert plist[1]["kubespawner_override"] == {"image": "ghcr.io/acme/scipy:latest", "cpu_limit": 2, "mem_limit": "4G", "default_url": "/lab"}


def test_configmap_holds_the_same_values(capsys):
    helm = profiles(capsys)
    cm = profiles(capsys, "--format", "configmap")
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    assert yaml.safe_load(cm["data"]["values.yaml"]) == helm


def test_images_pinned_by_digest_from_bake_metadata(capsys, tmp_path):
    meta = tmp_path / "meta.json"
    digest = "sha256:" + "ab" * 32
    meta.write_text(json.dumps({"scipy": {"containerimage.digest": digest, "image.name": "x"}, "buildx.build.ref": "y"}))
    plist = profiles(capsys, "--registry", "ghcr.io/acme/", "--metadata", str(meta))["singleuser"]["profileList"]
    assert [p["kubespawner_override"]["image"] for p in plist] == ["ghcr.io/acme/base:latest", f"ghcr.io/acme/scipy@{digest}", "ghcr.io/acme/geo:latest"]


def test_profile_options_are_validated(project, capsys):
    root = project({
        "a": 'name = "a"\ndescription = "x"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n[profile]\nmem_limit = "lots"\n',
    })
    assert main(["-C", str(root), "profiles"]) == 2
    assert capsys.readouterr().err == "error: stacks/a.toml:7: profile.mem_limit: invalid memory limit 'lots'\nhint: use something like '4G'\n"


def test_one_default_only(project, capsys):
    stack = 'name = "{n}"\ndescription = "x"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n[profile]\ndefault = true\n'
    root = project({"a": stack.format(n="a"), "b": stack.format(n="b")})
    assert main(["-C", str(root), "profiles"]) == 2
    assert "more than one stack sets [profile] default = true" in capsys.readouterr().err


def test_disabled_profiles_are_left_out(project, capsys):
    root = project({"a": 'name = "a"\ndescription = "x"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n[profile]\nenabled = false\n'})
    assert main(["-C", str(root), "profiles"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"singleuser": {"profileList": []}}
