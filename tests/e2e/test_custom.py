"""A stack's own files, build steps and start hook, for real: BuildKit builds them on the example base,
the server and JupyterLab read them over HTTP, and the hook runs before the server. A package bump
re-runs only the steps that need it, and a project's template override is what BuildKit builds. (Two
--no-cache builds of this stack: make bench-repro.)"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid

import pytest
from conftest import REPO

from bakegen.project import read_lock
from e2e.conftest import PREFIX, bakegen, copy_project, docker, last_bake_steps, older_release, run
from e2e.test_runtime import server, wait

pytestmark = pytest.mark.e2e

CUSTOM = """\
name = "custom"
description = "The example base with a server config, a JupyterLab setting, a start hook and two build steps"
extends = "base"

[[files]]
source = "jupyter_server_config.py"
target = "/etc/jupyter/jupyter_server_config.py"

[[files]]
source = "lab/overrides.json"
target = "/opt/venv/share/jupyter/lab/settings/overrides.json"

[[files]]
source = "lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
target = "/home/jovyan/.jupyter/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
owner = "user"

[[steps]]
run = "mkdir -p /srv/bakegen && echo made-by-root > /srv/bakegen/root.txt"
user = "root"
needs = []

[[steps]]
run = "jupyter --version > $HOME/.jupyter-version"

[start]
hooks = ["hooks/marker.sh"]
"""
FILES = {
    "jupyter_server_config.py": 'c.ServerApp.tornado_settings = {"headers": {"X-Bakegen-Custom": "from-a-stack-file"}}\n',
    "lab/overrides.json": json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}) + "\n",
    "lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings": json.dumps({"codeCellConfig": {"lineNumbers": True}}) + "\n",
    "hooks/marker.sh": 'echo "hook ran as $(id -u) before the server" > /tmp/bakegen-hook-marker\n',
}
TOKEN = "bakegen-custom-token"


@pytest.fixture(scope="module")
def custom(built, engine, tmp_path_factory):
    root = copy_project(built.root, tmp_path_factory.mktemp("custom"))
    (root / "stacks" / "custom.toml").write_text(CUSTOM)
    for rel, text in FILES.items():
        (root / "stacks" / "custom" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "stacks" / "custom" / rel).write_text(text)
    for args in (["lock"], ["generate"]):
        out = bakegen(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    build = bakegen(root, "build", "--base-image", f"base={engine.standin}", "--registry", PREFIX, "--load", "--ca-bundle", engine.ca_bundle, "custom")
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return root


def test_the_server_config_and_the_lab_setting_are_read_over_http(custom):
    with server(f"{PREFIX}/custom:latest", env={"JUPYTER_TOKEN": TOKEN}) as (cid, port):
        auth = {"Authorization": f"token {TOKEN}"}
        status, _ = wait(f"http://127.0.0.1:{port}/api/status", cid, headers=auth)
        assert status == 200
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/status", headers=auth), timeout=10) as resp:
            assert resp.headers["X-Bakegen-Custom"] == "from-a-stack-file"
        _, body = wait(f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:themes", cid, headers=auth)
        settings = json.loads(body)
        assert settings["schema"]["properties"]["theme"]["default"] == "JupyterLab Dark"
        _, body = wait(f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/notebook-extension:tracker", cid, headers=auth)
        assert json.loads(body)["raw"] == FILES["lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"]  # the user's own setting, from ~/.jupyter
        # the start hook ran before the server, as the user
        assert docker("exec", cid, "cat", "/tmp/bakegen-hook-marker").strip() == "hook ran as 1000 before the server"
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        assert "sourcing hook /usr/local/bin/before-notebook.d/01-custom-001-marker.sh" in logs.stdout + logs.stderr


def test_the_root_and_user_steps_ran_as_said(custom):
    image = f"{PREFIX}/custom:latest"
    out = run(image, "sh", "-c", "cat /srv/bakegen/root.txt; stat -c %U /srv/bakegen/root.txt; stat -c %u $HOME/.jupyter-version; grep -c jupyter_server $HOME/.jupyter-version")
    assert out.split() == ["made-by-root", "root", "1000", "1"]
    # the files' folders are enterable (0755), the files have their modes and owners
    modes = run(image, "stat", "-c", "%a %U %n", "/etc/jupyter", "/etc/jupyter/jupyter_server_config.py", "/opt/venv/share/jupyter/lab/settings/overrides.json",
                "/home/jovyan/.jupyter", "/home/jovyan/.jupyter/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings")
    assert modes.splitlines() == ["755 root /etc/jupyter", "644 root /etc/jupyter/jupyter_server_config.py", "644 root /opt/venv/share/jupyter/lab/settings/overrides.json",
                                  "2775 jovyan /home/jovyan/.jupyter", "644 jovyan /home/jovyan/.jupyter/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"]
    # the folders made for the user's file are the user's: JupyterLab can save its workspaces next to it
    assert run(image, "sh", "-c", "mkdir ~/.jupyter/lab/workspaces && echo ok").strip() == "ok"


def test_report_and_diff_name_the_files_and_steps(custom):
    report = bakegen(custom, "report", "--registry", PREFIX, "--format", "json")
    assert report.returncode == 0, report.stderr
    own = {r["stack"]: r for r in json.loads(report.stdout)}["custom"]
    installs = [x["installs"] for x in own["layer_sizes"][-7:]]
    assert installs[0].startswith("step 1: mkdir -p /srv/bakegen")
    assert installs[1:7] == ["folders of the stack's files", "file /etc/jupyter/jupyter_server_config.py", "file /opt/venv/share/jupyter/lab/settings/overrides.json",
                             "file /home/jovyan/.jupyter/lab/user-settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
                             "start hook hooks/marker.sh", "step 2: jupyter --version > $HOME/.jupyter-version"], installs


# The first step is unique to each run: the layers after it cannot come from an earlier run's BuildKit cache.
NEEDY = """\
name = "needy"
description = "Steps that say what they need, under a project's own Dockerfile template"
extends = "base"

