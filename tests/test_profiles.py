"""bakegen profiles: Zero to JupyterHub's singleuser.profileList, read back by the real KubeSpawner."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from conftest import REPO

from bakegen.cli import main

DIGEST = "sha256:" + "ab" * 32


def profiles(capsys, *args, root=REPO):
    assert main(["-C", str(root), "profiles", *args]) == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def test_helm_values_have_the_fields_z2jh_documents(capsys):
    plist = profiles(capsys, "--registry", "ghcr.io/acme")["singleuser"]["profileList"]
    assert [p["slug"] for p in plist] == ["base", "scipy", "geo"]
    for p in plist:
        assert set(p) <= {"display_name", "description", "slug", "default", "kubespawner_override"}
        assert isinstance(p["display_name"], str) and isinstance(p["description"], str)
        assert p["kubespawner_override"]["image"] == f"ghcr.io/acme/{p['slug']}:latest"
    assert [p.get("default", False) for p in plist] == [False, True, False]
    assert plist[1]["display_name"] == "SciPy"
    assert plist[1]["kubespawner_override"] == {
        "image": "ghcr.io/acme/scipy:latest", "image_pull_policy": "Always", "cpu_limit": 2, "mem_limit": "4G",
        "default_url": "/lab", "node_selector": {"kubernetes.io/arch": "amd64"},
    }


def test_a_child_inherits_its_parents_resources_and_landing_page(capsys):
    plist = profiles(capsys, "--registry", "ghcr.io/acme")["singleuser"]["profileList"]
    geo = plist[2]
    assert geo["display_name"] == "geo" and "default" not in geo
    assert {k: geo["kubespawner_override"][k] for k in ("cpu_limit", "mem_limit", "default_url")} == {"cpu_limit": 2, "mem_limit": "4G", "default_url": "/lab"}


def test_no_registry_is_refused(capsys):
    assert main(["-C", str(REPO), "profiles"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: no --registry: Kubernetes would pull the images from Docker Hub's library namespace")
    assert err[1].startswith("hint: pass --registry") and len(err) == 2


def test_configmap_holds_the_same_values(capsys):
    helm = profiles(capsys, "--registry", "r.example")
    cm = profiles(capsys, "--registry", "r.example", "--format", "configmap")
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    assert yaml.safe_load(cm["data"]["values.yaml"]) == helm


def test_images_pinned_by_digest_from_bake_metadata(capsys, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"scipy": {"containerimage.digest": DIGEST, "image.name": "x"}, "buildx.build.ref": "y"}))
    plist = profiles(capsys, "--registry", "ghcr.io/acme/", "--metadata", str(meta))["singleuser"]["profileList"]
    overrides = [p["kubespawner_override"] for p in plist]
    assert [o["image"] for o in overrides] == ["ghcr.io/acme/base:latest", f"ghcr.io/acme/scipy@{DIGEST}", "ghcr.io/acme/geo:latest"]
    assert [o["image_pull_policy"] for o in overrides] == ["Always", "IfNotPresent", "Always"]


def locked_project(tmp_path, stacks: dict[str, str]):
    """A project whose stacks are locked by a fake resolver (profiles read the locks)."""
    from fakes import lock_project

    (tmp_path / "stacks").mkdir(parents=True)
    for name, text in stacks.items():
        (tmp_path / "stacks" / f"{name}.toml").write_text(text)
    lock_project(tmp_path)
    return tmp_path


ROOT = 'name = "{n}"\ndescription = "x"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\n'


def test_profile_options_are_validated(project, capsys):
    root = project({"a": ROOT.format(n="a") + '[profile]\nmem_limit = "4Gi"\n'})
    assert main(["-C", str(root), "profiles", "--registry", "r"]) == 2
    assert capsys.readouterr().err == (
        "error: stacks/a.toml:7: profile.mem_limit: invalid memory limit '4Gi'\n"
        "hint: use something like '4G (K, M, G or T, as JupyterHub reads them: 4G is 4 GiB)'\n"
    )


def test_one_default_and_one_slug_only(tmp_path, capsys):
    root = locked_project(tmp_path / "d", {n: ROOT.format(n=n) + "[profile]\ndefault = true\n" for n in "ab"})
    assert main(["-C", str(root), "profiles", "--registry", "r"]) == 2
    assert "more than one stack sets [profile] default = true" in capsys.readouterr().err
    root = locked_project(tmp_path / "s", {n: ROOT.format(n=n) + '[profile]\nslug = "same"\n' for n in "ab"})
    assert main(["-C", str(root), "profiles", "--registry", "r"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "error: two profiles have the slug 'same'"


def test_disabled_profiles_are_left_out(tmp_path, capsys):
    root = locked_project(tmp_path, {"a": ROOT.format(n="a") + "[profile]\nenabled = false\n"})
    assert profiles(capsys, "--registry", "r", root=root) == {"singleuser": {"profileList": []}}


def test_another_user_and_two_platforms(tmp_path, capsys):
    stack = ROOT.format(n="v").replace('[python]', 'platforms = ["linux/amd64", "linux/arm64"]\n[python]') + "[user]\nname = \"jupyter\"\nuid = 1001\ngid = 1001\n"
    root = locked_project(tmp_path, {"v": stack})
    override = profiles(capsys, "--registry", "r", root=root)["singleuser"]["profileList"][0]["kubespawner_override"]
    assert override == {"image": "r/v:latest", "image_pull_policy": "Always", "uid": 1001, "gid": 1001, "fs_gid": 1001}


# --- the real KubeSpawner reads the profiles back -----------------------------------------------


def pods(values: dict) -> dict[str, object]:
    """Each profile, selected and applied by KubeSpawner as Zero to JupyterHub configures it, as a pod."""
    import kubespawner  # test extra: jupyterhub-kubespawner
    from traitlets.config import Config

    async def render() -> dict[str, object]:
        out = {}
        for profile in values["singleuser"]["profileList"]:
            for key in profile["kubespawner_override"]:
                assert kubespawner.KubeSpawner.class_traits().get(key) is not None, f"KubeSpawner has no setting {key!r}"
            config = Config()
            config.KubeSpawner.profile_list = values["singleuser"]["profileList"]  # z2jh passes profileList as it is
            spawner = kubespawner.KubeSpawner(config=config, _mock=True)
            spawner.user_options = {"profile": profile["slug"]}
            await spawner.load_user_options()
            out[profile["slug"]] = await spawner.get_pod_manifest()
        return out

    return asyncio.run(render())


@pytest.fixture
def offline_kubespawner(monkeypatch):
    """KubeSpawner without a cluster: no kube config to load."""
    import kubespawner.spawner

    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda *a, **kw: None)


def test_kubespawner_makes_the_pods_the_profiles_describe(capsys, tmp_path, offline_kubespawner):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"scipy": {"containerimage.digest": DIGEST}}))
    manifests = pods(profiles(capsys, "--registry", "ghcr.io/acme", "--metadata", str(meta)))
    scipy = manifests["scipy"].spec.containers[0]
    assert scipy.image == f"ghcr.io/acme/scipy@{DIGEST}" and scipy.image_pull_policy == "IfNotPresent"
    assert scipy.resources.limits == {"cpu": 2.0, "memory": 4 * 1024**3}
    assert {e.name: e.value for e in scipy.env}["JUPYTERHUB_DEFAULT_URL"] == "/lab"
    assert manifests["scipy"].spec.node_selector == {"kubernetes.io/arch": "amd64"}
    base = manifests["base"].spec.containers[0]
    assert base.image == "ghcr.io/acme/base:latest" and base.image_pull_policy == "Always" and not base.resources.limits


def test_kubespawner_runs_a_vendor_images_user(tmp_path, capsys, offline_kubespawner):
    stack = ROOT.format(n="v") + "[user]\nname = \"jupyter\"\nuid = 1001\ngid = 1001\n"
    manifests = pods(profiles(capsys, "--registry", "r", root=locked_project(tmp_path, {"v": stack})))
    pod = manifests["v"]
    assert pod.spec.containers[0].security_context["runAsUser"] == 1001
    assert pod.spec.containers[0].security_context["runAsGroup"] == 1001
    assert pod.spec.security_context["fsGroup"] == 1001

