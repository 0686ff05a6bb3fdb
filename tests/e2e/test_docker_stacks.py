"""Conformance with jupyter/docker-stacks' runtime conventions, written from the conventions
(README "Coming from docker-stacks"), run against the example images."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from bakegen.project import read_lock
from e2e.conftest import docker
from e2e.hub import execute_at

pytestmark = pytest.mark.e2e
IMAGES = ["base", "scipy", "geo"]
TOKEN = "bakegen-conformance-" + uuid.uuid4().hex


@contextmanager
def container(image: str, *cmd: str, env: dict | None = None, user: str | None = None, port: int = 8888, extra: list[str] = ()):
    args = ["run", "-d", "-p", f"127.0.0.1::{port}", *extra]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    if user:
        args += ["--user", user]
    cid = docker(*args, image, *cmd).strip()
    try:
        host = docker("port", cid, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1]
        yield cid, f"http://127.0.0.1:{host}"
    finally:
        docker("rm", "-f", cid, check=False)


def logs(cid: str) -> str:
    out = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
    return out.stdout + out.stderr


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"token {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_api(cid: str, url: str, timeout: float = 120) -> dict:
    """Wait until ``url`` + "api" answers 200 (the server's version)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, body = get(url.rstrip("/") + "/api")
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        state = json.loads(docker("inspect", cid, "--format", "{{json .State}}"))
        assert state["Running"], f"the container stopped:\n{logs(cid)}"
        time.sleep(1)
    raise AssertionError(f"{url}api never answered:\n{logs(cid)}")


def wait_healthy(cid: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = json.loads(docker("inspect", cid, "--format", "{{json .State.Health}}"))
        if health and health["Status"] == "healthy":
            return
        time.sleep(1)
    raise AssertionError(f"never healthy: {json.dumps(health)[-1500:]}\n{logs(cid)}")


def processes(cid: str) -> list[tuple[int, str]]:
    """(uid, command line) of every process in the container."""
    out = docker("exec", "-u", "root", cid, "sh", "-c",
                 'for p in /proc/[0-9]*; do echo "$(stat -c %u $p) $(tr "\\0" " " < $p/cmdline)"; done')
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in out.splitlines() if line.strip() and " " in line]


def server_pid(cid: str) -> int:
    """The pid of the one running jupyter-lab server."""
    out = docker("exec", "-u", "root", cid, "sh", "-c",
                 'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline)" in *bin/jupyter[-]lab*) echo ${p#/proc/};; esac; done')
    pids = [int(p) for p in out.split()]
    assert len(pids) == 1, processes(cid)
    return pids[0]


def server_uid(cid: str) -> int:
    uids = {uid for uid, cmd in processes(cid) if "jupyter" in cmd}
    assert len(uids) == 1, processes(cid)
    return uids.pop()


# --- start scripts --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("cmd", [[], ["start-notebook.py"], ["start-notebook.sh"], ["start.sh", "start-notebook.py"]],
                         ids=["image-cmd", "start-notebook.py", "start-notebook.sh", "start.sh"])
def test_each_start_script_starts_the_server_as_the_user(built, name, cmd):
    with container(built.image(name), *cmd) as (cid, url):
        wait_api(cid, url + "/")
        assert server_uid(cid) == 1000


