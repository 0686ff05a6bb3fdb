"""How the images run: PID 1, healthcheck, volumes, https, and under JupyterHub."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from contextlib import contextmanager

import pytest

from e2e.conftest import docker

pytestmark = pytest.mark.e2e
TOKEN = "bakegen-test-token"


@contextmanager
def server(image: str, *args: str, env: dict[str, str] | None = None, volumes: list[str] = ()):
    cmd = ["run", "-d", "-p", "127.0.0.1::8888"]
    for k, v in (env or {}).items():
        cmd += ["-e", f"{k}={v}"]
    for v in volumes:
        cmd += ["-v", v]
    cid = docker(*cmd, image, *args).strip()
    try:
        port = docker("port", cid, "8888/tcp").splitlines()[0].rsplit(":", 1)[1]
        yield cid, port
    finally:
        docker("rm", "-f", cid, check=False)


def wait(url: str, cid: str, *, tls: bool = False, headers: dict | None = None, method: str = "GET", data: bytes | None = None):
    context = ssl._create_unverified_context() if tls else None
    deadline = time.monotonic() + 90
    last = None
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
            with urllib.request.urlopen(req, timeout=5, context=context) as resp:
                return resp.status, resp.read()
        except OSError as exc:
            last = exc
            time.sleep(1)
    raise AssertionError(f"{url} never answered ({last}):\n{docker('logs', cid, check=False)}")


def test_tini_is_pid_1_and_the_healthcheck_passes(built):
    with server(built.image("scipy")) as (cid, port):
        status, body = wait(f"http://127.0.0.1:{port}/api", cid)
        assert status == 200 and "version" in json.loads(body)
        assert docker("exec", cid, "cat", "/proc/1/cmdline").split("\0")[0].endswith("tini")
        assert subprocess.run(["docker", "exec", cid, "/opt/venv/bin/python", "/usr/local/lib/bakegen-healthcheck.py"]).returncode == 0
        health = json.loads(docker("inspect", cid, "--format", "{{json .Config.Healthcheck}}"))
        assert health["Test"][-1] == "/usr/local/lib/bakegen-healthcheck.py"


def test_api_writes_to_a_mounted_volume_as_the_non_root_user(built, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    os.chown(work, 1000, 100)
    with server(built.image("base"), f"--IdentityProvider.token={TOKEN}", volumes=[f"{work}:/home/jovyan/work"]) as (cid, port):
        wait(f"http://127.0.0.1:{port}/api", cid)
        body = json.dumps({"type": "file", "format": "text", "content": "hello from the API\n"}).encode()
        status, _ = wait(f"http://127.0.0.1:{port}/api/contents/work/hello.txt", cid, method="PUT", data=body,
                         headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
        assert status == 201
    assert (work / "hello.txt").read_text() == "hello from the API\n"
    assert (work / "hello.txt").stat().st_uid == 1000


def test_https_with_a_mounted_certificate(built, tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt")], check=True, capture_output=True)
    os.chmod(tls / "tls.key", 0o644)
    with server(built.image("base"), volumes=[f"{tls}:/etc/bakegen/tls:ro"]) as (cid, port):
        status, body = wait(f"https://127.0.0.1:{port}/api", cid, tls=True)
        assert status == 200 and "version" in json.loads(body)
        assert subprocess.run(["docker", "exec", cid, "/opt/venv/bin/python", "/usr/local/lib/bakegen-healthcheck.py"]).returncode == 0


def test_a_fresh_home_volume_gets_its_work_folder(built):
    """Zero to JupyterHub mounts an empty volume at the home (no copy of the image's folder)."""
    home = "/home/jovyan:uid=1000,gid=100,mode=0755"
    out = docker("run", "--rm", "--tmpfs", home, built.image("base"), "sh", "-c", "ls -d ~/work && touch ~/work/x && echo $SHELL")
    assert out.split() == ["/home/jovyan/work", "/bin/bash"], out
