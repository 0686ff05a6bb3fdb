"""bakegen jobs: the CI jobs of a distributed build, per level, stack and platform, as the generated
bakegen-build.yml reads them (GitHub Actions matrices)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, write_stacks
from fakes import lock_project

from bakegen.cli import main
from bakegen.errors import BakegenError
from bakegen.jobs import level_jobs, runners
from bakegen.project import load_stacks


def matrices(capsys, *args, root=REPO) -> dict[str, list[dict]]:
    assert main(["-C", str(root), "jobs", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {key: json.loads(value) for key, _, value in (line.partition("=") for line in lines)}


def test_the_example_graph_is_one_job_per_level(capsys):
    out = matrices(capsys)
    assert list(out) == ["level0", "level1", "level2", "level3"]
    assert [[j["stacks"] for j in out[f"level{i}"]] for i in range(4)] == [["base"], ["scipy"], ["geo"], []]
    assert out["level1"][0] == {"id": "scipy-all", "name": "scipy (linux/amd64)", "stacks": "scipy", "platform": "",
                                "runner": "ubuntu-latest", "qemu": False}


def deep_project(tmp_path):
    """Five levels; a and b share the root; the root builds amd64 and arm64."""
    stacks = {"root": 'name = "root"\ndescription = "r"\nbase = "python:3.13-slim"\nplatforms = ["linux/amd64", "linux/arm64"]\n'
                      '[python]\nversion = "3.13"\npackages = ["six"]\n'}
    parent = "root"
    for name in ("l1", "l2", "l3", "l4"):
        stacks[name] = f'name = "{name}"\ndescription = "x"\nextends = "{parent}"\n'
        parent = name
    stacks["side"] = 'name = "side"\ndescription = "x"\nextends = "root"\n'
    root = write_stacks(tmp_path, stacks)
    lock_project(root)
    return root


def test_arm64_runs_under_qemu_with_amd64_unless_it_has_a_runner(tmp_path, capsys):
    root = deep_project(tmp_path)
    qemu = matrices(capsys, root=root)
    assert qemu["level0"] == [{"id": "root-all", "name": "root (linux/amd64, linux/arm64)", "stacks": "root", "platform": "",
                               "runner": "ubuntu-latest", "qemu": True}]
    native = matrices(capsys, "--runner", "linux/arm64=ubuntu-24.04-arm", root=root)
    assert [(j["id"], j["platform"], j["runner"], j["qemu"]) for j in native["level1"]] == [
        ("l1-amd64", "linux/amd64", "ubuntu-latest", False), ("side-amd64", "linux/amd64", "ubuntu-latest", False),
        ("l1-arm64", "linux/arm64", "ubuntu-24.04-arm", False), ("side-arm64", "linux/arm64", "ubuntu-24.04-arm", False)]


def test_the_last_level_job_builds_the_deeper_levels_parents_first(tmp_path, capsys):
    root = deep_project(tmp_path)
    out = matrices(capsys, "--levels", "3", root=root)
    assert list(out) == ["level0", "level1", "level2"]
    assert [j["stacks"] for j in out["level2"]] == ["l2 l3 l4"]
    jobs = level_jobs(load_stacks(root), {}, 5)
    assert [[j.stacks for j in level] for level in jobs] == [["root"], ["l1", "side"], ["l2"], ["l3"], ["l4"]]


@pytest.mark.parametrize("value", ["linux/arm64", "arm64=ubuntu", "linux/arm64=ubuntu latest", "linux/arm64=${{ secrets.X }}",
                                   "linux/arm64=a\nb"])
def test_a_runner_is_platform_equals_label(value):
    with pytest.raises(BakegenError, match="is not PLATFORM=RUNNER-LABEL"):
        runners([value])


def test_the_last_job_keeps_stacks_of_other_platforms_apart(tmp_path):
    """Two roots, one amd64 only and one for amd64 and arm64, both deeper than the level jobs: one job each, and
    QEMU only for the one with arm64."""
    root = write_stacks(tmp_path, {
        "aaa": 'name = "aaa"\ndescription = "x"\nbase = "python:3.13-slim"\n[python]\nversion = "3.13"\npackages = ["six"]\n',
        "zzz": 'name = "zzz"\ndescription = "x"\nbase = "python:3.13-slim"\nplatforms = ["linux/amd64", "linux/arm64"]\n'
               '[python]\nversion = "3.13"\npackages = ["six"]\n',
    })
    lock_project(root)
    (jobs,) = level_jobs(load_stacks(root), {}, 1)
    assert [(j.stacks, j.name, j.qemu) for j in jobs] == [("aaa", "aaa (linux/amd64)", False),
                                                          ("zzz", "zzz (linux/amd64, linux/arm64)", True)]