def test_start_singleuser_outside_a_hub_says_what_is_missing(built):
    out = subprocess.run(["docker", "run", "--rm", built.image("base"), "start-singleuser.py"], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "JUPYTERHUB" in out.stdout + out.stderr


# --- started as root ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_root_start_adjusts_the_user_chowns_and_grants_sudo_then_drops_root(built, name):
    env = {"NB_USER": "alice", "NB_UID": "1500", "NB_GID": "1600", "CHOWN_HOME": "yes", "GRANT_SUDO": "yes"}
    with container(built.image(name), env=env, user="root") as (cid, url):
        wait_api(cid, url + "/")
        assert server_uid(cid) == 1500  # never root
        ids = docker("exec", "-u", "root", cid, "id", "alice").strip()
        assert ids.startswith("uid=1500(alice) gid=1600") and "(users)" in ids, ids
        assert docker("exec", "-u", "root", cid, "stat", "-c", "%u:%g", "/home/alice").strip() == "1500:1600"
        assert docker("exec", "-u", "1500", cid, "sudo", "-n", "id", "-u").strip() == "0"


def test_root_start_without_grant_sudo_gives_no_sudo(built):
    with container(built.image("base"), user="root") as (cid, url):
        wait_api(cid, url + "/")
        assert server_uid(cid) == 1000
        out = subprocess.run(["docker", "exec", "-u", "1000", cid, "sudo", "-n", "true"], capture_output=True, text=True)
        assert out.returncode != 0


def test_chown_extra_fixes_a_root_owned_bind_mount(built, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o755)  # root's, as a folder Docker makes for a bind mount
    env = {"CHOWN_EXTRA": "/home/jovyan/work"}
    with container(built.image("base"), f"--IdentityProvider.token={TOKEN}", env=env, user="root", extra=["-v", f"{work}:/home/jovyan/work"]) as (cid, url):
        wait_api(cid, url + "/")
        body = json.dumps({"type": "file", "format": "text", "content": "mine\n"}).encode()
        req = urllib.request.Request(f"{url}/api/contents/work/mine.txt", data=body, method="PUT",
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=30) as resp:
            assert resp.status == 201
    assert (work / "mine.txt").read_text() == "mine\n" and (work / "mine.txt").stat().st_uid == 1000


# --- arbitrary uids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("user,extra", [("1010:1010", ["--group-add", "users"]), ("1010:0", [])], ids=["group-users", "gid-0"])
def test_an_arbitrary_uid_starts_and_is_healthy(built, name, user, extra):
    with container(built.image(name), user=user, extra=extra) as (cid, url):
        wait_api(cid, url + "/")
        assert server_uid(cid) == 1010
        wait_healthy(cid)
        environ = docker("exec", "-u", user, cid, "sh", "-c", f"tr '\\0' '\\n' < /proc/{server_pid(cid)}/environ").splitlines()
        # with the users group the image's home is writable; with gid 0 alone the start uses a fallback, and says so
        home = "/home/jovyan" if extra else "/tmp/bakegen-home-1010"
        assert f"HOME={home}" in environ and "USER=jovyan" in environ, environ
        assert (f"using {home}" in logs(cid)) == (not extra)


# --- runtime installs ------------------------------------------------------------------------------------


def make_wheel(folder: Path, name: str, version: str, code: str) -> Path:
    """A minimal pure-Python wheel, made by hand (no build backend, no network)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": code,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: bakegen-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text.encode())}\n"
        for path, text in files.items()
    ) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name_, text in {**files, f"{dist}/RECORD": record}.items():
            whl.writestr(name_, text)
    return path


@pytest.mark.parametrize("name", IMAGES)
def test_pip_install_in_a_running_kernel_keeps_the_locked_pins(built, name, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "bakegen_probe", "1.0", "VALUE = 42\n")
    make_wheel(wheels, "tornado", "99.0", "version = '99.0'\n")
    os.chmod(wheels, 0o755)
    tornado = read_lock(built.root / "locks" / "base").parts["python"].by_name()["tornado"].version
    with container(built.image(name), f"--IdentityProvider.token={TOKEN}", extra=["-v", f"{wheels}:/wheels:ro"]) as (cid, url):
        wait_api(cid, url + "/")
        headers = {"Authorization": f"token {TOKEN}"}
        out = execute_at(url, headers, "%pip install -q --no-index /wheels/bakegen_probe-1.0-py3-none-any.whl\nimport bakegen_probe\nprint('probe', bakegen_probe.VALUE)")
        assert out["status"] == "ok" and out["stdout"].strip().endswith("probe 42"), out
        # a locked package stays as locked: pip refuses to move it (PIP_CONSTRAINT)
        out = execute_at(url, headers, "%pip install -q --no-index /wheels/tornado-99.0-py3-none-any.whl\nimport importlib.metadata as m\nprint('tornado', m.version('tornado'))")
        assert f"tornado {tornado}" in out["stdout"] and "99.0" in out["stdout"], out  # the refusal names the wheel


# --- the healthcheck, ports, IPv6 ------------------------------------------------------------------------------


def test_the_healthcheck_follows_base_url_and_ignores_proxies(built):
    env = {"HTTP_PROXY": "http://proxy.invalid:3128", "HTTPS_PROXY": "http://proxy.invalid:3128", "http_proxy": "http://proxy.invalid:3128"}
    with container(built.image("base"), "--ServerApp.base_url=/x/", env=env) as (cid, url):
        wait_api(cid, url + "/x/")
        wait_healthy(cid)
        health = json.loads(docker("inspect", cid, "--format", "{{json .Config.Healthcheck}}"))
        assert health["Interval"] <= 10 * 10**9 and health["StartInterval"] <= 2 * 10**9


def listening(cid: str) -> set[int]:
    """The TCP ports something listens on in the container (/proc/net/tcp and tcp6, state 0A)."""
    out = docker("exec", cid, "sh", "-c", "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null")
    return {int(f[1].rsplit(":", 1)[1], 16) for f in (line.split() for line in out.splitlines()[1:]) if len(f) > 3 and f[3] == "0A"}


def test_jupyter_port(built):
    """JUPYTER_PORT moves the server (docker-stacks' variable): it answers there, not on the image's 8888."""
    with container(built.image("base"), env={"JUPYTER_PORT": "9999"}, port=9999) as (cid, url):
        assert "version" in wait_api(cid, url + "/")
        wait_healthy(cid)  # the healthcheck follows the port too
        ports = listening(cid)
        assert 9999 in ports and 8888 not in ports, ports


def test_the_server_answers_on_its_ipv6_address(built):
    net = "bakegen-v6-" + uuid.uuid4().hex[:6]
    docker("network", "create", "--ipv6", "--subnet", "fd00:bae:" + uuid.uuid4().hex[:4] + "::/64", net)
    try:
        with container(built.image("base"), extra=["--network", net]) as (cid, url):
            address = json.loads(docker("inspect", cid, "--format", "{{json .NetworkSettings.Networks}}"))[net]["GlobalIPv6Address"]
            assert ":" in address
            probe = f"import time, urllib.request as u\nfor _ in range(120):\n    try:\n        print(u.urlopen('http://[{address}]:8888/api', timeout=5).status); break\n    except OSError:\n        time.sleep(1)\n"
            out = docker("run", "--rm", "--network", net, built.image("base"), "python3", "-c", probe)
            assert out.strip() == "200", out + logs(cid)
    finally:
        docker("network", "rm", net, check=False)


# --- hooks and docker-stacks' environment variables --------------------------------------------------------------


def test_start_hooks_run_in_order_as_root_when_started_as_root(built, tmp_path):
    start = tmp_path / "start-notebook.d"
    before = tmp_path / "before-notebook.d"
    start.mkdir()
    before.mkdir()
    (start / "10-first").write_text("#!/bin/sh\necho \"start $(id -u)\" >> /tmp/hooks.log\n")
    (start / "10-first").chmod(0o755)
    (start / "20-ignored.txt").write_text("not a hook\n")
    (before / "10-env.sh").write_text("echo \"before $(id -u)\" >> /tmp/hooks.log\nexport HOOK_SAYS=hello\n")
    (before / "20-failing.sh").write_text("false\n")
    for path in [tmp_path, start, before]:
        path.chmod(0o755)
    mounts = ["-v", f"{start}:/usr/local/bin/start-notebook.d:ro", "-v", f"{before}:/usr/local/bin/before-notebook.d:ro"]
    with container(built.image("base"), f"--IdentityProvider.token={TOKEN}", user="root", extra=mounts) as (cid, url):
        wait_api(cid, url + "/")
        assert docker("exec", cid, "cat", "/tmp/hooks.log").splitlines() == ["start 0", "before 0"]
        out = execute_at(url, {"Authorization": f"token {TOKEN}"}, "import os; print(os.environ.get('HOOK_SAYS'))")
        assert out["stdout"] == "hello\n", out
        text = logs(cid)
        assert "ignoring /usr/local/bin/start-notebook.d/20-ignored.txt" in text and "20-failing.sh failed with exit code 1" in text


def test_jupyter_env_vars_to_unset_keeps_secrets_from_the_kernels(built):
    env = {"HOOK_SECRET": "s3cret", "OTHER_SECRET": "x", "KEPT": "yes", "JUPYTER_ENV_VARS_TO_UNSET": "HOOK_SECRET,OTHER_SECRET"}
    with container(built.image("base"), f"--IdentityProvider.token={TOKEN}", env=env) as (cid, url):
        wait_api(cid, url + "/")
        code = "import os; print([os.environ.get(k) for k in ('HOOK_SECRET', 'OTHER_SECRET', 'KEPT', 'JUPYTER_ENV_VARS_TO_UNSET')])"
        out = execute_at(url, {"Authorization": f"token {TOKEN}"}, code)
        assert out["stdout"] == "[None, None, 'yes', None]\n", out


def test_notebook_args_jupyter_cmd_and_umask(built):
    env = {"NOTEBOOK_ARGS": f"--ServerApp.base_url=/nb/ --IdentityProvider.token={TOKEN}", "DOCKER_STACKS_JUPYTER_CMD": "notebook", "NB_UMASK": "0002"}
    with container(built.image("base"), env=env) as (cid, url):
        wait_api(cid, url + "/nb/")
        assert any("jupyter-notebook" in cmd for _, cmd in processes(cid)), processes(cid)
        assert get(f"{url}/nb/tree", TOKEN)[0] == 200
        out = execute_at(url + "/nb", {"Authorization": f"token {TOKEN}"}, "import os, stat; open('u.txt', 'w').close(); print(oct(stat.S_IMODE(os.stat('u.txt').st_mode)))")
        assert out["stdout"] == "0o664\n", out


def test_restartable_starts_the_server_again(built):
    with container(built.image("base"), env={"RESTARTABLE": "yes"}) as (cid, url):
        wait_api(cid, url + "/")
        first = server_pid(cid)
        docker("exec", "-u", "root", cid, "sh", "-c", f"kill {first}")
        time.sleep(3)
        wait_api(cid, url + "/")
        assert "starting it again (RESTARTABLE=yes)" in logs(cid)
        assert server_pid(cid) != first