[python]
packages = ["xyzservices"]

[[steps]]
run = "echo {run} > /srv/independent.txt"
user = "root"
needs = []

[[steps]]
run = "python -c 'import xyzservices; print(xyzservices.__version__)' > /srv/xyzservices.txt"
user = "root"
needs = ["python"]

[[steps]]
run = "ls /opt/venv/lib > /srv/last.txt"
user = "root"
"""
LABEL = 'LABEL com.example.template="a project override"'


def build_needy(root, engine) -> dict[str, bool]:
    for args in (["lock"], ["generate"]):
        out = bakegen(root, *args)
        assert out.returncode == 0, out.stdout + out.stderr
    build = bakegen(root, "build", "needy", "--base-image", f"base={engine.standin}", "--registry", PREFIX, "--load",
                    "--ca-bundle", engine.ca_bundle, "--progress", "plain")
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return last_bake_steps(build.stdout + build.stderr, "needy")


def test_a_package_bump_reruns_only_the_steps_that_need_it_under_a_template_override(built, engine, tmp_path):
    root = copy_project(built.root, tmp_path)
    (root / "stacks" / "needy.toml").write_text(NEEDY.format(run=uuid.uuid4().hex))
    # a project override of the Dockerfile template: the packaged one, and a label on every image
    (root / "templates").mkdir()
    packaged = (REPO / "bakegen" / "render" / "templates" / "Dockerfile.j2").read_text()
    (root / "templates" / "Dockerfile.j2").write_text(packaged + "{{ '" + LABEL + "' }}\n")
    first = build_needy(root, engine)
    assert [did for text, did in first.items() if "independent.txt" in text] == [True]
    pin = read_lock(root / "locks" / "needy", root).parts["python"].by_name()["xyzservices"].version
    older = older_release("xyzservices", pin)
    assert bakegen(root, "lock", "--upgrade-package", f"xyzservices=={older}").returncode == 0
    second = build_needy(root, engine)
    print(f"xyzservices {pin} -> {older}; the steps that ran again:", [text[:90] for text, did in second.items() if did])
    assert [did for text, did in second.items() if "independent.txt" in text] == [False]  # needs = []: before the packages, cached
    # the Python layer of the image (its builder stage starts from the parent, not from the unique step: an
    # earlier run may have cached it)
    assert [did for text, did in second.items() if text.startswith("COPY --from=builder") and "/opt/venv/" in text] == [True]
    assert [did for text, did in second.items() if "xyzservices.txt" in text] == [True]  # needs = ["python"]
    assert [did for text, did in second.items() if "last.txt" in text] == [True]  # says nothing: after everything
    image = f"{PREFIX}/needy:latest"
    assert run(image, "cat", "/srv/xyzservices.txt").strip() == older
    labels = json.loads(docker("image", "inspect", image, "--format", "{{json .Config.Labels}}"))
    assert labels["com.example.template"] == "a project override"
    assert LABEL in (root / "dockerfiles" / "needy" / "Dockerfile").read_text()
