"""A real JupyterHub (DockerSpawner + configurable-http-proxy) starts the images as they are.

The hub config sets no command: DockerSpawner runs the image's own ENTRYPOINT
and CMD. Everything is asked through the proxy, as a browser would.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from bakegen.project import read_lock
from e2e.conftest import docker
from e2e.hub import Hub, current_hub, execute, previous_hub

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def network():
    name = "bakegen-hub-" + uuid.uuid4().hex[:8]
    docker("network", "create", name)
    yield name
    docker("network", "rm", name, check=False)


@pytest.fixture
def hub_factory(tmp_path, network):
    hubs: list[Hub] = []
    volumes: list[str] = []

    def make(image: str, *, jupyterhub: str | None = None, spawner: dict | None = None, home_volume: bool = False) -> Hub:
        hub = Hub(tmp_path / f"hub{len(hubs)}", image, network, jupyterhub or current_hub(), spawner=spawner or {})
        if home_volume:
            # A named volume that DockerSpawner creates, at the home (the notebook dir), as Zero to JupyterHub mounts one.
            hub.volumes = {f"{hub.prefix}-home-{{username}}": "/home/jovyan"}
            volumes.append(hub.prefix)
        hubs.append(hub)
        return hub.start()

    yield make
    for hub in hubs:
        hub.stop()
    for prefix in volumes:
        for vol in docker("volume", "ls", "-q", "--filter", f"name={prefix}-home-", check=False).split():
            docker("volume", "rm", "-f", vol, check=False)


def test_geo_runs_code_in_a_kernel_and_serves_its_lab_extension(built, hub_factory):
    hub = hub_factory(built.image("geo"))
    hub.start_server("alice")
    status, body, _ = hub.user_get("alice", "/api/status")
    assert status == 200, body
    numpy = read_lock(built.root / "locks" / "scipy").parts["python"].by_name()["numpy"].version
    out = execute(hub, "alice", "import ipyleaflet, numpy\nm = ipyleaflet.Map()\nprint(type(m).__name__, numpy.__version__)")
    assert out == {"status": "ok", "stdout": f"Map {numpy}\n", "error": None}
    status, body, _ = hub.user_get("alice", "/lab/api/extensions")
    assert status == 200, body
    extensions = {e["name"]: e for e in json.loads(body)}
    assert "jupyter-leaflet" in extensions and extensions["jupyter-leaflet"]["enabled"], sorted(extensions)
    top = docker("top", hub.container("alice"), "-o", "pid,uid,args")
    assert "jupyterhub-singleuser" in top and all(line.split()[1] == "1000" for line in top.splitlines()[1:]), top


def test_base_keeps_files_on_its_home_volume_and_serves_tree_and_bash_terminals(built, hub_factory):
    hub = hub_factory(built.image("base"), spawner={"default_url": "/tree"}, home_volume=True)
    hub.start_server("bob")
    status, _, headers = hub.user_get("bob", "/")
    assert status == 302 and headers.get("Location", "").split("?")[0].endswith("/user/bob/tree"), (status, headers)
    status, body, _ = hub.user_get("bob", "/tree")
    assert status == 200 and b"<html" in body.lower(), (status, body[:300])
    content = {"type": "file", "format": "text", "content": "kept across restarts\n"}
    status, body, _ = hub.request("PUT", "/user/bob/api/contents/work/kept.txt", content)
    assert status == 201, body
    out = execute(hub, "bob", "import os; print(os.environ['SHELL'], os.getcwd(), os.path.isdir(os.path.expanduser('~/work')))")
    assert out["stdout"] == "/bin/bash /home/jovyan True\n", out
    status, body, _ = hub.request("POST", "/user/bob/api/terminals")
    assert status == 200, body
    comms = docker("exec", hub.container("bob"), "sh", "-c", "cat /proc/[0-9]*/comm")
    assert "bash" in comms.split(), comms

    hub.stop_server("bob")
    deadline = time.monotonic() + 30  # the hub answers the stop before Docker has finished removing the container
    while docker("ps", "-aq", "--filter", f"name={hub.container('bob')}") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not docker("ps", "-aq", "--filter", f"name={hub.container('bob')}"), "DockerSpawner removes the container"
    hub.start_server("bob")
    status, body, _ = hub.user_get("bob", "/api/contents/work/kept.txt")
    assert status == 200 and json.loads(body)["content"] == "kept across restarts\n", body


def test_a_spawner_port_other_than_8888(built, hub_factory):
    hub = hub_factory(built.image("base"), spawner={"port": 9000})
    hub.start_server("carol")
    status, body, _ = hub.user_get("carol", "/api/status")
    assert status == 200, body
    env = docker("inspect", hub.container("carol"), "--format", "{{json .Config.Env}}")
    assert ":9000/user/carol/" in env, env


def test_a_hub_one_major_version_older_warns_but_starts_the_server(built, hub_factory):
    hub = hub_factory(built.image("base"), jupyterhub=previous_hub())
    hub.start_server("dave")
    status, body, _ = hub.user_get("dave", "/api/status")
    assert status == 200, body
    # the single-user server compares the hub's version with its own, and says so
    logs = hub.container_logs("dave")
    assert "jupyterhub version 4.1.6 != jupyterhub-singleuser version 5." in logs, logs[-3000:]
    # the old hub cannot read the new server's version at all, and warns too
    assert "Single-user server has no version header" in hub.log, hub.log[-3000:]


@pytest.mark.parametrize("cmd", ["start-singleuser.py", "start-notebook.sh"])
def test_a_docker_stacks_hub_config_that_names_a_start_script(built, hub_factory, cmd):
    # Many docker-stacks hub configs set the command; the image answers to those names.
    hub = hub_factory(built.image("scipy"), spawner={"cmd": [cmd]})
    hub.start_server("erin")
    inspect = json.loads(docker("inspect", hub.container("erin"), "--format", "{{json .Config.Cmd}}"))
    assert inspect == [cmd], inspect
    out = execute(hub, "erin", "import scipy, os; print(scipy.__name__, os.getuid())")
    assert out == {"status": "ok", "stdout": "scipy 1000\n", "error": None}
    top = docker("top", hub.container("erin"), "-o", "pid,args")
    assert "jupyterhub-singleuser" in top, top
