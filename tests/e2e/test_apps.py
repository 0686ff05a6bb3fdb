"""[apps] for real: uv locks an application from PyPI, BuildKit installs it into a virtualenv of its
own on top of the built example base, and it runs as the image's user next to the notebook environment."""

from __future__ import annotations

import json
import subprocess

import pytest

from bakegen.project import read_lock
from e2e.conftest import PREFIX, bakegen, copy_project, run

pytestmark = pytest.mark.e2e

TOOLS = """\
name = "tools"
description = "The example base with nbstripout, in a virtualenv of its own"
extends = "base"

[apps]
packages = ["nbstripout>=0.8"]
"""


@pytest.fixture(scope="module")
def tools(built, engine, tmp_path_factory):
    root = copy_project(built.root, tmp_path_factory.mktemp("apps"))
    (root / "stacks" / "tools.toml").write_text(TOOLS)
    locked = bakegen(root, "lock")
    assert locked.returncode == 0, locked.stderr
    assert "tools: locked (" in locked.stdout and "base: up to date" in locked.stdout, locked.stdout
    assert bakegen(root, "generate").returncode == 0
    args = ["build", "--base-image", f"base={engine.standin}", "--registry", PREFIX, "--load", "--progress", "plain"]
    if engine.ca_bundle:
        args += ["--ca-bundle", engine.ca_bundle]
    build = bakegen(root, *args, "tools")
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return root


def _pins(root, app):
    lock = read_lock(root / "locks" / "tools", root)
    return {p.key: p.version for p in lock.parts["apps"].pins[app]["linux/amd64"]}


def test_the_app_runs_as_the_user_from_its_own_virtualenv(tools):
    image, pins = f"{PREFIX}/tools:latest", _pins(tools, "nbstripout")
    out = run(image, "sh", "-c", "id -u; command -v nbstripout; nbstripout --version; readlink -f $(command -v nbstripout)")
    uid, where, version, target = out.split()
    assert uid == "1000" and where == "/opt/apps/bin/nbstripout" and target == "/opt/apps/nbstripout/bin/nbstripout"
    assert version == pins["nbstripout"]
    # every distribution in the app's virtualenv is the locked one, and nothing else (pip removed)
    listed = run(image, "/opt/apps/nbstripout/bin/python", "-c",
                 "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))")
    assert json.loads(listed) == pins


def test_the_app_and_the_notebook_environment_do_not_meet(tools):
    image = f"{PREFIX}/tools:latest"
    assert run(image, "sh", "-c", "echo $PATH").strip().startswith("/opt/venv/bin:")
    missing = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/opt/venv/bin/python", image, "-c", "import nbstripout"], capture_output=True, text=True)
    assert missing.returncode != 0 and "ModuleNotFoundError: No module named 'nbstripout'" in missing.stderr
    venv = run(image, "/opt/venv/bin/python", "-c", "import nbformat; print(nbformat.__file__)")
    assert venv.startswith("/opt/venv/")


def test_report_and_sbom_name_the_applications(tools):
    report = bakegen(tools, "report", "--registry", PREFIX, "--format", "json")
    assert report.returncode == 0, report.stderr
    own = {r["stack"]: r for r in json.loads(report.stdout)}["tools"]
    assert [x["installs"] for x in own["layer_sizes"][-1:]] == ["applications (app-*.txt)"]
    sbom = bakegen(tools, "sbom", "tools", "--format", "cyclonedx", "--output", str(tools / "sbom"))
    assert sbom.returncode == 0, sbom.stderr
    doc = json.loads(next((tools / "sbom").rglob("*.cdx.json")).read_text())
    purls = {c["purl"] for c in doc["components"]}
    assert f"pkg:pypi/nbstripout@{_pins(tools, 'nbstripout')['nbstripout']}" in purls
