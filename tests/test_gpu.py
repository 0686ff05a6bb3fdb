"""GPU stacks: the CUDA a lock's Python packages need (lock.json and the image's labels), the GPU a profile asks
for (read back by the real KubeSpawner), and the example CUDA stack (examples/gpu) locked from PyPI (marked network).
Building it (several GB) is bench/gpu_bench.py's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_profiles import offline_kubespawner, pods  # noqa: F401 - the fixture, used by name

from bakegen.cli import main
from bakegen.cuda import Cuda, cuda_labels, cuda_of, cuda_section
from bakegen.lock import manifest_checksum

EXAMPLE = Path(__file__).parents[1] / "examples" / "gpu"


@pytest.mark.parametrize("packages, cuda", [
    ({"torch": "2.11.0+cu130"}, "13.0"),
    ({"torch": "2.9.1+cu128", "nvidia-cuda-runtime-cu12": "12.8.90"}, "12.8"),
    ({"torch": "2.10.0+cpu"}, None),
    ({"torch": "2.15.0", "nvidia-cuda-runtime": "13.2.86"}, "13.2"),
    ({"torch": "2.5.1", "nvidia-cuda-runtime-cu12": "12.4.127"}, "12.4"),
    ({"cupy-cuda12x": "13.6.0"}, "12"),
    ({"jax": "0.8.0", "jax-cuda13-plugin": "0.8.0"}, "13"),
    # the newest counts: the image needs its driver
    ({"torch": "2.9.1+cu126", "nvidia-cuda-runtime": "13.0.96"}, "13.0"),
    ({"nvidia-cuda-runtime-cu11": "11.8.89", "nvidia-cuda-runtime-cu12": "12.4.127"}, "12.4"),
    ({"torch": "2.15.0"}, None),
    ({"numpy": "2.3.5"}, None),
])
def test_the_cuda_of_a_lock(packages, cuda):
    found = cuda_of(packages)
    assert (found.version if found else None) == cuda


def test_the_minimum_driver_and_the_labels():
    assert Cuda(13, 0).record() == {"version": "13.0", "variant": "cu130", "min_driver": "580"}
    assert Cuda(12, 8).min_driver == "525.60.13" and Cuda(14, 0).min_driver == "unknown" and Cuda(12).variant == "cu12"
    one = {"linux/amd64": {"torch": "2.11.0+cu130"}}
    assert cuda_labels(one) == {"io.bakegen.cuda": "13.0", "io.bakegen.cuda.variant": "cu130", "io.bakegen.cuda.min-driver": "580"}
    two = {"linux/amd64": {"torch": "2.11.0+cu130"}, "linux/arm64": {"torch": "2.9.1+cu128"}}
    assert cuda_labels(two)["io.bakegen.cuda"] == "linux/amd64=13.0,linux/arm64=12.8"
    # a platform without CUDA says so: its image claims none
    cpu = {"linux/amd64": {"torch": "2.11.0+cu130"}, "linux/arm64": {"torch": "2.11.0"}}
    assert cuda_labels(cpu)["io.bakegen.cuda.min-driver"] == "linux/amd64=580,linux/arm64=none"
    assert cuda_labels({"linux/amd64": {"numpy": "2.3.5"}}) == {}
    assert cuda_section(cpu) == {"linux/amd64": {"version": "13.0", "variant": "cu130", "min_driver": "580"}}


@pytest.fixture
def example(tmp_path):
    """A copy of examples/gpu (its stack and lock), generated."""
    root = tmp_path / "gpu"
    shutil.copytree(EXAMPLE, root)
    assert main(["-C", str(root), "generate"]) == 0
    return root


def test_the_example_s_lock_and_bake_file_carry_its_cuda(example):
    assert main(["-C", str(example), "check"]) == 0
    doc = json.loads((example / "locks/pytorch/lock.json").read_text())
    cuda = doc["python"]["cuda"]["linux/amd64"]
    assert cuda == cuda_of(doc["python"]["packages"]["linux/amd64"]).record() and cuda["min_driver"] == "580"
    bake = (example / "docker-bake.hcl").read_text()
    assert f'"io.bakegen.cuda.variant" = "{cuda["variant"]}"' in bake and '"io.bakegen.cuda.min-driver" = "580"' in bake


def test_a_lock_that_claims_another_cuda_is_refused(example, capsys):
    path = example / "locks/pytorch/lock.json"
    doc = json.loads(path.read_text())
    doc["python"]["cuda"]["linux/amd64"]["min_driver"] = "450.80.02"
    doc["checksum"] = manifest_checksum(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert main(["-C", str(example), "check"]) != 0
    assert "python/cuda: not what bakegen writes" in str(capsys.readouterr())


def test_kubespawner_gives_a_gpu_server_its_gpu_and_gpu_nodes(example, capsys, offline_kubespawner):  # noqa: F811
    assert main(["-C", str(example), "profiles", "--registry", "ghcr.io/acme"]) == 0
    import yaml

    pod = pods(yaml.safe_load(capsys.readouterr().out))["pytorch"]
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == 1
    assert pod.spec.node_selector == {"kubernetes.io/arch": "amd64", "nvidia.com/gpu.present": "true"}


@pytest.mark.parametrize("line, message", [
    ("gpu = 65", "out of range"),
    ('node_selector = { "nvidia.com/gpu.present" = "true\\nx: y" }', "invalid Kubernetes label value"),
    ('node_selector = { "a b" = "true" }', "invalid Kubernetes label key"),
])
def test_a_hostile_gpu_profile_is_one_error_line(example, capsys, line, message):
    stack = example / "stacks/pytorch.toml"
    stack.write_text(stack.read_text().replace("gpu = 1\n", "").replace('node_selector = { "nvidia.com/gpu.present" = "true" }\n', "") + line + "\n")
    assert main(["-C", str(example), "check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stacks/pytorch.toml:") and message in err and err.count("error:") == 1, err


@pytest.mark.network
def test_the_cuda_stack_locks_from_pypi(tmp_path):
    """From nothing: torch and its nvidia-* wheels from PyPI, every pin hash-checked, and the CUDA they need."""
    root = tmp_path / "gpu"
    shutil.copytree(EXAMPLE / "stacks", root / "stacks")
    assert main(["-C", str(root), "lock"]) == 0
    doc = json.loads((root / "locks/pytorch/lock.json").read_text())
    packages = doc["python"]["packages"]["linux/amd64"]
    assert "torch" in packages and any(name.startswith("nvidia-cuda-runtime") for name in packages)
    cuda = doc["python"]["cuda"]["linux/amd64"]
    assert int(cuda["version"].split(".")[0]) >= 12 and cuda["min_driver"] in ("525.60.13", "580")
    requirements = (root / "locks/pytorch/requirements.txt").read_text()
    assert requirements.count("==") == len(packages) and requirements.count("--hash=sha256:") >= len(packages)


def test_a_lock_json_whose_packages_are_not_the_requirements_is_refused(example, capsys):
    """python.packages (what python.cuda is checked against) must be what the requirements files pin."""
    path = example / "locks/pytorch/lock.json"
    doc = json.loads(path.read_text())
    doc["python"]["packages"]["linux/amd64"]["torch"] = "2.9.1+cu126"
    doc["python"]["cuda"] = cuda_section(doc["python"]["packages"])
    doc["checksum"] = manifest_checksum(doc)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    assert main(["-C", str(example), "check"]) != 0
    assert "python/packages is not what the requirements files pin" in str(capsys.readouterr())


CHILD = ('name = "child"\ndescription = "c"\nextends = "pytorch"\n[python]\npackages = ["numpy"]\n'
         '[profile]\nnode_selector = {{ "topology.kubernetes.io/zone" = "a" }}\n{gpu}')


@pytest.mark.parametrize("gpu, limits", [("", {"nvidia.com/gpu": 1}), ("gpu = 0\n", None)])
def test_a_child_adds_to_its_parent_s_node_selector_and_may_need_no_gpu(example, capsys, offline_kubespawner, gpu, limits):  # noqa: F811
    (example / "stacks/child.toml").write_text(CHILD.format(gpu=gpu))
    assert main(["-C", str(example), "lock"]) == 0 and main(["-C", str(example), "generate"]) == 0
    capsys.readouterr()
    assert main(["-C", str(example), "profiles", "--registry", "r"]) == 0
    import yaml

    pod = pods(yaml.safe_load(capsys.readouterr().out))["child"]
    assert pod.spec.node_selector == {"kubernetes.io/arch": "amd64", "nvidia.com/gpu.present": "true", "topology.kubernetes.io/zone": "a"}
    assert (pod.spec.containers[0].resources.limits or {}).get("nvidia.com/gpu") == (limits or {}).get("nvidia.com/gpu")
    # the child's image carries its parent's CUDA: its labels come from the whole chain
    assert '"io.bakegen.cuda.min-driver" = "580"' in (example / "docker-bake.hcl").read_text().split('target "child"')[1]


def test_a_node_selector_value_is_a_quoted_string(example, capsys):
    stack = example / "stacks/pytorch.toml"
    stack.write_text(stack.read_text().replace('"nvidia.com/gpu.present" = "true"', '"nvidia.com/gpu.present" = "y", "gpu-mem" = "1e3"'))
    assert main(["-C", str(example), "profiles", "--registry", "r"]) == 0
    out = capsys.readouterr().out
    assert '"nvidia.com/gpu.present": "y"' in out and '"gpu-mem": "1e3"' in out
