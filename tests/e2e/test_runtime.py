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


# The hub's REST API as jupyterhub-singleuser uses it: the version check at start, and
# token -> user for each request (JupyterHub's /hub/api and /hub/api/user routes).
HUB = """
import json, http.server
USER = {"kind": "user", "name": "test", "admin": False, "groups": [], "session_id": None,
        "scopes": ["access:servers!user=test", "access:servers!server=test/", "read:users:name!user=test"]}
class Hub(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.rstrip("/") == "/hub/api":
            self.reply(200, {"version": "5.2.1"})
        elif self.path.startswith("/hub/api/user") and self.headers.get("Authorization") == "token %s":
            self.reply(200, USER)
        else:
            self.reply(403, {"status": 403, "message": "forbidden"})
    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-JupyterHub-Version", "5.2.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", 8081), Hub).serve_forever()
"""


def test_jupyterhub_singleuser_when_the_hub_starts_the_image(built):
    user_token = "user-token-for-test"
    hub = docker("run", "-d", "-p", "127.0.0.1::8888", built.image("base"), "python", "-c", HUB % user_token).strip()
    env = {
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/test/",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/test/",
        "JUPYTERHUB_USER": "test",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-test",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/test/oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=test/", "access:servers!user=test"]',
    }
    args = ["run", "-d", "--network", f"container:{hub}"] + [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    cid = docker(*args, built.image("base")).strip()
    try:
        port = docker("port", hub, "8888/tcp").splitlines()[0].rsplit(":", 1)[1]
        status, body = wait(f"http://127.0.0.1:{port}/user/test/api", cid)
        assert status == 200 and "version" in json.loads(body)
        top = docker("top", cid, "-o", "pid,uid,args")
        assert "jupyterhub-singleuser" in top and "jupyter-lab" not in top, top
        assert all(line.split()[1] == "1000" for line in top.splitlines()[1:]), top
        # a request with the user's token: the server asks the hub who it is, then answers
        status, body = wait(f"http://127.0.0.1:{port}/user/test/api/contents", cid, headers={"Authorization": f"token {user_token}"})
        assert status == 200 and json.loads(body)["type"] == "directory"
        # a wrong token is refused
        req = urllib.request.Request(f"http://127.0.0.1:{port}/user/test/api/contents", headers={"Authorization": "token wrong"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 403
        assert subprocess.run(["docker", "exec", cid, "/opt/venv/bin/python", "/usr/local/lib/bakegen-healthcheck.py"]).returncode == 0
    finally:
        docker("rm", "-f", cid, hub, check=False)
